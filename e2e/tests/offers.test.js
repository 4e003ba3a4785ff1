// Trip offers (events.md): dispatch asks one driver through any replica and gets the answer of
// whichever replica holds the driver; 404 at once when the driver has no socket, 504 soon after
// expiresInMs without a well-formed answer.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  MODES, createDatabase, createIdentity, startDeployment, connectAs, internalPost,
} from '../../testkit/harness.js';

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
