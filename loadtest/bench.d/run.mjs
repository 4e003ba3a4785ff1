// Runs every benchmark scenario against the gateway and the Node peer, the same way, and writes
// loadtest/results/{gateway,peer}.json plus loadtest/results/machine.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const scale = Number(process.env.BENCH_SCALE ?? 1);
const n = (x) => Math.max(10, Math.round(x * scale));
const hardFds = Number(execFileSync('bash', ['-c', 'ulimit -Hn']).toString().trim());
// The most connections one process can hold here, the same count for both: the gateway keeps
// 1,024 descriptors for itself (listeners, pools, logs) and refuses connections beyond the rest.
const maxIdle = n(Math.min(hardFds, 20000) - 1100);

const targets = {
  // BENCH_GATEWAY_ENV='{"NAME":"value"}' adds settings to the gateway's (trying a setting's effect).
  gateway: { command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', LOCATION_RATE_PER_S: '100', ...JSON.parse(process.env.BENCH_GATEWAY_ENV ?? '{}') } },
  peer: { command: ['node', path.join(root, 'loadtest/peers/node-socketio/server.js')], env: { LOCATION_RATE_PER_S: '100' } },
};

const loadgen = (db, args) => runLoadgen(db, args, { bin: LOADGEN });

const addr = (r) => r.url.replace('http://', '');

async function cluster(db, target, count) {
  const prefix = `bench-${target}-${Date.now()}`;
  const { command, env } = targets[target];
  const replicas = [];
  for (let i = 0; i < count; i++) {
    replicas.push(await startReplica({ db, prefix, nodeId: `${target}-${i + 1}`, command, env }));
  }
  return { replicas, stop: () => Promise.all(replicas.map((r) => r.stop())) };
}

async function scenario(db, target, replicas, run) {
  const c = await cluster(db, target, replicas);
  try {
    return await run(c.replicas);
  } finally {
    await c.stop();
  }
}

// A rate is sustained when at least 99% of what was offered arrives, nothing is refused or lost,
// and p99 stays within what an app user would not notice.
const SUSTAINED_P99_MS = 250;

// Runs `step(rate)` at rising rates (each a fresh loadgen run on the same servers) and keeps the
// highest rate `sustained` says was met; stops at the first rate that was not.
async function ramp(rates, step, sustained) {
  const steps = [];
  let best = null;
  for (const rate of rates) {
    const r = await step(rate);
    const ok = sustained(r);
    steps.push({ rate, ok, result: r });
    if (!ok) break;
    best = r;
  }
  return { best, steps };
}

const locationSustained = (r) => r.accepted_per_second >= 0.99 * r.offered_per_second && r.skipped === 0
  && r.unanswered === 0 && Object.keys(r.refused).length === 0 && r.ack.p99_ms <= SUSTAINED_P99_MS;
const fanoutSustained = (r) => r.delivered === r.expected && r.emit_errors === 0
  && r.emits_per_second >= 0.99 * r.target_rate && r.latency.p99_ms <= SUSTAINED_P99_MS;

// BENCH_ONLY=fanout,locations runs those scenarios only (for profiling one path); the report
// needs them all, so a partial run writes loadtest/results/partial-*.json instead.
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
const wanted = (name) => !only || only.has(name);

async function bench(db, target) {
  const out = {};
  const run = async (name, replicas, measure) => {
    if (!wanted(name)) return;
    out[name] = await scenario(db, target, replicas, measure);
    const shown = out[name].best !== undefined ? out[name].best : out[name];
    console.error(`${target} ${name}: ${JSON.stringify(shown, (k, v) => (k === 'curve' ? undefined : v))}`);
  };
  const idle = (a, count) => loadgen(db, ['idle', '--count', String(count), '--rate', '500', '--servers', addr(a),
    '--server-pids', String(a.child.pid), '--settle-secs', '5']);
  await run('idle10k', 1, ([a]) => idle(a, n(10000)));
  await run('idleMax', 1, ([a]) => idle(a, maxIdle));
  await run('handshakeThroughput', 1, ([a]) =>
    loadgen(db, ['handshakes', '--count', String(n(10000)), '--concurrency', '64', '--servers', addr(a), '--server-pids', String(a.child.pid)]));
  await run('handshakeLatency', 1, ([a]) =>
    loadgen(db, ['handshakes', '--count', String(n(5000)), '--rate', '500', '--servers', addr(a), '--server-pids', String(a.child.pid)]));
  // driver:location: a fixed rate both sustain (latency), then rising rates (capacity).
  const drivers = n(1000);
  const locationsAt = (a, perDriver, secs, count = drivers) => loadgen(db, ['locations', '--drivers', String(count), '--rate', String(perDriver),
    '--window', '4', '--secs', String(secs), '--servers', addr(a), '--server-pids', String(a.child.pid)]);
  await run('locations', 1, ([a]) => locationsAt(a, 5, 20));
  // The ramp adds drivers rather than pushing one driver past the gateway's per-socket event
  // budget (30/s): 2,000 drivers at 1-25 updates/s each.
  const rampDrivers = n(2000);
  await run('locationCapacity', 1, ([a]) =>
    ramp([1, 2.5, 5, 7.5, 10, 12.5, 15, 17.5, 20, 25], (perDriver) => locationsAt(a, perDriver, 10, rampDrivers), locationSustained));
  // Fan-out across replicas: the same, pushes through A to passengers on B and C.
  const fanoutAt = (a, b, c, rate, secs) => loadgen(db, ['fanout', '--receivers', String(n(2000)), '--servers', `${addr(b)},${addr(c)}`,
    '--emit-url', a.internalUrl, '--rate', String(rate), '--rooms-per-emit', '10', '--secs', String(secs),
    '--server-pids', [a, b, c].map((r) => r.child.pid).join(',')]).then((r) => ({ ...r, target_rate: rate }));
  await run('fanout', 3, ([a, b, c]) => fanoutAt(a, b, c, 200, 15));
  await run('fanoutCapacity', 3, ([a, b, c]) =>
    ramp([200, 500, 1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000], (rate) => fanoutAt(a, b, c, rate, 10), fanoutSustained));
  await run('revocation', 3, ([a, b, c]) =>
    loadgen(db, ['revocations', '--sockets', String(n(10000)), '--revocations', String(n(300)), '--servers', `${addr(b)},${addr(c)}`, '--revoke-url', a.internalUrl, '--rate', '30']));
  return out;
}

const version = (cmd, args) => {
  try { return execFileSync(cmd, args).toString().trim().split('\n')[0]; } catch { return 'unknown'; }
};
const resultsDir = path.join(root, 'loadtest/results');
mkdirSync(resultsDir, { recursive: true });
const peerPkg = JSON.parse(readFileSync(path.join(root, 'loadtest/peers/node-socketio/package-lock.json'), 'utf8')).packages;
if (!only) writeFileSync(path.join(resultsDir, 'machine.json'), JSON.stringify({
  date: new Date().toISOString(),
  cpu: os.cpus()[0]?.model, cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  kernel: os.release(), fdHardLimit: hardFds, scale,
  rustc: version('rustc', ['--version']), node: process.version,
  redis: version('redis-server', ['--version']), postgres: version('psql', ['--version']),
  socketio: peerPkg['node_modules/socket.io']?.version, redisAdapter: peerPkg['node_modules/@socket.io/redis-adapter']?.version,
  commands: ['loadtest/bench', ...(scale !== 1 ? [`BENCH_SCALE=${scale}`] : [])],
}, null, 2));

const db = await createDatabase();
try {
  await loadgen(db, ['seed', '--drivers', String(Math.max(maxIdle, n(10000))), '--passengers', String(n(2000)), '--admins', '1']);
  for (const target of (process.env.BENCH_TARGETS ?? 'gateway,peer').split(',')) {
    const result = await bench(db, target);
    writeFileSync(path.join(resultsDir, `${only ? 'partial-' : ''}${target}.json`), JSON.stringify(result, null, 2));
  }
} finally {
  await db.drop();
}
