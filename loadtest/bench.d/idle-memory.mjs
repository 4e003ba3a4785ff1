// Server memory per idle authenticated connection, on its own (the memory goal of the
// performance issue): one replica (the gateway, or the Node peer), COUNT idle connections, the
// server's RSS growth per connection.
// - TRANSPORT=websocket (default): loadgen idle, the main bench's idle row, quicker to repeat
//   while changing what a socket costs;
// - TRANSPORT=polling: the official socket.io-client held on HTTP long-polling (COUNT defaults
//   to 2,000: each client is a Node object here, in this process).
//   node loadtest/bench.d/idle-memory.mjs      (TARGET=gateway|peer, TRANSPORT, COUNT, GATEWAY_BIN)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, createIdentity, startReplica, loadgen, client } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = process.env.TARGET ?? 'gateway';
const TRANSPORT = process.env.TRANSPORT ?? 'websocket';
const COUNT = Number(process.env.COUNT ?? (TRANSPORT === 'polling' ? 2000 : 10000));
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const command = TARGET === 'peer'
  ? ['node', path.join(root, 'loadtest/peers/node-socketio/server.js')]
  : [process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway'), 'serve'];

const rssBytes = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

async function polling(db, replica) {
  const tokens = [];
  for (let i = 0; i < COUNT; i++) tokens.push((await createIdentity(db, 'DRIVER')).token);
  const before = rssBytes(replica.child.pid);
  const sockets = [];
  let greeted = 0;
  for (const token of tokens) {
    const s = client(replica.url, '/drivers', { auth: { token }, transports: ['polling'] });
    s.once('hello', () => { greeted++; });
    sockets.push(s);
    if (sockets.length % 100 === 0) await new Promise((r) => setTimeout(r, 200));
  }
  for (let t = 0; greeted < COUNT; t++) {
    if (t > 600) throw new Error(`only ${greeted} of ${COUNT} polling clients greeted within 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 5000));
  const after = rssBytes(replica.child.pid);
  sockets.forEach((s) => s.close());
  return { transport: 'polling', connected: greeted, rss_before_kib: before / 1024, rss_after_kib: after / 1024, bytes_per_connection: (after - before) / COUNT };
}

const db = await createDatabase();
if (TRANSPORT === 'websocket') {
  await loadgen(db, ['seed', '--database-url', db.url, '--drivers', String(COUNT), '--passengers', '0', '--admins', '0'], { bin: LOADGEN });
}
const replica = await startReplica({ db, command, env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0' } });
try {
  const r = TRANSPORT === 'polling'
    ? await polling(db, replica)
    : await loadgen(db, ['idle', '--count', String(COUNT), '--rate', '500', '--servers',
      replica.url.replace('http://', ''), '--server-pids', String(replica.child.pid), '--settle-secs', '5'], { bin: LOADGEN });
  const { curve, ...summary } = r.handshake ?? {};
  console.log(JSON.stringify({ target: TARGET, count: COUNT, ...r, handshake: r.handshake ? summary : undefined }));
} finally {
  await replica.stop();
  await db.drop();
}
