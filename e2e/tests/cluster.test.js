// Three `gateway serve` processes sharing one Redis (own prefix) and one database: session
// revocation and refresh published on one replica take effect on all of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startCluster, client, connectError, connectAs, disconnected,
  record, internalPost, redisCli, sign, subscribers,
} from '../../testkit/harness.js';

let db;
let cluster;
let A, B, C;

before(async () => {
  db = await createDatabase();
  cluster = await startCluster(db, 3);
  [A, B, C] = cluster.replicas;
});

after(async () => {
  await cluster?.stop();
  await db?.drop();
});

const channel = () => `${cluster.prefix}:auth-events`;

/** A user with a session to revoke (`doomed`) and another session that must survive. */
async function userWithTwoSessions(type) {
  const id = await createIdentity(db, type);
  const otherSid = await db.session(id.userId);
  return { ...id, otherSid, otherToken: sign({ sub: id.userId, sid: otherSid }) };
}

/**
 * Publishes a revocation of a session nobody uses and waits until `socket` hears about it: every
 * notice about earlier events has arrived by then on the same path.
 */
async function barrier(user, notices, publish) {
  const sid = await db.session(user.userId);
  await publish(sid);
  await notices.until((n) => n.sid === sid);
}

test('a revocation sent to replica B disconnects the session on A (websocket) and C (polling)', async () => {
  const u = await userWithTwoSessions('DRIVER');
  const onA = await connectAs(A, '/drivers', u.token, { transports: ['websocket'] });
  const onC = await connectAs(C, '/drivers', u.token, { transports: ['polling'] });
  const other = await connectAs(C, '/drivers', u.otherToken, { transports: ['websocket'] });
  const bystander = await connectAs(A, '/drivers', (await createIdentity(db, 'DRIVER')).token);
  const notices = record(other, 'auth:session_revoked');
  const bystanderNotices = record(bystander, 'auth:session_revoked');
  const goneA = disconnected(onA);
  const goneC = disconnected(onC);

  await db.revokeSession(u.sid);
  const res = await internalPost(B, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId, reason: 'logout' });
  assert.equal(res.status, 200);
  assert.equal(res.body.ok, true);

  assert.equal(await goneA, 'io server disconnect');
  assert.equal(await goneC, 'io server disconnect');
  const notice = await notices.until((n) => n.sid === u.sid);
  assert.equal(notice.reason, 'logout');
  assert.ok(!Number.isNaN(Date.parse(notice.at)), 'at is a timestamp');

  await barrier(u, notices, (sid) => internalPost(B, `/internal/v1/sessions/${sid}/revoke`, { userId: u.userId }));
  assert.equal(notices.seen.filter((n) => n.sid === u.sid).length, 1, 'exactly one notice');
  assert.equal(other.connected, true, 'the other session stays connected');
  assert.equal(bystanderNotices.seen.length, 0, 'other users hear nothing');

  assert.equal(await connectError(client(A.url, '/drivers', { auth: { token: u.token } })), 'Invalid session');
  other.close();
  bystander.close();
});

test('the same through the Redis channel: one notice, though every replica hears it', async () => {
  const u = await userWithTwoSessions('DRIVER');
  const sockets = [
    await connectAs(A, '/drivers', u.token, { transports: ['websocket'] }),
    await connectAs(B, '/drivers', u.token, { transports: ['polling'] }),
    await connectAs(C, '/drivers', u.token),
  ];
  const gone = sockets.map(disconnected);
  const other = await connectAs(A, '/drivers', u.otherToken);
  const notices = record(other, 'auth:session_revoked');
  const at = new Date().toISOString();
  const publish = (sid, extra = {}) =>
    redisCli(['PUBLISH', channel(), JSON.stringify({ type: 'session.revoked', sid, userId: u.userId, reason: 'admin', at, ...extra })]);

  await db.revokeSession(u.sid);
  assert.equal(await subscribers(channel()), 3, 'all three replicas subscribe to the channel');
  await publish(u.sid);
  for (const reason of await Promise.all(gone)) assert.equal(reason, 'io server disconnect');
  assert.deepEqual(await notices.until((n) => n.sid === u.sid), { sid: u.sid, reason: 'admin', at });

  await barrier(u, notices, (sid) => publish(sid));
  assert.equal(notices.seen.filter((n) => n.sid === u.sid).length, 1);
  assert.equal(other.connected, true);
  assert.equal(await connectError(client(B.url, '/drivers', { auth: { token: u.token } })), 'Invalid session');
  other.close();
});

