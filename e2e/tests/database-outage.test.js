// PostgreSQL frozen (SIGSTOP) and down, under a running replica (faults issue, item 5): new
// handshakes are refused with `Service unavailable` within about a second instead of hanging,
// connected sockets keep working, and recovery needs nobody. A throwaway PostgreSQL server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startPostgres, startReplica, connectAs, connectError, client, ask,
  eventually, within,
} from '../../testkit/harness.js';

/** The identity query's bound (gateway/src/store/postgres.rs) and some scheduling slack. */
const REFUSED_WITHIN_MS = 1800;

let server;
let db;
let replica;

before(async () => {
  server = await startPostgres();
  db = await createDatabase({ base: server.url });
  // Re-validation is exercised too: a round while the database is frozen is skipped, never a
  // reason to disconnect.
  // Retries below would trip the per-user handshake rate, which is not under test here.
  replica = await startReplica({ db, redis: null, env: { SESSION_REVALIDATE_MS: '500', HANDSHAKE_RATE_PER_USER: '0' } });
});

after(async () => {
  await replica?.stop();
  server?.thaw();
  await db?.drop().catch(() => {});
  await server?.remove();
});

async function refusedQuickly(token) {
  const started = Date.now();
  const message = await within(connectError(client(replica.url, '/drivers', { auth: { token } })), 10000, 'connect_error');
  return { message, ms: Date.now() - started };
}

/** Resolves with a greeted socket once a handshake of `token` succeeds again. */
function reconnected(nsp, token, what) {
  return eventually(async () => {
    try {
      return await connectAs(replica, nsp, token);
    } catch {
      return null;
    }
  }, 10000, 200, what);
}

async function metric(name, labels) {
  const text = await (await fetch(`${replica.internalUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('a frozen database: handshakes refused within a second, sockets keep working, then recovery', async () => {
  const connected = await createIdentity(db, 'DRIVER');
  const waiting = await createIdentity(db, 'DRIVER');
  const socket = await connectAs(replica, '/drivers', connected.token);
  const skippedBefore = await metric('gateway_session_revalidations_total', 'outcome="skipped"');

  server.freeze();
  try {
    const refused = await refusedQuickly(waiting.token);
    assert.equal(refused.message, 'Service unavailable');
    assert.ok(refused.ms <= REFUSED_WITHIN_MS, `refused after ${refused.ms} ms`);
    const again = await refusedQuickly(waiting.token);
    assert.equal(again.message, 'Service unavailable');
    assert.ok(again.ms <= REFUSED_WITHIN_MS, `refused again after ${again.ms} ms`);

    const ack = await ask(socket, 'driver:status', { status: 'ONLINE' });
    assert.equal(ack.ok, true, 'a connected socket needs no database');
    const ready = await fetch(`${replica.internalUrl}/readyz`);
    assert.equal(ready.status, 503, 'not ready while the database does not answer');
    await eventually(async () => (await metric('gateway_session_revalidations_total', 'outcome="skipped"')) > skippedBefore,
      10000, 100, 'a skipped re-validation round');
    assert.equal(socket.connected, true, 'a skipped re-validation disconnects nobody');
  } finally {
    server.thaw();
  }

  const greeted = await reconnected('/drivers', waiting.token, 'a handshake to succeed after the thaw');
  assert.equal(greeted.connected, true, 'handshakes succeed again once it answers');
  greeted.close();
  socket.close();
});

test('a stopped database: refused at once, recovered when it returns', async () => {
  const u = await createIdentity(db, 'PASSENGER');
  const socket = await connectAs(replica, '/passengers', u.token);
  await server.stop();
  try {
    const refused = await refusedQuickly(u.token);
    assert.equal(refused.message, 'Service unavailable');
    assert.ok(refused.ms <= REFUSED_WITHIN_MS, `refused after ${refused.ms} ms`);
    assert.equal(socket.connected, true);
  } finally {
    await server.start();
  }
  const greeted = await reconnected('/passengers', u.token, 'a handshake to succeed after the restart');
  assert.equal(greeted.connected, true);
  greeted.close();
  socket.close();
});
