// Three replicas on a Redis Cluster of three masters with a replica each: a master is killed
// while clients are connected. After the failover a revocation still reaches every replica,
// nothing was refused for longer than the failover took, and no driver's state was lost.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startCluster, connectAs, ask, record, internalPost,
  disconnected, within,
} from '../../testkit/harness.js';
import { startRedisCluster } from '../../testkit/redis-cluster.js';

let db;
let redis;
let dep;

before(async () => {
  db = await createDatabase();
  redis = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 2000 });
  dep = await startCluster(db, 3, {
    redis: redis.url,
    // NODE_TTL_MS stays at its default (10 s), longer than a failover (about 4 s here): a
    // replica that cannot renew for longer is taken for dead (docs/operations.md).
    env: { LOCATION_RATE_PER_S: '50', PRESENCE_GRACE_MS: '2000' },
  });
});

after(async () => {
  await dep?.stop();
  await redis?.stop();
  await db?.drop();
});

/** The port of the master serving `key`'s slot. */
async function masterOf(key) {
  const port = redis.nodes.find((n) => n.child.exitCode === null && n.child.signalCode === null).port;
  const slot = Number(await redis.cli(port, ['CLUSTER', 'KEYSLOT', key]));
  const nodes = (await redis.cli(port, ['CLUSTER', 'NODES'])).split('\n');
  for (const line of nodes) {
    const fields = line.split(' ');
    if (!fields[2].includes('master') || fields[2].includes('fail')) continue;
    for (const range of fields.slice(8)) {
      const [lo, hi = lo] = range.split('-').map(Number);
      if (slot >= lo && slot <= hi) return Number(fields[1].split('@')[0].split(':')[1]);
    }
  }
  throw new Error(`no master serves slot ${slot}`);
}

