// The connection guide's own client examples (e2e/examples/) run unchanged against a
// three-replica cluster, each as its own Node process with the official socket.io-client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createDatabase, createIdentity, startCluster, sign, INTERNAL_TOKEN } from '../../testkit/harness.js';

const examples = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../examples');
let db;
let cluster;

before(async () => {
  db = await createDatabase();
  cluster = await startCluster(db, 3);
});

after(async () => {
  await cluster?.stop();
  await db?.drop();
});

function runExample(name, env) {
  return new Promise((resolve) => {
    execFile('node', [path.join(examples, name)], { env: { ...process.env, ONCE: '1', ...env }, timeout: 20000 }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
  });
}

test('driver example: auth.token, websocket first then polling, on every replica', async () => {
  for (const [i, replica] of cluster.replicas.entries()) {
    const { token } = await createIdentity(db, 'DRIVER');
    const transports = i === 1 ? 'polling' : 'websocket,polling';
    const out = await runExample('driver.mjs', { GATEWAY_URL: replica.url, TOKEN: token, TRANSPORTS: transports });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /Connected to \/drivers namespace/);
    assert.match(out.stdout, /Socket ID: \S+/);
    assert.match(out.stdout, /Server hello: {"ok":true,"nsp":"\/drivers"}/);
    assert.match(out.stdout, new RegExp(`Transport: ${transports.split(',')[0]}`));
    assert.match(out.stdout, /Disconnected: io client disconnect/);
  }
});

test('passenger and admin examples', async () => {
  const passenger = await createIdentity(db, 'PASSENGER');
  const p = await runExample('passenger.mjs', { GATEWAY_URL: cluster.replicas[1].url, TOKEN: passenger.token });
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /Server hello: {"ok":true,"nsp":"\/passengers"}/);
  const admin = await createIdentity(db, 'ADMIN', { orgId: 'ops' });
  const a = await runExample('admin.mjs', { GATEWAY_URL: cluster.replicas[2].url, TOKEN: admin.token });
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /Server hello: {"ok":true,"nsp":"\/admin"}/);
});

test("the guide's error handling switch reaches each of its cases", async () => {
  const driver = await createIdentity(db, 'DRIVER');
  const suspended = await createIdentity(db, 'DRIVER', { status: 'SUSPENDED' });
  const revokedSid = await db.session(driver.userId, { revoked: true });
  const now = Math.floor(Date.now() / 1000);
  const cases = [
    [{}, 'No JWT token provided'],
    [{ TOKEN: sign({ sub: driver.userId }) }, 'Invalid token payload'],
    [{ TOKEN: sign({ sub: '00000000-0000-4000-8000-000000000000', sid: driver.sid }) }, 'User account not found'],
    [{ TOKEN: driver.token, NSP: '/passengers' }, 'User type mismatch'],
    [{ TOKEN: suspended.token }, 'User account is inactive'],
    [{ TOKEN: sign({ sub: driver.userId, sid: revokedSid }) }, 'Session not found or revoked'],
    [{ TOKEN: sign({ sub: driver.userId, sid: driver.sid, exp: now - 10 }) }, 'Access token expired'],
    [{ TOKEN: 'garbage' }, 'Connection error: Invalid token'],
  ];
  for (const [env, expected] of cases) {
    const out = await runExample('errors.mjs', { GATEWAY_URL: cluster.replicas[0].url, ...env });
    assert.equal(out.code, 0);
    assert.equal(out.stderr.trim(), expected, JSON.stringify(env));
  }
});

test('the per-namespace app examples: driver reports, passenger follows a trip, admin queries', async () => {
  const [A, B, C] = cluster.replicas;
  const driver = await createIdentity(db, 'DRIVER');
  const passenger = await createIdentity(db, 'PASSENGER');
  const admin = await createIdentity(db, 'ADMIN');
  const d = await runExample('driver-app.mjs', { GATEWAY_URL: A.url, TOKEN: driver.token });
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /status ack: {"ok":true,"status":"ONLINE"}/);
  assert.match(d.stdout, /location ack: {"ok":true}/);

  const child = spawn('node', [path.join(examples, 'passenger-app.mjs')], {
    env: { ...process.env, GATEWAY_URL: C.url, TOKEN: passenger.token, EXIT_ON: 'COMPLETED' },
  });
  let stdout = '';
  const greeted = new Promise((resolve) => child.stdout.on('data', (chunk) => {
    stdout += chunk;
    if (stdout.includes('hello:')) resolve();
  }));
  const following = once(child, 'exit').then(([code]) => ({ code, stdout }));
  await greeted;
  const tripId = `trip-${Date.now()}`;
  const post = (type) => fetch(`${B.internalUrl}/internal/v1/trips/${tripId}/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${INTERNAL_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type, passengerId: passenger.userId, driverId: driver.userId }),
  });
  for (const type of ['DRIVER_ASSIGNED', 'STARTED', 'COMPLETED']) assert.equal((await post(type)).status, 200);
  const p = await following;
  assert.equal(p.code, 0);
  assert.match(p.stdout, /trip: DRIVER_ASSIGNED/);
  assert.match(p.stdout, /trip: COMPLETED/);

  const a = await runExample('admin-console.mjs', { GATEWAY_URL: B.url, TOKEN: admin.token, DRIVER_ID: driver.userId });
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /stats: {"nodes":\[/);
  assert.match(a.stdout, new RegExp(`nearby: .*"driverId":"${driver.userId}"`));
  assert.match(a.stdout, new RegExp(`driver: .*"driverId":"${driver.userId}"`));
});
