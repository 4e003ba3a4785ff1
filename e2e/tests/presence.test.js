// Presence (events.md): a driver with no socket anywhere turns OFFLINE after PRESENCE_GRACE_MS,
// not before, and a reconnect within the grace changes nothing; when the replica holding the
// driver is SIGKILLed, the survivors turn them OFFLINE within PRESENCE_GRACE_MS + NODE_TTL_MS.
// The periods are shortened here through configuration.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startCluster, startReplica, connectAs, ask, record, disconnected, within,
} from '../../testkit/harness.js';

const GRACE_MS = 1500;
const NODE_TTL_MS = 1500;
const env = { PRESENCE_GRACE_MS: String(GRACE_MS), NODE_TTL_MS: String(NODE_TTL_MS) };
/** Sweeps run every 250 ms on every replica. */
const SWEEP_MS = 250;

describe('presence across replicas', () => {
  let db;
  let cluster;
  let A, B, C;

  before(async () => {
    db = await createDatabase();
    cluster = await startCluster(db, 3, { env });
    [A, B, C] = cluster.replicas;
  });

  after(async () => {
    await cluster?.stop();
    await db?.drop();
  });

  async function onlineDriver(replica) {
    const id = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(replica, '/drivers', id.token);
    await ask(socket, 'driver:location', { lat: 35.68, lng: 139.76 });
    assert.equal((await ask(socket, 'driver:status', { status: 'ONLINE' })).ok, true);
    return { ...id, socket };
  }

  const stateOf = (admin, driverId) => ask(admin, 'admin:driver_state', { driverId }).then((r) => r.driver);

  test('gone everywhere: OFFLINE after the grace period, not before, announced once', async () => {
    const admin = await connectAs(C, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const changes = record(admin, 'driver:status_changed');
    const d = await onlineDriver(A);
    const second = await connectAs(B, '/drivers', d.token);
    await within(changes.until((c) => c.driverId === d.userId && c.status === 'ONLINE'), 15000, 'driver:status_changed ONLINE at the admin');

    d.socket.close();
    // one socket left on B: still present
    const closedAt = Date.now();
    second.close();
    const offline = await within(changes.until((c) => c.driverId === d.userId && c.status === 'OFFLINE'), 15000, 'driver:status_changed OFFLINE at the admin');
    const elapsed = Date.now() - closedAt;
    assert.ok(elapsed >= GRACE_MS - 100, `not before the grace: ${elapsed} ms`);
    assert.ok(elapsed <= GRACE_MS + 3 * SWEEP_MS + 1000, `soon after it: ${elapsed} ms`);
    assert.ok(offline.at);
    const state = await stateOf(admin, d.userId);
    assert.equal(state.status, 'OFFLINE');
    assert.equal(state.connected, false);
    const near = await ask(admin, 'admin:drivers_nearby', { lat: 35.68, lng: 139.76, radiusM: 100 });
    assert.ok(!near.drivers.some((x) => x.driverId === d.userId), 'left the geo index');
    // Every replica sweeps: give them a few more sweeps to (wrongly) announce it again.
    await new Promise((r) => setTimeout(r, 4 * SWEEP_MS));
    assert.equal(changes.seen.filter((c) => c.driverId === d.userId && c.status === 'OFFLINE').length, 1);
    admin.close();
  });

  test('a reconnect within the grace period, on another replica, changes nothing', async () => {
    const admin = await connectAs(C, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const changes = record(admin, 'driver:status_changed');
    const d = await onlineDriver(A);
    const gone = disconnected(d.socket);
    d.socket.close();
    await within(gone, 5000, 'the closed socket');
    const back = await connectAs(B, '/drivers', d.token);
    // Let more than the grace period pass: nothing may happen to this driver.
    await new Promise((r) => setTimeout(r, GRACE_MS + 4 * SWEEP_MS));
    assert.deepEqual(changes.seen.filter((c) => c.driverId === d.userId && c.status === 'OFFLINE'), []);
    const state = await stateOf(admin, d.userId);
    assert.equal(state.status, 'ONLINE');
    assert.equal(state.connected, true);
    back.close();
    admin.close();
  });
});

test('SIGKILL of the replica holding a driver: OFFLINE within PRESENCE_GRACE_MS + NODE_TTL_MS', async () => {
  const db = await createDatabase();
  const cluster = await startCluster(db, 2, { env });
  const [A, B] = cluster.replicas;
  try {
    const admin = await connectAs(B, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const changes = record(admin, 'driver:status_changed');
    const id = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(A, '/drivers', id.token, { reconnection: false });
    await ask(socket, 'driver:status', { status: 'ONLINE' });
    await within(changes.until((c) => c.driverId === id.userId), 15000, 'driver:status_changed of the driver at the admin');

    const killedAt = Date.now();
    A.child.kill('SIGKILL');
    await A.exited;
    const offline = await within(changes.until((c) => c.driverId === id.userId && c.status === 'OFFLINE'), 15000, 'driver:status_changed OFFLINE at the admin');
    const elapsed = Date.now() - killedAt;
    assert.ok(offline);
    assert.ok(elapsed >= GRACE_MS - 100, `the grace still applies: ${elapsed} ms`);
    assert.ok(elapsed <= GRACE_MS + NODE_TTL_MS + 3 * SWEEP_MS + 1000, `within grace + lease: ${elapsed} ms`);
    const state = await ask(admin, 'admin:driver_state', { driverId: id.userId });
    assert.equal(state.driver.connected, false);
    const stats = await ask(admin, 'admin:stats', {});
    assert.deepEqual(stats.nodes.map((n) => n.nodeId), [B.nodeId], 'the dead replica left admin:stats');
    admin.close();
  } finally {
    await cluster.stop();
    await db.drop();
  }
});

test('memory engine: the same grace on a single replica', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null, env });
  try {
    const admin = await connectAs(replica, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const changes = record(admin, 'driver:status_changed');
    const id = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(replica, '/drivers', id.token);
    await ask(socket, 'driver:status', { status: 'BUSY' });
    const closedAt = Date.now();
    socket.close();
    await within(changes.until((c) => c.driverId === id.userId && c.status === 'OFFLINE'), 15000, 'driver:status_changed OFFLINE at the admin');
    assert.ok(Date.now() - closedAt >= GRACE_MS - 100);
    admin.close();
  } finally {
    await replica.stop();
    await db.drop();
  }
});

test('a draining replica gives its lease up: it leaves admin:stats and its drivers get the grace', async () => {
  const db = await createDatabase();
  // A long lease: only the drain itself can explain a quick exit from admin:stats.
  const cluster = await startCluster(db, 2, { env: { ...env, NODE_TTL_MS: '60000' } });
  const [A, B] = cluster.replicas;
  try {
    const admin = await connectAs(B, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const changes = record(admin, 'driver:status_changed');
    const id = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(A, '/drivers', id.token);
    await ask(socket, 'driver:status', { status: 'ONLINE' });
    await within(changes.until((c) => c.driverId === id.userId), 15000, 'driver:status_changed of the driver at the admin');
    assert.equal((await A.stop('SIGTERM')).code, 0);
    const stats = await ask(admin, 'admin:stats', {});
    assert.deepEqual(stats.nodes.map((n) => n.nodeId), [B.nodeId]);
    const drainedAt = Date.now();
    await within(changes.until((c) => c.driverId === id.userId && c.status === 'OFFLINE'), 15000, 'driver:status_changed OFFLINE at the admin');
    assert.ok(Date.now() - drainedAt < GRACE_MS + 3 * SWEEP_MS + 1000, 'the grace, not the 60 s lease');
    admin.close();
  } finally {
    await cluster.stop();
    await db.drop();
  }
});
