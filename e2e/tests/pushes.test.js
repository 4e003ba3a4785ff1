// Pushes through `/internal/v1/emit` (issue "faults", item 1): a burst of concurrent pushes to
// one passenger is accepted and delivered whole, over polling too (300 at once were refused with
// 503 when a socket queued only 128 packets), and each answer says how many sockets the push was
// sent to, cluster-wide, and how many of this replica's could not queue it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  MODES, createDatabase, createIdentity, startDeployment, connectAs, internalPost, eventually, sign,
} from '../../testkit/harness.js';

for (const mode of MODES) {
  describe(`pushes (${mode})`, () => {
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

    const push = (replica, rooms, data, event = 'promo:offer', extra = {}) =>
      internalPost(replica, '/internal/v1/emit', { namespace: '/passengers', rooms, event, data, ...extra });

    for (const transports of [['polling'], ['websocket']]) {
      test(`300 concurrent pushes to one passenger (${transports}): every one accepted and delivered`, async () => {
        const p = await createIdentity(db, 'PASSENGER');
        const socket = await connectAs(A, '/passengers', p.token, { transports });
        const seen = new Set();
        socket.on('promo:offer', (data) => seen.add(data.n));
        const answers = await Promise.all(Array.from({ length: 300 }, (_, n) =>
          push(n % 2 ? B : A, [`passenger:${p.userId}`], { n })));
        for (const res of answers) {
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.deepEqual(res.body, { ok: true, dropped: 0 });
        }
        await eventually(() => seen.size === 300, 10000, 50, `all 300 pushes on the socket (${seen.size} so far)`);
        assert.equal(socket.connected, true);
        socket.close();
      });
    }

    test('a socket that stops taking packets is closed once its queue is full, and the push says so', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      // A raw Engine.IO polling session: open, CONNECT to /passengers, read the greeting, then
      // never poll again, as a client stuck in the background would.
      const base = `${A.url}/socket.io/?EIO=4&transport=polling`;
      const opened = await (await fetch(base)).text();
      const { sid } = JSON.parse(opened.slice(1));
      const session = `${base}&sid=${sid}`;
      const sent = await fetch(session, { method: 'POST', body: `40/passengers,${JSON.stringify({ token: p.token })}` });
      assert.equal(sent.status, 200);
      assert.match(await eventually(async () => {
        const got = await (await fetch(session)).text();
        return got.includes('hello') ? got : null;
      }, 5000, 50, 'the greeting'), /"nsp":"\/passengers"/);

      // To the session's room: a push to the user's own room goes through the recovery log, and
      // the replicas find full queues as they hand it out, after the answer.
      let dropped = 0;
      for (let n = 0; n < 1100 && dropped === 0; n++) {
        const res = await push(A, [`session:${p.sid}`], { n });
        assert.equal(res.status, 200);
        dropped = res.body.dropped;
      }
      assert.equal(dropped, 1, 'the push that found the queue full says so');
      const after = await fetch(session);
      const body = await after.text();
      assert.ok(after.status === 400 || body.startsWith('1') || body.includes('\x1e1'), `the session is closed (${after.status} ${body.slice(0, 80)})`);
      const metrics = await (await fetch(`${A.internalUrl}/metrics`)).text();
      assert.match(metrics, /^gateway_emits_dropped_total\{namespace="passengers"\} [1-9]/m);
    });

    test('asked to, the answer counts the sockets in the rooms once each, across replicas', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const second = sign({ sub: p.userId, sid: await db.session(p.userId) });
      const onA = await connectAs(A, '/passengers', p.token);
      const onC = await connectAs(C, '/passengers', second);
      const rooms = [`passenger:${p.userId}`, `session:${p.sid}`];
      const both = await push(B, rooms, { hello: 1 }, 'promo:offer', { count: true });
      assert.deepEqual(both.body, { ok: true, sockets: 2, dropped: 0 });
      const nobody = await push(B, ['passenger:nobody-here'], { hello: 2 }, 'promo:offer', { count: true });
      assert.deepEqual(nobody.body, { ok: true, sockets: 0, dropped: 0 });
      const unasked = await push(B, rooms, { hello: 3 });
      assert.deepEqual(unasked.body, { ok: true, dropped: 0 }, 'no count unless asked');
      const wrong = await push(B, rooms, { hello: 4 }, 'promo:offer', { count: 'yes' });
      assert.equal(wrong.status, 400);
      assert.equal(wrong.body.error.code, 'INVALID_PAYLOAD');
      onA.close();
      onC.close();
    });
  });
}
