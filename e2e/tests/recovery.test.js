// Missed-event recovery (docs/spec/recovery.md) with the official client: recoverable events
// carry an offset as their last argument; a client that reconnects with `auth.offset`, on any
// replica, gets what it missed before `hello` (`recovered: true`), exactly once and in order.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  MODES, createDatabase, createIdentity, startDeployment, startCluster, startReplica, startRedis,
  client, connectAs, internalPost, ask, within, eventually,
} from '../../testkit/harness.js';

/** Every event a socket receives, in order, with all its arguments (hello included). */
function journal(socket) {
  const events = [];
  socket.onAny((event, ...args) => events.push({ event, args }));
  return events;
}

/** Connects with `auth`, resolves once greeted: { socket, hello, events (before hello, in order) }. */
function reconnect(replica, nsp, auth) {
  const socket = client(replica.url, nsp, { auth });
  const events = journal(socket);
  return within(new Promise((resolve, reject) => {
    socket.once('hello', (hello) => resolve({ socket, hello, events: events.slice(0, -1), all: events }));
    socket.once('connect_error', (err) => reject(new Error(`connect_error: ${err.message}`)));
  }), 10000, `hello from ${replica.nodeId}`);
}

const push = (replica, rooms, data, event = 'promo:offer', namespace = '/passengers') =>
  internalPost(replica, '/internal/v1/emit', { namespace, rooms, event, data });

const offsetOf = (entry) => entry.args[entry.args.length - 1];
const ordered = (offsets) => offsets.every((o, i) => i === 0 || compare(offsets[i - 1], o) < 0);
function compare(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  return am === bm ? Number(as - bs) : Number(am - bm);
}

