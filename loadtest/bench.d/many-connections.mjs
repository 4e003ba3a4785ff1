// As many idle authenticated connections as this machine allows (the performance issue asks for
// 100,000): REPLICAS cluster-mode replicas on one Redis, one loadgen process per replica (each
// process, server or client, is capped at 20,000 open files here and the gateway keeps 1,024 of
// them for itself). While all are held: each replica's RSS per connection, the replicas' CPU over
// a quiet minute (what the pings cost), and the revocation latency through another replica.
//   node loadtest/bench.d/many-connections.mjs     (REPLICAS=6, PER_REPLICA=16667, QUIET_SECS=60)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const REPLICAS = Number(process.env.REPLICAS ?? 6);
const PER_REPLICA = Number(process.env.PER_REPLICA ?? 16667);
const QUIET_SECS = Number(process.env.QUIET_SECS ?? 60);
const REVOCATIONS = Number(process.env.REVOCATIONS ?? 200);
const TOTAL = REPLICAS * PER_REPLICA;

const proc = (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
const cpuSecs = (pid) => (Number(proc(pid)[11]) + Number(proc(pid)[12])) / 100; // utime + stime, in ticks of 10 ms
const rssKib = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const sockets = async (r) => {
  const text = await (await fetch(`${r.internalUrl}/metrics`)).text();
  return [...text.matchAll(/^gateway_sockets\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const db = await createDatabase();
await loadgen(db, ['seed', '--database-url', db.url, '--drivers', String(TOTAL), '--passengers', '0', '--admins', '0'], { bin: LOADGEN });
const prefix = `many-${Date.now()}`;
const replicas = [];
for (let i = 0; i < REPLICAS; i++) {
  replicas.push(await startReplica({ db, prefix, nodeId: `many-${i + 1}`, command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0' } }));
}
const started = Date.now();
const rssBefore = replicas.map((r) => rssKib(r.child.pid));
// One loadgen per replica, holding its connections until this script is done measuring.
const holders = replicas.map((r, i) => loadgen(db, ['idle', '--count', String(PER_REPLICA), '--first', String(i * PER_REPLICA),
  '--rate', '250', '--servers', r.url.replace('http://', ''), '--server-pids', String(r.child.pid),
  '--settle-secs', '5', '--hold-secs', String(QUIET_SECS + 120)], { bin: LOADGEN }));
let connected = 0;
for (let t = 0; connected < TOTAL; t++) {
  if (t > 300) throw new Error(`only ${connected} of ${TOTAL} connected after 300 s`);
  await sleep(1000);
  connected = (await Promise.all(replicas.map(sockets))).reduce((a, b) => a + b, 0);
}
const connectSecs = (Date.now() - started) / 1000;
await sleep(10000);
const rss = replicas.map((r, i) => ({ replica: r.nodeId, rss_kib: rssKib(r.child.pid), per_connection_bytes: Math.round(((rssKib(r.child.pid) - rssBefore[i]) * 1024) / PER_REPLICA) }));
// The pings' cost: every replica's CPU over a quiet minute (PING_INTERVAL_MS 25 s: two or three
// pings per connection).
const cpu0 = replicas.map((r) => cpuSecs(r.child.pid));
await sleep(QUIET_SECS * 1000);
const quietCpu = replicas.map((r, i) => cpuSecs(r.child.pid) - cpu0[i]);
// Revocations through replica 1 of sessions held on replica 2, with everything connected.
// loadgen's revocation sockets are seeded drivers 0.., whose idle sockets on replica 1 share
// their sessions: each revocation ends one of those too (`still_connected` counts it).
const revocation = await loadgen(db, ['revocations', '--sockets', String(REVOCATIONS * 5), '--revocations', String(REVOCATIONS),
  '--servers', replicas[1].url.replace('http://', ''), '--revoke-url', replicas[0].internalUrl, '--rate', '20'], { bin: LOADGEN });
const stillConnected = (await Promise.all(replicas.map(sockets))).reduce((a, b) => a + b, 0);
const held = await Promise.all(holders);
await Promise.all(replicas.map((r) => r.stop()));
await db.drop();

const pingsPerSec = TOTAL / 25;
const result = {
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) },
  replicas: REPLICAS,
  connections: TOTAL,
  connected_at_peak: connected,
  connect_secs: connectSecs,
  loadgen_errors: held.map((h) => h.errors),
  rss,
  quiet: { secs: QUIET_SECS, replica_cpu_secs: quietCpu, cpu_share_of_one_core: quietCpu.reduce((a, b) => a + b, 0) / QUIET_SECS, cpu_us_per_ping: (quietCpu.reduce((a, b) => a + b, 0) * 1e6) / (pingsPerSec * QUIET_SECS) },
  revocation: { p50_ms: revocation.latency?.p50_ms, p99_ms: revocation.latency?.p99_ms, seen: revocation.disconnects_seen, revoked: REVOCATIONS },
  still_connected: stillConnected,
};
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/many-connections.json'), JSON.stringify(result, null, 2));
const fmt = (v) => v.toLocaleString('en');
const errors = held.reduce((n, h) => n + Object.values(h.errors ?? {}).reduce((a, b) => a + b, 0), 0);
console.log(`| ${fmt(TOTAL)} idle authenticated WebSockets on ${REPLICAS} replicas, one Redis | figure |`);
console.log('|---|---|');
console.log(`| connected at the peak (connect errors) | ${fmt(connected)} (${fmt(errors)}) in ${connectSecs.toFixed(0)} s |`);
for (const r of rss) console.log(`| ${r.replica}: RSS, per connection | ${fmt(Math.round(r.rss_kib / 1024))} MiB, ${fmt(r.per_connection_bytes)} B |`);
console.log(`| replicas' CPU over a quiet ${QUIET_SECS} s (pings every 25 s) | ${result.quiet.cpu_share_of_one_core.toFixed(3)} of one core, ${result.quiet.cpu_us_per_ping.toFixed(0)} µs per ping |`);
console.log(`| revocation through another replica, everything connected: p50 / p99 (seen / revoked) | ${result.revocation.p50_ms} / ${result.revocation.p99_ms} ms (${result.revocation.seen} / ${REVOCATIONS}) |`);
console.log(`\nmachine: ${result.machine.cpus} x ${result.machine.model}, ${result.machine.memory_gib} GiB; command: node loadtest/bench.d/many-connections.mjs (REPLICAS=${REPLICAS}, PER_REPLICA=${PER_REPLICA}, QUIET_SECS=${QUIET_SECS})`);