test('a master fails over under load: revocations still cross replicas, refusals last no longer than the failover, no driver state is lost', async (t) => {
  const [A, B, C] = dep.replicas;
  const watcher = await connectAs(A, '/admin', (await createIdentity(db, 'ADMIN')).token);
  const changes = record(watcher, 'driver:status_changed');
  const drivers = [];
  for (let i = 0; i < 9; i += 1) {
    const id = await createIdentity(db, 'DRIVER');
    const s = await connectAs(dep.replicas[i % 3], '/drivers', id.token);
    const position = { lat: 40 + i / 1000, lng: -3.7 };
    assert.equal((await ask(s, 'driver:location', position)).ok, true);
    assert.equal((await ask(s, 'driver:status', { status: 'ONLINE' })).ok, true);
    drivers.push({ ...id, s, position });
  }

  // The victim: the master most replicas' auth-events subscriptions are on (a plain SUBSCRIBE
  // lives on one node, and must move when that node dies), else the one serving the location
  // stream, which every accepted report is appended to.
  const channel = `${dep.prefix}:auth-events`;
  let victim = await masterOf(`${dep.prefix}:driver-locations`);
  let most = 0;
  for (const port of await redis.masters()) {
    const n = Number((await redis.cli(port, ['PUBSUB', 'NUMSUB', channel])).split('\n')[1]);
    if (n > most) [victim, most] = [port, n];
  }
  t.diagnostic(`killing master ${victim}: ${most} of 3 auth-events subscriptions on it`);
  await redis.replicated(victim);

  // Probes: each replica's driver reports every 100 ms and waits for the answer.
  const probes = [];
  let probing = true;
  const probe = async (d) => {
    while (probing) {
      const at = Date.now();
      const res = await ask(d.s, 'driver:location', d.position, 3000).catch((e) => ({ ok: false, error: { code: e.message } }));
      probes.push({ at, ok: res.ok === true, code: res.error?.code });
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const probing3 = Promise.all(drivers.slice(0, 3).map(probe));
  let killedAt;
  let failedOverAt;
  try {
    await new Promise((r) => setTimeout(r, 500));
    killedAt = Date.now();
    redis.nodes.find((n) => n.port === victim).child.kill('SIGKILL');
    // Failed over: the victim's replica serves its slots and every running node says ok.
    await redis.failedOver(victim);
    failedOverAt = Date.now();
    // Keep probing a while after the cluster is whole again.
    await new Promise((r) => setTimeout(r, 3000));
  } finally {
    probing = false;
    await probing3;
  }

  const refused = probes.filter((p) => !p.ok);
  const lastRefusal = Math.max(killedAt, ...refused.map((p) => p.at));
  t.diagnostic(`failover took ${failedOverAt - killedAt} ms; ${refused.length} of ${probes.length} reports refused ` +
    `(${[...new Set(refused.map((p) => p.code))].join(', ')}), the last ${lastRefusal - killedAt} ms after the kill`);
  assert.ok(probes.filter((p) => p.at < killedAt).every((p) => p.ok), 'every report succeeded before the kill');
  // The slack: the clients' next reconnect attempt (at most 1 s apart) and the command timeout
  // (500 ms) of a report sent just before.
  assert.ok(lastRefusal <= failedOverAt + 1500,
    `refusals ended ${lastRefusal - failedOverAt} ms after the failover completed`);
  assert.ok(probes.filter((p) => p.at > failedOverAt + 1500).every((p) => p.ok), 'every report after the failover succeeded');

  // A revocation through one replica reaches the sockets on all three.
  const u = await createIdentity(db, 'PASSENGER');
  const sockets = await Promise.all([A, B, C].map((r) => connectAs(r, '/passengers', u.token)));
  const gone = sockets.map(disconnected);
  await db.revokeSession(u.sid);
  const res = await internalPost(B, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId, reason: 'logout' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  for (const reason of await within(Promise.all(gone), 5000, 'the revoked sockets on A, B and C to disconnect')) {
    assert.equal(reason, 'io server disconnect');
  }

  // And one published on the auth-events channel by the auth service, through a surviving node.
  const v = await createIdentity(db, 'DRIVER');
  const vSockets = await Promise.all([A, B, C].map((r) => connectAs(r, '/drivers', v.token)));
  const vGone = vSockets.map(disconnected);
  await db.revokeSession(v.sid);
  const alive = redis.nodes.find((n) => n.child.exitCode === null && n.child.signalCode === null).port;
  await redis.cli(alive, ['PUBLISH', channel, JSON.stringify({ type: 'session.revoked', sid: v.sid, userId: v.userId })]);
  for (const reason of await within(Promise.all(vGone), 5000, 'the sockets revoked through the Redis channel to disconnect on A, B and C')) {
    assert.equal(reason, 'io server disconnect');
  }

  // Every driver is as it was: ONLINE, connected, at its position; none was reported OFFLINE.
  for (const d of drivers) {
    const state = await ask(watcher, 'admin:driver_state', { driverId: d.userId });
    assert.equal(state.ok, true, JSON.stringify(state));
    const why = () => JSON.stringify({ state, changes: changes.seen, logs: dep.replicas.map((r) => r.logs.filter((l) => /lease|presence|offline|reap/i.test(l.message ?? '') || l.level === 'WARN').map((l) => `${r.nodeId} ${l.timestamp} ${l.level} ${l.message} ${l.fields?.error ?? l.error ?? ''}`)) }, null, 1);
    assert.equal(state.driver.status, 'ONLINE', why());
    assert.equal(state.driver.connected, true, d.userId);
    assert.deepEqual([state.driver.lastLocation.lat, state.driver.lastLocation.lng], [d.position.lat, d.position.lng]);
  }
  const nearby = await ask(watcher, 'admin:drivers_nearby', { lat: 40.004, lng: -3.7, radiusM: 5000, limit: 20 });
  assert.equal(nearby.ok, true, JSON.stringify(nearby));
  assert.deepEqual(new Set(nearby.drivers.map((n) => n.driverId)), new Set(drivers.map((d) => d.userId)));
  assert.deepEqual(changes.seen.filter((c) => c.status === 'OFFLINE'), [], 'no driver went OFFLINE');
  for (const d of drivers) d.s.close();
  watcher.close();
});
