// A replica crashes under load (faults issue, item 2): three cluster-mode replicas hold COUNT
// drivers (loadgen), one is sent SIGKILL, and its COUNT/3 clients reconnect to the other two at the
// same instant, retrying refused attempts with a backoff as socket.io-client does. Run twice: with
// handshake shedding (MAX_PENDING_HANDSHAKES, the default 1,024) and without (a limit no storm
// reaches), to show what shedding changes. Writes loadtest/results/crash-storm.json and prints a
// Markdown table. COUNT defaults to 15,000 (5,000 reconnecting): one loadgen process holds them
// all, and a process here is capped at 20,000 open files.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const count = Number(process.env.COUNT ?? 15000);

const variants = {
  'shedding (MAX_PENDING_HANDSHAKES 1,024)': {},
  'no shedding': { MAX_PENDING_HANDSHAKES: '1000000' },
};

const db = await createDatabase();
await runLoadgen(db, ['seed', '--drivers', String(count), '--passengers', '10', '--admins', '1'], { bin: LOADGEN });
const runs = [];
for (const [name, env] of Object.entries(variants)) {
  const prefix = `crash-${Date.now()}`;
  const replicas = [];
  for (let i = 0; i < 3; i++) {
    replicas.push(await startReplica({
      db, prefix, nodeId: `crash-${i + 1}`, command: [GATEWAY, 'serve'],
      env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0', ...env },
    }));
  }
  const servers = replicas.map((r) => r.url.replace('http://', ''));
  try {
    const r = await runLoadgen(db, ['roll', '--count', String(count), '--servers', servers.join(','),
      '--victim', servers[0], '--victim-pid', String(replicas[0].child.pid), '--signal', 'KILL', '--wait-secs', '60'], { bin: LOADGEN });
    console.error(JSON.stringify({ variant: name, ...r }));
    runs.push({ variant: name, ...r });
  } finally {
    await Promise.all(replicas.map((x) => x.stop()));
  }
}
await db.drop();
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/crash-storm.json'), JSON.stringify({ machine, count, runs }, null, 2));

const ms = (s) => `${Math.round(s).toLocaleString('en')} ms`;
const total = (errors) => Object.values(errors).reduce((a, b) => a + b, 0);
console.log(`| ${count.toLocaleString('en')} drivers on 3 replicas, one SIGKILLed | ${runs.map((r) => r.variant).join(' | ')} |`);
console.log(`|---|${runs.map(() => '---').join('|')}|`);
const row = (label, f) => console.log(`| ${label} | ${runs.map(f).join(' | ')} |`);
row('sockets dropped / back / not back in 60 s', (r) => `${r.dropped.toLocaleString('en')} / ${r.reconnected.toLocaleString('en')} / ${total(r.failed)}`);
row('attempts refused on the way back (shed: Service unavailable)', (r) => total(r.refused_attempts).toLocaleString('en'));
row('drop to hello elsewhere: p50 / p99 / max', (r) => `${ms(r.reconnect.p50_ms)} / ${ms(r.reconnect.p99_ms)} / ${ms(r.reconnect.max_ms)}`);
row('the handshake that succeeded, TCP connect to hello: p50 / p99 / max', (r) => `${ms(r.handshake.p50_ms)} / ${ms(r.handshake.p99_ms)} / ${ms(r.handshake.max_ms)}`);
row('identity queries: peak rate over 100 ms / most in one second', (r) => `${Math.round(r.handshakes_peak_per_second_100ms).toLocaleString('en')}/s / ${r.handshakes_peak_in_one_second.toLocaleString('en')}`);
console.log(`\nmachine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB; command: node loadtest/bench.d/crash-storm.mjs (COUNT=${count})`);
for (const r of runs) console.log(`${r.variant}: refused attempts ${JSON.stringify(r.refused_attempts)}, not back ${JSON.stringify(r.failed)}`);
