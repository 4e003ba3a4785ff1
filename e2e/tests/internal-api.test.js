// The internal API on a single replica (no REDIS_URL: in-memory adapter): bearer auth, JSON
// errors for bad input, probes, and revocation applied locally.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startReplica, connectAs, disconnected, record, internalPost, sign,
} from '../../testkit/harness.js';

let db;
let replica;
const USER = '3f1c0f6e-8d2a-4b53-9d7e-0c2f6a1b9e11';

before(async () => {
  db = await createDatabase();
  replica = await startReplica({ db, redis: null });
});

after(async () => {
  await replica?.stop();
  await db?.drop();
});

const revoke = (sid, body, opts) => internalPost(replica, `/internal/v1/sessions/${encodeURIComponent(sid)}/revoke`, body, opts);

test('a missing or wrong bearer token is 401 with a JSON error', async () => {
  for (const token of [null, 'wrong', '']) {
    const res = await revoke('s', { userId: USER }, { token });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, { error: { code: 'UNAUTHORIZED', message: 'missing or wrong bearer token' } });
  }
});

test('malformed bodies are 400 naming the problem', async () => {
  const cases = [
    ['{', /invalid JSON/],
    ['[]', /invalid JSON/],
    ['{}', /userId/],
    ['{"userId": 5}', /invalid JSON/],
    ['{"userId": "not-a-uuid"}', /userId must be a UUID/],
    [JSON.stringify({ userId: USER, reason: 'x'.repeat(300) }), /reason/],
    [JSON.stringify({ userId: USER, reason: 7 }), /invalid JSON/],
  ];
  for (const [raw, message] of cases) {
    const res = await revoke('s', null, { raw });
    assert.equal(res.status, 400, raw);
    assert.equal(res.body.error.code, 'INVALID_PAYLOAD');
    assert.match(res.body.error.message, message);
  }
  const refresh = await internalPost(replica, '/internal/v1/sessions/s/refresh', { userId: USER });
  assert.equal(refresh.status, 400);
  assert.match(refresh.body.error.message, /newSid/);
});

test('a body over 64 KB is 413 on every endpoint', async () => {
  const big = 'x'.repeat(70 * 1024);
  for (const [pathname, body] of [
    ['/internal/v1/sessions/s/revoke', { userId: USER, reason: big }],
    ['/internal/v1/trips/t1/events', { type: 'REQUESTED', passengerId: USER, data: big }],
    [`/internal/v1/drivers/${USER}/offers`, { offerId: 'o', tripId: 't', expiresInMs: 100, data: big }],
    ['/internal/v1/emit', { namespace: '/drivers', rooms: [`driver:${USER}`], event: 'x', data: big }],
  ]) {
    const res = await internalPost(replica, pathname, body);
    assert.equal(res.status, 413, pathname);
    assert.equal(res.body.error.code, 'PAYLOAD_TOO_LARGE');
  }
});

test('unknown endpoints are 404 with a JSON error', async () => {
  const res = await internalPost(replica, '/internal/v1/nothing', {});
  assert.equal(res.status, 404);
  assert.equal(res.body.error.code, 'NOT_FOUND');
});

test('probes answer', async () => {
  assert.equal((await fetch(`${replica.internalUrl}/livez`)).status, 200);
  const ready = await fetch(`${replica.internalUrl}/readyz`);
  assert.equal(ready.status, 200);
  const body = await ready.json();
  assert.equal(body.checks.database.ok, true);
  assert.equal(body.checks.redis, null, 'no Redis in single-replica mode');
  assert.equal((await fetch(`${replica.url}/healthz`)).status, 200);
});

test('on a single replica a revocation disconnects the session and tells the other session', async () => {
  const u = await createIdentity(db, 'DRIVER');
  const otherSid = await db.session(u.userId);
  const doomed = await connectAs(replica, '/drivers', u.token);
  const other = await connectAs(replica, '/drivers', sign({ sub: u.userId, sid: otherSid }), { transports: ['polling'] });
  const notices = record(other, 'auth:session_revoked');
  const gone = disconnected(doomed);
  await db.revokeSession(u.sid);
  const res = await revoke(u.sid, { userId: u.userId.toUpperCase(), reason: 'password_changed' });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { ok: true, replicas: 1, disconnected: 1, notified: 1 });
  assert.equal(await gone, 'io server disconnect');
  const notice = await notices.until();
  assert.equal(notice.sid, u.sid);
  assert.equal(notice.reason, 'password_changed');
  assert.equal(other.connected, true);
  other.close();
});
