// Tests of the k6 load scenarios' Socket.IO framing, with Node (run from the repository root;
// k6 itself runs every scenario in k6-run.test.js):
//   node --test loadtest/k6/test/
// 1. every script and lib/socketio.js parse as ES modules (k6 imports are not resolved);
// 2. every script's header says what it measures, its env and an example command;
// 3. the lib's framing on literal packets;
// 4. the lib with raw `ws` against a live replica (testkit harness: PostgreSQL on 127.0.0.1:5432 and
//    the built target/debug/gateway; `ws`, `pg` and `jsonwebtoken` come from testkit/node_modules).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import {
  PONG,
  Session,
  ackPacket,
  connectPacket,
  disconnectPacket,
  eventPacket,
  parse,
  wsUrl,
} from '../lib/socketio.js';
import { createDatabase, createIdentity, startReplica, INTERNAL_TOKEN } from '../../../testkit/harness.js';

const K6_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WebSocket = createRequire(path.join(K6_DIR, '../../testkit/package.json'))('ws');
const execFileP = promisify(execFile);

const LIB = path.join(K6_DIR, 'lib/socketio.js');
const SCRIPTS = readdirSync(K6_DIR)
  .filter((f) => f.endsWith('.js'))
  .map((f) => path.join(K6_DIR, f));

// ---------------------------------------------------------------------------------------------
// 1. Syntax

test('the four k6 scenarios are there', () => {
  const names = SCRIPTS.map((f) => path.basename(f)).sort();
  assert.deepEqual(names, ['driver-fleet.js', 'passengers.js', 'reconnect-storm.js', 'revocations.js']);
});

