// The load-testing tools run (a tiny run of each scenario; the benchmarks themselves are
// `loadtest/bench`, not part of the test suite): loadgen against a three-replica cluster, and the
// results are complete (every connection made, every message delivered, every revocation seen).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createDatabase, startCluster, loadgen as runLoadgen, within } from '../../testkit/harness.js';

let db;
let cluster;
let A, B, C;

before(async () => {
  db = await createDatabase();
  cluster = await startCluster(db, 3, { env: { LOCATION_RATE_PER_S: '50' } });
  [A, B, C] = cluster.replicas;
  await loadgen(['seed', '--drivers', '300', '--passengers', '300', '--admins', '1']);
});

after(async () => {
  await cluster?.stop();
  await db?.drop();
});

const loadgen = (args) => runLoadgen(db, args, { timeout: 60000 });

const addr = (r) => r.url.replace('http://', '');

test('idle: every socket connects and the server memory is measured', async () => {
  const r = await loadgen(['idle', '--count', '200', '--servers', addr(A), '--server-pids', String(A.child.pid), '--settle-secs', '0']);
  assert.equal(r.connected, 200);
  assert.deepEqual(r.errors, {});
  assert.equal(r.handshake.count, 200);
  assert.ok(r.rss_after_kib > 0 && r.bytes_per_connection > 0);
});

test('handshakes: throughput, fixed-rate latency and where the CPU went', async () => {
  const fast = await loadgen(['handshakes', '--count', '200', '--concurrency', '16', '--servers', `${addr(A)},${addr(B)}`,
    '--server-pids', `${A.child.pid},${B.child.pid}`]);
  assert.equal(fast.completed, 200);
  assert.ok(fast.handshakes_per_second > 0);
  // The servers' CPU is read from /proc: 200 handshakes take well over the 10 ms it counts in.
  const cpu = fast.cpu_per_handshake;
  assert.ok(cpu.servers_us > 0, JSON.stringify(cpu));
  assert.equal(cpu.total_us, cpu.servers_us + cpu.postgres_us + cpu.redis_us + cpu.load_generator_us);
  const paced = await loadgen(['handshakes', '--count', '50', '--rate', '100', '--servers', addr(C)]);
  assert.equal(paced.completed, 50);
  assert.equal(paced.scenario, 'handshake-latency');
});

test('locations: acks for every update', async () => {
  const r = await loadgen(['locations', '--drivers', '50', '--rate', '5', '--secs', '2', '--servers', addr(B)]);
  assert.equal(r.drivers, 50);
  assert.deepEqual(r.refused, {});
  assert.equal(r.unanswered, 0);
  assert.ok(r.ack.count >= 400, `${r.ack.count} acks`);
});

test('fanout: every pushed message is delivered across replicas', async () => {
  const r = await loadgen(['fanout', '--receivers', '100', '--servers', `${addr(B)},${addr(C)}`, '--emit-url', A.internalUrl, '--rate', '20', '--rooms-per-emit', '5', '--secs', '2']);
  assert.equal(r.receivers, 100);
  assert.equal(r.emit_errors, 0);
  assert.equal(r.delivered, r.expected);
});

test('revocations: every revoked session is disconnected on another replica', async () => {
  const r = await loadgen(['revocations', '--sockets', '200', '--revocations', '20', '--servers', `${addr(B)},${addr(C)}`, '--revoke-url', A.internalUrl, '--rate', '20']);
  assert.equal(r.connected, 200);
  assert.equal(r.revoked, 20);
  assert.equal(r.disconnects_seen, 20);
  assert.equal(r.request_errors, 0);
});

// Last: it drains replica C.
test('roll: a drained replica\'s clients come back on the others, spread over DRAIN_SPREAD_MS', async () => {
  const r = await loadgen(['roll', '--count', '90', '--servers', [A, B, C].map(addr).join(','),
    '--victim', addr(C), '--victim-pid', String(C.child.pid), '--wait-secs', '20']);
  assert.equal(r.connected, 90);
  assert.equal(r.dropped, 30);
  assert.equal(r.closed_before_sigterm, 0);
  assert.equal(r.reconnected, 30, `every dropped client is greeted elsewhere: ${JSON.stringify(r.failed)}`);
  // The harness' SHUTDOWN_GRACE_MS is 5 s: the drain spreads over 2 s.
  assert.ok(r.closed_after_sigterm.max_ms >= 1500, `spread: last close at ${r.closed_after_sigterm.max_ms} ms`);
  assert.equal((await within(C.exited, 20000, 'the rolled replica to exit')).code, 0);
});

test('fuzz: mutated protocol packets close their own sessions; the replica keeps answering its control client', async () => {
  const r = await loadgen(['fuzz', '--sessions', '4', '--packets', '3000', '--seed', String(Date.now() % 1000), '--identities', '250', '--servers', addr(B)]);
  assert.equal(r.packets, 3000);
  assert.ok(r.sessions_closed_by_server > 0, 'some mutations are fatal to their session');
  assert.ok(r.control.asked > 0);
  assert.equal(r.control.answered, r.control.asked, `control acks answered (seed ${r.seed})`);
  assert.equal(r.connects_after, true);
  assert.equal((await fetch(`${B.internalUrl}/livez`)).status, 200);
  assert.equal(B.child.exitCode, null, 'the replica is still running');
});
