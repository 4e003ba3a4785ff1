// Reference peer of the gateway for load tests: Node's Socket.IO 4.8 with the Redis adapter,
// behaving like `gateway serve` (cluster mode) for the parts the benchmark exercises: the
// handshake of the three namespaces, `driver:location` and `driver:status` (with the gateway's own
// Lua scripts, so the Redis side of a position is the same work), session revocation and generic
// emit. See README.md for what is deliberately left out.
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createAdapter as createStreamsAdapter } from '@socket.io/redis-streams-adapter';
import { createClient, defineScript } from 'redis';
import pg from 'pg';
import jwt from 'jsonwebtoken';

// ---------------------------------------------------------------------------------------------
// Logging: one JSON object per line on stdout, shaped like the gateway's (the shared harness in
// testkit/ learns the ports from `listeners bound`, then waits for /readyz).

function log(level, message, fields = {}) {
  const entry = { timestamp: new Date().toISOString(), level, message, ...fields };
  process.stdout.write(JSON.stringify(entry) + '\n');
}

// ---------------------------------------------------------------------------------------------
// Configuration: the gateway's environment variables, its defaults, its exit code 64.

class ConfigError extends Error {}

function required(env, name) {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`${name} is required and not set`);
  return value;
}

/** An integer >= `min`; `expected` says what it counts, as the gateway's message does. */
function integer(env, name, fallback, { min = 1, expected = 'a positive number of milliseconds' } = {}) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  // Digits only, as Rust's integer parse takes them (no `1e3`, no `0x10`).
  const n = /^\+?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`${name} expected ${expected}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

const positiveInt = (env, name, fallback) => integer(env, name, fallback);

/** The key prefix, refused where the gateway refuses it (braces would become every key's hash tag). */
function keyPrefix(env) {
  const prefix = env.REDIS_PREFIX || 'gateway';
  if (/[\s#{}]/.test(prefix)) throw new ConfigError("REDIS_PREFIX must not contain whitespace, '#', '{' or '}'");
  return prefix;
}

/** `host:port` or `[v6]:port`, port 0 meaning ephemeral. */
function socketAddr(env, name, fallback) {
  const raw = env[name] || fallback;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(raw);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${name} expected host:port, got ${JSON.stringify(raw)}`);
  return { host: m[1] ?? m[2], port };
}

function loadConfig(env) {
  const maxPayload = positiveInt(env, 'MAX_PAYLOAD_BYTES', 100000);
  if (maxPayload < 1024) throw new ConfigError('MAX_PAYLOAD_BYTES must be at least 1024');
  return {
    bind: socketAddr(env, 'BIND_ADDR', '0.0.0.0:3000'),
    internalBind: socketAddr(env, 'INTERNAL_BIND_ADDR', '0.0.0.0:9000'),
    databaseUrl: env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/gateway',
    // The gateway runs a single replica without Redis; the peer only exists in cluster mode.
    redisUrl: required(env, 'REDIS_URL'),
    prefix: keyPrefix(env),
    jwtSecret: required(env, 'JWT_SECRET'),
    jwtIssuer: env.JWT_ISSUER || undefined,
    jwtAudience: env.JWT_AUDIENCE || undefined,
    internalToken: required(env, 'INTERNAL_API_TOKEN'),
    nodeId: env.NODE_ID || os.hostname(),
    pingInterval: positiveInt(env, 'PING_INTERVAL_MS', 25000),
    pingTimeout: positiveInt(env, 'PING_TIMEOUT_MS', 20000),
    maxPayload,
    // The gateway's settings (gateway/src/settings.rs) and defaults for `driver:location`.
    locationRatePerS: integer(env, 'LOCATION_RATE_PER_S', 10, { expected: 'a positive integer' }),
    locationStreamMaxlen: integer(env, 'LOCATION_STREAM_MAXLEN', 100000, { min: 0, expected: 'a number of entries' }),
    // `streams`: Socket.IO's connection state recovery over @socket.io/redis-streams-adapter (the
    // churn benchmark's peer with recovery); unset: the Redis adapter, no recovery.
    recovery: env.PEER_RECOVERY === 'streams',
  };
}

// ---------------------------------------------------------------------------------------------
// Handshake (contract section 3): nine steps, the first failure refuses with its exact message.

