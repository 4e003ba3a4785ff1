// No gap after a Redis blip (issue 23, item 3). Pushes flow through one replica to a passenger
// connected to another (the stock socket.io-client, no app code) while Redis restarts:
// - with its data: every accepted push reaches the connected passenger, in order, once, without
//   a reconnect (the replica catches its sockets up from where each stands once its
//   subscription is confirmed back);
// - empty: the passenger cannot be caught up, so it is never left to miss events silently: its
//   transport is closed, the stock client reconnects by itself and is told `socket.recovered ===
//   false`, and `gateway_recovery_gaps_total` counts it;
// - on a Redis Cluster whose master of the passenger's shard fails over: one or the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startCluster, startRedis, internalPost, within, record,
  connectOk, client, redisCli, eventually, RECONNECTING,
} from '../../testkit/harness.js';
import { startRedisCluster } from '../../testkit/redis-cluster.js';

/** Every client a test opened: closed when it ends, passed or not (they reconnect forever). */
const opened = new Set();
const closeAll = () => {
  for (const socket of opened) socket.close();
  opened.clear();
};

/** A stock client (reconnection on, no app code for recovery) greeted on `replica`. */
async function stockPassenger(replica, token) {
  const socket = client(replica.url, '/passengers', { auth: { token }, ...RECONNECTING });
  opened.add(socket);
  const pushes = record(socket, 'promo:offer');
  const drops = [];
  const connects = [];
  socket.on('disconnect', (reason) => drops.push(reason));
  socket.on('connect', () => connects.push({ recovered: socket.recovered }));
  await within(connectOk(socket), 10000, `hello from ${replica.nodeId}`);
  return { socket, pushes, drops, connects };
}

/** `promo:offer { n }` to the passenger through `replica`: the backend's push. */
const push = (replica, userId, n) => internalPost(replica, '/internal/v1/emit', {
  namespace: '/passengers', rooms: [`passenger:${userId}`], event: 'promo:offer', data: { n },
});

/**
 * Pushes `promo:offer { n }` to the passenger through `replica` back to back until `stop()`;
 * `accepted` holds every n answered 2xx (what the backend was told was delivered or kept).
 */