test('every k6 script and lib/socketio.js parse as ES modules (node --check on an .mjs copy)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'k6-check-'));
  try {
    for (const file of [...SCRIPTS, LIB]) {
      const copy = path.join(dir, path.basename(file).replace(/\.js$/, '.mjs'));
      copyFileSync(file, copy);
      await execFileP(process.execPath, ['--check', copy]).catch((e) => {
        assert.fail(`${path.relative(K6_DIR, file)} does not parse:\n${e.stderr}`);
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lib/socketio.js imports nothing (usable from k6 and Node alike)', () => {
  const src = readFileSync(LIB, 'utf8');
  assert.doesNotMatch(src, /^\s*import\s/m);
  assert.doesNotMatch(src, /\brequire\s*\(/);
  assert.doesNotMatch(src, /\bimport\s*\(/);
});

// ---------------------------------------------------------------------------------------------
// 2. What each script says of itself (k6 itself runs them: k6-run.test.js)

for (const file of SCRIPTS) {
  const name = path.basename(file);
  describe(name, () => {
    test('has the header comment: what it measures, env, example command', () => {
      const head = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('//')).join('\n');
      assert.match(head, /Measures/);
      assert.match(head, /Env/);
      assert.match(head, new RegExp(`k6 run .*-e GATEWAY_URL=\\S+ .*loadtest/k6/${name}`, 's'));
    });

    test('uses k6/ws, k6/metrics, the lib, GATEWAY_URL and open() of a token file in the init stage', () => {
      const src = readFileSync(file, 'utf8');
      assert.match(src, /^import ws from 'k6\/ws';$/m);
      assert.match(src, /from 'k6\/metrics';$/m);
      assert.match(src, /from '\.\/lib\/socketio\.js';$/m);
      assert.match(src, /__ENV\.GATEWAY_URL/);
      assert.match(src, /open\(__ENV\.(TOKENS_FILE|SESSIONS_FILE)/);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// 3. Framing on literal packets

describe('lib/socketio.js framing', () => {
  test('wsUrl', () => {
    assert.equal(wsUrl('http://localhost:8080'), 'ws://localhost:8080/socket.io/?EIO=4&transport=websocket');
    assert.equal(wsUrl('https://gw.example.com/'), 'wss://gw.example.com/socket.io/?EIO=4&transport=websocket');
    assert.equal(wsUrl('ws://127.0.0.1:3001'), 'ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket');
  });

  test('connectPacket', () => {
    assert.equal(connectPacket('/drivers', { token: 'abc.def' }), '40/drivers,{"token":"abc.def"}');
    assert.equal(connectPacket('/drivers', 'abc.def'), '40/drivers,{"token":"abc.def"}');
    assert.equal(connectPacket('/passengers'), '40/passengers,');
    assert.equal(connectPacket('/', { token: 't' }), '40{"token":"t"}');
    assert.equal(connectPacket('/'), '40');
  });

  test('eventPacket, ackPacket, disconnectPacket', () => {
    const loc = { lat: 52.5, lng: 13.4, heading: 90, speed: 10 };
    assert.equal(
      eventPacket('/drivers', 'driver:location', loc, 12),
      '42/drivers,12["driver:location",{"lat":52.5,"lng":13.4,"heading":90,"speed":10}]',
    );
    assert.equal(eventPacket('/drivers', 'driver:location', loc, 0), `42/drivers,0${JSON.stringify(['driver:location', loc])}`);
    assert.equal(eventPacket('/drivers', 'driver:status', { status: 'ONLINE' }), '42/drivers,["driver:status",{"status":"ONLINE"}]');
    assert.equal(eventPacket('/', 'ping'), '42["ping"]');
    assert.equal(eventPacket('/', 'x', 1, 345), '42345["x",1]');
    assert.equal(ackPacket('/drivers', 7, [{ accept: true }]), '43/drivers,7[{"accept":true}]');
    assert.equal(disconnectPacket('/drivers'), '41/drivers,');
    assert.equal(disconnectPacket('/'), '41');
    assert.throws(() => eventPacket('/drivers', 'x', {}, -1));
    assert.throws(() => eventPacket('/drivers', 'x', {}, 1.5));
  });

  test('parse: Engine.IO packets', () => {
    assert.deepEqual(parse('0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}'), {
      kind: 'open',
      sid: 'abc',
      pingInterval: 25000,
      pingTimeout: 20000,
      maxPayload: 100000,
    });
    assert.deepEqual(parse('2'), { kind: 'ping' });
    assert.deepEqual(parse('1'), { kind: 'close' });
    assert.equal(PONG, '3');
    assert.deepEqual(parse('3'), { kind: 'unknown', raw: '3' });
    assert.deepEqual(parse('6'), { kind: 'unknown', raw: '6' });
    assert.deepEqual(parse('0{oops'), { kind: 'unknown', raw: '0{oops' });
    assert.deepEqual(parse(''), { kind: 'unknown', raw: '' });
  });

  test('parse: CONNECT, CONNECT_ERROR, DISCONNECT on a namespace and on /', () => {
    assert.deepEqual(parse('40/drivers,{"sid":"s1"}'), { kind: 'connect', nsp: '/drivers', sid: 's1' });
    assert.deepEqual(parse('40{"sid":"s2"}'), { kind: 'connect', nsp: '/', sid: 's2' });
    assert.deepEqual(parse('44/drivers,{"message":"Invalid token"}'), {
      kind: 'connect_error',
      nsp: '/drivers',
      message: 'Invalid token',
    });
    assert.deepEqual(parse('44{"message":"Missing token"}'), { kind: 'connect_error', nsp: '/', message: 'Missing token' });
    assert.deepEqual(parse('44/admin,"Wrong userType"'), { kind: 'connect_error', nsp: '/admin', message: 'Wrong userType' });
    assert.deepEqual(parse('41/drivers,'), { kind: 'disconnect', nsp: '/drivers' });
    assert.deepEqual(parse('41/drivers'), { kind: 'disconnect', nsp: '/drivers' });
    assert.deepEqual(parse('41'), { kind: 'disconnect', nsp: '/' });
  });

  test('parse: EVENT with and without ack ids, on a namespace and on /', () => {
    assert.deepEqual(parse('42/drivers,["hello",{"ok":true,"nsp":"/drivers"}]'), {
      kind: 'event',
      nsp: '/drivers',
      event: 'hello',
      data: { ok: true, nsp: '/drivers' },
      args: [{ ok: true, nsp: '/drivers' }],
      id: null,
    });
    assert.deepEqual(parse('42/drivers,1234["trip:offer",{"offerId":"o1"}]'), {
      kind: 'event',
      nsp: '/drivers',
      event: 'trip:offer',
      data: { offerId: 'o1' },
      args: [{ offerId: 'o1' }],
      id: 1234,
    });
    assert.deepEqual(parse('42["news",1,"two"]'), { kind: 'event', nsp: '/', event: 'news', data: 1, args: [1, 'two'], id: null });
    assert.deepEqual(parse('4290["news"]'), { kind: 'event', nsp: '/', event: 'news', data: undefined, args: [], id: 90 });
    assert.equal(parse('42/drivers,[1,2]').kind, 'unknown', 'an event name is a string');
    assert.equal(parse('42/drivers,["x"').kind, 'unknown', 'bad JSON');
  });

  test('parse: ACK with multi-digit ids, on a namespace and on /', () => {
    assert.deepEqual(parse('43/drivers,12[{"ok":true}]'), { kind: 'ack', nsp: '/drivers', id: 12, args: [{ ok: true }] });
    assert.deepEqual(parse('43/drivers,0[{"ok":true}]'), { kind: 'ack', nsp: '/drivers', id: 0, args: [{ ok: true }] });
    assert.deepEqual(parse('43/admin,98765[{"ok":false,"error":{"code":"FORBIDDEN","message":"no"}}]'), {
      kind: 'ack',
      nsp: '/admin',
      id: 98765,
      args: [{ ok: false, error: { code: 'FORBIDDEN', message: 'no' } }],
    });
    assert.deepEqual(parse('43107[]'), { kind: 'ack', nsp: '/', id: 107, args: [] });
    assert.equal(parse('43/drivers,[{"ok":true}]').kind, 'unknown', 'an ack needs an id');
  });

  test('parse: binary and unknown Socket.IO packets are unknown', () => {
    assert.equal(parse('451-/drivers,["x",{"_placeholder":true,"num":0}]').kind, 'unknown');
    assert.equal(parse('49').kind, 'unknown');
  });

  test('round trip: what the builders write, parse reads back', () => {
    const p = parse(eventPacket('/drivers', 'driver:location', { lat: 1, lng: 2 }, 4321));
    assert.deepEqual(p, { kind: 'event', nsp: '/drivers', event: 'driver:location', data: { lat: 1, lng: 2 }, args: [{ lat: 1, lng: 2 }], id: 4321 });
    assert.deepEqual(parse(ackPacket('/', 55, ['a', 'b'])), { kind: 'ack', nsp: '/', id: 55, args: ['a', 'b'] });
  });

  test('Session: pong, CONNECT on open, ack latency, expiry, state', () => {
    const out = [];
    let now = 1000;
    const s = new Session('/drivers', { token: 't' }, (m) => out.push(m), () => now);
    assert.equal(s.state, 'opening');
    s.receive('0{"sid":"x","pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}');
    assert.deepEqual(out, ['40/drivers,{"token":"t"}']);
    assert.equal(s.state, 'connecting');
    s.receive('2');
    assert.equal(out.at(-1), '3');
    s.receive('40/drivers,{"sid":"y"}');
    assert.equal(s.state, 'connected');
    const ids = [];
    for (let i = 0; i < 12; i++) ids.push(s.emitWithAck('driver:location', { lat: i, lng: 0 }));
    assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert.equal(out.at(-1), '42/drivers,11["driver:location",{"lat":11,"lng":0}]');
    assert.equal(s.pending, 12);
    now = 1025;
    const ack = s.receive('43/drivers,11[{"ok":true}]');
    assert.equal(ack.latencyMs, 25);
    assert.equal(ack.sentAt, 1000);
    assert.equal(s.pending, 11);
    assert.equal(s.receive('43/drivers,11[{"ok":true}]').latencyMs, undefined, 'a repeated ack is not timed twice');
    assert.equal(s.receive('43/other,10[{"ok":true}]').latencyMs, undefined, 'another namespace');
    now = 7000;
    assert.deepEqual(s.expire(5000), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(s.pending, 0);
    s.emit('driver:status', { status: 'ONLINE' });
    assert.equal(out.at(-1), '42/drivers,["driver:status",{"status":"ONLINE"}]');
    s.ack({ id: 3 }, [{ accept: true }]);
    assert.equal(out.at(-1), '43/drivers,3[{"accept":true}]');
    s.receive('41/drivers,');
    assert.equal(s.state, 'disconnected');
    const refused = new Session('/drivers', 'bad', () => {});
    refused.receive('44/drivers,{"message":"Invalid token"}');
    assert.equal(refused.state, 'refused');
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Against a live replica, with raw `ws`

/** A raw WebSocket whose messages are parsed by the lib; answers pings unless told not to. */
function rawSocket(baseUrl, { answerPings = true } = {}) {
  const ws = new WebSocket(wsUrl(baseUrl));
  const received = [];
  const waiters = [];
  let pings = 0;
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false, 'the gateway sends text frames');
    const p = parse(data.toString());
    if (p.kind === 'ping') {
      pings++;
      if (answerPings) ws.send(PONG);
    }
    const w = waiters.find((x) => x.match(p));
    if (w) {
      waiters.splice(waiters.indexOf(w), 1);
      clearTimeout(w.timer);
      w.resolve(p);
    } else {
      received.push(p);
    }
  });
  // A reset connection (the server dropping a silent client) is an outcome here, not a crash.
  const errors = [];
  ws.on('error', (e) => errors.push(e));
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  return {
    ws,
    errors,
    closed,
    get pings() {
      return pings;
    },
    send: (m) => ws.send(m),
    /** Takes the first packet (already received or coming) that matches. */
    next(match, ms = 5000) {
      const i = received.findIndex(match);
      if (i >= 0) return Promise.resolve(received.splice(i, 1)[0]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching packet; unmatched: ${JSON.stringify(received)}`)), ms);
        waiters.push({ match, resolve, timer });
      });
    },
    close() {
      ws.close();
      return closed;
    },
  };
}

const kind = (k, extra = () => true) => (p) => p.kind === k && extra(p);

describe('lib/socketio.js against a live gateway replica', () => {
  let db;
  let replica;
  const sockets = [];
  const open = (opts) => {
    const s = rawSocket(replica.url, opts);
    sockets.push(s);
    return s;
  };

  before(async () => {
    db = await createDatabase();
    replica = await startReplica({
      db,
      redis: null,
      env: { PING_INTERVAL_MS: '200', PING_TIMEOUT_MS: '300', LOCATION_RATE_PER_S: '100' },
    });
  });

  after(async () => {
    for (const s of sockets) s.ws.terminate();
    await replica?.stop();
    await db?.drop();
  });

  test('open, answer pings, CONNECT /drivers with a token, receive hello', async () => {
    const { token } = await createIdentity(db, 'DRIVER');
    const s = open();
    const opened = await s.next(kind('open'));
    assert.equal(typeof opened.sid, 'string');
    assert.equal(opened.pingInterval, 200);
    assert.equal(opened.pingTimeout, 300);
    assert.equal(opened.maxPayload, 100000);
    s.send(connectPacket('/drivers', { token }));
    const connected = await s.next(kind('connect'));
    assert.equal(connected.nsp, '/drivers');
    assert.equal(typeof connected.sid, 'string');
    const hello = await s.next(kind('event', (p) => p.event === 'hello'));
    assert.deepEqual(hello, {
      kind: 'event',
      nsp: '/drivers',
      event: 'hello',
      data: { ok: true, nsp: '/drivers' },
      args: [{ ok: true, nsp: '/drivers' }],
      id: null,
    });
    // Several heartbeats later the connection is still up: the pongs were understood.
    await new Promise((r) => setTimeout(r, 1200));
    assert.ok(s.pings >= 3, `${s.pings} pings`);
    assert.equal(s.ws.readyState, WebSocket.OPEN);
    s.send(eventPacket('/drivers', 'driver:location', { lat: 1, lng: 1 }, 77));
    assert.deepEqual(await s.next(kind('ack')), { kind: 'ack', nsp: '/drivers', id: 77, args: [{ ok: true }] });
    await s.close();
  });

  test('without pongs the server closes the transport (so answering them matters)', async () => {
    const s = open({ answerPings: false });
    await s.next(kind('open'));
    await s.next(kind('ping'), 2000);
    const code = await Promise.race([s.closed, new Promise((r) => setTimeout(() => r('still open'), 3000))]);
    assert.notEqual(code, 'still open');
    assert.ok(s.pings >= 1);
  });

  test('a bad token gets connect_error "Invalid token"', async () => {
    const s = open();
    await s.next(kind('open'));
    s.send(connectPacket('/drivers', { token: 'not-a-jwt' }));
    assert.deepEqual(await s.next(kind('connect_error')), { kind: 'connect_error', nsp: '/drivers', message: 'Invalid token' });
    await s.close();
  });

  test('driver:location with ack ids (multi-digit): [{"ok":true}]; invalid: INVALID_PAYLOAD', async () => {
    const { token } = await createIdentity(db, 'DRIVER');
    const s = open();
    await s.next(kind('open'));
    s.send(connectPacket('/drivers', { token }));
    await s.next(kind('event', (p) => p.event === 'hello'));

    for (const id of [0, 9, 10, 12, 123, 4096]) {
      s.send(eventPacket('/drivers', 'driver:location', { lat: 52.52, lng: 13.405, heading: 90, speed: 10 }, id));
      const ack = await s.next(kind('ack', (p) => p.id === id));
      assert.deepEqual(ack, { kind: 'ack', nsp: '/drivers', id, args: [{ ok: true }] });
    }

    s.send(eventPacket('/drivers', 'driver:location', { lat: 91, lng: 13.405 }, 31));
    const bad = await s.next(kind('ack', (p) => p.id === 31));
    assert.equal(bad.args.length, 1);
    assert.equal(bad.args[0].ok, false);
    assert.equal(bad.args[0].error.code, 'INVALID_PAYLOAD');
    assert.match(bad.args[0].error.message, /lat/);

    s.send(eventPacket('/drivers', 'driver:location', 'not an object', 32));
    const notObject = await s.next(kind('ack', (p) => p.id === 32));
    assert.equal(notObject.args[0].error.code, 'INVALID_PAYLOAD');
    assert.equal(s.ws.readyState, WebSocket.OPEN, 'bad input does not disconnect');
    await s.close();
  });

  test('passengers: a bound trip brings trip:updated, then trip:driver_location with `at`', async () => {
    const driver = await createIdentity(db, 'DRIVER');
    const passenger = await createIdentity(db, 'PASSENGER');
    const d = open();
    const p = open();
    await d.next(kind('open'));
    await p.next(kind('open'));
    d.send(connectPacket('/drivers', driver.token));
    p.send(connectPacket('/passengers', passenger.token));
    await d.next(kind('event', (x) => x.event === 'hello'));
    assert.deepEqual((await p.next(kind('event', (x) => x.event === 'hello'))).data, { ok: true, nsp: '/passengers' });

    // What passengers.js's setup() posts for each TRIPS_FILE line.
    const res = await fetch(`${replica.internalUrl}/internal/v1/trips/k6-trip-1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INTERNAL_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'DRIVER_ASSIGNED', passengerId: passenger.userId, driverId: driver.userId }),
    });
    assert.equal(res.status, 200, await res.text());
    const updated = await p.next(kind('event', (x) => x.event === 'trip:updated'));
    assert.equal(updated.nsp, '/passengers');
    assert.equal(updated.data.status, 'DRIVER_ASSIGNED');

    d.send(eventPacket('/drivers', 'driver:location', { lat: 52.52, lng: 13.405, heading: 90, speed: 10 }, 1));
    assert.deepEqual((await d.next(kind('ack'))).args, [{ ok: true }]);
    const loc = await p.next(kind('event', (x) => x.event === 'trip:driver_location'));
    assert.equal(loc.data.tripId, 'k6-trip-1');
    assert.equal(loc.data.driverId, driver.userId);
    assert.equal(loc.data.lat, 52.52);
    const age = Date.now() - Date.parse(loc.data.at);
    assert.ok(age >= -50 && age < 5000, `age ${age} ms`);
    await d.close();
    await p.close();
  });

  test('Session over ws: handshake, acks with latency, then a revocation arrives as DISCONNECT', async () => {
    const identity = await createIdentity(db, 'DRIVER');
    const ws = new WebSocket(wsUrl(replica.url));
    ws.on('error', () => {});
    sockets.push({ ws });
    const session = new Session('/drivers', { token: identity.token }, (m) => ws.send(m), () => performance.now());
    const packets = [];
    let notify = () => {};
    ws.on('message', (data) => {
      packets.push(session.receive(data.toString()));
      notify();
    });
    const until = (pred, ms = 5000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(packets)}`)), ms);
        const test = () => {
          const p = packets.find(pred);
          if (p) {
            clearTimeout(timer);
            notify = () => {};
            resolve(p);
          }
        };
        notify = test;
        test();
      });

    await until((p) => p.kind === 'event' && p.event === 'hello');
    assert.equal(session.state, 'connected');
    const ids = [];
    for (let i = 0; i < 12; i++) ids.push(session.emitWithAck('driver:location', { lat: 10 + i / 100, lng: 20, heading: 0, speed: 0 }));
    await until(() => session.pending === 0);
    const acks = packets.filter((p) => p.kind === 'ack');
    assert.deepEqual(acks.map((a) => a.id).sort((a, b) => a - b), ids);
    for (const a of acks) {
      assert.deepEqual(a.args, [{ ok: true }]);
      assert.ok(a.latencyMs >= 0 && a.latencyMs < 5000, `latency ${a.latencyMs}`);
    }

    const t0 = performance.now();
    const res = await fetch(`${replica.internalUrl}/internal/v1/sessions/${identity.sid}/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INTERNAL_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ userId: identity.userId, reason: 'load-test' }),
    });
    assert.equal(res.status, 200, await res.text());
    const disconnect = await until((p) => p.kind === 'disconnect');
    assert.deepEqual(disconnect, { kind: 'disconnect', nsp: '/drivers' });
    assert.equal(session.state, 'disconnected');
    assert.ok(performance.now() - t0 < 5000);
    ws.close();
  });
});
