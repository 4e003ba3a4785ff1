// A rolling update under load (deploy issue): three cluster-mode replicas holding COUNT drivers
// (loadgen), one replica sent SIGTERM the way Kubernetes does, its clients reconnecting at once to
// the other two. Run twice: the old behaviour (every socket dropped at once, accept queue 128) and
// the new defaults (disconnects spread over DRAIN_SPREAD_MS, accept queue 4096). Writes
// loadtest/results/roll.json and prints a Markdown table.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const count = Number(process.env.COUNT ?? 6000);

const variants = {
  'before: all at once, backlog 128': { DRAIN_SPREAD_MS: '0', LISTEN_BACKLOG: '128' },
  'after: spread over 10 s, backlog 4096': {},
};

const db = await createDatabase();
await runLoadgen(db, ['seed', '--drivers', String(count), '--passengers', '10', '--admins', '1'], { bin: LOADGEN });
const runs = [];
for (const [name, env] of Object.entries(variants)) {
  const prefix = `roll-${Date.now()}`;
  const replicas = [];
  for (let i = 0; i < 3; i++) {
    replicas.push(await startReplica({
      db, prefix, nodeId: `roll-${i + 1}`, command: [GATEWAY, 'serve'],
      env: { RUST_LOG: 'warn,gateway::app=info', SHUTDOWN_GRACE_MS: '25000', ...env },
    }));
  }
  const servers = replicas.map((r) => r.url.replace('http://', ''));
  try {
    const r = await runLoadgen(db, ['roll', '--count', String(count), '--servers', servers.join(','),
      '--victim', servers[0], '--victim-pid', String(replicas[0].child.pid), '--wait-secs', '40'], { bin: LOADGEN });
    console.error(JSON.stringify({ variant: name, ...r }));
    runs.push({ variant: name, ...r });
  } finally {
    await Promise.all(replicas.map((x) => x.stop()));
  }
}
await db.drop();
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/roll.json'), JSON.stringify({ machine, count, runs }, null, 2));

const ms = (s) => `${Math.round(s)} ms`;
console.log(`| ${count} drivers on 3 replicas, one rolled | ${runs.map((r) => r.variant).join(' | ')} |`);
console.log(`|---|${runs.map(() => '---').join('|')}|`);
const row = (label, f) => console.log(`| ${label} | ${runs.map(f).join(' | ')} |`);
row('sockets dropped / back / failed', (r) => `${r.dropped} / ${r.reconnected} / ${Object.values(r.failed).reduce((a, b) => a + b, 0)}`);
row('dropped after SIGTERM: p50 / p99 / last', (r) => `${ms(r.closed_after_sigterm.p50_ms)} / ${ms(r.closed_after_sigterm.p99_ms)} / ${ms(r.closed_after_sigterm.max_ms)}`);
row('close to hello elsewhere: p50 / p99 / max', (r) => `${ms(r.reconnect.p50_ms)} / ${ms(r.reconnect.p99_ms)} / ${ms(r.reconnect.max_ms)}`);
row('handshake during the roll: p99', (r) => ms(r.handshake.p99_ms));
row('identity queries (reconnect handshakes): peak rate over 100 ms / most in one second', (r) => `${Math.round(r.handshakes_peak_per_second_100ms).toLocaleString('en')}/s / ${r.handshakes_peak_in_one_second.toLocaleString('en')}`);
console.log(`\nmachine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB; command: node loadtest/bench.d/roll.mjs (COUNT=${count})`);