function pushLoop(replica, userId) {
  const accepted = [];
  const refused = new Map();
  let running = true;
  let n = 0;
  const done = (async () => {
    while (running) {
      n += 1;
      const res = await push(replica, userId, n).catch(() => ({ status: 0 }));
      if (res.status >= 200 && res.status < 300) accepted.push(n);
      else {
        const why = `${res.status} ${JSON.stringify(res.body)}`;
        refused.set(why, (refused.get(why) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    accepted,
    refused,
    acceptedSince: (mark) => accepted.filter((x) => x > mark).length,
    last: () => n,
    async stop() {
      running = false;
      await done;
    },
  };
}

async function metric(replica, name, labels) {
  const text = await (await fetch(`${replica.internalUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * Waits until the passenger has every accepted push, or 10 s, and asserts it got each of them,
 * once, in order (what it got so far: the failover case decides what to expect).
 */
async function everyAcceptedOnce(passenger, want) {
  const got = () => passenger.pushes.seen.map((d) => d.n);
  await eventually(() => want.every((n) => got().includes(n)) || passenger.drops.length > 0, 10000, 50,
    `the passenger to receive all ${want.length} accepted pushes`).catch(() => {});
  const seen = got();
  assert.deepEqual(want.filter((n) => !seen.includes(n)), [], `accepted pushes never received (of ${want.length})`);
  assert.deepEqual(seen, [...seen].sort((x, y) => x - y), 'in order');
  assert.equal(new Set(seen).size, seen.length, 'each once');
}

const env = { NODE_TTL_MS: '4000', PRESENCE_GRACE_MS: '2000' };

test('Redis restarted with its data while pushes flow: the connected passenger gets every accepted push, in order, once, without reconnecting', async () => {
  const db = await createDatabase();
  let redis = await startRedis();
  const cluster = await startCluster(db, 3, { redis: redis.url, env });
  const [A, B] = cluster.replicas;
  try {
    const p = await createIdentity(db, 'PASSENGER');
    const passenger = await stockPassenger(B, p.token);
    const pushes = pushLoop(A, p.userId);
    await eventually(() => pushes.accepted.length >= 20, 10000, 50, '20 pushes accepted before the restart');

    const mark = B.logs.length;
    // A clean restart: what Redis acknowledged is on disk when it stops.
    await redisCli(['SHUTDOWN', 'SAVE'], redis.url).catch(() => {});
    await redis.stop();
    const before = pushes.last();
    redis = await startRedis(redis.port, { dir: redis.dir });
    await eventually(() => pushes.acceptedSince(before) >= 60, 20000, 50, '60 pushes accepted after the restart');
    await pushes.stop();

    await everyAcceptedOnce(passenger, pushes.accepted);
    assert.deepEqual(passenger.drops, [], 'the passenger was never disconnected');
    await B.waitForLog((e) => e.message === 'sockets caught up after a hole in the recovery feed'
      && e.feed_back === true, 10000, mark);
  } finally {
    closeAll();
    await cluster.stop();
    await redis.stop();
    await db.drop();
  }
});

test('one replica\'s recovery subscription dropped while pushes flow: its connected passenger gets every accepted push, in order, once, without reconnecting', async () => {
  const db = await createDatabase();
  const redis = await startRedis();
  const cluster = await startCluster(db, 3, { redis: redis.url, env });
  const [A, B] = cluster.replicas;
  try {
    const p = await createIdentity(db, 'PASSENGER');
    const passenger = await stockPassenger(B, p.token);
    const pushes = pushLoop(A, p.userId);
    await eventually(() => pushes.accepted.length >= 20, 10000, 50, '20 pushes accepted before the drop');

    // B's recovery listener, by the name its connection gives Redis; Redis itself stays up, so
    // every push is accepted while B reconnects and re-subscribes.
    const named = await B.waitForLog((e) => e.message === 'redis connections named (CLIENT LIST)');
    const line = (await redisCli(['CLIENT', 'LIST'], redis.url)).split('\n').find((l) => l.includes(` name=${named.recovery} `));
    assert.ok(line, `B's recovery connection (${named.recovery}) in CLIENT LIST`);
    const mark = B.logs.length;
    const before = pushes.last();
    await redisCli(['CLIENT', 'KILL', 'ID', /id=(\d+)/.exec(line)[1]], redis.url);
    await B.waitForLog((e) => e.message === 'sockets caught up after a hole in the recovery feed' && e.feed_back === true,
      10000, mark);
    await eventually(() => pushes.acceptedSince(before) >= 100, 20000, 50, '100 pushes accepted after the drop');
    await pushes.stop();

    await everyAcceptedOnce(passenger, pushes.accepted);
    assert.deepEqual(passenger.drops, [], 'the passenger was never disconnected');
  } finally {
    closeAll();
    await cluster.stop();
    await redis.stop();
    await db.drop();
  }
});

test('Redis restarted empty: the connected passenger reconnects by itself, socket.recovered is false, and the gap is counted', async () => {
  const db = await createDatabase();
  let redis = await startRedis();
  const cluster = await startCluster(db, 3, { redis: redis.url, env });
  const [A, B] = cluster.replicas;
  try {
    const p = await createIdentity(db, 'PASSENGER');
    const passenger = await stockPassenger(B, p.token);
    const first = await push(A, p.userId, 1);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await within(passenger.pushes.until((d) => d.n === 1), 5000, 'the push before the restart');

    await redis.stop();
    const dropped = new Promise((resolve) => passenger.socket.once('disconnect', resolve));
    const back = new Promise((resolve) => passenger.socket.io.once('reconnect', resolve));
    redis = await startRedis(redis.port);
    assert.equal(await within(dropped, 15000, 'the passenger\'s transport to close once Redis is back empty'),
      'transport close');
    await within(back, 15000, 'the stock client to reconnect by itself');
    await eventually(() => passenger.connects.length === 2, 5000, 50, 'the second connect event');
    assert.equal(passenger.connects[1].recovered, false, 'told it did not recover: refetch');
    assert.ok(await metric(B, 'gateway_recovery_gaps_total', ['namespace="passengers"', 'reason="not_kept"']) >= 1,
      'gateway_recovery_gaps_total counts it');

    await eventually(async () => (await push(A, p.userId, 2)).status === 200, 10000, 200,
      'a push accepted after the restart');
    await within(passenger.pushes.until((d) => d.n === 2), 5000, 'a push after the reconnect');
  } finally {
    closeAll();
    await cluster.stop();
    await redis.stop();
    await db.drop();
  }
});

test('a Redis Cluster master of the passenger\'s shard fails over while pushes flow: every accepted push arrives, or the client is told it did not recover', async (t) => {
  const db = await createDatabase();
  const redis = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 2000 });
  const cluster = await startCluster(db, 3, { redis: redis.url, env });
  const [A, B] = cluster.replicas;
  try {
    const p = await createIdentity(db, 'PASSENGER');
    const passenger = await stockPassenger(B, p.token);
    const pushes = pushLoop(A, p.userId);
    await eventually(() => pushes.accepted.length >= 20, 10000, 50, '20 pushes accepted before the failover');

    // The master holding the passenger's recovery stream (and its shard channel).
    let victim;
    for (const port of await redis.masters()) {
      const found = await redis.cli(port, ['--scan', '--pattern', `${cluster.prefix}:*:recovery:passenger:${p.userId}`]);
      if (found) victim = port;
    }
    assert.ok(victim, 'the master of the passenger\'s stream');
    // Writes keep flowing: online and under 64 KiB behind (what it lacks, the failover may lose).
    await redis.replicated(victim, { behind: 65535 });
    const before = pushes.last();
    redis.nodes.find((n) => n.port === victim).child.kill('SIGKILL');
    await redis.failedOver(victim);
    await eventually(() => pushes.acceptedSince(before) >= 60, 30000, 50, '60 pushes accepted after the failover')
      .catch((e) => { throw new Error(`${e.message}; refused: ${JSON.stringify([...pushes.refused])}`); });
    await pushes.stop();

    const want = pushes.accepted;
    const got = () => passenger.pushes.seen.map((d) => d.n);
    await eventually(() => want.every((n) => got().includes(n)) || passenger.connects.length > 1, 10000, 50,
      'every accepted push, or a reconnect').catch(() => {});
    const seen = got();
    assert.equal(new Set(seen).size, seen.length, 'each once');
    if (passenger.drops.length === 0) {
      await everyAcceptedOnce(passenger, want);
      t.diagnostic(`all ${want.length} accepted pushes delivered across the failover`);
    } else {
      assert.deepEqual(passenger.drops, ['transport close'], 'closed with a reason the client reconnects from');
      await eventually(() => passenger.connects.length === 2, 10000, 50, 'the stock client to reconnect');
      assert.equal(passenger.connects[1].recovered, false, 'told it did not recover');
      t.diagnostic('the failover lost kept entries: the passenger was told to refetch');
    }
  } finally {
    closeAll();
    await cluster.stop();
    await redis.stop();
    await db.drop();
  }
});
