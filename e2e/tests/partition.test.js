// One replica cut off from Redis while the others are fine (issue 24, item 2, first part): Redis
// runs in a network namespace of its own and each replica reaches it over its own link
// (testkit/faults.js); replica A's link is cut, so its connections hang as in a partition
// (nothing is refused or reset). A keeps answering its own sockets, within the client's timeout,
// with UNAVAILABLE where Redis is needed; B is untouched; once the link heals A serves again.
// Longer than NODE_TTL_MS, A's lease lapses and the others reap its drivers: OFFLINE for dispatch
// while it is cut off (dispatch cannot reach them), and, once the link heals, each connected
// driver is ONLINE again, at its position, within seconds (A restores the status it last set).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  createDatabase, createIdentity, startReplica, connectAs, ask, eventually, record,
} from '../../testkit/harness.js';
import { isolatedRedis } from '../../testkit/faults.js';

/** A driver on `replica` that reported a position and went ONLINE. */
async function onlineDriver(db, replica) {
  const id = await createIdentity(db, 'DRIVER');
  const socket = await connectAs(replica, '/drivers', id.token);
  assert.equal((await ask(socket, 'driver:location', { lat: 48.85, lng: 2.35 })).ok, true);
  assert.equal((await ask(socket, 'driver:status', { status: 'ONLINE' })).ok, true);
  return { ...id, socket };
}

/**
 * Two replicas A and B, each reaching a Redis of its own namespace over its own link
 * (`redis.links[0]` is A's), on a fresh database: `run({ db, redis, A, B })`, then everything
 * stopped and removed, whatever happened.
 */
async function onTwoReplicas(env, run) {
  const db = await createDatabase();
  const redis = await isolatedRedis({ links: 2 });
  const prefix = `e2e-${randomBytes(5).toString('hex')}`;
  const replicas = [];
  try {
    for (const [i, url] of redis.urls.entries()) {
      replicas.push(await startReplica({ db, redis: url, prefix, nodeId: `${'ab'[i]}-${prefix.slice(4)}`, env }));
    }
    const [A, B] = replicas;
    await run({ db, redis, A, B });
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis.stop();
    await db.drop();
  }
}

test('a replica cut off from Redis answers its sockets with UNAVAILABLE within a second, the others serve, and it serves again once the link heals', async () => {
  await onTwoReplicas({ NODE_TTL_MS: '10000' }, async ({ db, redis, A, B }) => {
    const onA = await onlineDriver(db, A);
    const onB = await onlineDriver(db, B);

    await redis.links[0].cut();
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const ack = await ask(onA.socket, 'driver:location', { lat: 48.86, lng: 2.35 }, 3000);
      const ms = Date.now() - started;
      assert.equal(ack.error?.code, 'UNAVAILABLE', JSON.stringify(ack));
      assert.ok(ms < 1000, `answered after ${ms} ms, within a second`);
    }
    assert.equal((await ask(onB.socket, 'driver:location', { lat: 48.87, lng: 2.35 })).ok, true, 'B is untouched');
    const ready = await fetch(`${A.internalUrl}/readyz`);
    const body = await ready.json();
    assert.equal(body.checks.redis.ok, false, `A's readiness names Redis as down: ${JSON.stringify(body)}`);

    await redis.links[0].heal();
    await eventually(async () => (await ask(onA.socket, 'driver:location', { lat: 48.88, lng: 2.35 }, 3000)).ok, 15000, 200,
      'A to serve again once its link healed');
    assert.equal(onA.socket.connected && onB.socket.connected, true, 'no socket was dropped');
    onA.socket.close();
    onB.socket.close();
  });
});

test('a replica cut off from Redis for longer than NODE_TTL_MS: its drivers are OFFLINE for dispatch meanwhile, and ONLINE again at their position within seconds of the heal', async () => {
  await onTwoReplicas({ NODE_TTL_MS: '2000', PRESENCE_GRACE_MS: '1000' }, async ({ db, redis, A, B }) => {
    const onA = await onlineDriver(db, A);
    const admin = await connectAs(B, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const changes = record(admin, 'driver:status_changed');
    const state = async () => (await ask(admin, 'admin:driver_state', { driverId: onA.userId })).driver;
    const nearby = async () => (await ask(admin, 'admin:drivers_nearby', { lat: 48.85, lng: 2.35, radiusM: 1000 })).drivers
      .map((d) => d.driverId);

    await redis.links[0].cut();
    await eventually(async () => (await state()).status === 'OFFLINE', 15000, 200,
      'the cut-off replica\'s driver to be reaped OFFLINE by the others');
    assert.deepEqual(await nearby(), [], 'invisible to dispatch while its replica is cut off');

    const healed = Date.now();
    await redis.links[0].heal();
    await eventually(async () => {
      const s = await state();
      return s.status === 'ONLINE' && s.connected;
    }, 10000, 200, 'the driver ONLINE and connected again after the heal');
    const ms = Date.now() - healed;
    assert.deepEqual(await nearby(), [onA.userId], 'found by dispatch at its position');
    assert.deepEqual(changes.seen.filter((c) => c.driverId === onA.userId).map((c) => c.status), ['OFFLINE', 'ONLINE'],
      'admins saw it go and come back');
    assert.ok(onA.socket.connected, 'the driver\'s socket stayed open');
    assert.ok(ms < 10000, `ONLINE again ${ms} ms after the heal`);
    onA.socket.close();
    admin.close();
  });
});
