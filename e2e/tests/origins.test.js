// CORS_ORIGINS (issue "faults", item 6): with a list, a Socket.IO request from another browser
// origin is refused with 403 — polling requests and WebSocket upgrades alike (CORS alone does not
// cover WebSockets) — while listed origins and clients that send no Origin (native apps) connect.
// Without the setting any origin is allowed and mirrored, as the connection guide's server does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  createDatabase, createIdentity, startReplica, connectAs, within,
} from '../../testkit/harness.js';

const ALLOWED = 'https://ops.example.com';
const OTHER = 'https://evil.example.com';

/** Opens a raw Engine.IO WebSocket with this Origin: 'open', or the refusal's status code. */
function upgrade(replica, origin) {
  const url = `${replica.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`;
  const ws = new WebSocket(url, origin ? { origin } : {});
  return within(new Promise((resolve) => {
    ws.once('open', () => { ws.close(); resolve('open'); });
    ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode); ws.terminate(); });
    ws.once('error', () => {});
  }), 5000, `the WebSocket upgrade from ${origin ?? 'no origin'}`);
}

const poll = (replica, origin) =>
  fetch(`${replica.url}/socket.io/?EIO=4&transport=polling`, { headers: origin ? { Origin: origin } : {} });

test('CORS_ORIGINS: listed origins and native apps connect; any other origin gets 403, WebSocket upgrades included', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null, env: { CORS_ORIGINS: `${ALLOWED}, http://localhost:5173` } });
  try {
    const allowed = await poll(replica, ALLOWED);
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get('access-control-allow-origin'), ALLOWED);
    assert.equal(allowed.headers.get('access-control-allow-credentials'), 'true');

    const refused = await poll(replica, OTHER);
    assert.equal(refused.status, 403);
    assert.deepEqual(await refused.json(), { error: { code: 'FORBIDDEN', message: 'origin not allowed' } });

    assert.equal(await upgrade(replica, OTHER), 403, 'a WebSocket from another origin is refused');
    assert.equal(await upgrade(replica, ALLOWED), 'open');
    assert.equal(await upgrade(replica, undefined), 'open', 'a native app sends no Origin');

    const id = await createIdentity(db, 'ADMIN');
    for (const transports of [['websocket'], ['polling']]) {
      const console = await connectAs(replica, '/admin', id.token, { transports, extraHeaders: { Origin: ALLOWED } });
      console.close();
      const app = await connectAs(replica, '/admin', id.token, { transports });
      app.close();
    }
  } finally {
    await replica.stop();
    await db.drop();
  }
});

test('without CORS_ORIGINS any origin is allowed and mirrored', async () => {
  const db = await createDatabase();
  const replica = await startReplica({ db, redis: null });
  try {
    const res = await poll(replica, OTHER);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), OTHER);
    assert.equal(await upgrade(replica, OTHER), 'open');
  } finally {
    await replica.stop();
    await db.drop();
  }
});
