// A Redis restart under running replicas, and the SIGTERM drain.
import { test } from 'node:test';
import { execFile } from 'node:child_process';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startCluster, startReplica, startRedis, connectAs, disconnected,
  internalPost, redisCli, freePort, within, RECONNECTING, reconnected,
} from '../../testkit/harness.js';

test('after a Redis restart, revocations still reach every replica', async () => {
  const db = await createDatabase();
  let redis = await startRedis();
  const cluster = await startCluster(db, 3, { redis: redis.url });
  const [A, B, C] = cluster.replicas;
  try {
    const u = await createIdentity(db, 'DRIVER');
    // Reconnecting as the stock client does: Redis comes back empty, so what was kept for them is
    // gone and the gateway closes their transports (redis-blip.test.js).
    const onA = await connectAs(A, '/drivers', u.token, { transports: ['websocket'], ...RECONNECTING });
    const onC = await connectAs(C, '/drivers', u.token, { transports: ['polling'], ...RECONNECTING });
    const back = [onA, onC].map(reconnected);

    const marks = cluster.replicas.map((r) => r.logs.length);
    await redis.stop();
    redis = await startRedis(redis.port);
    await Promise.all(
      cluster.replicas.flatMap((r, i) => [
        r.waitForLog((e) => e.message === 'redis reconnected, adapter channels restored', 30000, marks[i]),
        r.waitForLog((e) => e.message === 'auth-events subscription restored', 30000, marks[i]),
      ]),
    );
    for (const r of cluster.replicas) {
      const ready = await fetch(`${r.internalUrl}/readyz`);
      assert.equal(ready.status, 200, `${r.nodeId} ready again`);
    }
    assert.deepEqual(await within(Promise.all(back), 15000, 'both clients to reconnect after Redis came back empty'),
      [false, false], 'reconnected by themselves, told they did not recover');

    const gone = [disconnected(onA), disconnected(onC)];
    await db.revokeSession(u.sid);
    const res = await internalPost(B, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId });
    assert.equal(res.status, 200);
    assert.equal(res.body.replicas, 3);
    for (const reason of await Promise.all(gone)) assert.equal(reason, 'io server disconnect');

    // the channel path too
    const v = await createIdentity(db, 'PASSENGER');
    const onB = await connectAs(B, '/passengers', v.token);
    const goneB = disconnected(onB);
    const heard = await redisCli(['PUBLISH', `${cluster.prefix}:auth-events`, JSON.stringify({ type: 'session.revoked', sid: v.sid, userId: v.userId })], redis.url);
    assert.equal(Number(heard), 3);
    assert.equal(await goneB, 'io server disconnect');
  } finally {
    await cluster.stop();
    await redis.stop();
    await db.drop();
  }
});

