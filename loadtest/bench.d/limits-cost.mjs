// The cost of the per-user limits on the handshake (lifecycle.md): server and Redis CPU per
// handshake on one cluster-mode replica with the defaults (MAX_SOCKETS_PER_USER=5,
// HANDSHAKE_RATE_PER_USER=10) against both off. Variants alternate over ROUNDS rounds so drift on a
// shared machine hits both. Writes loadtest/results/limits-cost.json and prints a Markdown table.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen } from '../../testkit/harness.js';
import { alternate, medians } from './rounds.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const rounds = Number(process.env.ROUNDS ?? 3);
const count = Number(process.env.COUNT ?? 10000);

const variants = {
  'limits off': { MAX_SOCKETS_PER_USER: '0', HANDSHAKE_RATE_PER_USER: '0' },
  'limits on (defaults)': {},
};

const db = await createDatabase();
await runLoadgen(db, ['seed', '--drivers', String(count), '--passengers', '10', '--admins', '1'], { bin: LOADGEN });

async function measure(name, env) {
  const replica = await startReplica({
    db, prefix: `limits-cost-${Date.now()}`, nodeId: 'limits-1', command: [GATEWAY, 'serve'],
    env: { RUST_LOG: 'warn,gateway::app=info', ...env },
  });
  const addr = replica.url.replace('http://', '');
  try {
    const r = await runLoadgen(db, ['handshakes', '--count', String(count), '--concurrency', '64', '--servers', addr,
      '--server-pids', String(replica.child.pid)], { bin: LOADGEN });
    return { variant: name, completed: r.completed, server_us: r.cpu_per_handshake.servers_us,
      redis_us: r.cpu_per_handshake.redis_us, postgres_us: r.cpu_per_handshake.postgres_us };
  } finally {
    await replica.stop();
  }
}

const runs = await alternate(rounds, variants, measure);
await db.drop();

const summary = medians(runs, variants, ['server_us', 'redis_us', 'postgres_us']);
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/limits-cost.json'), JSON.stringify({ machine, rounds, runs, summary }, null, 2));
const [off, on] = summary;
console.log(`| CPU per handshake, µs (median of ${rounds} rounds, ${count.toLocaleString('en')} at concurrency 64) | limits off | limits on | difference |`);
console.log('|---|---|---|---|');
for (const key of ['server_us', 'redis_us', 'postgres_us']) {
  console.log(`| ${key.replace('_us', '')} | ${off[key]} | ${on[key]} | ${(((on[key] - off[key]) / off[key]) * 100).toFixed(1)}% |`);
}
console.log(`\nmachine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB`);
