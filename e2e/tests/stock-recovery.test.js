// Socket.IO's own connection state recovery, done by the stock socket.io-client with no app code
// (issue 23, item 2): the CONNECT answer carries a `pid`; the client sends it back with the offset
// of the last event it got, and `socket.recovered` is true when the gateway answers with the same
// pid after replaying what was missed: on another replica, after every replica restarted, and
// before the client got any event (the pid carries where its socket started).
// The token still decides who connects and whose events are replayed; another user's pid is
// answered with a new one.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  MODES, createDatabase, createIdentity, startDeployment, startCluster, internalPost, within,
  record, connectOk, client, RECONNECTING,
} from '../../testkit/harness.js';

const push = (replica, userId, n) => internalPost(replica, '/internal/v1/emit', {
  namespace: '/passengers', rooms: [`passenger:${userId}`], event: 'promo:offer', data: { n },
});

/** A stock client (reconnection on, no app code for recovery) greeted on `replica`. */
async function stockClient(replica, token) {
  const socket = client(replica.url, '/passengers', { auth: { token }, ...RECONNECTING });
  const promos = record(socket, 'promo:offer');
  await within(connectOk(socket), 10000, `hello from ${replica.nodeId}`);
  return { socket, promos };
}

/**
 * Drops the client's transport while it points at `next` (a balancer sending it elsewhere), runs
 * `meanwhile` while it is away, and resolves once it is greeted again.
 */
async function dropAndReturn(socket, next, meanwhile) {
  const gone = new Promise((resolve) => socket.once('disconnect', resolve));
  socket.io.reconnection(false);
  socket.io.engine.close();
  await within(gone, 5000, 'the client to see its transport close');
  await meanwhile();
  socket.io.uri = next.url;
  const greeted = new Promise((resolve) => socket.once('hello', resolve));
  socket.io.reconnection(true);
  socket.connect();
  return within(greeted, 10000, `hello from ${next.nodeId} after the reconnect`);
}

for (const mode of MODES) {
  describe(`stock-client recovery (${mode})`, () => {
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

    test('a dropped client gets what it missed on reconnect, and socket.recovered is true', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const { socket, promos } = await stockClient(A, p.token);
      assert.equal(socket.recovered, false, 'a first connection recovers nothing');
      assert.ok(socket._pid, 'the CONNECT answer carried a pid');
      await push(C, p.userId, 1);
      await within(promos.until((d) => d.n === 1), 5000, 'the first push');
      const pid = socket._pid;
      await dropAndReturn(socket, B, async () => {
        await push(C, p.userId, 2);
        await push(C, p.userId, 3);
      });
      assert.equal(socket.recovered, true, 'recovered, by the stock client');
      assert.equal(socket._pid, pid, 'the same pid');
      await within(promos.until((d) => d.n === 3), 5000, 'the missed pushes');
      assert.deepEqual(promos.seen.map((d) => d.n), [1, 2, 3], 'each once, in order');
      socket.close();
    });

    test('a client dropped before its first event recovers too: its pid says where it started', async () => {
      const p = await createIdentity(db, 'PASSENGER');
      const { socket, promos } = await stockClient(A, p.token);
      assert.equal(socket._lastOffset, undefined, 'no event yet: the stock client has no offset to send');
      const pid = socket._pid;
      await dropAndReturn(socket, B, async () => {
        await push(C, p.userId, 1);
      });
      assert.equal(socket.recovered, true, 'recovered from where its pid was made');
      assert.equal(socket._pid, pid, 'the same pid');
      await within(promos.until((d) => d.n === 1), 5000, 'the push sent while it was away');
      assert.deepEqual(promos.seen.map((d) => d.n), [1], 'once');
      socket.close();
    });

    test('another user\'s pid gets a new one, even with an offset that recovers', async () => {
      const victim = await createIdentity(db, 'PASSENGER');
      const v = await stockClient(A, victim.token);
      const stranger = await createIdentity(db, 'PASSENGER');
      const own = await stockClient(A, stranger.token);
      await push(C, stranger.userId, 1);
      await within(own.promos.until(), 5000, 'the stranger\'s own push');
      const offset = own.socket._lastOffset;
      assert.ok(offset, 'the stock client kept the offset of its last event');
      own.socket.close();
      await push(C, stranger.userId, 2);
      // The stranger's own offset (still kept) with the victim's pid.
      const socket = client(B.url, '/passengers', { auth: { token: stranger.token, pid: v.socket._pid, offset } });
      const promos = record(socket, 'promo:offer');
      const { hello } = await within(connectOk(socket), 10000, 'the stranger greeted');
      assert.equal(hello.recovered, true, 'their own events were replayed');
      assert.deepEqual(promos.seen.map((d) => d.n), [2]);
      assert.ok(socket._pid && socket._pid !== v.socket._pid, 'a new pid, not the victim\'s');
      socket.close();
      v.socket.close();
    });
  });
}

describe('stock-client recovery after every replica restarted', () => {
  test('the pid and the kept events outlive the replicas', async () => {
    const db = await createDatabase();
    let cluster = await startCluster(db, 2);
    try {
      const p = await createIdentity(db, 'PASSENGER');
      const { socket, promos } = await stockClient(cluster.replicas[0], p.token);
      await push(cluster.replicas[1], p.userId, 1);
      await within(promos.until((d) => d.n === 1), 5000, 'the first push');
      const pid = socket._pid;
      let fresh;
      await dropAndReturn(socket, { get url() { return fresh.replicas[0].url; }, nodeId: 'a restarted replica' }, async () => {
        await cluster.stop();
        fresh = await startCluster(db, 2, { prefix: cluster.prefix });
        await push(fresh.replicas[1], p.userId, 2);
      });
      cluster = fresh;
      assert.equal(socket.recovered, true, 'recovered after every replica restarted');
      assert.equal(socket._pid, pid);
      await within(promos.until((d) => d.n === 2), 5000, 'the push sent while the replicas were down');
      socket.close();
    } finally {
      await cluster.stop();
      await db.drop();
    }
  });
});
