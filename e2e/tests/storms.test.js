// Connect and reconnect storms (issue "faults", item 2): 2,000 TCP connects at once all complete
// without a SYN retransmit (the accept queue is LISTEN_BACKLOG, 4096); past
// MAX_PENDING_HANDSHAKES a CONNECT is refused at once with `Service unavailable` instead of
// queueing behind a database that cannot keep up; and a storm of handshakes never takes more
// PostgreSQL connections than the replica's pool. A throwaway PostgreSQL the test can freeze.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  createDatabase, createIdentity, startPostgres, startReplica, connectAs, connectError, client,
  eventually, within,
} from '../../testkit/harness.js';

/** The replica's PostgreSQL pool (gateway/src/store/postgres.rs). */
const POOL_SIZE = 16;

let server;
let db;

before(async () => {
  server = await startPostgres();
  db = await createDatabase({ base: server.url });
});

after(async () => {
  server?.thaw();
  await db?.drop().catch(() => {});
  await server?.remove();
});

test('2,000 TCP connects at once: each completes without waiting for a SYN retransmit', async () => {
  const replica = await startReplica({ db, redis: null });
  const sockets = [];
  try {
    const { hostname, port } = new URL(replica.url);
    const times = await Promise.all(Array.from({ length: 2000 }, () => new Promise((resolve, reject) => {
      const started = process.hrtime.bigint();
      const socket = net.connect({ host: hostname, port: Number(port) });
      sockets.push(socket);
      socket.once('connect', () => resolve(Number(process.hrtime.bigint() - started) / 1e6));
      socket.once('error', reject);
    })));
    const slowest = Math.max(...times);
    assert.ok(slowest < 1000, `the slowest connect took ${slowest.toFixed(0)} ms (a dropped SYN waits 1 s)`);
  } finally {
    for (const s of sockets) s.destroy();
    await replica.stop();
  }
});

test('past MAX_PENDING_HANDSHAKES a CONNECT is refused at once; the admitted ones are bounded by the pool wait', async () => {
  const replica = await startReplica({ db, redis: null, env: { MAX_PENDING_HANDSHAKES: '4', HANDSHAKE_RATE_PER_USER: '0' } });
  try {
    const ids = await Promise.all(Array.from({ length: 20 }, () => createIdentity(db, 'DRIVER')));
    server.freeze();
    const outcomes = await Promise.all(ids.map(async ({ token }) => {
      const started = Date.now();
      const message = await within(connectError(client(replica.url, '/drivers', { auth: { token } })), 10000, 'connect_error during the storm');
      return { message, ms: Date.now() - started };
    }));
    server.thaw();
    for (const o of outcomes) assert.equal(o.message, 'Service unavailable');
    const shed = outcomes.filter((o) => o.ms < 1000);
    assert.ok(shed.length >= 16, `at least 16 of 20 refused within a second: ${outcomes.map((o) => o.ms).join(', ')}`);
    assert.ok(outcomes.every((o) => o.ms < 5000), `none waited past the pool's bounds: ${outcomes.map((o) => o.ms).join(', ')}`);
    const metrics = await (await fetch(`${replica.internalUrl}/metrics`)).text();
    const overloaded = Number(metrics.match(/^gateway_handshakes_total\{namespace="drivers",outcome="overloaded"\} (\d+)/m)?.[1] ?? 0);
    assert.ok(overloaded >= 16, `counted as overloaded: ${overloaded}`);
    // Once the database answers, handshakes succeed again.
    const back = await eventually(() => connectAs(replica, '/drivers', ids[0].token).catch(() => null), 10000, 200, 'a handshake after the thaw');
    back.close();
  } finally {
    server.thaw();
    await replica.stop();
  }
});

test('400 handshakes at once: every client is answered and PostgreSQL never sees more than the pool', async () => {
  const replica = await startReplica({ db, redis: null, env: { HANDSHAKE_RATE_PER_USER: '0' } });
  try {
    const ids = await Promise.all(Array.from({ length: 400 }, () => createIdentity(db, 'PASSENGER')));
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await db.pool.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", [db.name]);
        peak = Math.max(peak, rows[0].n);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const sockets = await Promise.all(ids.map(({ token }) => connectAs(replica, '/passengers', token, { timeout: 20000 })));
    sampling = false;
    await sampler;
    assert.equal(sockets.filter((s) => s.connected).length, 400);
    // The test's own pool holds at most 2 of them.
    assert.ok(peak <= POOL_SIZE + 2, `peak connections to the database: ${peak}`);
    for (const s of sockets) s.close();
  } finally {
    await replica.stop();
  }
});
