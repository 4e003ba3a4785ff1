// A session after its handshake (docs/spec/lifecycle.md), on three replicas and on a single
// replica (memory engine): the expiry warning and disconnect (session expiry and JWT exp), the
// in-band refresh (past the old expiry, onto a new sid, refusals), re-validation of sessions
// revoked only in the database, the per-user socket cap, the per-user handshake rate, and the
// bound on CONNECTs resent on one connection. Periods are shortened through configuration.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Manager } from 'socket.io-client';
import jwt from 'jsonwebtoken';
import {
  MODES, createDatabase, createIdentity, startDeployment, connectAs, connectError, client, ask, record,
  disconnected, internalPost, sign, within, eventually, JWT_SECRET,
} from '../../testkit/harness.js';

const LEAD_MS = 1500;
const REVALIDATE_MS = 1000;
const MAX_SOCKETS = 3;
const HANDSHAKES = 5;
const env = {
  TOKEN_REFRESH_LEAD_MS: String(LEAD_MS),
  SESSION_REVALIDATE_MS: String(REVALIDATE_MS),
  MAX_SOCKETS_PER_USER: String(MAX_SOCKETS),
  HANDSHAKE_RATE_PER_USER: String(HANDSHAKES),
  HANDSHAKE_RATE_WINDOW_MS: '10000',
};
/** Deadlines are swept once a second. */
const SWEEP_MS = 1000;
const now = () => Math.floor(Date.now() / 1000);