const NAMESPACES = {
  '/drivers': ['DRIVER'],
  '/passengers': ['PASSENGER'],
  '/admin': ['ADMIN', 'DISPATCHER', 'SUPPORT'],
};

/** The gateway's handshake query (gateway/src/store/postgres.rs), verbatim. */
const IDENTITY_SQL = `\
SELECT u.user_type, u.status, u.org_id,
       s.id, s.user_id, s.session_type, s.revoked,
       (s.access_token_expires_at IS NOT NULL AND s.access_token_expires_at < now())
FROM users u
LEFT JOIN sessions s ON s.jti = $2
WHERE u.id = $1`;

const MAX_TOKEN_BYTES = 8 * 1024;

/** Refusal whose message is what the client's `connect_error` shows. */
class Refusal extends Error {}

/** Step 1: `auth.token` when a non-empty string, else `Authorization: Bearer <token>`. */
function tokenFrom(auth, headers) {
  if (auth && typeof auth.token === 'string' && auth.token !== '') return auth.token;
  return bearer(headers.authorization);
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or null. */
function bearer(header) {
  if (typeof header !== 'string') return null;
  const trimmed = header.trim();
  const space = trimmed.indexOf(' ');
  if (space < 0 || trimmed.slice(0, space).toLowerCase() !== 'bearer') return null;
  const token = trimmed.slice(space + 1).trim();
  return token === '' ? null : token;
}

/** Step 2: HS256 only, no leeway, `exp` required; iss/aud only when configured. */
function verifyToken(token, config) {
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw new Refusal('Invalid token');
  let claims;
  try {
    claims = jwt.verify(token, config.jwtSecret, {
      algorithms: ['HS256'],
      clockTolerance: 0,
      issuer: config.jwtIssuer,
      audience: config.jwtAudience,
    });
  } catch (err) {
    throw new Refusal(err instanceof jwt.TokenExpiredError ? 'Access expired' : 'Invalid token');
  }
  // jsonwebtoken accepts a token without `exp`; the contract does not.
  if (typeof claims !== 'object' || typeof claims.exp !== 'number') throw new Refusal('Invalid token');
  return claims;
}

/** A UUID in any form Rust's `Uuid::parse_str` takes, spelled lowercase-hyphenated; else null. */
function canonicalUuid(value) {
  let s = value.trim().toLowerCase();
  if (s.startsWith('urn:uuid:')) s = s.slice(9);
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1);
  const hex = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s)
    ? s.replaceAll('-', '')
    : /^[0-9a-f]{32}$/.test(s) ? s : null;
  if (!hex) return null;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Steps 4-8 in one round trip, as the gateway does: a named (prepared) statement. */
async function loadIdentity(pool, userId, sid) {
  let result;
  try {
    result = await pool.query({ name: 'identity', text: IDENTITY_SQL, values: [userId, sid], rowMode: 'array' });
  } catch (err) {
    log('ERROR', 'handshake refused: database unavailable', { error: err.message });
    throw new Refusal('Service unavailable');
  }
  const row = result.rows[0];
  if (!row) return null;
  const [userType, status, orgId, sessionId, sessionUserId, sessionType, revoked, accessExpired] = row;
  const session = sessionId === null ? null : { id: sessionId, userId: sessionUserId, sessionType, revoked, accessExpired };
  return { userType, status, orgId, session };
}

async function admit(nsp, handshake, pool, config) {
  const token = tokenFrom(handshake.auth, handshake.headers);
  if (!token) throw new Refusal('Missing token');
  const claims = verifyToken(token, config);
  if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') throw new Refusal('Missing sub/sid');
  // A `sub` that is no UUID names no user: no need to ask the database.
  const userId = canonicalUuid(claims.sub);
  if (!userId) throw new Refusal('User not found');
  const sid = claims.sid;
  const row = await loadIdentity(pool, userId, sid);
  if (!row) throw new Refusal('User not found');
  if (!NAMESPACES[nsp].includes(row.userType)) throw new Refusal('Wrong userType');
  if (row.status !== 'ACTIVE') throw new Refusal('User inactive');
  const session = row.session;
  if (!session || session.revoked || session.userId !== userId) throw new Refusal('Invalid session');
  if (session.accessExpired) throw new Refusal('Access expired');
  return { userId, sid, sessionId: session.id, sessionType: session.sessionType, userType: row.userType, orgId: row.orgId };
}

