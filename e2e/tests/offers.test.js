// Trip offers (events.md): dispatch asks one driver through any replica and gets the answer of
// whichever replica holds the driver; 404 at once when the driver has no socket nor is between two
// connections, 504 soon after expiresInMs without a well-formed answer. An offer is held until
// answered or expired: a socket of the driver that connects meanwhile, on any replica, gets it;
// the first answer of any socket is the one dispatch gets, and every socket hears it withdrawn.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  MODES, ON_REDIS_CLUSTER, createDatabase, createIdentity, startDeployment, startCluster, connectAs,
  internalPost, client, connectOk, record, within,
} from '../../testkit/harness.js';

/**
 * A driver app on `replica` that answers each offer with `answer(offer)` (nothing when it returns
 * undefined), listening before it connects: a held offer comes right after `hello`.
 */
async function driverApp(replica, token, answer = () => undefined) {
  const socket = client(replica.url, '/drivers', { auth: { token } });
  const offers = record(socket, 'trip:offer');
  const withdrawn = record(socket, 'trip:offer_withdrawn');
  socket.on('trip:offer', (payload, callback) => {
    const reply = answer(payload, socket);
    if (reply !== undefined) callback(reply);
  });
  await within(connectOk(socket), 10000, 'the driver app to be greeted');
  return { socket, offers, withdrawn };
}

