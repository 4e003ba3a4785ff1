// Engine.IO v4 + Socket.IO v5 text framing over a raw WebSocket, for load scripts.
//
// A plain ES module without imports, so k6 (`import ... from './lib/socketio.js'`) and Node
// (loadtest/k6/test/) share it. Written in conservative ES2017 for k6's JavaScript runtime.
//
// A WebSocket message is one Engine.IO packet: a type digit, then its data.
//   0{"sid":"…","pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}  open (server)
//   2 / 3                                                                    ping (server) / pong (client)
//   1                                                                        close
//   4<Socket.IO packet>                                                      message
// A Socket.IO packet is a type digit, the namespace followed by a comma unless it is the default
// namespace '/', an optional packet id (acknowledgement id, decimal), and JSON data:
//   40/drivers,{"token":"…"}                    CONNECT (client, with auth) → 40/drivers,{"sid":"…"}
//   44/drivers,{"message":"Invalid token"}      CONNECT_ERROR
//   42/drivers,12["driver:location",{…}]        EVENT with ack id 12 → 43/drivers,12[{"ok":true}]
//   42["hello",{…}]                             EVENT on the default namespace
//   41/drivers,                                 DISCONNECT (the server's: `io server disconnect`)
// Binary packets (45, 46) are not used by the gateway's events and parse as `unknown`.

/** Engine.IO pong, the answer to every ping (`2`) from the server. */
export const PONG = '3';
/** Engine.IO ping, as the server sends it. */
export const PING = '2';

/** `http://host:port` (or `https://`, `ws://`) → the Socket.IO WebSocket URL. */
export function wsUrl(httpBase) {
  const base = String(httpBase).replace(/\/+$/, '').replace(/^http(s?):\/\//i, 'ws$1://');
  return base + '/socket.io/?EIO=4&transport=websocket';
}

/**
 * How long a virtual user waits before connecting again after a failed or dropped connection,
 * as socket.io-client does (reconnectionDelay 1 s doubling to reconnectionDelayMax 5 s,
 * randomizationFactor 0.5): attempt 1 waits 0.5-1.5 s. Without it a refused token makes a VU
 * retry in a hot loop, which no app does. `random` is a number in [0, 1).
 */
export function reconnectDelayMs(attempt, random) {
  const base = Math.min(5000, 1000 * Math.pow(2, Math.max(0, attempt - 1)));
  const deviation = 0.5 * base * (2 * random - 1);
  return Math.min(5000, Math.max(0, Math.round(base + deviation)));
}

function prefix(nsp) {
  return !nsp || nsp === '/' ? '' : nsp + ',';
}

function checkId(id) {
  if (!(typeof id === 'number' && id >= 0 && Math.floor(id) === id)) {
    throw new Error('packet id must be a non-negative integer, got ' + id);
  }
  return String(id);
}

/** CONNECT to a namespace. `auth` is the handshake auth object, or a token string. */
export function connectPacket(nsp, auth) {
  if (typeof auth === 'string') auth = { token: auth };
  return '40' + prefix(nsp) + (auth === undefined || auth === null ? '' : JSON.stringify(auth));
}

/** DISCONNECT from a namespace (the client leaving it). */
export function disconnectPacket(nsp) {
  return '41' + prefix(nsp);
}

/** EVENT `[event, data]`; with `ackId` the server answers with an ACK of that id. */
export function eventPacket(nsp, event, data, ackId) {
  const args = data === undefined ? [event] : [event, data];
  const id = ackId === undefined || ackId === null ? '' : checkId(ackId);
  return '42' + prefix(nsp) + id + JSON.stringify(args);
}

/** ACK answering the server's event `id` (e.g. `trip:offer`) with `args` (an array). */
export function ackPacket(nsp, id, args) {
  return '43' + prefix(nsp) + checkId(id) + JSON.stringify(args === undefined ? [] : args);
}

function unknown(raw) {
  return { kind: 'unknown', raw: raw };
}

/**
 * One WebSocket text message → one of
 *   { kind: 'open', sid, pingInterval, pingTimeout, maxPayload }   { kind: 'ping' }   { kind: 'close' }
 *   { kind: 'connect', nsp, sid }   { kind: 'connect_error', nsp, message }   { kind: 'disconnect', nsp }
 *   { kind: 'event', nsp, event, data, args, id }   (data = args[0]; id = ack id or null)
 *   { kind: 'ack', nsp, id, args }   { kind: 'unknown', raw }
 */
export function parse(message) {
  if (typeof message !== 'string' || message.length === 0) return unknown(message);
  switch (message[0]) {
    case '0': {
      const open = json(message.slice(1));
      if (open === NO_JSON || !open || typeof open !== 'object') return unknown(message);
      return {
        kind: 'open',
        sid: open.sid,
        pingInterval: open.pingInterval,
        pingTimeout: open.pingTimeout,
        maxPayload: open.maxPayload,
      };
    }
    case '1':
      return { kind: 'close' };
    case '2':
      return { kind: 'ping' };
    case '4':
      return parseSocketIO(message);
    default:
      return unknown(message); // 3 pong, 5 upgrade, 6 noop: nothing a client must act on
  }
}

const NO_JSON = {};

function json(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    return NO_JSON;
  }
}

