// The cost of trace export (telemetry.md: "with no endpoint set, tracing must cost next to
// nothing"): server CPU per handshake and per driver:location with ack, on one cluster-mode
// replica, without an exporter and with one exporting every span (always_on) to an OTLP/HTTP sink
// on this machine. Variants alternate over several rounds so drift on a shared machine hits both.
// Writes loadtest/results/tracing-cost.json and prints a Markdown table.
import http from 'node:http';
import { once } from 'node:events';
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen } from '../../testkit/harness.js';
import { alternate, medians } from './rounds.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const scale = Number(process.env.BENCH_SCALE ?? 1);
const n = (x) => Math.max(10, Math.round(x * scale));
const rounds = Number(process.env.ROUNDS ?? 3);

// An OTLP/HTTP sink: accepts every export and counts what arrived (its CPU is not the gateway's).
const sink = { requests: 0, bytes: 0 };
const server = http.createServer((req, res) => {
  req.on('data', (chunk) => { sink.bytes += chunk.length; });
  req.on('end', () => {
    sink.requests += 1;
    res.writeHead(200, { 'content-type': 'application/x-protobuf' });
    res.end();
  });
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const endpoint = `http://127.0.0.1:${server.address().port}`;

const variants = {
  'no exporter': {},
  'OTLP exporter, every span': { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_SAMPLER: 'always_on' },
};

const db = await createDatabase();
await runLoadgen(db, ['seed', '--drivers', String(n(10000)), '--passengers', '10', '--admins', '1'], { bin: LOADGEN });

async function measure(name, env) {
  const replica = await startReplica({
    db, prefix: `tracing-cost-${Date.now()}`, nodeId: 'cost-1', command: [GATEWAY, 'serve'],
    env: { RUST_LOG: 'warn,gateway::app=info', LOCATION_RATE_PER_S: '100', ...env },
  });
  const addr = replica.url.replace('http://', '');
  const pid = String(replica.child.pid);
  const before = { ...sink };
  try {
    const handshakes = await runLoadgen(db, ['handshakes', '--count', String(n(10000)), '--concurrency', '64',
      '--servers', addr, '--server-pids', pid], { bin: LOADGEN });
    const locations = await runLoadgen(db, ['locations', '--drivers', String(n(1000)), '--rate', '5', '--window', '4',
      '--secs', '20', '--servers', addr, '--server-pids', pid], { bin: LOADGEN });
    return {
      variant: name,
      handshake_us: handshakes.cpu_per_handshake.servers_us,
      handshakes_per_second: handshakes.handshakes_per_second,
      update_us: locations.cpu_per_update.servers_us,
      updates_per_second: locations.accepted_per_second,
      unanswered: locations.unanswered,
      exports: sink.requests - before.requests,
      exported_bytes: sink.bytes - before.bytes,
    };
  } finally {
    await replica.stop();
  }
}

const runs = await alternate(rounds, variants, measure);
server.close();
await db.drop();

const summary = medians(runs, variants, ['handshake_us', 'update_us']).map((m) => {
  const mine = runs.filter((r) => r.variant === m.variant);
  return {
    ...m,
    exports: mine.reduce((s, r) => s + r.exports, 0),
    exported_bytes: mine.reduce((s, r) => s + r.exported_bytes, 0),
  };
});
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/tracing-cost.json'), JSON.stringify({ machine, rounds, runs, summary }, null, 2));

const [off, on] = summary;
const pct = (a, b) => `${(((b - a) / a) * 100).toFixed(1)}%`;
console.log(`| server CPU per operation (median of ${rounds} rounds) | no exporter | OTLP exporter, every span | difference |`);
console.log('|---|---|---|---|');
console.log(`| handshake (10,000 at concurrency 64) | ${off.handshake_us} µs | ${on.handshake_us} µs | ${pct(off.handshake_us, on.handshake_us)} |`);
console.log(`| driver:location with ack (1,000 drivers x 5/s, 20 s) | ${off.update_us} µs | ${on.update_us} µs | ${pct(off.update_us, on.update_us)} |`);
console.log(`\nexported: ${on.exports} requests, ${(on.exported_bytes / 2 ** 20).toFixed(1)} MiB; machine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB`);
