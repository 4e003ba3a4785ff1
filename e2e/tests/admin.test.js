// Admin monitoring (events.md) and generic push: stats from every replica, nearby drivers,
// a driver's state, disconnecting a session by role; the push endpoint's allow-list.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  MODES, createDatabase, createIdentity, startDeployment, connectAs, ask, record, internalPost,
  disconnected, eventually,
} from '../../testkit/harness.js';

for (const mode of MODES) {
  describe(`admin and push (${mode})`, () => {
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

    const admin = async (replica, role = 'ADMIN', orgId = null) =>
      connectAs(replica, '/admin', (await createIdentity(db, role, { orgId })).token);

    test('admin:stats counts the sockets of every live replica', async () => {
      const watcher = await admin(A);
      const sockets = [
        await connectAs(B, '/drivers', (await createIdentity(db, 'DRIVER')).token),
        await connectAs(C, '/drivers', (await createIdentity(db, 'DRIVER')).token),
        await connectAs(C, '/passengers', (await createIdentity(db, 'PASSENGER')).token),
      ];
      const expected = { drivers: 2, passengers: 1, admin: 1 };
      // Replicas report their counts every second: wait until the report includes these.
      const stats = await eventually(async () => {
        const s = await ask(watcher, 'admin:stats', {});
        const t = s.totals;
        return t.drivers === expected.drivers && t.passengers === expected.passengers && t.admin === expected.admin ? s : null;
      });
      assert.equal(stats.ok, true);
      assert.equal(stats.nodes.length, mode === 'cluster' ? 3 : 1, 'one entry per live replica');
      const sum = stats.nodes.reduce((acc, n) => acc + n.sockets.drivers + n.sockets.passengers + n.sockets.admin, 0);
      assert.equal(sum, 4);
      for (const s of [watcher, ...sockets]) s.close();
    });

    test('admin:drivers_nearby: available drivers only, nearest first, bounds enforced', async () => {
      const watcher = await admin(B);
      const place = async (lat, lng, status, replica) => {
        const id = await createIdentity(db, 'DRIVER');
        const s = await connectAs(replica, '/drivers', id.token);
        await ask(s, 'driver:location', { lat, lng });
        await ask(s, 'driver:status', { status });
        return { ...id, s };
      };
      // Around a point no other test uses.
      const far = await place(-33.87, 151.23, 'ONLINE', A); // ~1.9 km
      const near = await place(-33.8575, 151.2153, 'ONLINE', C); // ~30 m
      const busy = await place(-33.858, 151.215, 'BUSY', A);
      const res = await ask(watcher, 'admin:drivers_nearby', { lat: -33.8568, lng: 151.2153, radiusM: 3000 });
      assert.deepEqual(res.drivers.map((d) => d.driverId), [near.userId, far.userId]);
      const [first] = res.drivers;
      assert.equal(first.status, 'ONLINE');
      assert.ok(first.distanceM > 50 && first.distanceM < 100, `${first.distanceM}`);
      assert.equal(first.lat, -33.8575);
      assert.ok(first.at);
      const limited = await ask(watcher, 'admin:drivers_nearby', { lat: -33.8568, lng: 151.2153, radiusM: 3000, limit: 1 });
      assert.deepEqual(limited.drivers.map((d) => d.driverId), [near.userId]);
      for (const bad of [{ lat: -33.8, lng: 151.2, radiusM: 60000 }, { lat: -33.8, lng: 151.2, limit: 500 }, { lat: 'x', lng: 1 }, { lng: 1 }]) {
        const r = await ask(watcher, 'admin:drivers_nearby', bad);
        assert.equal(r.error.code, 'INVALID_PAYLOAD', JSON.stringify(bad));
      }
      for (const s of [watcher, far.s, near.s, busy.s]) s.close();
    });

    test('admin:driver_state, and NOT_FOUND for a driver never seen', async () => {
      const watcher = await admin(C);
      const id = await createIdentity(db, 'DRIVER');
      const s = await connectAs(A, '/drivers', id.token);
      await ask(s, 'driver:location', { lat: 1.5, lng: 2.5, accuracy: 4, recordedAt: '2026-11-25T10:00:00Z' });
      const res = await ask(watcher, 'admin:driver_state', { driverId: id.userId });
      assert.equal(res.ok, true);
      assert.deepEqual({ ...res.driver, lastLocation: { ...res.driver.lastLocation, at: 'x' } }, {
        driverId: id.userId,
        status: 'OFFLINE',
        connected: true,
        lastLocation: { lat: 1.5, lng: 2.5, heading: null, speed: null, accuracy: 4, recordedAt: '2026-11-25T10:00:00Z', at: 'x' },
        activeTripId: null,
      });
      const missing = await ask(watcher, 'admin:driver_state', { driverId: randomUUID() });
      assert.equal(missing.ok, false);
      assert.equal(missing.error.code, 'NOT_FOUND');
      assert.equal((await ask(watcher, 'admin:driver_state', {})).error.code, 'INVALID_PAYLOAD');
      s.close();
      watcher.close();
    });

    test('admin:disconnect_session: ADMIN only, cluster-wide', async () => {
      const victim = await createIdentity(db, 'DRIVER');
      const s = await connectAs(C, '/drivers', victim.token);
      for (const role of ['DISPATCHER', 'SUPPORT']) {
        const a = await admin(A, role);
        const res = await ask(a, 'admin:disconnect_session', { sid: victim.sid });
        assert.equal(res.error.code, 'FORBIDDEN', role);
        a.close();
      }
      assert.equal(s.connected, true);
      const boss = await admin(A);
      const gone = disconnected(s);
      assert.deepEqual(await ask(boss, 'admin:disconnect_session', { sid: victim.sid, reason: 'fraud check' }), { ok: true });
      assert.equal(await gone, 'io server disconnect');
      assert.equal((await ask(boss, 'admin:disconnect_session', {})).error.code, 'INVALID_PAYLOAD');
      boss.close();
    });

    test('generic push reaches the listed rooms on every replica', async () => {
      const d = await createIdentity(db, 'DRIVER');
      const ds = await connectAs(A, '/drivers', d.token);
      const orgAdmin = await admin(C, 'DISPATCHER', 'acme');
      const otherOrg = await admin(C, 'DISPATCHER', 'globex');
      const toDriver = record(ds, 'promo:banner');
      const toOrg = record(orgAdmin, 'ops:notice');
      const toOther = record(otherOrg, 'ops:notice');
      const push = (body) => internalPost(B, '/internal/v1/emit', body);
      assert.deepEqual((await push({ namespace: '/drivers', rooms: [`driver:${d.userId}`], event: 'promo:banner', data: { text: 'hi' } })).body, { ok: true, dropped: 0 });
      assert.deepEqual(await toDriver.until(), { text: 'hi' });
      assert.equal((await push({ namespace: '/admin', rooms: ['admin:org:acme'], event: 'ops:notice', data: 1 })).status, 200);
      assert.equal(await toOrg.until(), 1);
      // barrier for the other org: admin:all reaches it after the org notice
      await push({ namespace: '/admin', rooms: ['admin:all'], event: 'ops:notice', data: 2 });
      await toOther.until((x) => x === 2);
      assert.deepEqual(toOther.seen, [2], 'the other organisation did not get the org notice');
      for (const s of [ds, orgAdmin, otherOrg]) s.close();
    });

    test('generic push refuses other rooms, reserved events and malformed bodies', async () => {
      const cases = [
        { namespace: '/drivers', rooms: [], event: 'x' },
        { namespace: '/drivers', rooms: ['trip:1'], event: 'x' },
        { namespace: '/drivers', rooms: ['driver:'], event: 'x' },
        { namespace: '/drivers', rooms: 'driver:1', event: 'x' },
        { namespace: '/riders', rooms: ['driver:1'], event: 'x' },
        { namespace: '/drivers', rooms: ['driver:1'], event: 'hello' },
        { namespace: '/drivers', rooms: ['driver:1'], event: 'auth:session_revoked' },
        { namespace: '/drivers', rooms: ['driver:1'], event: 'disconnect' },
        { namespace: '/drivers', rooms: ['driver:1'] },
        { namespace: '/drivers', rooms: ['driver:1'], event: '' },
      ];
      for (const body of cases) {
        const res = await internalPost(A, '/internal/v1/emit', body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.error.code, 'INVALID_PAYLOAD');
      }
    });
  });
}