for (const mode of MODES) {
  describe(`recovery (${mode})`, () => {
    let db;
    let dep;
    let A, B, C;

    before(async () => {
      db = await createDatabase();
      dep = await startDeployment(db, mode, { RECOVERY_MAX_EVENTS: '100' });
      [A, B, C] = dep.replicas;
    });

    after(async () => {
      await dep?.stop();
      await db?.drop();
    });

    test('recoverable events carry an offset as their last argument; hello without auth.offset has no recovered field', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const { socket, hello } = await reconnect(A, '/passengers', { token: p.token });
      assert.deepEqual(hello, { ok: true, nsp: '/passengers' }, 'as in contract.md');
      const got = new Promise((resolve) => socket.on('promo:offer', (data, offset) => resolve({ data, offset })));
      assert.equal((await push(B, [`passenger:${p.userId}`], { n: 1 })).status, 200);
      const { data, offset } = await within(got, 5000, 'the push with its offset');
      assert.deepEqual(data, { n: 1 });
      assert.match(offset, /^\d+-\d+$/);
      socket.close();
    });

    test('a passenger back on another replica gets what was sent meanwhile, in order, before hello', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const first = await reconnect(A, '/passengers', { token: p.token });
      const seen = new Promise((resolve) => first.socket.on('promo:offer', (data, offset) => resolve(offset)));
      await push(B, [`passenger:${p.userId}`], { n: 0 });
      const last = await within(seen, 5000, 'the first push');
      first.socket.close();
      for (let n = 1; n <= 5; n += 1) assert.equal((await push(B, [`passenger:${p.userId}`], { n })).status, 200);
      // A trip event is recoverable too.
      const trip = `trip-${p.userId}`;
      assert.equal((await internalPost(B, `/internal/v1/trips/${trip}/events`, { type: 'REQUESTED', passengerId: p.userId })).status, 200);
      const back = await reconnect(C, '/passengers', { token: p.token, offset: last });
      assert.equal(back.hello.recovered, true);
      assert.deepEqual(back.events.map((e) => [e.event, e.args[0].n ?? e.args[0].status]),
        [1, 2, 3, 4, 5].map((n) => ['promo:offer', n]).concat([['trip:updated', 'REQUESTED']]));
      const offsets = back.events.map(offsetOf);
      assert.ok(ordered([last, ...offsets]), `offsets increase: ${[last, ...offsets]}`);
      // Up to date: nothing again.
      back.socket.close();
      const again = await reconnect(A, '/passengers', { token: p.token, offset: offsets.at(-1) });
      assert.equal(again.hello.recovered, true);
      assert.deepEqual(again.events, []);
      again.socket.close();
    });

    test('a malformed, unknown or trimmed offset is not recovered; nobody else\'s events are replayed', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const other = await createIdentity(db, 'PASSENGER');
      const s = await reconnect(A, '/passengers', { token: p.token });
      const offsets = [];
      s.socket.on('promo:offer', (_, offset) => offsets.push(offset));
      for (let n = 0; n < 3; n += 1) await push(A, [`passenger:${p.userId}`], { n });
      await eventually(() => offsets.length === 3, 5000, 50, 'three pushes');
      s.socket.close();
      for (const offset of ['nonsense', 42, '', '1-0', '99999999999999-0']) {
        const r = await reconnect(B, '/passengers', { token: p.token, offset });
        assert.equal(r.hello.recovered, false, JSON.stringify(offset));
        assert.deepEqual(r.events, []);
        r.socket.close();
      }
      // Another passenger with this one's offset: not theirs, nothing replayed.
      const stranger = await reconnect(C, '/passengers', { token: other.token, offset: offsets[0] });
      assert.equal(stranger.hello.recovered, false);
      assert.deepEqual(stranger.events, []);
      stranger.socket.close();
      // Past RECOVERY_MAX_EVENTS (100 here) the oldest are trimmed: too old to recover.
      for (let n = 3; n < 105; n += 1) await push(A, [`passenger:${p.userId}`], { n });
      const late = await reconnect(B, '/passengers', { token: p.token, offset: offsets[0] });
      assert.equal(late.hello.recovered, false);
      assert.deepEqual(late.events, []);
      late.socket.close();
    });

    test('a client with no offset yet sends "" and keeps hello\'s offset: its first drop loses nothing', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const other = await createIdentity(db, 'PASSENGER');
      const first = await reconnect(A, '/passengers', { token: p.token, offset: '' });
      assert.equal(first.hello.recovered, false);
      assert.match(first.hello.offset, /^\d+-\d+$/);
      first.socket.close();
      for (let n = 1; n <= 3; n += 1) assert.equal((await push(B, [`passenger:${p.userId}`], { n })).status, 200);
      const back = await reconnect(C, '/passengers', { token: p.token, offset: first.hello.offset });
      assert.equal(back.hello.recovered, true);
      assert.deepEqual(back.events.map((e) => e.args[0].n), [1, 2, 3]);
      assert.ok(ordered([first.hello.offset, ...back.events.map(offsetOf)]));
      // hello's offset is where the client stands: the newest it got.
      assert.equal(back.hello.offset, offsetOf(back.events.at(-1)));
      back.socket.close();
      const again = await reconnect(A, '/passengers', { token: p.token, offset: back.hello.offset });
      assert.equal(again.hello.recovered, true);
      assert.deepEqual(again.events, []);
      again.socket.close();
      // Another passenger given this one's first offset: not theirs.
      const stranger = await reconnect(B, '/passengers', { token: other.token, offset: first.hello.offset });
      assert.equal(stranger.hello.recovered, false);
      assert.deepEqual(stranger.events, []);
      stranger.socket.close();
    });

    test('pushes flowing from two replicas while the client reconnects to a third arrive exactly once, in order', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const s = await reconnect(A, '/passengers', { token: p.token });
      const firstOffset = new Promise((resolve) => s.socket.on('promo:offer', (_, offset) => resolve(offset)));
      await push(B, [`passenger:${p.userId}`], { n: 0 });
      const from = await within(firstOffset, 5000, 'the first push');
      s.socket.close();
      // 80 pushes, four at a time, over the whole reconnect: some before the socket joins its
      // room (replayed), some while it replays (held), some after (live).
      const TOTAL = 80;
      let next = 1;
      const worker = async (replica) => {
        while (next <= TOTAL) {
          const n = next++;
          assert.equal((await push(replica, [`passenger:${p.userId}`], { n })).status, 200);
        }
      };
      const flowing = Promise.all([worker(A), worker(B), worker(A), worker(B)]);
      await eventually(() => next > 15, 5000, 10, 'the first pushes');
      const back = client(C.url, '/passengers', { auth: { token: p.token, offset: from } });
      const events = journal(back);
      await flowing;
      await eventually(() => events.filter((e) => e.event === 'promo:offer').length >= TOTAL, 10000, 50,
        `all ${TOTAL} pushes at the reconnected client`);
      // Nothing more is on its way: a marker pushed last arrives after everything else.
      await push(A, [`passenger:${p.userId}`], { marker: true });
      await eventually(() => events.some((e) => e.args[0]?.marker), 5000, 50, 'the marker');
      const pushes = events.filter((e) => e.event === 'promo:offer' && !e.args[0].marker);
      const ns = pushes.map((e) => e.args[0].n).sort((a, b) => a - b);
      assert.deepEqual(ns, Array.from({ length: TOTAL }, (_, i) => i + 1), 'each push once');
      assert.ok(ordered(pushes.map(offsetOf)), 'offsets increase');
      const at = events.findIndex((e) => e.event === 'hello');
      const hello = events[at].args[0];
      assert.equal(hello.recovered, true);
      // hello's offset is where the client stands: the newest sent before it; all later are newer.
      const before = events.slice(0, at).map(offsetOf);
      assert.equal(hello.offset, before.at(-1) ?? from);
      assert.ok(ordered([hello.offset, ...events.slice(at + 1).map(offsetOf)]), 'newer after hello');
      back.close();
    });

    test('a session revoked while the user\'s other app was away is replayed to it, once', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const otherSid = await db.session(p.userId);
      const s = await reconnect(A, '/passengers', { token: p.token });
      const got = new Promise((resolve) => s.socket.on('promo:offer', (_, offset) => resolve(offset)));
      await push(A, [`passenger:${p.userId}`], { n: 1 });
      const from = await within(got, 5000, 'the push');
      s.socket.close();
      await db.revokeSession(otherSid);
      const res = await internalPost(B, `/internal/v1/sessions/${otherSid}/revoke`, { userId: p.userId, reason: 'logout' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const back = await reconnect(C, '/passengers', { token: p.token, offset: from });
      assert.equal(back.hello.recovered, true);
      assert.deepEqual(back.events.map((e) => [e.event, e.args[0].sid, e.args[0].reason]),
        [['auth:session_revoked', otherSid, 'logout']]);
      assert.match(offsetOf(back.events[0]), /^\d+-\d+$/);
      back.socket.close();
    });

    test('locations, offers and admin events are never replayed', async () => {
      const d = await createIdentity(db, 'DRIVER');
      const p = await createIdentity(db, 'PASSENGER');
      const trip = `trip-${d.userId}`;
      const driver = await connectAs(A, '/drivers', d.token);
      const passenger = await reconnect(B, '/passengers', { token: p.token });
      const tripOffset = new Promise((resolve) => passenger.socket.on('trip:updated', (_, offset) => resolve(offset)));
      await internalPost(C, `/internal/v1/trips/${trip}/events`, { type: 'DRIVER_ASSIGNED', passengerId: p.userId, driverId: d.userId });
      const from = await within(tripOffset, 5000, 'trip:updated');
      passenger.socket.close();
      assert.equal((await ask(driver, 'driver:location', { lat: 1, lng: 2 })).ok, true);
      // An offer the driver answers, then the driver drops: it comes back with the trip's
      // events, not the offer.
      const driverOffset = await new Promise((resolve) => {
        driver.once('trip:updated', (_, offset) => resolve(offset));
        internalPost(A, `/internal/v1/trips/${trip}/events`, { type: 'DRIVER_ARRIVING', passengerId: p.userId });
      });
      driver.once('trip:offer', (_, ack) => ack?.({ accept: false }));
      const offered = await internalPost(B, `/internal/v1/drivers/${d.userId}/offers`, { offerId: `offer-${d.userId}`, tripId: 'other-trip', expiresInMs: 3000 });
      assert.equal(offered.status, 200, JSON.stringify(offered.body));
      driver.close();
      const driverBack = await reconnect(C, '/drivers', { token: d.token, offset: driverOffset });
      assert.equal(driverBack.hello.recovered, true);
      assert.deepEqual(driverBack.events.map((e) => e.event), [], 'trip:offer is not replayed');
      driverBack.socket.close();
      const back = await reconnect(C, '/passengers', { token: p.token, offset: from });
      assert.equal(back.hello.recovered, true);
      assert.deepEqual(back.events.map((e) => [e.event, e.args[0].status]), [['trip:updated', 'DRIVER_ARRIVING']],
        'the trip event is replayed, trip:driver_location is not');
      back.socket.close();
      driver.close();
    });
  });
}