test('a malformed message on the channel is ignored and the replicas keep serving', async () => {
  for (const junk of ['not json', '{"type":"session.exploded"}', '{"type":"session.revoked","sid":42}', '[]']) {
    await redisCli(['PUBLISH', channel(), junk]);
  }
  const u = await userWithTwoSessions('DRIVER');
  const socket = await connectAs(A, '/drivers', u.token);
  const gone = disconnected(socket);
  await redisCli(['PUBLISH', channel(), JSON.stringify({ type: 'session.revoked', sid: u.sid, userId: u.userId })]);
  assert.equal(await gone, 'io server disconnect');
});

test('a refresh disconnects the old session everywhere; the new token connects', async () => {
  const u = await userWithTwoSessions('DRIVER');
  const onA = await connectAs(A, '/drivers', u.token);
  const onB = await connectAs(B, '/drivers', u.token, { transports: ['polling'] });
  const other = await connectAs(C, '/drivers', u.otherToken);
  const notices = record(other, 'auth:session_revoked');
  const gone = [disconnected(onA), disconnected(onB)];

  const newSid = await db.session(u.userId);
  await db.revokeSession(u.sid);
  const res = await internalPost(C, `/internal/v1/sessions/${u.sid}/refresh`, { userId: u.userId, newSid });
  assert.equal(res.status, 200);
  for (const reason of await Promise.all(gone)) assert.equal(reason, 'io server disconnect');

  const renewed = await connectAs(A, '/drivers', sign({ sub: u.userId, sid: newSid }));
  assert.equal(renewed.connected, true);
  await barrier(u, notices, (sid) => internalPost(C, `/internal/v1/sessions/${sid}/revoke`, { userId: u.userId }));
  assert.equal(notices.seen.filter((n) => n.sid === u.sid).length, 0, 'a refresh sends no revocation notice');

  // and through the channel
  const gone2 = disconnected(renewed);
  await redisCli(['PUBLISH', channel(), JSON.stringify({ type: 'session.refreshed', oldSid: newSid, newSid: 'next', userId: u.userId })]);
  assert.equal(await gone2, 'io server disconnect');
  other.close();
});

test('a passenger session is revoked cluster-wide and the other passenger session is told', async () => {
  const u = await userWithTwoSessions('PASSENGER');
  const onB = await connectAs(B, '/passengers', u.token, { transports: ['polling'] });
  const onC = await connectAs(C, '/passengers', u.token, { transports: ['websocket'] });
  const other = await connectAs(A, '/passengers', u.otherToken);
  const notices = record(other, 'auth:session_revoked');
  const gone = [disconnected(onB), disconnected(onC)];

  await db.revokeSession(u.sid);
  assert.equal((await internalPost(A, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId })).status, 200);
  for (const reason of await Promise.all(gone)) assert.equal(reason, 'io server disconnect');
  const notice = await notices.until((n) => n.sid === u.sid);
  assert.equal(notice.reason, 'revoked', 'default reason');
  await barrier(u, notices, (sid) => internalPost(A, `/internal/v1/sessions/${sid}/revoke`, { userId: u.userId }));
  assert.equal(notices.seen.filter((n) => n.sid === u.sid).length, 1);
  assert.equal(await connectError(client(C.url, '/passengers', { auth: { token: u.token } })), 'Invalid session');
  other.close();
});

test("an admin's revoked session is disconnected without a notice", async () => {
  const admin = await userWithTwoSessions('ADMIN');
  const revoked = await connectAs(B, '/admin', admin.token);
  const other = await connectAs(C, '/admin', admin.otherToken);
  const notices = record(other, 'auth:session_revoked');
  const gone = disconnected(revoked);
  await db.revokeSession(admin.sid);
  assert.equal((await internalPost(A, `/internal/v1/sessions/${admin.sid}/revoke`, { userId: admin.userId })).status, 200);
  assert.equal(await gone, 'io server disconnect');
  // Barrier: a later revocation has reached a watcher on the same replica as `other`.
  const driver = await userWithTwoSessions('DRIVER');
  const watcher = await connectAs(C, '/drivers', driver.otherToken);
  const driverNotices = record(watcher, 'auth:session_revoked');
  await barrier(driver, driverNotices, (sid) => internalPost(A, `/internal/v1/sessions/${sid}/revoke`, { userId: driver.userId }));
  assert.equal(notices.seen.length, 0);
  assert.equal(other.connected, true);
  other.close();
  watcher.close();
});