for (const mode of MODES) {
  describe(`offers (${mode})`, () => {
    let db;
    let dep;
    let A, C;

    before(async () => {
      db = await createDatabase();
      dep = await startDeployment(db, mode);
      [A, , C] = dep.replicas;
    });

    after(async () => {
      await dep?.stop();
      await db?.drop();
    });

    const offer = (driverId, body) =>
      internalPost(C, `/internal/v1/drivers/${driverId}/offers`, { offerId: randomUUID(), tripId: `trip-${randomUUID()}`, expiresInMs: 3000, ...body });

    /** A driver on replica A whose app answers offers with `answer(offer)` (or not at all). */
    async function driverAnswering(answer) {
      const id = await createIdentity(db, 'DRIVER');
      const socket = await connectAs(A, '/drivers', id.token);
      const offers = [];
      socket.on('trip:offer', (payload, callback) => {
        offers.push(payload);
        const reply = answer(payload);
        if (reply !== undefined) callback(reply);
      });
      return { ...id, socket, offers };
    }

    test('an offer sent through replica C is accepted by the driver on replica A', async () => {
      const d = await driverAnswering(() => ({ accept: true }));
      const res = await offer(d.userId, { data: { pickup: 'Gare du Nord' } });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: true } });
      const [seen] = d.offers;
      assert.deepEqual(seen.data, { pickup: 'Gare du Nord' });
      assert.ok(Date.parse(seen.expiresAt) > Date.now(), 'expiresAt is ahead');
      d.socket.close();
    });

    test('a declined offer', async () => {
      const d = await driverAnswering(() => ({ accept: false }));
      const res = await offer(d.userId);
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: false } });
      d.socket.close();
    });

    test('no answer: 504 soon after expiresInMs', async () => {
      const d = await driverAnswering(() => undefined);
      const started = Date.now();
      const res = await offer(d.userId, { expiresInMs: 700 });
      const elapsed = Date.now() - started;
      assert.equal(res.status, 504);
      assert.equal(res.body.delivered, false);
      assert.ok(elapsed >= 700 && elapsed < 2500, `answered after ${elapsed} ms`);
      assert.equal(d.offers.length, 1, 'the driver did get the offer');
      d.socket.close();
    });

    test('a malformed answer does not count; a well-formed one from another socket wins', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const bad = await connectAs(A, '/drivers', id.token);
      bad.on('trip:offer', (_, cb) => cb({ accept: 'maybe' }));
      const good = await connectAs(C, '/drivers', id.token);
      good.on('trip:offer', (_, cb) => setTimeout(() => cb({ accept: true }), 100));
      const res = await offer(id.userId);
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: true } });
      bad.close();
      good.close();
    });

    test('a socket dropped mid-offer: 504 after expiresInMs', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const socket = await connectAs(A, '/drivers', id.token);
      socket.on('trip:offer', () => socket.close());
      const res = await offer(id.userId, { expiresInMs: 800 });
      assert.equal(res.status, 504);
    });

    test('an offer sent while the driver is between two connections reaches their next socket', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const first = await driverApp(A, id.token);
      first.socket.close();
      // Dispatch while the app has no socket (within the presence grace): held, not 404.
      const sent = offer(id.userId, { expiresInMs: 8000 });
      await new Promise((r) => setTimeout(r, 300));
      const again = await driverApp(C, id.token, () => ({ accept: true }));
      const res = await within(sent, 10000, 'the dispatch to be answered');
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: true } });
      assert.equal(again.offers.seen.length, 1, 'the held offer reached the new socket once');
      const gone = await within(again.withdrawn.until(), 5000, 'trip:offer_withdrawn');
      assert.equal(gone.reason, 'answered');
      assert.equal(gone.offerId, again.offers.seen[0].offerId);
      again.socket.close();
    });

    test('a socket dropped mid-offer gets the offer again on its next connection', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const dropped = await driverApp(A, id.token, (_, socket) => { socket.close(); });
      const sent = offer(id.userId, { expiresInMs: 8000 });
      const first = await within(dropped.offers.until(), 5000, 'the offer on the first socket');
      const back = await driverApp(C, id.token, () => ({ accept: false }));
      const res = await within(sent, 10000, 'the dispatch to be answered');
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: false } });
      assert.equal(back.offers.seen[0].offerId, first.offerId, 'the same offer, by offerId');
      back.socket.close();
    });

    test('two sockets answering: the first answer is the one, once; both hear it withdrawn', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const quick = await driverApp(A, id.token, () => ({ accept: true }));
      const slow = await driverApp(C, id.token);
      slow.socket.on('trip:offer', (_, callback) => setTimeout(() => callback({ accept: false }), 300));
      const res = await offer(id.userId, { expiresInMs: 5000 });
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: true } });
      for (const app of [quick, slow]) {
        const gone = await within(app.withdrawn.until(), 5000, 'trip:offer_withdrawn on each socket');
        assert.equal(gone.reason, 'answered');
      }
      quick.socket.close();
      slow.socket.close();
    });

    test('an answer after the expiry does not count: 504, and the offer is withdrawn as expired', async () => {
      const id = await createIdentity(db, 'DRIVER');
      const late = await driverApp(A, id.token);
      late.socket.on('trip:offer', (_, callback) => setTimeout(() => callback({ accept: true }), 1200));
      const res = await offer(id.userId, { expiresInMs: 700 });
      assert.equal(res.status, 504);
      const gone = await within(late.withdrawn.until(), 5000, 'trip:offer_withdrawn');
      assert.equal(gone.reason, 'expired');
      // Reconnecting after the expiry brings nothing back.
      late.socket.close();
      const after = await driverApp(C, id.token);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(after.offers.seen.length, 0, 'an expired offer is not re-delivered');
      after.socket.close();
    });

    test('a driver with no socket anywhere: 404 at once', async () => {
      const never = randomUUID();
      const started = Date.now();
      const res = await offer(never, { expiresInMs: 10000 });
      assert.equal(res.status, 404);
      assert.equal(res.body.delivered, false);
      assert.equal(res.body.error.code, 'NOT_FOUND');
      assert.ok(Date.now() - started < 1000, 'not after the timeout');
    });

    test('malformed offers are 400', async () => {
      const driverId = randomUUID();
      for (const [body, message] of [
        [{ expiresInMs: 0 }, /expiresInMs/],
        [{ expiresInMs: 30001 }, /expiresInMs/],
        [{ expiresInMs: 'soon' }, /expiresInMs/],
        [{ offerId: null }, /offerId is required/],
        [{ tripId: 42 }, /tripId must be a string/],
      ]) {
        const res = await offer(driverId, body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.match(res.body.error.message, message);
      }
      const notUuid = await internalPost(C, '/internal/v1/drivers/bob/offers', { offerId: 'o', tripId: 't', expiresInMs: 100 });
      assert.equal(notUuid.status, 400);
    });
  });
}

describe('offers across a replica kill (cluster)', () => {
  test('the driver\'s replica is killed mid-offer; the app reconnects to another and answers', async () => {
    const db = await createDatabase();
    const cluster = await startCluster(db, 3);
    try {
      const [A, B, C] = cluster.replicas;
      const id = await createIdentity(db, 'DRIVER');
      const onA = await driverApp(A, id.token);
      const sent = internalPost(C, `/internal/v1/drivers/${id.userId}/offers`, {
        offerId: randomUUID(), tripId: `trip-${randomUUID()}`, expiresInMs: 10000,
      });
      const seen = await within(onA.offers.until(), 5000, 'the offer on replica A');
      await A.stop('SIGKILL');
      const onB = await driverApp(B, id.token, () => ({ accept: true }));
      const res = await within(sent, 12000, 'the dispatch to be answered');
      assert.deepEqual(res.body, { ok: true, delivered: true, response: { accept: true } });
      assert.equal(onB.offers.seen[0].offerId, seen.offerId);
      onB.socket.close();
      onA.socket.close();
    } finally {
      await cluster.stop();
      await db.drop();
    }
  });
});