/** The guide's `*SocketData` of each namespace, and the rooms the contract joins. */
function contextAndRooms(nsp, who) {
  const sessionRoom = `session:${who.sid}`;
  switch (nsp) {
    case '/drivers':
      return {
        data: { userId: who.userId, driverId: who.userId, jti: who.sid, sessionId: who.sessionId, sessionType: who.sessionType, userType: 'DRIVER' },
        rooms: [`driver:${who.userId}`, sessionRoom],
      };
    case '/passengers':
      return {
        data: { passengerId: who.userId, userId: who.userId, sid: who.sid, sessionId: who.sessionId, sessionType: who.sessionType },
        rooms: [`passenger:${who.userId}`, sessionRoom],
      };
    default:
      return {
        data: { userId: who.userId, sid: who.sid, role: who.userType, orgId: who.orgId, sessionId: who.sessionId },
        rooms: ['admin:all', sessionRoom, ...(who.orgId ? [`admin:org:${who.orgId}`] : [])],
      };
  }
}

/** Rooms decided by the handshake, joined once the socket is connected. */
const roomsToJoin = new WeakMap();

function installNamespace(io, nsp, pool, config) {
  const namespace = io.of(nsp);
  namespace.use((socket, next) => {
    admit(nsp, socket.handshake, pool, config).then(
      (who) => {
        const { data, rooms } = contextAndRooms(nsp, who);
        socket.data = data;
        roomsToJoin.set(socket, rooms);
        next();
      },
      // Only a Refusal's message reaches the client; anything else is an internal failure.
      (err) => {
        if (!(err instanceof Refusal)) log('ERROR', 'handshake failed', { error: String(err?.stack ?? err) });
        next(new Error(err instanceof Refusal ? err.message : 'Service unavailable'));
      },
    );
  });
  namespace.on('connection', (socket) => {
    socket.join(roomsToJoin.get(socket));
    roomsToJoin.delete(socket);
    socket.emit('hello', { ok: true, nsp });
  });
  return namespace;
}

// ---------------------------------------------------------------------------------------------
// `driver:status` and `driver:location` (docs/events.md, gateway/src/realtime/drivers.rs): the
// gateway's validation, its Lua scripts on its key names, its forwards and its answers.

class InvalidPayload extends Error {}

/** A present field: `null` counts as absent (clients serialize NaN and Infinity as null). */
function field(fields, name) {
  const v = fields[name];
  return v === null || v === undefined ? undefined : v;
}

function number(fields, name) {
  const v = field(fields, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidPayload(`${name} must be a finite number`);
  return v;
}

function requiredInRange(fields, name, min, max) {
  const v = number(fields, name);
  if (v === undefined) throw new InvalidPayload(`${name} is required`);
  if (v < min || v > max) throw new InvalidPayload(`${name} must be within [${min}, ${max}]`);
  return v;
}

function nonNegative(fields, name) {
  const v = number(fields, name);
  if (v !== undefined && v < 0) throw new InvalidPayload(`${name} must be >= 0`);
  return v;
}

/** RFC 3339 date-time, calendar-checked (what Rust's `time` crate parses). */
function isRfc3339(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$/.exec(s);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const offsetOk = m[9] === undefined || (Number(m[10]) <= 23 && Number(m[11]) <= 59);
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth
    && hour <= 23 && minute <= 59 && second <= 60 && offsetOk;
}

/** `payload must be ...` as the gateway's `object()` says it. */
function payloadObject(payload) {
  if (payload === undefined) throw new InvalidPayload('payload must be valid JSON');
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new InvalidPayload('payload must be a JSON object');
  }
  return payload;
}

