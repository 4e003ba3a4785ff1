// Trip lifecycle (events.md): the decision table of the internal trips endpoint, trip:updated to
// passenger, driver and admins, and the active-trip binding that forwards the driver's positions
// to the passenger, across replicas. Runs on a cluster and on a single replica.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  MODES, createDatabase, createIdentity, startDeployment, connectAs, ask, record, internalPost,
} from '../../testkit/harness.js';

for (const mode of MODES) {
  describe(`trips (${mode})`, () => {
    let db;
    let dep;
    let A, B, C;

    before(async () => {
      db = await createDatabase();
      dep = await startDeployment(db, mode);
      [A, B, C] = dep.replicas;
    });

    after(async () => {
      await dep?.stop();
      await db?.drop();
    });

    const tripEvent = (replica, tripId, body) => internalPost(replica, `/internal/v1/trips/${tripId}/events`, body);

    test('the decision table: first, later, skipped, repeated, backwards, after the end, malformed', async () => {
      const tripId = `trip-${randomUUID()}`;
      const passengerId = randomUUID();
      const driverId = randomUUID();
      const send = (type, extra = {}) => tripEvent(B, tripId, { type, passengerId, ...extra });
      assert.deepEqual((await send('REQUESTED')).body, { ok: true });
      assert.deepEqual((await send('REQUESTED')).body, { ok: true, duplicate: true });
      assert.equal((await send('DRIVER_ASSIGNED', { driverId })).status, 200);
      assert.deepEqual((await send('DRIVER_ASSIGNED', { driverId })).body, { ok: true, duplicate: true });
      assert.equal((await send('DRIVER_ARRIVED')).status, 200, 'skipping DRIVER_ARRIVING is allowed');
      const back = await send('DRIVER_ARRIVING');
      assert.equal(back.status, 409);
      assert.equal(back.body.error.code, 'CONFLICT');
      assert.equal((await send('STARTED')).status, 200);
      assert.equal((await send('DRIVER_ASSIGNED', { driverId: randomUUID() })).status, 409, 'no reassignment after STARTED');
      assert.equal((await send('COMPLETED')).status, 200);
      assert.deepEqual((await send('COMPLETED')).body, { ok: true, duplicate: true });
      assert.equal((await send('CANCELLED')).status, 409, 'nothing after COMPLETED');

      const first = await tripEvent(A, `trip-${randomUUID()}`, { type: 'STARTED', passengerId, driverId });
      assert.equal(first.status, 200, 'the first event seen may be any type');

      const bad = [
        [{ type: 'TELEPORTED', passengerId }, /unknown trip event type/],
        [{ type: 5, passengerId }, /type must be a string/],
        [{ passengerId }, /type is required/],
        [{ type: 'REQUESTED' }, /passengerId is required/],
        [{ type: 'REQUESTED', passengerId: 'someone' }, /passengerId must be a UUID/],
        [{ type: 'DRIVER_ASSIGNED', passengerId }, /DRIVER_ASSIGNED requires driverId/],
        [{ type: 'DRIVER_ASSIGNED', passengerId, driverId: 7 }, /driverId must be a string/],
        [[1, 2], /body must be a JSON object/],
      ];
      for (const [body, message] of bad) {
        const res = await tripEvent(C, `trip-${randomUUID()}`, body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.error.code, 'INVALID_PAYLOAD');
        assert.match(res.body.error.message, message);
      }
    });

    test('trip:updated reaches passenger, driver and admins; the passenger follows the assigned driver until the end', async () => {
      const driver = await createIdentity(db, 'DRIVER');
      const passenger = await createIdentity(db, 'PASSENGER');
      const d = await connectAs(A, '/drivers', driver.token);
      const p = await connectAs(C, '/passengers', passenger.token);
      const a = await connectAs(B, '/admin', (await createIdentity(db, 'ADMIN')).token);
      const forPassenger = record(p, 'trip:updated');
      const forDriver = record(d, 'trip:updated');
      const forAdmin = record(a, 'trip:updated');
      const followed = record(p, 'trip:driver_location');
      const tripId = `trip-${randomUUID()}`;

      await ask(d, 'driver:status', { status: 'ONLINE' });
      await ask(d, 'driver:location', { lat: 40.0, lng: -3.0 });
      const assigned = await tripEvent(B, tripId, {
        type: 'DRIVER_ASSIGNED', passengerId: passenger.userId, driverId: driver.userId, data: { eta: 4 },
      });
      assert.equal(assigned.status, 200);
      for (const seen of [forPassenger, forDriver, forAdmin]) {
        const u = await seen.until((x) => x.tripId === tripId);
        assert.equal(u.status, 'DRIVER_ASSIGNED');
        assert.equal(u.passengerId, passenger.userId);
        assert.equal(u.driverId, driver.userId);
        assert.deepEqual(u.data, { eta: 4 });
        assert.ok(!Number.isNaN(Date.parse(u.at)));
      }

      for (let i = 1; i <= 3; i++) {
        assert.deepEqual(await ask(d, 'driver:location', { lat: 40.0 + i / 1000, lng: -3.0, heading: 10 * i }), { ok: true });
      }
      const third = await followed.until((x) => x.lat === 40.003);
      assert.deepEqual({ ...third, at: 'x' }, { tripId, driverId: driver.userId, lat: 40.003, lng: -3.0, heading: 30, speed: null, at: 'x' });
      assert.deepEqual(followed.seen.map((x) => x.lat), [40.001, 40.002, 40.003], 'every accepted update, in order');

      assert.equal((await tripEvent(C, tripId, { type: 'COMPLETED', passengerId: passenger.userId })).status, 200);
      await forPassenger.until((x) => x.tripId === tripId && x.status === 'COMPLETED');
      await ask(d, 'driver:location', { lat: 41.0, lng: -3.0 });
      // Barrier: a push sent through the driver's replica travels the same channel after the update.
      const barrier = record(p, 'test:barrier');
      await internalPost(A, '/internal/v1/emit', { namespace: '/passengers', rooms: [`passenger:${passenger.userId}`], event: 'test:barrier', data: 1 });
      await barrier.until();
      assert.equal(followed.seen.length, 3, 'nothing after the trip ended');
      const state = await ask(a, 'admin:driver_state', { driverId: driver.userId });
      assert.equal(state.driver.activeTripId, null);
      for (const s of [d, p, a]) s.close();
    });

    test('reassignment moves the binding; the previous driver is told CANCELLED', async () => {
      const first = await createIdentity(db, 'DRIVER');
      const second = await createIdentity(db, 'DRIVER');
      const passenger = await createIdentity(db, 'PASSENGER');
      const d1 = await connectAs(A, '/drivers', first.token);
      const d2 = await connectAs(B, '/drivers', second.token);
      const p = await connectAs(C, '/passengers', passenger.token);
      const toFirst = record(d1, 'trip:updated');
      const followed = record(p, 'trip:driver_location');
      const tripId = `trip-${randomUUID()}`;
      const send = (body) => tripEvent(C, tripId, { passengerId: passenger.userId, ...body });

      assert.equal((await send({ type: 'DRIVER_ASSIGNED', driverId: first.userId })).status, 200);
      assert.equal((await send({ type: 'DRIVER_ARRIVING' })).status, 200);
      assert.equal((await send({ type: 'DRIVER_ASSIGNED', driverId: second.userId })).status, 200);
      const cancelled = await toFirst.until((u) => u.tripId === tripId && u.status === 'CANCELLED');
      assert.equal(cancelled.driverId, first.userId);

      await ask(d1, 'driver:location', { lat: 10, lng: 10 });
      await ask(d2, 'driver:location', { lat: 20, lng: 20 });
      const fromSecond = await followed.until();
      assert.equal(fromSecond.driverId, second.userId);
      const barrier = record(p, 'test:barrier');
      await internalPost(A, '/internal/v1/emit', { namespace: '/passengers', rooms: [`passenger:${passenger.userId}`], event: 'test:barrier' });
      await barrier.until();
      assert.deepEqual(followed.seen.map((x) => x.driverId), [second.userId], "the previous driver's positions are not forwarded");
      for (const s of [d1, d2, p]) s.close();
    });
  });
}