describe('recovery: expiry and a Redis that does not answer', () => {
  let db;
  before(async () => {
    db = await createDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  test('an offset older than RECOVERY_WINDOW_MS is not recovered', async () => {
    const replica = await startReplica({ db, redis: null, env: { RECOVERY_WINDOW_MS: '1000' } });
    try {
      const p = await createIdentity(db, 'PASSENGER');
      const s = await reconnect(replica, '/passengers', { token: p.token, offset: '' });
      const position = s.hello.offset;
      const got = new Promise((resolve) => s.socket.on('promo:offer', (_, offset) => resolve(offset)));
      await push(replica, [`passenger:${p.userId}`], { n: 1 });
      const offset = await within(got, 5000, 'the push');
      s.socket.close();
      await new Promise((r) => setTimeout(r, 1500));
      await push(replica, [`passenger:${p.userId}`], { n: 2 });
      for (const from of [offset, position]) {
        const back = await reconnect(replica, '/passengers', { token: p.token, offset: from });
        assert.equal(back.hello.recovered, false, from);
        assert.deepEqual(back.events, [], from);
        back.socket.close();
      }
    } finally {
      await replica.stop();
    }
  });

  test('RECOVERY_WINDOW_MS=0: no offset argument, hello says nothing of recovery', async () => {
    const replica = await startReplica({ db, redis: null, env: { RECOVERY_WINDOW_MS: '0' } });
    try {
      const p = await createIdentity(db, 'PASSENGER');
      const s = await reconnect(replica, '/passengers', { token: p.token, offset: '1-0' });
      assert.equal('recovered' in s.hello, false);
      assert.equal('offset' in s.hello, false);
      const got = new Promise((resolve) => s.socket.on('promo:offer', (...args) => resolve(args)));
      await push(replica, [`passenger:${p.userId}`], { n: 1 });
      assert.deepEqual(await within(got, 5000, 'the push'), [{ n: 1 }]);
      s.socket.close();
    } finally {
      await replica.stop();
    }
  });

  test('Redis frozen during a replay: the handshake still succeeds, not recovered', async () => {
    const redis = await startRedis();
    const cluster = await startCluster(db, 2, { redis: redis.url });
    try {
      const [A, B] = cluster.replicas;
      const p = await createIdentity(db, 'PASSENGER');
      const s = await reconnect(A, '/passengers', { token: p.token });
      const got = new Promise((resolve) => s.socket.on('promo:offer', (_, offset) => resolve(offset)));
      await push(A, [`passenger:${p.userId}`], { n: 1 });
      const offset = await within(got, 5000, 'the push');
      s.socket.close();
      redis.freeze();
      const started = Date.now();
      const back = await reconnect(B, '/passengers', { token: p.token, offset });
      assert.equal(back.hello.recovered, false);
      assert.equal('offset' in back.hello, false, 'no position from a log that did not answer');
      assert.ok(Date.now() - started < 5000, `greeted in ${Date.now() - started} ms`);
      back.socket.close();
    } finally {
      redis.thaw();
      await cluster.stop();
      await redis.stop();
    }
  });
});