function parseSocketIO(raw) {
  const type = raw[1];
  let i = 2;
  let nsp = '/';
  if (raw[i] === '/') {
    const comma = raw.indexOf(',', i);
    const end = comma < 0 ? raw.length : comma;
    nsp = raw.slice(i, end);
    i = comma < 0 ? raw.length : comma + 1;
  }
  const start = i;
  while (i < raw.length && raw.charCodeAt(i) >= 48 && raw.charCodeAt(i) <= 57) i++;
  const id = i > start ? Number(raw.slice(start, i)) : null;
  const rest = raw.slice(i);
  const data = rest === '' ? undefined : json(rest);
  if (data === NO_JSON) return unknown(raw);

  switch (type) {
    case '0':
      return { kind: 'connect', nsp: nsp, sid: data && typeof data === 'object' ? data.sid : undefined };
    case '1':
      return { kind: 'disconnect', nsp: nsp };
    case '2':
      if (!Array.isArray(data) || typeof data[0] !== 'string') return unknown(raw);
      return { kind: 'event', nsp: nsp, event: data[0], data: data[1], args: data.slice(1), id: id };
    case '3':
      if (!Array.isArray(data) || id === null) return unknown(raw);
      return { kind: 'ack', nsp: nsp, id: id, args: data };
    case '4': {
      // v5: {"message": "...", "data"?: ...}; v4 servers sent the message as a bare string.
      const message = typeof data === 'string' ? data : data && typeof data === 'object' ? data.message : undefined;
      return { kind: 'connect_error', nsp: nsp, message: message };
    }
    default:
      return unknown(raw);
  }
}

/**
 * One client's Socket.IO session on one namespace over a raw WebSocket, for either runtime.
 * `send` writes a text message (k6: `(m) => socket.send(m)`, ws: `(m) => ws.send(m)`).
 * Feed every received message to `receive()`: it answers pings, sends CONNECT (with `auth`)
 * when the transport opens, and stamps acknowledgements of `emitWithAck()` with their latency.
 *
 *   const s = new Session('/drivers', { token }, (m) => socket.send(m));
 *   socket.on('message', (m) => { const p = s.receive(m); if (p.kind === 'ack') ackMs.add(p.latencyMs); });
 *   s.emitWithAck('driver:location', { lat, lng });
 */
export class Session {
  constructor(nsp, auth, send, now) {
    this.nsp = nsp || '/';
    this.auth = auth;
    this.send = send;
    this.now = now || function () {
      return Date.now();
    };
    this.state = 'opening'; // → 'connecting' → 'connected' | 'refused' → 'disconnected'
    this.nextId = 0;
    this.sentAt = {}; // ack id → send time (ms), while unanswered
    this.pending = 0;
  }

  /** Handles one received message; returns the parsed packet (acks get `latencyMs`, `sentAt`). */
  receive(message) {
    const p = parse(message);
    if (p.kind === 'ping') {
      this.send(PONG);
    } else if (p.kind === 'open') {
      this.state = 'connecting';
      this.send(connectPacket(this.nsp, this.auth));
    } else if (p.kind === 'close') {
      this.state = 'disconnected';
    } else if (p.nsp === this.nsp) {
      if (p.kind === 'connect') this.state = 'connected';
      else if (p.kind === 'connect_error') this.state = 'refused';
      else if (p.kind === 'disconnect') this.state = 'disconnected';
      else if (p.kind === 'ack' && Object.prototype.hasOwnProperty.call(this.sentAt, p.id)) {
        p.sentAt = this.sentAt[p.id];
        p.latencyMs = this.now() - p.sentAt;
        delete this.sentAt[p.id];
        this.pending--;
      }
    }
    return p;
  }

  /** Sends an event without acknowledgement. */
  emit(event, data) {
    this.send(eventPacket(this.nsp, event, data));
  }

  /** Sends an event asking for an acknowledgement; returns its ack id. */
  emitWithAck(event, data) {
    const id = this.nextId++;
    this.sentAt[id] = this.now();
    this.pending++;
    this.send(eventPacket(this.nsp, event, data, id));
    return id;
  }

  /** Forgets and returns the ack ids sent `ms` or more ago and still unanswered (0: all). */
  expire(ms) {
    const cutoff = this.now() - ms;
    const expired = [];
    for (const id of Object.keys(this.sentAt)) {
      if (this.sentAt[id] <= cutoff) {
        expired.push(Number(id));
        delete this.sentAt[id];
        this.pending--;
      }
    }
    return expired;
  }

  /** Answers a server event that asked for an acknowledgement (`packet.id !== null`). */
  ack(packet, args) {
    this.send(ackPacket(this.nsp, packet.id, args));
  }

  /** Leaves the namespace (the caller then closes the WebSocket). */
  disconnect() {
    this.send(disconnectPacket(this.nsp));
    this.state = 'disconnected';
  }
}
