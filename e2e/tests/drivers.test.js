// Driver availability (events.md): driver:status and driver:location with validation and acks,
// forwarding to admins, the geo index, the location stream, rate limits and bad input.
// Runs against a three-replica cluster (Redis engine) and a single replica (memory engine).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  MODES, createDatabase, createIdentity, startDeployment, connectAs, ask, record, redisCli, client,
  connectOk, disconnected,
} from '../../testkit/harness.js';

for (const mode of MODES) {
  describe(`drivers (${mode})`, () => {
    let db;
    let dep;
    let A, B, C;

    before(async () => {
      db = await createDatabase();
      dep = await startDeployment(db, mode, { LOCATION_RATE_PER_S: '5' });
      [A, B, C] = dep.replicas;
    });

    after(async () => {
      await dep?.stop();
      await db?.drop();
    });

    const driver = async (replica = A) => {
      const id = await createIdentity(db, 'DRIVER');
      return { ...id, socket: await connectAs(replica, '/drivers', id.token) };
    };
    const admin = async (replica = C) => connectAs(replica, '/admin', (await createIdentity(db, 'ADMIN')).token);

    test('driver:status is stored and acked; admins hear changes only', async () => {
      const watcher = await admin(C);
      const changes = record(watcher, 'driver:status_changed');
      const d = await driver(A);
      assert.deepEqual(await ask(d.socket, 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });
      const change = await changes.until((c) => c.driverId === d.userId);
      assert.equal(change.status, 'ONLINE');
      assert.ok(!Number.isNaN(Date.parse(change.at)));
      assert.deepEqual(await ask(d.socket, 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });
      await ask(d.socket, 'driver:status', { status: 'BUSY' });
      await changes.until((c) => c.driverId === d.userId && c.status === 'BUSY');
      assert.deepEqual(
        changes.seen.filter((c) => c.driverId === d.userId).map((c) => c.status),
        ['ONLINE', 'BUSY'],
        'the repeated ONLINE was not announced',
      );
      const state = await ask(watcher, 'admin:driver_state', { driverId: d.userId });
      assert.equal(state.driver.status, 'BUSY');
      assert.equal(state.driver.connected, true);
      d.socket.close();
      watcher.close();
    });

    test('driver:location is stored, forwarded to admins at most once a second, and findable while ONLINE', async () => {
      const watcher = await admin(B);
      const positions = record(watcher, 'driver:location');
      const d = await driver(A);
      assert.deepEqual(await ask(d.socket, 'driver:location', { lat: 48.8566, lng: 2.3522, heading: 90, speed: 8.5 }), { ok: true });
      const first = await positions.until((p) => p.driverId === d.userId);
      assert.deepEqual(
        { ...first, at: 'x' },
        { driverId: d.userId, lat: 48.8566, lng: 2.3522, heading: 90, speed: 8.5, at: 'x' },
      );
      for (let i = 0; i < 3; i++) {
        assert.equal((await ask(d.socket, 'driver:location', { lat: 48.8566 + i / 1e4, lng: 2.3522 })).ok, true);
      }
      // barrier: a status change from the same replica travels the same path after them
      const changes = record(watcher, 'driver:status_changed');
      await ask(d.socket, 'driver:status', { status: 'ONLINE' });
      await changes.until((c) => c.driverId === d.userId);
      const forwarded = positions.seen.filter((p) => p.driverId === d.userId).length;
      assert.ok(forwarded >= 1 && forwarded <= 2, `4 updates within a second or two, ${forwarded} forwarded`);

      const near = await ask(watcher, 'admin:drivers_nearby', { lat: 48.8566, lng: 2.3522, radiusM: 1000 });
      assert.ok(near.drivers.some((x) => x.driverId === d.userId), 'ONLINE with a position: available');
      await ask(d.socket, 'driver:status', { status: 'BUSY' });
      const after = await ask(watcher, 'admin:drivers_nearby', { lat: 48.8566, lng: 2.3522, radiusM: 1000 });
      assert.ok(!after.drivers.some((x) => x.driverId === d.userId), 'BUSY: not available');
      d.socket.close();
      watcher.close();
    });

    test('bad input gets INVALID_PAYLOAD naming the field, stores nothing, and the socket stays', async () => {
      const d = await driver(B);
      await ask(d.socket, 'driver:location', { lat: 10, lng: 10 });
      const cases = [
        ['driver:location', { lng: 2 }, 'lat is required'],
        ['driver:location', { lat: '48.8', lng: 2 }, 'lat must be a finite number'],
        ['driver:location', { lat: NaN, lng: 2 }, 'lat is required'],
        ['driver:location', { lat: Infinity, lng: 2 }, 'lat is required'],
        ['driver:location', { lat: 90.5, lng: 2 }, 'lat must be within [-90, 90]'],
        ['driver:location', { lat: 1, lng: 181 }, 'lng must be within [-180, 180]'],
        ['driver:location', { lat: 1, lng: 1, heading: 360 }, 'heading must be within [0, 360)'],
        ['driver:location', { lat: 1, lng: 1, speed: -3 }, 'speed must be >= 0'],
        ['driver:location', { lat: 1, lng: 1, accuracy: -1 }, 'accuracy must be >= 0'],
        ['driver:location', { lat: 1, lng: 1, recordedAt: 'yesterday' }, 'recordedAt must be an RFC 3339 string'],
        ['driver:location', 'not an object', 'payload must be a JSON object'],
        ['driver:location', null, 'payload must be a JSON object'],
        ['driver:status', { status: 'SLEEPING' }, 'status must be ONLINE, BUSY or OFFLINE'],
        ['driver:status', { status: 1 }, 'status must be ONLINE, BUSY or OFFLINE'],
        ['driver:status', {}, 'status is required'],
        ['driver:status', [1, 2, 3], 'payload must be a JSON object'],
      ];
      for (const [event, payload, message] of cases) {
        const res = await ask(d.socket, event, payload);
        assert.deepEqual(res, { ok: false, error: { code: 'INVALID_PAYLOAD', message } }, `${event} ${JSON.stringify(payload)}`);
      }
      assert.equal(d.socket.connected, true);
      const watcher = await admin(B);
      const state = await ask(watcher, 'admin:driver_state', { driverId: d.userId });
      assert.equal(state.driver.lastLocation.lat, 10, 'nothing invalid was stored');
      assert.equal(state.driver.status, 'OFFLINE');
      d.socket.close();
      watcher.close();
    });

    test('reports from many drivers at once are each acked and stored as their own', async () => {
      // Arriving together, they may share Redis script calls: each answer and position must stay with its driver.
      const drivers = await Promise.all(Array.from({ length: 30 }, (_, i) => driver([A, B, C][i % 3])));
      const answers = await Promise.all(drivers.map((d, i) => ask(d.socket, 'driver:location', { lat: 20 + i / 100, lng: 30 })));
      assert.deepEqual(answers, drivers.map(() => ({ ok: true })));
      const watcher = await admin(B);
      for (const [i, d] of drivers.entries()) {
        const state = await ask(watcher, 'admin:driver_state', { driverId: d.userId });
        assert.equal(state.driver.lastLocation.lat, 20 + i / 100, `driver ${i}`);
      }
      drivers.forEach((d) => d.socket.close());
      watcher.close();
    });

    test('more than LOCATION_RATE_PER_S updates a second are RATE_LIMITED', async () => {
      const d = await driver(C);
      const answers = await Promise.all(Array.from({ length: 15 }, (_, i) => ask(d.socket, 'driver:location', { lat: 1, lng: 1 + i / 1e3 })));
      const accepted = answers.filter((a) => a.ok).length;
      const limited = answers.filter((a) => !a.ok && a.error.code === 'RATE_LIMITED').length;
      assert.equal(accepted + limited, 15);
      assert.ok(accepted >= 5 && accepted <= 10, `5 a second, the burst may straddle two seconds: ${accepted}`);
      d.socket.close();
    });

    for (const transports of [['websocket'], ['polling']]) {
      test(`unknown events are ignored, floods are refused, every ack is answered, the socket keeps serving (${transports})`, async () => {
        const id = await createIdentity(db, 'DRIVER');
        const d = { ...id, socket: await connectAs(A, '/drivers', id.token, { transports }) };
        d.socket.emit('driver:teleport', { to: 'mars' });
        d.socket.emit('no-such-event');
        // Bursts far larger than a socket's send buffer (128 packets): every ack asked for is
        // answered, the refused ones with RATE_LIMITED.
        for (let round = 0; round < 20; round++) {
          const flood = await Promise.allSettled(Array.from({ length: 500 }, () => ask(d.socket, 'driver:status', { status: 'BUSY' })));
          const lost = flood.filter((a) => a.status === 'rejected');
          assert.equal(lost.length, 0, `round ${round}: ${lost.length} of 500 acks never answered (${lost[0]?.reason?.message})`);
          const refused = flood.map((a) => a.value).filter((a) => !a.ok);
          assert.ok(refused.length > 0, 'a flood runs out of budget');
          assert.ok(refused.every((a) => a.error.code === 'RATE_LIMITED'));
        }
        assert.equal(d.socket.connected, true);
        await new Promise((r) => setTimeout(r, 1100)); // the budget refills over a second
        assert.deepEqual(await ask(d.socket, 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });
        d.socket.close();
        });
    }

    test('a packet beyond MAX_PAYLOAD_BYTES closes that transport; the replica keeps serving', async () => {
      const d = await driver(B);
      const gone = disconnected(d.socket);
      d.socket.emit('driver:location', { lat: 1, lng: 1, junk: 'x'.repeat(150_000) });
      assert.match(await gone, /^transport (close|error)$/);
      const again = await driver(B);
      assert.deepEqual(await ask(again.socket, 'driver:status', { status: 'ONLINE' }), { ok: true, status: 'ONLINE' });
      again.socket.close();
    });

    if (mode === 'cluster') {
      test('accepted positions go to the driver-locations stream for backends', async () => {
        const d = await driver(A);
        const recordedAt = new Date().toISOString();
        await ask(d.socket, 'driver:location', { lat: 52.52, lng: 13.405, speed: 3, recordedAt });
        const raw = await redisCli(['XREVRANGE', `${dep.prefix}:driver-locations`, '+', '-', 'COUNT', '50']);
        const lines = raw.split('\n');
        const at = lines.indexOf(d.userId);
        assert.ok(at > 0, 'the stream has the driver');
        const fields = Object.fromEntries(lines.slice(at - 1, at + 13).reduce((acc, v, i, arr) => (i % 2 === 0 ? [...acc, [v, arr[i + 1]]] : acc), []));
        assert.equal(fields.lat, '52.52');
        assert.equal(fields.lng, '13.405');
        assert.equal(fields.speed, '3');
        assert.equal(fields.heading, '');
        assert.equal(fields.recordedAt, recordedAt);
        assert.ok(fields.at);
        d.socket.close();
      });
    }
  });
}
