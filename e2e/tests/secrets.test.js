// Secrets never reach the logs (issue "faults", item 6): two replicas on Redis at RUST_LOG=trace,
// every library target included, go through what carries a secret (handshakes with the token in
// the auth payload and in the Authorization header, over WebSocket and polling; a refused token;
// an in-band refresh; the internal API's bearer token; a revocation across replicas), then every
// line either process wrote is searched for each secret and for the signature of each token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startCluster, connectAs, connectError, client, ask, sign,
  internalPost, disconnected, JWT_SECRET, INTERNAL_TOKEN,
} from '../../testkit/harness.js';

test('at RUST_LOG=trace no line of any target carries a token, the JWT key or the internal token', async () => {
  const db = await createDatabase();
  const cluster = await startCluster(db, 2, { env: { RUST_LOG: 'trace' } });
  const [A, B] = cluster.replicas;
  const tokens = [];
  try {
    const driver = await createIdentity(db, 'DRIVER');
    const passenger = await createIdentity(db, 'PASSENGER');
    tokens.push(driver.token, passenger.token);
    const overWebSocket = await connectAs(A, '/drivers', driver.token, { transports: ['websocket'] });
    const overPolling = await connectAs(B, '/passengers', passenger.token, { transports: ['polling'] });
    const byHeader = await connectAs(A, '/passengers', '', {
      auth: {}, transports: ['polling'], extraHeaders: { Authorization: `Bearer ${passenger.token}` },
    });
    const forged = sign({ sub: driver.userId, sid: driver.sid }, { secret: 'not-the-key' });
    tokens.push(forged);
    const refused = await connectError(client(B.url, '/drivers', { auth: { token: forged } }));
    assert.equal(refused, 'Invalid token');

    const renewed = sign({ sub: driver.userId, sid: driver.sid, exp: Math.floor(Date.now() / 1000) + 7200 });
    tokens.push(renewed);
    assert.equal((await ask(overWebSocket, 'auth:refresh', { token: renewed })).ok, true);
    assert.equal((await ask(overWebSocket, 'driver:status', { status: 'ONLINE' })).ok, true);

    const gone = disconnected(overPolling);
    await db.revokeSession(passenger.sid);
    const res = await internalPost(A, `/internal/v1/sessions/${passenger.sid}/revoke`, { userId: passenger.userId });
    assert.equal(res.status, 200);
    await gone;
    overWebSocket.close();
    byHeader.close();
  } finally {
    await cluster.stop();
    await db.drop();
  }

  const lines = cluster.replicas.flatMap((r) => r.logs.map((entry) => JSON.stringify(entry)));
  assert.ok(lines.length > 100, `the run logged (${lines.length} lines)`);
  const levels = new Set(cluster.replicas.flatMap((r) => r.logs.map((e) => e.level)));
  assert.ok(levels.has('DEBUG') || levels.has('TRACE'), `below-info lines were written: ${[...levels]}`);
  const secrets = [
    ['the JWT key', JWT_SECRET],
    ['the internal API token', INTERNAL_TOKEN],
    ...tokens.flatMap((t, i) => [[`token ${i}`, t], [`token ${i}'s signature`, t.split('.')[2]]]),
  ];
  for (const [what, secret] of secrets) {
    const leaked = lines.find((l) => l.includes(secret));
    assert.equal(leaked, undefined, `${what} appears in a log line: ${leaked?.slice(0, 300)}`);
  }
});
