// Instruction counts of the gateway's hot paths (valgrind callgrind: repeatable, whatever else the
// machine does), steady state only: instrumentation is switched on once the clients are connected
// and off before they leave, then dumped.
// - SCENARIO=locations: one replica under callgrind, 200 drivers ONLINE sending driver:location
//   with acks at 5/s each; prints instructions per update.
// - SCENARIO=fanout: three replicas, the emitting one (A) and a receiving one (B) under callgrind,
//   pushes to 10 rooms each at 20/s to 400 passengers on B and C; prints instructions per push.
// Read the dumps with `callgrind_annotate --inclusive=yes <file>`.
//   node loadtest/bench.d/callgrind.mjs     (SCENARIO=locations|fanout, OUT=/tmp/callgrind, GATEWAY_BIN)
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const SCENARIO = process.env.SCENARIO ?? 'locations';
const OUT = process.env.OUT ?? '/tmp/callgrind';
const WARMUP_MS = 8000;
const WINDOW_MS = 8000;
mkdirSync(OUT, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const addr = (r) => r.url.replace('http://', '');
const env = { RUST_LOG: 'warn,gateway::app=info', DRAIN_SPREAD_MS: '0', LOCATION_RATE_PER_S: '100' };
const underCallgrind = (name) => ['valgrind', '--tool=callgrind', '--instr-atstart=no',
  `--callgrind-out-file=${OUT}/${SCENARIO}.${name}.%p`, GATEWAY, 'serve'];
const control = (args, r) => execFileSync('callgrind_control', [...args, String(r.child.pid)], { stdio: 'ignore' });
const total = (file) => Number(/^totals: (\d+)/m.exec(execFileSync('grep', ['^totals:', file]).toString())?.[1] ?? 0);

async function measured(profiled, run, operations) {
  const result = run();
  await sleep(WARMUP_MS);
  profiled.forEach((r) => control(['-i', 'on'], r));
  await sleep(WINDOW_MS);
  profiled.forEach((r) => { control(['-i', 'off'], r); control(['-d'], r); });
  await result;
  const counts = {};
  for (const r of profiled) {
    const dump = readdirSync(OUT).filter((f) => f.startsWith(`${SCENARIO}.${r.nodeId}.${r.child.pid}.`)).sort().at(-1);
    counts[r.nodeId] = { file: path.join(OUT, dump), per_operation: Math.round(total(path.join(OUT, dump)) / operations) };
  }
  return counts;
}

const db = await createDatabase();
const prefix = `callgrind-${Date.now()}`;
const replicas = [];
try {
  if (SCENARIO === 'locations') {
    await loadgen(db, ['seed', '--drivers', '200', '--passengers', '1', '--admins', '1'], { bin: LOADGEN });
    const a = await startReplica({ db, prefix, nodeId: 'A', command: underCallgrind('A'), env });
    replicas.push(a);
    const secs = (WARMUP_MS + WINDOW_MS) / 1000 + 4;
    // 200 drivers x 5/s: the window holds about 8,000 updates (fewer if callgrind falls behind:
    // then the count below is an upper bound per update).
    const counts = await measured([a], () => loadgen(db, ['locations', '--drivers', '200', '--rate', '5', '--secs', String(secs),
      '--servers', addr(a)], { bin: LOADGEN }), (200 * 5 * WINDOW_MS) / 1000);
    console.log(JSON.stringify({ scenario: SCENARIO, instructions_per_update: counts }, null, 2));
  } else {
    await loadgen(db, ['seed', '--drivers', '1', '--passengers', '400', '--admins', '1'], { bin: LOADGEN });
    const a = await startReplica({ db, prefix, nodeId: 'A', command: underCallgrind('A'), env });
    const b = await startReplica({ db, prefix, nodeId: 'B', command: underCallgrind('B'), env });
    const c = await startReplica({ db, prefix, nodeId: 'C', command: [GATEWAY, 'serve'], env });
    replicas.push(a, b, c);
    const secs = (WARMUP_MS + WINDOW_MS) / 1000 + 4;
    const counts = await measured([a, b], () => loadgen(db, ['fanout', '--receivers', '400', '--servers', `${addr(b)},${addr(c)}`,
      '--emit-url', a.internalUrl, '--rate', '20', '--rooms-per-emit', '10', '--secs', String(secs)], { bin: LOADGEN }), (20 * WINDOW_MS) / 1000);
    console.log(JSON.stringify({ scenario: SCENARIO, instructions_per_push: counts }, null, 2));
  }
} finally {
  await Promise.allSettled(replicas.map((r) => r.stop('SIGKILL')));
  await db.drop();
}
