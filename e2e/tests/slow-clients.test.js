// Slow and greedy clients (issue "faults", item 3): a request head that never finishes and an
// idle keep-alive connection are closed after HEADER_READ_TIMEOUT_MS; a head over 16 KB is
// refused with 431; past MAX_CONNECTIONS a new connection is closed at once while the probes
// keep answering, and a WebSocket holds its place until it closes. Raw TCP clients play the
// attacker; the official client plays the app that must keep working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  createDatabase, createIdentity, startReplica, connectAs, ask, within, eventually,
} from '../../testkit/harness.js';

/** A raw TCP connection to the replica's public listener, with what it received and when it closed. */
async function rawConnection(replica) {
  const { hostname, port } = new URL(replica.url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {}); // a reset is one way of being closed
  const opened = Date.now();
  let received = '';
  socket.on('data', (chunk) => { received += chunk.toString('latin1'); });
  const closed = new Promise((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
  return { socket, closed, received: () => received };
}

const HALF_A_HEAD = 'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: gateway\r\nUser-Agent: slow';

test('a head that never finishes, and an idle keep-alive connection, are closed after HEADER_READ_TIMEOUT_MS; sockets are not', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null, env: { HEADER_READ_TIMEOUT_MS: '1000' } });
  try {
    const id = await createIdentity(db, 'DRIVER');
    const overWebSocket = await connectAs(replica, '/drivers', id.token, { transports: ['websocket'] });
    const overPolling = await connectAs(replica, '/drivers', id.token, { transports: ['polling'] });

    const slow = await rawConnection(replica);
    slow.socket.write(HALF_A_HEAD);
    const slowMs = await within(slow.closed, 5000, 'the server closing a connection whose head never finished');
    assert.ok(slowMs >= 900 && slowMs < 3000, `closed ${slowMs} ms after it opened`);

    const idle = await rawConnection(replica);
    idle.socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
    await eventually(() => idle.received().includes('\r\n\r\n'), 5000, 20, 'the /healthz answer');
    assert.match(idle.received(), /^HTTP\/1\.1 200/);
    const idleMs = await within(idle.closed, 5000, 'the server closing an idle keep-alive connection');
    assert.ok(idleMs >= 900 && idleMs < 3000, `idle connection closed after ${idleMs} ms`);

    // Connected sockets are past their heads: twice the timeout later they still answer.
    await new Promise((r) => setTimeout(r, 2000));
    for (const s of [overWebSocket, overPolling]) {
      assert.equal(s.connected, true);
      assert.deepEqual(await ask(s, 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });
      s.close();
    }
  } finally {
    await replica.stop();
    await db.drop();
  }
});

test('a request head over 16 KB is refused with 431; the replica keeps serving', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null });
  try {
    const greedy = await rawConnection(replica);
    greedy.socket.write(`GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: gateway\r\nCookie: ${'c'.repeat(20 * 1024)}\r\n\r\n`);
    await within(greedy.closed, 5000, 'the server closing the oversized request');
    assert.match(greedy.received(), /^HTTP\/1\.1 431/);

    // Under the limit, a large but sane head (an 8 KB token header among others) is served.
    const id = await createIdentity(db, 'PASSENGER');
    const s = await connectAs(replica, '/passengers', id.token, { extraHeaders: { 'X-Padding': 'p'.repeat(8 * 1024) } });
    assert.equal(s.connected, true);
    s.close();
  } finally {
    await replica.stop();
    await db.drop();
  }
});

test('past MAX_CONNECTIONS a new connection is closed at once; probes answer; a WebSocket holds its place until it closes', async () => {
  const db = await createDatabase();
  const CAP = 20;
  const replica = await startReplica({ db, redis: null, env: { MAX_CONNECTIONS: String(CAP), HEADER_READ_TIMEOUT_MS: '60000' } });
  const held = [];
  try {
    const id = await createIdentity(db, 'DRIVER');
    const sockets = [];
    for (let i = 0; i < 3; i++) sockets.push(await connectAs(replica, '/drivers', id.token, { transports: ['websocket'] }));
    for (let i = 0; i < CAP - sockets.length; i++) {
      const c = await rawConnection(replica);
      c.socket.write(HALF_A_HEAD);
      held.push(c);
    }

    const refused = await rawConnection(replica);
    const refusedMs = await within(refused.closed, 5000, 'the connection past the cap being closed');
    assert.equal(refused.received(), '', 'closed without an answer');
    assert.ok(refusedMs < 2000, `closed ${refusedMs} ms after it opened`);
    assert.ok(held.every((c) => !c.socket.destroyed), 'the connections under the cap are kept');

    for (const probe of ['/livez', '/readyz']) {
      assert.equal((await fetch(`${replica.internalUrl}${probe}`)).status, 200, `${probe} answers at the cap`);
    }
    const metrics = await (await fetch(`${replica.internalUrl}/metrics`)).text();
    const count = Number(metrics.match(/^gateway_connections_refused_total\{listener="public"\} (\d+)/m)?.[1] ?? 0);
    assert.ok(count >= 1, `counted: ${count}`);

    // The WebSockets keep working at the cap; closing one frees its place for a new one.
    assert.deepEqual(await ask(sockets[0], 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });
    sockets.pop().close();
    const next = await eventually(
      () => connectAs(replica, '/drivers', id.token, { transports: ['websocket'], timeout: 1000 }).catch(() => null),
      10000, 100, 'a WebSocket accepted once another closed',
    );
    sockets.push(next);
    for (const s of sockets) s.close();
  } finally {
    for (const c of held) c.socket.destroy();
    await replica.stop();
    await db.drop();
  }
});
