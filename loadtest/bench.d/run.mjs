// Runs every benchmark scenario against the gateway and the Node peer, the same way, and writes
// loadtest/results/{gateway,peer}.json plus loadtest/results/machine.json.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, JWT_SECRET, INTERNAL_TOKEN } from '../../e2e/lib/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const scale = Number(process.env.BENCH_SCALE ?? 1);
const n = (x) => Math.max(10, Math.round(x * scale));
const hardFds = Number(execFileSync('bash', ['-c', 'ulimit -Hn']).toString().trim());
// The most connections one process can hold here: leave room for listeners, pools and logs.
const maxIdle = n(Math.min(hardFds, 20000) - 600);

const targets = {
  gateway: { command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', LOCATION_RATE_PER_S: '100' } },
  peer: { command: ['node', path.join(root, 'loadtest/peers/node-socketio/server.js')], env: {} },
};

function loadgen(db, args) {
  return new Promise((resolve, reject) => {
    execFile(LOADGEN, args, {
      env: { PATH: process.env.PATH, JWT_SECRET, INTERNAL_API_TOKEN: INTERNAL_TOKEN, DATABASE_URL: db.url },
      maxBuffer: 64 << 20,
    }, (error, stdout, stderr) => (error ? reject(new Error(`loadgen ${args[0]}: ${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout))));
  });
}

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

async function bench(db, target) {
  const log = (name, r) => console.error(`${target} ${name}: ${JSON.stringify(r, (k, v) => (k === 'curve' ? undefined : v))}`);
  const out = {};
  out.idle10k = await scenario(db, target, 1, ([a]) =>
    loadgen(db, ['idle', '--count', String(n(10000)), '--rate', '500', '--servers', addr(a), '--server-pids', String(a.child.pid), '--settle-secs', '5']));
  log('idle10k', out.idle10k);
  out.idleMax = await scenario(db, target, 1, ([a]) =>
    loadgen(db, ['idle', '--count', String(maxIdle), '--rate', '500', '--servers', addr(a), '--server-pids', String(a.child.pid), '--settle-secs', '5']));
  log('idleMax', out.idleMax);
  out.handshakeThroughput = await scenario(db, target, 1, ([a]) =>
    loadgen(db, ['handshakes', '--count', String(n(10000)), '--concurrency', '64', '--servers', addr(a)]));
  log('handshakeThroughput', out.handshakeThroughput);
  out.handshakeLatency = await scenario(db, target, 1, ([a]) =>
    loadgen(db, ['handshakes', '--count', String(n(5000)), '--rate', '500', '--servers', addr(a)]));
  log('handshakeLatency', out.handshakeLatency);
  out.locations = await scenario(db, target, 1, ([a]) =>
    loadgen(db, ['locations', '--drivers', String(n(1000)), '--rate', '5', '--window', '4', '--secs', '20', '--servers', addr(a)]));
  log('locations', out.locations);
  out.fanout = await scenario(db, target, 3, ([a, b, c]) =>
    loadgen(db, ['fanout', '--receivers', String(n(2000)), '--servers', `${addr(b)},${addr(c)}`, '--emit-url', a.internalUrl, '--rate', '200', '--rooms-per-emit', '10', '--secs', '15']));
  log('fanout', out.fanout);
  out.revocation = await scenario(db, target, 3, ([a, b, c]) =>
    loadgen(db, ['revocations', '--sockets', String(n(10000)), '--revocations', String(n(300)), '--servers', `${addr(b)},${addr(c)}`, '--revoke-url', a.internalUrl, '--rate', '30']));
  log('revocation', out.revocation);
  return out;
}

const version = (cmd, args) => {
  try { return execFileSync(cmd, args).toString().trim().split('\n')[0]; } catch { return 'unknown'; }
};
const resultsDir = path.join(root, 'loadtest/results');
mkdirSync(resultsDir, { recursive: true });
const peerPkg = JSON.parse(readFileSync(path.join(root, 'loadtest/peers/node-socketio/package-lock.json'), 'utf8')).packages;
writeFileSync(path.join(resultsDir, 'machine.json'), JSON.stringify({
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
  for (const target of ['gateway', 'peer']) {
    const result = await bench(db, target);
    writeFileSync(path.join(resultsDir, `${target}.json`), JSON.stringify(result, null, 2));
  }
} finally {
  await db.drop();
}
