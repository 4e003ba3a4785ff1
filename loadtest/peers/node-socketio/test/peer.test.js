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

/** Starts one peer on ephemeral ports; resolves once it logs `ready: accepting connections`. */
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
      if (entry.message === 'listeners bound') logs.bound = entry;
      if (entry.message === 'ready: accepting connections') resolve(logs.bound);
    });
    exited.then((x) => reject(new Error(`${nodeId} exited early: ${JSON.stringify(x)}`)));
  });
  const { public: pub, internal } = await within(bound, 20000, `${nodeId} to be ready`);
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
  const ok = await socket.timeout(5000).emitWithAck('driver:location', { lat: 48.85, lng: 2.35, heading: 90, speed: 12.5 });
  assert.deepEqual(ok, { ok: true });
  const seen = await forwarded;
  assert.equal(seen.driverId, driver.id);
  assert.deepEqual([seen.lat, seen.lng, seen.heading, seen.speed], [48.85, 2.35, 90, 12.5]);

  const stored = await redis.hGetAll(`${prefix}:driver:${driver.id}`);
  assert.equal(stored.lat, '48.85');
  assert.equal(stored.lng, '2.35');
  assert.equal(stored.at, seen.at);

  const bad = await socket.timeout(5000).emitWithAck('driver:location', { lat: 91, lng: 2.35 });
  assert.deepEqual(bad, { ok: false, error: { code: 'INVALID_PAYLOAD', message: 'lat must be within [-90, 90]' } });
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