function validateLocation(payload) {
  payloadObject(payload);
  const lat = requiredInRange(payload, 'lat', -90, 90);
  const lng = requiredInRange(payload, 'lng', -180, 180);
  const heading = number(payload, 'heading');
  if (heading !== undefined && !(heading >= 0 && heading < 360)) throw new InvalidPayload('heading must be within [0, 360)');
  const speed = nonNegative(payload, 'speed');
  const accuracy = nonNegative(payload, 'accuracy');
  const recordedAt = field(payload, 'recordedAt');
  if (recordedAt !== undefined && !(typeof recordedAt === 'string' && isRfc3339(recordedAt))) {
    throw new InvalidPayload('recordedAt must be an RFC 3339 string');
  }
  return { lat, lng, heading: heading ?? null, speed: speed ?? null, accuracy: accuracy ?? null, recordedAt: recordedAt ?? null };
}

/** shared/src/events.rs `DriverStatus`. */
const DRIVER_STATUSES = ['ONLINE', 'BUSY', 'OFFLINE'];

function validateStatus(payload) {
  const status = field(payloadObject(payload), 'status');
  if (status === undefined) throw new InvalidPayload('status is required');
  if (!DRIVER_STATUSES.includes(status)) throw new InvalidPayload('status must be ONLINE, BUSY or OFFLINE');
  return status;
}

const fail = (code, message) => ({ ok: false, error: { code, message } });
// gateway/src/realtime/ack.rs: the texts of the codes that carry no detail.
const RATE_LIMITED = fail('RATE_LIMITED', 'too many events; slow down');
const UNAVAILABLE = fail('UNAVAILABLE', 'service unavailable, retry');

// Keys (gateway/src/state/keys.rs). A driver's hash, rate window and geo index part share the
// hash tag `{dN}`, so each script call touches one slot, on a Redis Cluster too.
const DRIVER_SHARDS = 16;

