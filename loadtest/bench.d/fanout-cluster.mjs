// Fan-out on one Redis versus a Redis Cluster of three masters (Redis Cluster issue, item 5):
// three release replicas, passengers on two of them, pushes through the third's internal API at
// rising rates (each push to 10 rooms). For each rate: what arrived, what was lost (loadgen counts
// every expected delivery; the replicas count what their adapter lost,
// gateway_adapter_messages_lost_total), p99 latency and server CPU per delivered message; the
// capacity is the highest rate delivered whole within the latency bound (the run goes on past
// it, to see where loss starts). Writes
// loadtest/results/fanout-cluster.json and prints a Markdown table.
//   node loadtest/bench.d/fanout-cluster.mjs     (RECEIVERS=2000, SECS=10)
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen, REDIS_URL } from '../../testkit/harness.js';
import { startRedisCluster } from '../../testkit/redis-cluster.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const receivers = Number(process.env.RECEIVERS ?? 2000);
const secs = Number(process.env.SECS ?? 10);
const rates = (process.env.RATES ?? '500,1000,2000,4000,6000,8000,10000').split(',').map(Number);
const SUSTAINED_P99_MS = 250;

const lost = async (replicas) => {
  let total = 0;
  for (const r of replicas) {
    const text = await (await fetch(`${r.internalUrl}/metrics`)).text();
    for (const m of text.matchAll(/^gateway_adapter_messages_lost_total\{[^}]*\} (\d+)/gm)) total += Number(m[1]);
  }
  return total;
};

const db = await createDatabase();
await runLoadgen(db, ['seed', '--drivers', '10', '--passengers', String(receivers), '--admins', '1'], { bin: LOADGEN });
const cluster = await startRedisCluster({ masters: 3 });
const topologies = { 'one Redis': REDIS_URL, 'Redis Cluster, 3 masters': cluster.url };
const runs = [];
for (const [topology, redis] of Object.entries(topologies)) {
  const prefix = `fanout-${Date.now()}`;
  const replicas = [];
  for (let i = 0; i < 3; i++) {
    replicas.push(await startReplica({
      db, redis, prefix, nodeId: `fanout-${i + 1}`, command: [GATEWAY, 'serve'],
      env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0' },
    }));
  }
  const [a, b, c] = replicas;
  const steps = [];
  try {
    for (const rate of rates) {
      const lostBefore = await lost(replicas);
      const r = await runLoadgen(db, ['fanout', '--receivers', String(receivers),
        '--servers', [b, c].map((x) => x.url.replace('http://', '')).join(','), '--emit-url', a.internalUrl,
        '--rate', String(rate), '--rooms-per-emit', '10', '--secs', String(secs),
        '--server-pids', replicas.map((x) => x.child.pid).join(',')], { bin: LOADGEN });
      const adapterLost = (await lost(replicas)) - lostBefore;
      const sustained = r.delivered === r.expected && r.emit_errors === 0
        && r.emits_per_second >= 0.99 * rate && r.latency.p99_ms <= SUSTAINED_P99_MS;
      const step = { rate, sustained, adapter_lost: adapterLost, ...r };
      delete step.curve;
      console.error(JSON.stringify({ topology, ...step }));
      steps.push(step);
      // Past the point where most is lost there is nothing more to learn.
      if (r.delivered < 0.9 * r.expected) break;
    }
  } finally {
    await Promise.all(replicas.map((x) => x.stop()));
  }
  runs.push({ topology, steps });
}
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/fanout-cluster.json'), JSON.stringify({ machine, receivers, secs, runs }, null, 2));
await cluster.stop();
await db.drop();

const fmt = (x) => Math.round(x).toLocaleString('en');
console.log('| topology | pushes/s offered (x10 rooms) | deliveries / expected | pushes refused by the API (saturated) | deliveries of accepted pushes lost | lost (adapter counter) | p50 / p99 | CPU per delivered message: replicas + Redis |');
console.log('|---|---|---|---|---|---|---|---|');
for (const { topology, steps } of runs) {
  for (const s of steps) {
    const lostAccepted = s.expected - s.delivered - 10 * s.emit_errors;
    console.log(`| ${topology} | ${fmt(s.rate)}${s.sustained ? '' : ' (not sustained)'} | ${fmt(s.delivered)} / ${fmt(s.expected)} | ${fmt(s.emit_errors)} | ${fmt(lostAccepted)} | ${s.adapter_lost} | ${s.latency.p50_ms.toFixed(1)} / ${fmt(s.latency.p99_ms)} ms | ${s.cpu_per_message.servers_us.toFixed(1)} + ${s.cpu_per_message.redis_us.toFixed(1)} µs |`);
  }
}
console.log(`\nmachine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB; command: node loadtest/bench.d/fanout-cluster.mjs (RECEIVERS=${receivers}, SECS=${secs})`);
