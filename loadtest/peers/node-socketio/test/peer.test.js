// End-to-end check of the reference peer: two `server.js` processes sharing one Redis prefix,
// a fresh PostgreSQL database migrated by the real `gateway migrate`, and socket.io-client.
// Needs PostgreSQL and Redis on localhost (trust auth) and the built gateway binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import pg from 'pg';
import jwt from 'jsonwebtoken';
import { createClient } from 'redis';
import { io } from 'socket.io-client';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.resolve(here, '../server.js');
const GATEWAY_BIN = process.env.GATEWAY_BIN ?? path.resolve(here, '../../../../target/debug/gateway');
const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const JWT_SECRET = 'peer-secret-' + randomBytes(8).toString('hex');
const INTERNAL_TOKEN = 'peer-internal-' + randomBytes(8).toString('hex');
const uniq = () => randomBytes(5).toString('hex');

// ---------------------------------------------------------------------------------------------
// Helpers

/** Rejects if `promise` has not settled within `ms` (a hang fails the test instead of the run). */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function run(file, args, env) {
  return new Promise((resolve) => {
    execFile(file, args, { env: { PATH: process.env.PATH, ...env } }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
  });
}

function sign(claims, secret = JWT_SECRET) {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return jwt.sign({ exp, ...claims }, secret, { algorithm: 'HS256' });
}

const children = new Set();
// Whatever happens to the test run, no peer outlives it.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * Polls `GET url` every 50 ms until it answers 200; rejects at `deadline` (a Date.now() value) with
 * `what`, or once `child` exits.
 */
async function untilOk(url, child, deadline, what) {
  let last = 'no answer';
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: exited`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
      const text = await res.text();
      if (res.status === 200) return;
      last = `${res.status} ${text}`;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() >= deadline) throw new Error(`${what}; last answer: ${last}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts one peer on ephemeral ports; resolves once its `/readyz` answers 200. */
async function startPeer({ dbUrl, prefix, nodeId }) {
  const child = spawn(process.execPath, [SERVER], {
    env: {
      PATH: process.env.PATH,
      BIND_ADDR: '127.0.0.1:0',
      INTERNAL_BIND_ADDR: '127.0.0.1:0',
      DATABASE_URL: dbUrl,
      REDIS_URL,
      REDIS_PREFIX: prefix,
      JWT_SECRET,
      INTERNAL_API_TOKEN: INTERNAL_TOKEN,
      NODE_ID: nodeId,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  const exited = once(child, 'exit').then(([code, signal]) => {
    children.delete(child);
    return { code, signal };
  });
  const logs = [];
  const bound = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line);
      logs.push(entry);
      // The ports only; readiness is /readyz's.
      if (entry.message === 'listeners bound') resolve(entry);
    });
    exited.then((x) => reject(new Error(`${nodeId} exited early: ${JSON.stringify(x)}`)));
  });
  // One 20 s budget for both: bound, then ready.
  const deadline = Date.now() + 20000;
  const { public: pub, internal } = await within(bound, 20000, `${nodeId} to bind its listeners`);
  await untilOk(`http://${internal}/readyz`, child, deadline, `${nodeId} not ready (/readyz) within 20s`);
  return {
    nodeId,
    url: `http://${pub}`,
    internalUrl: `http://${internal}`,
    logs,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

const sockets = [];

function client(peer, nsp, opts = {}) {
  const socket = io(peer.url + nsp, { forceNew: true, reconnection: false, ...opts });
  sockets.push(socket);
  return socket;
}

/** Resolves with the `hello` payload; rejects with the connect_error. */
function hello(socket) {
  return within(
    new Promise((resolve, reject) => {
      socket.once('hello', resolve);
      socket.once('connect_error', (err) => reject(new Error(`connect_error: ${err.message}`)));
    }),
    10000,
    'hello',
  );
}

/** Resolves with the connect_error message; rejects if the socket connects. */
function refusal(socket) {
  return within(
    new Promise((resolve, reject) => {
      socket.once('connect_error', (err) => resolve(err.message));
      socket.once('connect', () => reject(new Error('connected, expected connect_error')));
    }),
    10000,
    'connect_error',
  );
}

const next = (socket, event) => within(new Promise((resolve) => socket.once(event, resolve)), 10000, event);

/** The acknowledgement of `event`. */
const ask = (socket, event, payload) => within(socket.emitWithAck(event, payload), 5000, `the ${event} acknowledgement`);

/** The gateway's driver shard (gateway/src/state/keys.rs), ported here on its own to check the peer's. */
function driverShard(id) {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(id, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash % 16;
}

const driverKey = (id) => `${prefix}:{d${driverShard(id)}}:driver:${id}`;
const geoKey = (id) => `${prefix}:{d${driverShard(id)}}:drivers-geo`;
const streamKey = () => `${prefix}:driver-locations`;

async function post(peer, pathname, body, token = INTERNAL_TOKEN) {
  const res = await fetch(peer.internalUrl + pathname, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// ---------------------------------------------------------------------------------------------
// Fixture: one database, one Redis prefix, two peers.

const dbName = `peer_test_${uniq()}`;
const dbUrl = `${PG_BASE}/${dbName}`;
const prefix = `peer-${uniq()}`;
let pool;
let redis;
let peers = [];
const driver = { id: randomUUID(), sids: [`sid-${uniq()}`, `sid-${uniq()}`] };
const admin = { id: randomUUID(), sid: `sid-${uniq()}` };
// One driver per location scenario, so that one's rate window or status does not leak into another.
const mover = { id: randomUUID(), sid: `sid-${uniq()}` };
const flooder = { id: randomUUID(), sid: `sid-${uniq()}` };
const passenger = { id: randomUUID(), sid: `sid-${uniq()}` };

async function seedUser(id, type, sids) {
  await pool.query('INSERT INTO users (id, user_type, status) VALUES ($1, $2, $3)', [id, type, 'ACTIVE']);
  for (const sid of sids) {
    await pool.query('INSERT INTO sessions (id, jti, user_id, session_type) VALUES ($1, $2, $3, $4)', [
      randomUUID(),
      sid,
      id,
      'mobile',
    ]);
  }
}

before(async () => {
  const migrated = await run(GATEWAY_BIN, ['migrate'], { DATABASE_URL: dbUrl });
  assert.equal(migrated.code, 0, `gateway migrate failed: ${migrated.stderr}`);
  pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  await seedUser(driver.id, 'DRIVER', driver.sids);
  await seedUser(admin.id, 'ADMIN', [admin.sid]);
  await seedUser(mover.id, 'DRIVER', [mover.sid]);
  await seedUser(flooder.id, 'DRIVER', [flooder.sid]);
  await seedUser(passenger.id, 'PASSENGER', [passenger.sid]);
  redis = createClient({ url: REDIS_URL });
  await redis.connect();
  peers = await Promise.all([
    startPeer({ dbUrl, prefix, nodeId: `peer-a-${uniq()}` }),
    startPeer({ dbUrl, prefix, nodeId: `peer-b-${uniq()}` }),
  ]);
});

after(async () => {
  // Stopped with clients still connected: SIGTERM must not wait for them.
  const exits = await Promise.all(peers.map((p) => within(p.stop(), 10000, `${p.nodeId} to exit`)));
  for (const socket of sockets) socket.close();
  for (const exit of exits) assert.deepEqual(exit, { code: 0, signal: null });
  if (redis) {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(keys);
    await redis.quit();
  }
  await pool?.end();
  const adminDb = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await adminDb.connect();
  await adminDb.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await adminDb.end();
});

// ---------------------------------------------------------------------------------------------
// Tests (they run in order; the revocation comes last because it closes a session for good).

test('a driver is greeted on /drivers, with auth.token or a Bearer header', async () => {
  const [peer] = peers;
  const token = sign({ sub: driver.id, sid: driver.sids[0] });
  assert.deepEqual(await hello(client(peer, '/drivers', { auth: { token } })), { ok: true, nsp: '/drivers' });
  const polling = client(peer, '/drivers', { auth: { token }, transports: ['polling'] });
  assert.deepEqual(await hello(polling), { ok: true, nsp: '/drivers' });
  const viaHeader = client(peer, '/drivers', { transports: ['websocket'], extraHeaders: { authorization: `Bearer ${token}` } });
  assert.deepEqual(await hello(viaHeader), { ok: true, nsp: '/drivers' });
});

test('handshake refusals carry the contract messages', async () => {
  const [peer] = peers;
  const forged = sign({ sub: driver.id, sid: driver.sids[0] }, 'not-the-secret');
  assert.equal(await refusal(client(peer, '/drivers', { auth: { token: forged } })), 'Invalid token');
  const token = sign({ sub: driver.id, sid: driver.sids[0] });
  assert.equal(await refusal(client(peer, '/passengers', { auth: { token } })), 'Wrong userType');
  assert.equal(await refusal(client(peer, '/drivers')), 'Missing token');
});

test('driver:location is acknowledged, stored, and forwarded to admins on the other peer', async () => {
  const [peerA, peerB] = peers;
  const adminSocket = client(peerB, '/admin', { auth: { token: sign({ sub: admin.id, sid: admin.sid }) } });
  assert.deepEqual(await hello(adminSocket), { ok: true, nsp: '/admin' });
  const socket = client(peerA, '/drivers', { auth: { token: sign({ sub: driver.id, sid: driver.sids[0] }) } });
  await hello(socket);

  const forwarded = next(adminSocket, 'driver:location');
  const ok = await ask(socket, 'driver:location', { lat: 48.85, lng: 2.35, heading: 90, speed: 12.5 });
  assert.deepEqual(ok, { ok: true });
  const seen = await forwarded;
  assert.equal(seen.driverId, driver.id);
  assert.deepEqual([seen.lat, seen.lng, seen.heading, seen.speed], [48.85, 2.35, 90, 12.5]);

  // The gateway's hash, under the gateway's key name: a driver never set ONLINE is OFFLINE.
  const stored = await redis.hGetAll(driverKey(driver.id));
  assert.equal(stored.lat, '48.85');
  assert.equal(stored.lng, '2.35');
  assert.equal(stored.accuracy, '');
  assert.equal(stored.at, seen.at);
  assert.equal(stored.status, 'OFFLINE');
  assert.deepEqual(await redis.geoPos(geoKey(driver.id), driver.id), [null], 'an OFFLINE driver is not in the geo index');

  const bad = await ask(socket, 'driver:location', { lat: 91, lng: 2.35 });
  assert.deepEqual(bad, { ok: false, error: { code: 'INVALID_PAYLOAD', message: 'lat must be within [-90, 90]' } });
});

test('driver:status answers with the status and tells admins when it changed', async () => {
  const [peerA, peerB] = peers;
  const adminSocket = client(peerB, '/admin', { auth: { token: sign({ sub: admin.id, sid: admin.sid }) } });
  await hello(adminSocket);
  const socket = client(peerA, '/drivers', { auth: { token: sign({ sub: mover.id, sid: mover.sid }) } });
  await hello(socket);

  const changed = next(adminSocket, 'driver:status_changed');
  assert.deepEqual(await ask(socket, 'driver:status', { status: 'BUSY' }), { ok: true, status: 'BUSY' });
  const seen = await changed;
  assert.equal(seen.driverId, mover.id);
  assert.equal(seen.status, 'BUSY');
  assert.equal((await redis.hGetAll(driverKey(mover.id))).statusAt, seen.at);

  assert.deepEqual(await ask(socket, 'driver:status', { status: 'AWAY' }), {
    ok: false,
    error: { code: 'INVALID_PAYLOAD', message: 'status must be ONLINE, BUSY or OFFLINE' },
  });
  assert.deepEqual(await ask(socket, 'driver:status', {}), {
    ok: false,
    error: { code: 'INVALID_PAYLOAD', message: 'status is required' },
  });
});

test('an ONLINE driver reporting a position is in its shard geo index and the capped stream, until OFFLINE', async () => {
  const [peerA] = peers;
  const socket = client(peerA, '/drivers', { auth: { token: sign({ sub: mover.id, sid: mover.sid }) } });
  await hello(socket);
  assert.deepEqual(await ask(socket, 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });

  const report = { lat: 48.8566, lng: 2.3522, heading: 180, speed: 3, accuracy: 5, recordedAt: '2026-12-02T10:00:00Z' };
  assert.deepEqual(await ask(socket, 'driver:location', report), { ok: true });

  const [pos] = await redis.geoPos(geoKey(mover.id), mover.id);
  assert.ok(pos, `driver in ${geoKey(mover.id)}`);
  assert.ok(Math.abs(Number(pos.latitude) - report.lat) < 1e-4, `latitude ${pos.latitude}`);
  assert.ok(Math.abs(Number(pos.longitude) - report.lng) < 1e-4, `longitude ${pos.longitude}`);

  const stored = await redis.hGetAll(driverKey(mover.id));
  assert.deepEqual(
    [stored.status, stored.accuracy, stored.recordedAt],
    ['ONLINE', '5', '2026-12-02T10:00:00Z'],
  );
  const entries = (await redis.xRange(streamKey(), '-', '+')).filter((e) => e.message.driverId === mover.id);
  assert.equal(entries.length, 1, 'one stream entry for the one accepted report');
  assert.deepEqual({ ...entries[0].message }, {
    driverId: mover.id, lat: '48.8566', lng: '2.3522', heading: '180', speed: '3', recordedAt: '2026-12-02T10:00:00Z', at: stored.at,
  });

  assert.deepEqual(await ask(socket, 'driver:status', { status: 'OFFLINE' }), { ok: true, status: 'OFFLINE' });
  assert.deepEqual(await redis.geoPos(geoKey(mover.id), mover.id), [null], 'an OFFLINE driver leaves the geo index');
});

test('a driver on a trip has its positions forwarded to the passenger, on the other peer', async () => {
  const [peerA, peerB] = peers;
  // What a trip write binds on the driver's hash (bind_trip.lua).
  await redis.hSet(driverKey(mover.id), { activeTripId: 'trip-1', activePassengerId: passenger.id, activeTripVersion: '1' });
  const rider = client(peerB, '/passengers', { auth: { token: sign({ sub: passenger.id, sid: passenger.sid }) } });
  await hello(rider);
  const socket = client(peerA, '/drivers', { auth: { token: sign({ sub: mover.id, sid: mover.sid }) } });
  await hello(socket);

  const forwarded = next(rider, 'trip:driver_location');
  assert.deepEqual(await ask(socket, 'driver:location', { lat: 48.86, lng: 2.34 }), { ok: true });
  const seen = await forwarded;
  assert.deepEqual(
    { ...seen, at: undefined },
    { tripId: 'trip-1', driverId: mover.id, lat: 48.86, lng: 2.34, heading: null, speed: null, at: undefined },
  );
  await redis.hDel(driverKey(mover.id), ['activeTripId', 'activePassengerId', 'activeTripVersion']);
});

test('more reports than LOCATION_RATE_PER_S (10) in one second are RATE_LIMITED and not streamed', async () => {
  const [peerA] = peers;
  const socket = client(peerA, '/drivers', { auth: { token: sign({ sub: flooder.id, sid: flooder.sid }) } });
  await hello(socket);
  // 25 at once: even across a second boundary, two windows of 10 leave at least 5 refused.
  const answers = await Promise.all(
    Array.from({ length: 25 }, (_, i) => ask(socket, 'driver:location', { lat: 10 + i / 1000, lng: 20 })),
  );
  const accepted = answers.filter((a) => a.ok);
  const refused = answers.filter((a) => !a.ok);
  assert.ok(accepted.length >= 10 && accepted.length <= 20, `accepted ${accepted.length} of 25`);
  assert.ok(refused.length >= 5, `refused ${refused.length} of 25`);
  for (const answer of refused) {
    assert.deepEqual(answer, { ok: false, error: { code: 'RATE_LIMITED', message: 'too many events; slow down' } });
  }
  const entries = (await redis.xRange(streamKey(), '-', '+')).filter((e) => e.message.driverId === flooder.id);
  assert.equal(entries.length, accepted.length, 'only accepted reports reach the stream');
});

test('the internal API wants its bearer token and validates emit', async () => {
  const [peerA, peerB] = peers;
  const unauthorized = await post(peerA, '/internal/v1/emit', {}, null);
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.body.error.code, 'UNAUTHORIZED');
  const invalid = await post(peerA, '/internal/v1/emit', { namespace: '/nope', rooms: ['admin:all'], event: 'x' });
  assert.equal(invalid.status, 400);
  assert.equal(invalid.body.error.code, 'INVALID_PAYLOAD');

  const socket = client(peerA, '/drivers', { auth: { token: sign({ sub: driver.id, sid: driver.sids[0] }) } });
  await hello(socket);
  const pushed = next(socket, 'promo');
  const sent = await post(peerB, '/internal/v1/emit', {
    namespace: '/drivers',
    rooms: [`driver:${driver.id}`],
    event: 'promo',
    data: { n: 1 },
  });
  assert.deepEqual(sent, { status: 200, body: { ok: true } });
  assert.deepEqual(await pushed, { n: 1 });
});

test('an offer through peer B reaches the driver on peer A; answered 200, none 504, no socket 404', async () => {
  const [peerA, peerB] = peers;
  const token = sign({ sub: mover.id, sid: mover.sid });
  const socket = client(peerA, '/drivers', { auth: { token } });
  await hello(socket);
  let answer = { accept: true };
  socket.on('trip:offer', (offered, ack) => { if (answer) ack({ ...answer, offerId: offered.offerId }); });
  const offerOf = (expiresInMs) => post(peerB, `/internal/v1/drivers/${mover.id}/offers`, { offerId: randomUUID(), tripId: 't1', expiresInMs });
  const answered = await offerOf(2000);
  assert.equal(answered.status, 200, JSON.stringify(answered.body));
  assert.equal(answered.body.response.accept, true);
  answer = null;
  assert.equal((await offerOf(300)).status, 504);
  socket.close();
  const gone = await post(peerB, `/internal/v1/drivers/${randomUUID()}/offers`, { offerId: randomUUID(), tripId: 't1', expiresInMs: 1000 });
  assert.equal(gone.status, 404);
});

test('a revocation sent to peer B disconnects the session on peer A and notifies the other session', async () => {
  const [peerA, peerB] = peers;
  const [revokedSid, otherSid] = driver.sids;
  const revoked = client(peerA, '/drivers', { auth: { token: sign({ sub: driver.id, sid: revokedSid }) } });
  const other = client(peerA, '/drivers', { auth: { token: sign({ sub: driver.id, sid: otherSid }) } });
  await Promise.all([hello(revoked), hello(other)]);

  const reason = next(revoked, 'disconnect');
  const notice = next(other, 'auth:session_revoked');
  // What the auth service does first: commit, then publish.
  await pool.query('UPDATE sessions SET revoked = true WHERE jti = $1', [revokedSid]);
  const res = await post(peerB, `/internal/v1/sessions/${revokedSid}/revoke`, { userId: driver.id, reason: 'logout' });
  assert.deepEqual(res, { status: 200, body: { ok: true } });

  assert.equal(await reason, 'io server disconnect');
  const payload = await notice;
  assert.equal(payload.sid, revokedSid);
  assert.equal(payload.reason, 'logout');
  assert.ok(!Number.isNaN(Date.parse(payload.at)), `at is a timestamp: ${payload.at}`);
  assert.ok(other.connected, 'the other session stays connected');

  const again = client(peerA, '/drivers', { auth: { token: sign({ sub: driver.id, sid: revokedSid }) } });
  assert.equal(await refusal(again), 'Invalid session');
});