/** FNV-1a 32-bit over the UTF-8 bytes, as `driver_shard` (stable across releases). */
function driverShard(driverId) {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(driverId, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash % DRIVER_SHARDS;
}

function driverKeys(prefix, driverId) {
  const tag = `${prefix}:{d${driverShard(driverId)}}`;
  return { driver: `${tag}:driver:${driverId}`, rate: `${tag}:rate:${driverId}`, geo: `${tag}:drivers-geo` };
}

/** Redis' geo index takes latitudes within this bound (gateway/src/state/geo.rs); beyond, stored only. */
const MAX_INDEXED_LAT = '85.05112878';

// The gateway's own scripts, read where the gateway compiles them in: the Redis side of a status
// change or a position is the same work by construction, whatever the language around it.
const LUA_DIR = fileURLToPath(new URL('../../../gateway/src/state/redis/lua/', import.meta.url));

function gatewayScript(name, numberOfKeys) {
  return defineScript({
    NUMBER_OF_KEYS: numberOfKeys,
    SCRIPT: readFileSync(path.join(LUA_DIR, `${name}.lua`), 'utf8'),
    transformArguments: (keys, args) => [...keys, ...args],
  });
}

/** The state client's scripts (EVALSHA, falling back to EVAL when Redis has forgotten them). */
function stateScripts() {
  return {
    // One report per call: node-redis writes the calls of one tick together (its pipelining is
    // the peer's batching; the gateway packs a batch into one call instead).
    recordLocations: gatewayScript('record_locations', 3),
    appendLocations: gatewayScript('append_locations', 1),
    setStatus: gatewayScript('set_status', 2),
  };
}

const optional = (v) => (v === null ? '' : String(v));

/** Rate window, last position, status default, geo index; `null` when rate-limited, else the active trip. */
async function recordLocation(state, config, driverId, p) {
  const keys = driverKeys(config.prefix, driverId);
  const [stored, tripId, passengerId] = await state.recordLocations(
    [keys.driver, keys.rate, keys.geo],
    [
      String(config.locationRatePerS), MAX_INDEXED_LAT,
      driverId, String(p.lat), String(p.lng), optional(p.heading), optional(p.speed),
      optional(p.accuracy), optional(p.recordedAt), p.at,
    ],
  );
  if (stored !== 1) return null;
  return { trip: tripId && passengerId ? { tripId, passengerId } : undefined };
}

/** The accepted position to the capped stream backends read (`LOCATION_STREAM_MAXLEN` 0: none). */
async function appendLocation(state, config, driverId, p) {
  if (config.locationStreamMaxlen === 0) return;
  await state.appendLocations(
    [`${config.prefix}:driver-locations`],
    [
      String(config.locationStreamMaxlen),
      driverId, String(p.lat), String(p.lng), optional(p.heading), optional(p.speed), optional(p.recordedAt), p.at,
    ],
  );
}

/** Sets the status and keeps the geo index in step; the previous status (none: OFFLINE). */
async function setStatus(state, config, driverId, status, at) {
  const keys = driverKeys(config.prefix, driverId);
  const previous = await state.setStatus([keys.driver, keys.geo], [driverId, status, at, MAX_INDEXED_LAT]);
  return DRIVER_STATUSES.includes(previous) ? previous : 'OFFLINE';
}

/** Emitted without a payload, the callback comes first; without a callback, answers go nowhere. */
function payloadAndAnswer(payload, ack) {
  if (typeof payload === 'function') [payload, ack] = [undefined, payload];
  return [payload, typeof ack === 'function' ? ack : () => {}];
}

function installDriverEvents(io, drivers, state, config) {
  // Driver id -> epoch second of its last forward: "the first of each second per driver,
  // decided on the driver's replica" (in this process' memory, by its clock, as the gateway).
  const forwarded = new Map();
  const admins = io.of('/admin');
  const passengers = io.of('/passengers');

  async function onStatus(driverId, payload, answer) {
    let status;
    try {
      status = validateStatus(payload);
    } catch (err) {
      return answer(fail('INVALID_PAYLOAD', err.message));
    }
    const at = new Date().toISOString();
    let previous;
    try {
      previous = await setStatus(state, config, driverId, status, at);
    } catch (err) {
      log('ERROR', 'client event failed: state unavailable', { event: 'driver:status', error: err.message });
      return answer(UNAVAILABLE);
    }
    if (previous !== status) admins.to('admin:all').emit('driver:status_changed', { driverId, status, at });
    answer({ ok: true, status });
  }

  async function onLocation(driverId, payload, answer) {
    let position;
    try {
      position = { ...validateLocation(payload), at: new Date().toISOString() };
    } catch (err) {
      return answer(fail('INVALID_PAYLOAD', err.message));
    }
    let accepted;
    try {
      accepted = await recordLocation(state, config, driverId, position);
      // Stored but not in the stream is answered UNAVAILABLE too: the driver retries, the retry gets there.
      if (accepted) await appendLocation(state, config, driverId, position);
    } catch (err) {
      log('ERROR', 'client event failed: state unavailable', { event: 'driver:location', error: err.message });
      return answer(UNAVAILABLE);
    }
    if (!accepted) return answer(RATE_LIMITED);
    const { lat, lng, heading, speed, at } = position;
    const second = Math.floor(Date.now() / 1000);
    if (forwarded.get(driverId) !== second) {
      forwarded.set(driverId, second);
      admins.to('admin:all').emit('driver:location', { driverId, lat, lng, heading, speed, at });
    }
    if (accepted.trip) {
      const { tripId, passengerId } = accepted.trip;
      passengers.to(`passenger:${passengerId}`).emit('trip:driver_location', { tripId, driverId, lat, lng, heading, speed, at });
    }
    answer({ ok: true });
  }

  drivers.on('connection', (socket) => {
    const driverId = socket.data.userId;
    socket.on('driver:status', (payload, ack) => onStatus(driverId, ...payloadAndAnswer(payload, ack)));
    socket.on('driver:location', (payload, ack) => onLocation(driverId, ...payloadAndAnswer(payload, ack)));
    socket.on('disconnect', () => {
      // The socket has left its rooms by now: forget the driver once no local socket is left.
      if (!drivers.adapter.rooms.has(`driver:${driverId}`)) forwarded.delete(driverId);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing shared by both listeners (plain node:http).

const MAX_BODY_BYTES = 64 * 1024;
const STATUS_OF = { UNAUTHORIZED: 401, INVALID_PAYLOAD: 400, NOT_FOUND: 404, PAYLOAD_TOO_LARGE: 413, UNAVAILABLE: 503 };

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res, err) {
  sendJson(res, STATUS_OF[err.code], { error: { code: err.code, message: err.message } });
}

/** The request body as JSON, whatever the Content-Type (backends need not set it). */
async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new ApiError('PAYLOAD_TOO_LARGE', `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new ApiError('INVALID_PAYLOAD', `invalid JSON body: ${err.message}`);
  }
}

function sameSecret(presented, expected) {
  const a = Buffer.from(presented ?? '');
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------------
// Internal API: revoke, emit and offer, cluster-wide through the adapter.

const MAX_ID_CHARS = 256;
const invalid = (message) => new ApiError('INVALID_PAYLOAD', message);

function requireObject(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body must be a JSON object');
  return body;
}

function revokeRequest(rawSid, body) {
  let sid;
  try {
    sid = decodeURIComponent(rawSid).trim();
  } catch {
    sid = '';
  }
  if (sid === '' || [...sid].length > MAX_ID_CHARS) {
    throw invalid(`sid must be a non-empty string of at most ${MAX_ID_CHARS} characters`);
  }
  requireObject(body);
  if (body.userId === undefined || body.userId === null) throw invalid('userId is required');
  const userId = typeof body.userId === 'string' ? canonicalUuid(body.userId) : null;
  if (!userId) throw invalid('userId must be a UUID');
  const reason = body.reason ?? null;
  if (reason !== null && typeof reason !== 'string') throw invalid('reason must be a string');
  if (reason !== null && [...reason].length > MAX_ID_CHARS) throw invalid(`reason must be at most ${MAX_ID_CHARS} characters`);
  return { sid, userId, reason: reason ?? 'revoked' };
}

function revoke(io, { sid, userId, reason }) {
  for (const nsp of Object.keys(NAMESPACES)) io.of(nsp).in(`session:${sid}`).disconnectSockets(true);
  const notice = { sid, reason, at: new Date().toISOString() };
  io.of('/drivers').to(`driver:${userId}`).emit('auth:session_revoked', notice);
  io.of('/passengers').to(`passenger:${userId}`).emit('auth:session_revoked', notice);
}

const PUSHABLE_PREFIXES = ['driver:', 'passenger:', 'session:', 'admin:org:'];
const isPushable = (room) =>
  typeof room === 'string' && (room === 'admin:all' || PUSHABLE_PREFIXES.some((p) => room.startsWith(p) && room.length > p.length));
const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'hello']);

function emitRequest(body) {
  requireObject(body);
  if (!Object.hasOwn(NAMESPACES, body.namespace)) throw invalid('namespace must be /drivers, /passengers or /admin');
  const rooms = body.rooms;
  if (!Array.isArray(rooms) || rooms.length === 0 || rooms.length > 1000) throw invalid('rooms must be a non-empty array of room names');
  if (!rooms.every(isPushable)) {
    throw invalid('rooms must be driver:{id}, passenger:{id}, session:{sid}, admin:all or admin:org:{id}');
  }
  const event = body.event;
  if (typeof event !== 'string') throw invalid('event is required');
  if (event === '' || [...event].length > 128) throw invalid('event must be a non-empty string of at most 128 characters');
  if (RESERVED.has(event) || event.startsWith('auth:')) throw invalid('event is a reserved name');
  return { namespace: body.namespace, rooms, event, data: body.data ?? null };
}

/** A trip offer as dispatch sends it (the gateway's `POST /internal/v1/drivers/{id}/offers`). */
function offerRequest(rawDriverId, body) {
  requireObject(body);
  const driverId = decodeURIComponent(rawDriverId);
  const { offerId, tripId, expiresInMs } = body;
  if (typeof offerId !== 'string' || offerId === '') throw invalid('offerId is required');
  if (typeof tripId !== 'string' || tripId === '') throw invalid('tripId is required');
  if (!Number.isInteger(expiresInMs) || expiresInMs < 1 || expiresInMs > 30000) {
    throw invalid('expiresInMs must be an integer from 1 to 30000');
  }
  return { driverId, expiresInMs, payload: { offerId, tripId, expiresAt: new Date(Date.now() + expiresInMs).toISOString(), data: body.data ?? null } };
}

/**
 * Node's natural offer: an acknowledged broadcast to the driver's room with the offer's expiry as
 * its timeout, through the adapter; the first answer wins. No sockets: 404 at once; none answered
 * in time: 504 (a socket that dropped mid-offer, or a driver between two connections, loses it).
 */
function offer(io, { driverId, expiresInMs, payload }) {
  return new Promise((resolve) => {
    io.of('/drivers').to(`driver:${driverId}`).timeout(expiresInMs).emit('trip:offer', payload, (err, responses) => {
      const answers = responses ?? [];
      if (answers.length > 0) resolve([200, { ok: true, delivered: true, response: answers[0] }]);
      else if (err) resolve([504, { ok: false, delivered: false, error: { code: 'UNAVAILABLE', message: 'no answer from the driver within expiresInMs' } }]);
      else resolve([404, { ok: false, delivered: false, error: { code: 'NOT_FOUND', message: 'the driver has no connected socket' } }]);
    });
  });
}

async function internalRoute(req, app) {
  const url = new URL(req.url, 'http://internal');
  if (url.pathname === '/livez' && req.method === 'GET') return [200, { ok: true }];
  if (url.pathname === '/readyz' && req.method === 'GET') return readiness(app);
  if (!url.pathname.startsWith('/internal/v1/')) throw new ApiError('NOT_FOUND', 'no such endpoint');
  if (!sameSecret(bearer(req.headers.authorization), app.config.internalToken)) {
    throw new ApiError('UNAUTHORIZED', 'missing or wrong bearer token');
  }
  const revokePath = /^\/internal\/v1\/sessions\/([^/]+)\/revoke$/.exec(url.pathname);
  if (req.method === 'POST' && revokePath) {
    const request = revokeRequest(revokePath[1], await readJson(req));
    revoke(live(app), request);
    return [200, { ok: true }];
  }
  const offerPath = /^\/internal\/v1\/drivers\/([^/]+)\/offers$/.exec(url.pathname);
  if (req.method === 'POST' && offerPath) {
    return offer(live(app), offerRequest(offerPath[1], await readJson(req)));
  }
  if (req.method === 'POST' && url.pathname === '/internal/v1/emit') {
    const { namespace, rooms, event, data } = emitRequest(await readJson(req));
    live(app).of(namespace).to(rooms).emit(event, data);
    return [200, { ok: true }];
  }
  throw new ApiError('NOT_FOUND', 'no such endpoint');
}

/** Socket.IO, once started (before that the internal API answers 503, as the gateway does). */
function live(app) {
  if (!app.io) throw new ApiError('UNAVAILABLE', 'the replica is starting');
  return app.io;
}

function internalHandler(app) {
  return (req, res) => {
    internalRoute(req, app).then(
      ([status, body]) => sendJson(res, status, body),
      (err) => {
        if (err instanceof ApiError) return sendError(res, err);
        log('ERROR', 'internal request failed', { error: String(err?.stack ?? err) });
        sendError(res, new ApiError('UNAVAILABLE', 'internal failure; retry'));
      },
    );
  };
}

// ---------------------------------------------------------------------------------------------
// Probes.

async function readiness(app) {
  const database = await app.pool.query('SELECT 1').then(
    () => ({ ok: true }),
    (err) => ({ ok: false, error: err.message }),
  );
  const redis = app.io && app.pub.isReady && app.sub.isReady && app.state.isReady
    ? { ok: true }
    : { ok: false, error: app.io ? 'disconnected' : 'connecting' };
  const serving = Boolean(app.io);
  const ready = serving && !app.draining && database.ok && redis.ok;
  return [ready ? 200 : 503, { ok: ready, checks: { ready, serving, draining: app.draining, database, redis } }];
}

/** Public listener: `/healthz` here; `/socket.io/` is taken over by Socket.IO once attached. */
function publicHandler(app) {
  return (req, res) => {
    const { pathname } = new URL(req.url, 'http://public');
    if (pathname === '/healthz' && req.method === 'GET') {
      if (app.io && !app.draining) return sendJson(res, 200, { ok: true });
      return sendError(res, new ApiError('UNAVAILABLE', 'not accepting connections'));
    }
    if (pathname.startsWith('/socket.io/')) return sendError(res, new ApiError('UNAVAILABLE', 'the replica is starting'));
    sendError(res, new ApiError('NOT_FOUND', 'no such endpoint'));
  };
}

// ---------------------------------------------------------------------------------------------
// Start-up and shutdown.

function listen(server, { host, port }) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
    });
  });
}

/** A Redis client that retries forever and logs each failure once per outage. */
function redisClient(role, options) {
  const client = createClient(options);
  let down = false;
  client.on('error', (err) => {
    if (!down) log('WARN', 'redis unreachable, retrying', { client: role, error: err.message });
    down = true;
  });
  client.on('ready', () => {
    if (down) log('INFO', 'redis reachable again', { client: role });
    down = false;
  });
  return client;
}

async function start(config) {
  const scripts = stateScripts();
  const app = {
    config,
    io: null,
    draining: false,
    pool: new pg.Pool({ connectionString: config.databaseUrl, max: 16, connectionTimeoutMillis: 2000 }),
    pub: redisClient('adapter-pub', { url: config.redisUrl }),
    sub: redisClient('adapter-sub', { url: config.redisUrl }),
    // Statuses and positions go through their own connection; it fails fast rather than queue
    // while Redis is down.
    state: redisClient('state', { url: config.redisUrl, disableOfflineQueue: true, scripts }),
  };
  app.pool.on('error', (err) => log('WARN', 'idle database connection failed', { error: err.message }));

  const publicServer = http.createServer(publicHandler(app));
  const internalServer = http.createServer(internalHandler(app));
  app.internalServer = internalServer;
  const [publicAddr, internalAddr] = await Promise.all([listen(publicServer, config.bind), listen(internalServer, config.internalBind)]);
  log('INFO', 'listeners bound', { node: config.nodeId, public: publicAddr, internal: internalAddr, cluster: true });

  // A Redis that is down at start-up is no configuration error: connect() retries until it is up.
  await Promise.all([app.pub.connect(), app.sub.connect(), app.state.connect()]);
  // Loaded once, so that the first reports of a run do not each carry a script's text (EVAL).
  await Promise.all(Object.values(scripts).map(({ SCRIPT }) => app.state.scriptLoad(SCRIPT)));
  const delivery = config.recovery
    ? {
      adapter: createStreamsAdapter(app.pub, {
        streamName: `${config.prefix}-stream`,
        channelPrefix: config.prefix,
        sessionKeyPrefix: `${config.prefix}:sio:session:`,
      }),
      connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
    }
    : { adapter: createAdapter(app.pub, app.sub, { key: config.prefix }) };
  const io = new Server({
    ...delivery,
    pingInterval: config.pingInterval,
    pingTimeout: config.pingTimeout,
    maxHttpBufferSize: config.maxPayload,
    serveClient: false,
  });
  for (const nsp of Object.keys(NAMESPACES)) installNamespace(io, nsp, app.pool, config);
  installDriverEvents(io, io.of('/drivers'), app.state, config);
  // The adapters subscribe without returning a promise; one more SUBSCRIBE on the same
  // connection is acknowledged only after theirs, so from then on broadcasts reach us.
  const probe = `${config.prefix}-peer-ready#${config.nodeId}`;
  await app.sub.subscribe(probe, () => {});
  await app.sub.unsubscribe(probe);
  io.attach(publicServer);
  app.io = io;
  log('INFO', 'ready: accepting connections', { node: config.nodeId });
  return app;
}

async function shutdown(app, signal) {
  log('INFO', `${signal} received`);
  app.draining = true;
  // io.close() disconnects every socket and closes the public server it is attached to.
  await new Promise((resolve) => app.io.close(() => resolve()));
  app.internalServer.close();
  await Promise.allSettled([app.pub.quit(), app.sub.quit(), app.state.quit(), app.pool.end()]);
  log('INFO', 'drained', { node: app.config.nodeId });
  process.exit(0);
}

function main() {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`invalid configuration: ${err.message}\n`);
    process.exit(64);
  }
  let app = null;
  let stopping = false;
  const onSignal = (signal) => {
    if (stopping) return;
    stopping = true;
    // Never hang on a dependency that does not answer: exit anyway after a few seconds.
    setTimeout(() => process.exit(0), 5000).unref();
    if (app) shutdown(app, signal);
    else process.exit(0);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  start(config).then(
    (started) => {
      app = started;
      if (stopping) shutdown(app, 'signal');
    },
    (err) => {
      log('ERROR', 'start-up failed', { error: String(err?.stack ?? err) });
      process.exit(1);
    },
  );
}

main();