test('while Redis is down, a revocation still disconnects local sockets and answers 503', async () => {
  const db = await createDatabase();
  let redis = await startRedis();
  const cluster = await startCluster(db, 1, { redis: redis.url });
  const [A] = cluster.replicas;
  try {
    const u = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(A, '/drivers', u.token);
    const gone = disconnected(socket);
    const reporter = await connectAs(A, '/drivers', (await createIdentity(db, 'DRIVER')).token);
    await redis.stop();
    const res = await internalPost(A, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId });
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'UNAVAILABLE');
    assert.equal(await gone, 'io server disconnect');
    // Position reports cannot be stored: each is answered UNAVAILABLE, none is dropped unanswered.
    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) =>
      reporter.timeout(10000).emitWithAck('driver:location', { lat: 1, lng: 1 + i / 1e3 })));
    for (const a of answers) assert.equal(a.error?.code, 'UNAVAILABLE', JSON.stringify(a));
    assert.equal(reporter.connected, true);
    reporter.close();
    // Every replica shares this Redis: it stays in rotation (docs/operations.md) and says why.
    const ready = await fetch(`${A.internalUrl}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((await ready.json()).checks.redis.ok, false);
  } finally {
    await cluster.stop();
    await redis.stop();
    await db.drop();
  }
});

test('SIGTERM drains: clients are disconnected, reconnect to another replica, and the process exits 0 in time', async () => {
  const db = await createDatabase();
  const cluster = await startCluster(db, 2);
  const [A, B] = cluster.replicas;
  try {
    const u = await createIdentity(db, 'DRIVER');
    const retry = { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 50 };
    const ws = await connectAs(A, '/drivers', u.token, { transports: ['websocket'], ...retry });
    const polling = await connectAs(A, '/drivers', u.token, { transports: ['polling'], ...retry });
    const reasons = Promise.all([disconnected(ws), disconnected(polling)]);
    const retried = Promise.all([ws, polling].map((s) => new Promise((r) => s.io.once('reconnect_attempt', r))));
    const started = Date.now();
    A.child.kill('SIGTERM');
    // Not "io server disconnect": that reason stops socket.io-client from reconnecting.
    for (const reason of await reasons) assert.match(reason, /^transport (close|error)$/);
    await retried;
    ws.close();
    polling.close();
    const { code } = await within(A.exited, 20000, 'the drained replica to exit');
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 5000, 'exited within SHUTDOWN_GRACE_MS');
    assert.ok(A.logs.some((e) => e.message === 'drained'));
    const healthz = await fetch(`${A.url}/healthz`).catch(() => null);
    assert.equal(healthz, null, 'the stopped replica accepts nothing');

    const again = await connectAs(B, '/drivers', u.token);
    assert.equal(again.connected, true);
    again.close();
  } finally {
    await cluster.stop();
    await db.drop();
  }
});

test('a replica started while Redis is down stays not-ready, then serves once Redis is up', async () => {
  const db = await createDatabase();
  const port = await freePort();
  const replica = await startReplica({ db, redis: `redis://127.0.0.1:${port}`, waitReady: false });
  let redis;
  try {
    const healthz = await fetch(`${replica.url}/healthz`);
    assert.equal(healthz.status, 503, 'not accepting connections yet');
    const ready = await fetch(`${replica.internalUrl}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal((await ready.json()).checks.redis.ok, false);
    assert.equal((await fetch(`${replica.internalUrl}/livez`)).status, 200, 'alive while waiting');

    redis = await startRedis(port);
    await replica.waitReadyz({ ms: 30000 });
    assert.equal((await fetch(`${replica.internalUrl}/readyz`)).status, 200);
    const u = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(replica, '/drivers', u.token);
    const gone = disconnected(socket);
    await redisCli(['PUBLISH', `${replica.prefix}:auth-events`, JSON.stringify({ type: 'session.revoked', sid: u.sid, userId: u.userId })], redis.url);
    assert.equal(await gone, 'io server disconnect');
  } finally {
    await replica.stop();
    await redis?.stop();
    await db.drop();
  }
});

test('the drain spreads its disconnects over DRAIN_SPREAD_MS; every client may reconnect', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null, env: { DRAIN_SPREAD_MS: '1500', SHUTDOWN_GRACE_MS: '5000' } });
  const sockets = [];
  try {
    for (let i = 0; i < 20; i++) {
      const u = await createIdentity(db, 'DRIVER');
      sockets.push(await connectAs(replica, '/drivers', u.token, { transports: ['websocket'] }));
    }
    const started = Date.now();
    const gone = sockets.map((s) => disconnected(s).then((reason) => ({ reason, at: Date.now() - started })));
    replica.child.kill('SIGTERM');
    const all = await Promise.all(gone);
    for (const { reason } of all) assert.match(reason, /^transport (close|error)$/, 'a reason clients reconnect from');
    const times = all.map((g) => g.at).sort((a, b) => a - b);
    assert.ok(times[times.length - 1] - times[0] >= 1000, `spread over the window: ${times.join(',')} ms`);
    assert.ok(times[times.length - 1] < 3000, `all gone within the window: ${times.join(',')} ms`);
    const { code } = await within(replica.exited, 20000, 'the drained replica to exit');
    assert.equal(code, 0);
  } finally {
    for (const s of sockets) s.close();
    await replica.stop();
    await db.drop();
  }
});

test('LISTEN_BACKLOG sets the public listener\'s accept queue', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null, env: { LISTEN_BACKLOG: '777' } });
  try {
    const port = new URL(replica.url).port;
    // For a listening socket, ss shows the accept queue's size as Send-Q.
    const { stdout } = await new Promise((resolve, reject) => {
      execFile('ss', ['-Hltn', `sport = :${port}`], (error, out) => (error ? reject(error) : resolve({ stdout: out })));
    });
    const sendQ = stdout.trim().split(/\s+/)[2];
    assert.equal(sendQ, '777', `ss: ${stdout}`);
  } finally {
    await replica.stop();
    await db.drop();
  }
});