for (const mode of MODES) {
  describe(`session lifetime (${mode})`, () => {
    let db;
    let deployment;
    let A, B, C;

    before(async () => {
      db = await createDatabase();
      deployment = await startDeployment(db, mode, env);
      [A, B, C] = deployment.replicas;
    });

    after(async () => {
      await deployment?.stop();
      await db?.drop();
    });

    /** A driver whose session's access ends `ms` from now. */
    async function sessionEndingIn(ms) {
      const userId = await db.user({ type: 'DRIVER' });
      const expiresAt = new Date(Date.now() + ms);
      const sid = await db.session(userId, { expiresAt });
      return { userId, sid, expiresAt, token: sign({ sub: userId, sid }) };
    }

    test('a session that expires is warned a lead before, then told and disconnected at its expiry', async () => {
      const u = await sessionEndingIn(3000);
      const socket = await connectAs(A, '/drivers', u.token);
      const warnings = record(socket, 'auth:token_expiring');
      const expiries = record(socket, 'auth:expired');
      const gone = disconnected(socket);

      const warning = await within(warnings.until(), 3000, 'auth:token_expiring');
      const warnedAt = Date.now();
      assert.equal(Date.parse(warning.expiresAt), u.expiresAt.getTime(), 'expiresAt is the session expiry');
      assert.ok(warnedAt >= u.expiresAt.getTime() - LEAD_MS - 50, `not before the lead: ${u.expiresAt - warnedAt} ms left`);

      const expired = await within(expiries.until(), 4000, 'auth:expired');
      const expiredAt = Date.now();
      assert.equal(Date.parse(expired.at), u.expiresAt.getTime());
      assert.ok(expiredAt >= u.expiresAt.getTime() - 50, `not before the expiry: ${expiredAt - u.expiresAt} ms`);
      assert.ok(expiredAt <= u.expiresAt.getTime() + SWEEP_MS + 500, `within a sweep of it: ${expiredAt - u.expiresAt} ms`);
      assert.equal(await within(gone, 2000, 'the server disconnect'), 'io server disconnect');
      assert.equal(warnings.seen.length, 1, 'warned once');
    });

    test('a token whose exp passes ends the socket the same way', async () => {
      const id = await createIdentity(db, 'PASSENGER');
      const exp = now() + 3;
      const socket = await connectAs(B, '/passengers', sign({ sub: id.userId, sid: id.sid, exp }));
      const expiries = record(socket, 'auth:expired');
      const gone = disconnected(socket);
      const expired = await within(expiries.until(), 5000, 'auth:expired');
      assert.equal(Date.parse(expired.at), exp * 1000);
      assert.ok(Date.now() >= exp * 1000 - 50, 'not before exp');
      assert.equal(await within(gone, 2000, 'the server disconnect'), 'io server disconnect');
    });

    test('a socket that connects inside the lead is warned at once', async () => {
      const u = await sessionEndingIn(LEAD_MS - 500);
      const socket = client(A.url, '/drivers', { auth: { token: u.token } });
      const warnings = record(socket, 'auth:token_expiring');
      await within(new Promise((resolve) => socket.once('hello', resolve)), 3000, 'hello');
      // Sent right after hello, not by a later sweep.
      const warning = await within(warnings.until(), 300, 'auth:token_expiring right after hello');
      assert.equal(Date.parse(warning.expiresAt), u.expiresAt.getTime());
      socket.close();
    });

    test('a refresh keeps the socket past its old expiry; the refused ones change nothing', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const exp = now() + 3;
      const refreshed = await connectAs(A, '/drivers', sign({ sub: id.userId, sid: id.sid, exp }));
      // A control socket of another user that expires at the same second and is not refreshed.
      const other = await createIdentity(db, 'DRIVER');
      const control = await connectAs(A, '/drivers', sign({ sub: other.userId, sid: other.sid, exp }));
      const controlGone = disconnected(control);
      const expiries = record(refreshed, 'auth:expired');

      // Refusals first: each answers with the handshake's text, and the socket stays.
      const refusals = [
        [{ token: sign({ sub: other.userId, sid: other.sid }) }, 'Invalid session'],
        [{ token: 'garbage' }, 'Invalid token'],
        [{ token: sign({ sub: id.userId, sid: id.sid, exp: now() - 10 }) }, 'Access expired'],
        [{ token: sign({ sub: id.userId, sid: 'sid-unknown' }) }, 'Invalid session'],
        [{}, 'Missing token'],
      ];
      for (const [payload, message] of refusals) {
        const ack = await ask(refreshed, 'auth:refresh', payload);
        assert.deepEqual(ack, { ok: false, error: { code: 'UNAUTHORIZED', message } }, message);
      }
      assert.equal(refreshed.connected, true, 'a refusal never disconnects');

      const newExp = now() + 3600;
      const ack = await ask(refreshed, 'auth:refresh', { token: sign({ sub: id.userId, sid: id.sid, exp: newExp }) });
      assert.equal(ack.ok, true);
      assert.equal(Date.parse(ack.expiresAt), newExp * 1000);

      // The control socket's expiry is swept in the same tick the old expiry would have been.
      assert.equal(await within(controlGone, 6000, 'the control socket to expire'), 'io server disconnect');
      const status = await ask(refreshed, 'driver:status', { status: 'BUSY' });
      assert.equal(status.ok, true, 'the refreshed socket still acts');
      assert.equal(refreshed.connected, true);
      assert.equal(expiries.seen.length, 0, 'no auth:expired after the refresh');
      refreshed.close();
    });

    test('a refresh onto a new sid: the old sid\'s revocation spares the socket, the new one\'s ends it', async () => {
      const id = await createIdentity(db, 'PASSENGER');
      const newSid = await db.session(id.userId);
      const socket = await connectAs(B, '/passengers', id.token);
      // Stays on the old sid: when it is disconnected, the old revocation was applied on B.
      const witness = await connectAs(B, '/passengers', id.token);
      const ack = await ask(socket, 'auth:refresh', { token: sign({ sub: id.userId, sid: newSid }) });
      assert.equal(ack.ok, true);

      const witnessGone = disconnected(witness);
      await db.revokeSession(id.sid);
      const oldRevoked = await internalPost(C, `/internal/v1/sessions/${id.sid}/revoke`, { userId: id.userId, reason: 'logout' });
      assert.equal(oldRevoked.status, 200);
      assert.equal(await within(witnessGone, 5000, 'the old session\'s other socket to go'), 'io server disconnect');
      assert.equal(socket.connected, true, 'the refreshed socket is no longer of the old session');

      const gone = disconnected(socket);
      await db.revokeSession(newSid);
      const newRevoked = await internalPost(A, `/internal/v1/sessions/${newSid}/revoke`, { userId: id.userId, reason: 'logout' });
      assert.equal(newRevoked.status, 200);
      assert.equal(await within(gone, 5000, 'the refreshed socket to go with its new session'), 'io server disconnect');
    });

    test('a session revoked only in the database is disconnected within the interval, its user told once', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const otherSid = await db.session(id.userId);
      const onA = await connectAs(A, '/drivers', id.token);
      const onB = await connectAs(B, '/drivers', id.token);
      const other = await connectAs(C, '/drivers', sign({ sub: id.userId, sid: otherSid }));
      const notices = record(other, 'auth:session_revoked');
      const goneA = disconnected(onA);
      const goneB = disconnected(onB);

      const revokedAt = Date.now();
      await db.revokeSession(id.sid); // nothing published: only re-validation can find it
      const bound = REVALIDATE_MS + 2000;
      assert.equal(await within(goneA, bound, 'the socket on A to be disconnected'), 'io server disconnect');
      assert.equal(await within(goneB, bound, 'the socket on B to be disconnected'), 'io server disconnect');
      assert.ok(Date.now() - revokedAt <= bound, `within the interval: ${Date.now() - revokedAt} ms`);
      const notice = await within(notices.until((n) => n.sid === id.sid), 3000, 'auth:session_revoked');
      assert.equal(notice.reason, 'revoked');

      // Every replica has run a round since (so whatever it found is published), then a barrier
      // revocation on the same path: a duplicate notice would have arrived before it.
      const rounds = await Promise.all(deployment.replicas.map(revalidationRounds));
      await eventually(async () => {
        const later = await Promise.all(deployment.replicas.map(revalidationRounds));
        return later.every((n, i) => n >= rounds[i] + 1);
      }, 5000, 100, 'a re-validation round on every replica');
      const barrier = await db.session(id.userId);
      await db.revokeSession(barrier);
      await internalPost(A, `/internal/v1/sessions/${barrier}/revoke`, { userId: id.userId });
      await within(notices.until((n) => n.sid === barrier), 5000, 'the barrier notice');
      assert.equal(notices.seen.filter((n) => n.sid === id.sid).length, 1, 'one notice, however many replicas found it');
      assert.equal(other.connected, true);
      other.close();
    });

    test('one socket too many replaces the oldest, across replicas', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const first = await connectAs(A, '/drivers', id.token);
      const replaced = record(first, 'auth:connection_replaced');
      const firstGone = disconnected(first);
      const others = [];
      for (const replica of [B, C]) others.push(await connectAs(replica, '/drivers', id.token));
      assert.equal(replaced.seen.length, 0, `nobody replaced at the cap (${MAX_SOCKETS})`);
      const newest = await connectAs(A, '/drivers', id.token);

      const notice = await within(replaced.until(), 5000, 'auth:connection_replaced');
      assert.equal(notice.by, newest.id);
      assert.equal(await within(firstGone, 5000, 'the oldest socket to go'), 'io server disconnect');
      for (const s of [...others, newest]) {
        assert.equal((await ask(s, 'driver:status', { status: 'ONLINE' })).ok, true, 'the others stay');
        s.close();
      }
    });

    test('handshakes past the per-user rate are refused before the database, cluster-wide', async () => {
      const id = await createIdentity(db, 'PASSENGER');
      const replicas = [A, B, C];
      for (let i = 0; i < HANDSHAKES; i++) {
        const socket = await connectAs(replicas[i % 3], '/passengers', id.token);
        socket.close();
      }
      const refused = await connectError(client(B.url, '/passengers', { auth: { token: id.token } }));
      assert.equal(refused, 'Too many connections');
      // Counted before the database: a user that does not exist is refused the same way.
      const ghost = sign({ sub: '00000000-0000-4000-8000-000000000000', sid: 'none' });
      for (let i = 0; i < HANDSHAKES; i++) {
        assert.equal(await connectError(client(C.url, '/passengers', { auth: { token: ghost } })), 'User not found');
      }
      assert.equal(await connectError(client(C.url, '/passengers', { auth: { token: ghost } })), 'Too many connections');
    });

    test('CONNECT resent on one connection after refusals closes that connection', async () => {
      // Two namespaces on one Engine.IO connection: a good socket keeps the client's connection
      // open while the other keeps resending a refused CONNECT.
      const manager = new Manager(A.url, { reconnection: false, forceNew: true, transports: ['websocket'] });
      const id = await createIdentity(db, 'PASSENGER');
      const witness = manager.socket('/passengers', { auth: { token: id.token } });
      await within(new Promise((resolve) => witness.once('hello', resolve)), 3000, 'the good socket\'s hello');
      const closed = within(disconnected(witness), 10000, 'the connection to close');
      const bad = manager.socket('/drivers', { auth: { token: 'not-a-jwt' } });
      const errors = [];
      bad.on('connect_error', (err) => {
        errors.push(err.message);
        if (errors.length < 10) bad.connect();
      });
      bad.connect();
      assert.equal(await closed, 'transport close');
      // The server closes on the 4th refusal (the allowance is 3); the client resends at once on
      // each refusal, so one more CONNECT can be in flight when the close is decided and be
      // refused before the close reaches the client. Without the bound the client would give up
      // only after its 10 tries, with the connection still open.
      assert.ok(errors.length >= 3 && errors.length <= 6, `closed after the allowance: ${errors.length} refusals`);
      assert.ok(errors.every((m) => m === 'Invalid token'));
      bad.close();
      witness.close();
    });

    test('a token with a critical header extension, or whose exp is now, is refused', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const crit = jwt.sign({ sub: id.userId, sid: id.sid, exp: now() + 3600 }, JWT_SECRET, {
        algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT', crit: ['b64'] },
      });
      assert.equal(await connectError(client(A.url, '/drivers', { auth: { token: crit } })), 'Invalid token');
      const expNow = sign({ sub: id.userId, sid: id.sid, exp: now() });
      assert.equal(await connectError(client(A.url, '/drivers', { auth: { token: expNow } })), 'Access expired');
    });
  });
}

/** `gateway_session_revalidations_total` of a replica, from its /metrics. */
async function revalidationRounds(replica) {
  const text = await (await fetch(`${replica.internalUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('gateway_session_revalidations_total'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}
