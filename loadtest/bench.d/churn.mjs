// Churn (recovery issue, item 5): passengers whose connections drop every 5-15 s while pushes
// flow to them at a steady rate, through three replicas; every client is the official
// socket.io-client, reconnecting by itself. Five variants, one after the other: the gateway with
// recovery (auth.offset, '' before the first hello gives one), the gateway with the stock client
// and no app code (its pid), the gateway without recovery (RECOVERY_WINDOW_MS=0), Node's Socket.IO
// peer with its Redis adapter, and the peer with connection state recovery over
// @socket.io/redis-streams-adapter.
// Measures the delivery ratio of accepted pushes, duplicates, and the reconnect time (drop to
// `hello`). Writes loadtest/results/churn.json and prints a Markdown table.
//   node loadtest/bench.d/churn.mjs     (PASSENGERS=300, RATE=100 pushes/s, SECS=120, VARIANTS=a,b
//                                        to run some, OUT=churn.json in loadtest/results)
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { createDatabase, createIdentity, startReplica, INTERNAL_TOKEN } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { io } = createRequire(path.join(root, 'testkit/package.json'))('socket.io-client');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const PEER = path.join(root, 'loadtest/peers/node-socketio/server.js');
const PASSENGERS = Number(process.env.PASSENGERS ?? 300);
const RATE = Number(process.env.RATE ?? 100);
const SECS = Number(process.env.SECS ?? 120);

const variants = {
  'gateway, recovery on': { command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0' } },
  // No app code: the stock client's own connection state recovery (pid and the last offset).
  'gateway, stock client (pid, no app code)': { command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0' }, stock: true },
  'gateway, recovery off': { command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0', RECOVERY_WINDOW_MS: '0' } },
  'peer, Redis adapter': { command: ['node', PEER], env: {} },
  'peer, connection state recovery (redis-streams-adapter)': { command: ['node', PEER], env: { PEER_RECOVERY: 'streams' } },
};

const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

async function run(name, { command, env, stock }, users, db) {
  const prefix = `churn-${Date.now()}`;
  const replicas = [];
  for (let i = 0; i < 3; i++) {
    replicas.push(await startReplica({ db, prefix, nodeId: `churn-${i + 1}`, command, env }));
  }
  const gateway = command[0] === GATEWAY;
  const clients = users.map((u, i) => {
    const c = { user: u, replica: replicas[i % 3], received: new Map(), expected: new Set(), lastOffset: undefined, droppedAt: null, connectedAt: null, reconnectMs: [], handshakeMs: [], drops: 0, timer: null };
    c.socket = io(`${c.replica.url}/passengers`, {
      transports: ['websocket'],
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      // The gateway's clients follow docs/events.md: '' until hello gives them an offset. The
      // peer's client must not send one of its own (socket.io-client sends its pid and offset).
      auth: (cb) => cb(stock ? { token: u.token } : { token: u.token, ...(gateway ? { offset: c.lastOffset ?? '' } : c.lastOffset ? { offset: c.lastOffset } : {}) }),
    });
    c.socket.on('promo:offer', (data, offset) => {
      if (typeof offset === 'string') c.lastOffset = offset;
      c.received.set(data.seq, (c.received.get(data.seq) ?? 0) + 1);
    });
    c.socket.on('connect', () => {
      c.connectedAt = Date.now();
    });
    c.socket.on('hello', (hello) => {
      if (typeof hello?.offset === 'string') c.lastOffset = hello.offset;
      if (c.droppedAt !== null && c.connectedAt !== null) c.handshakeMs.push(Date.now() - c.connectedAt);
      if (c.droppedAt !== null) {
        c.reconnectMs.push(Date.now() - c.droppedAt);
        c.droppedAt = null;
      }
    });
    return c;
  });
  const connected = () => clients.every((c) => c.socket.connected);
  for (let t = 0; !connected(); t++) {
    if (t > 300) throw new Error(`${name}: clients did not all connect within 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Churn: each client drops its connection every 5-15 s (the transport closes, as when a
  // phone changes networks) and socket.io-client reconnects by itself.
  let churning = true;
  const scheduleDrop = (c) => {
    c.timer = setTimeout(() => {
      if (!churning) return;
      if (c.socket.connected) {
        c.droppedAt = Date.now();
        c.drops++;
        c.socket.io.engine.close();
      }
      scheduleDrop(c);
    }, 5000 + Math.random() * 10000);
  };
  clients.forEach(scheduleDrop);
  // Pushes at a steady rate, each to one passenger, through the replicas in turn.
  const seqs = new Map();
  let pushes = 0;
  let refused = 0;
  const started = Date.now();
  const deadline = started + SECS * 1000;
  const inFlight = new Set();
  while (Date.now() < deadline) {
    const due = Math.floor(((Date.now() - started) / 1000) * RATE);
    while (pushes < due) {
      const c = clients[Math.floor(Math.random() * clients.length)];
      const seq = (seqs.get(c) ?? 0) + 1;
      seqs.set(c, seq);
      pushes++;
      const replica = replicas[pushes % 3];
      const p = fetch(`${replica.internalUrl}/internal/v1/emit`, {
        method: 'POST',
        headers: { authorization: `Bearer ${INTERNAL_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ namespace: '/passengers', rooms: [`passenger:${c.user.userId}`], event: 'promo:offer', data: { seq } }),
      }).then((res) => {
        if (res.ok) c.expected.add(seq);
        else refused++;
        return res.arrayBuffer();
      }).catch(() => { refused++; }).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(inFlight);
  // Stop churning; every client back, then what was on its way arrives.
  churning = false;
  clients.forEach((c) => clearTimeout(c.timer));
  for (let t = 0; !connected(); t++) {
    if (t > 300) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 3000));
  let expected = 0;
  let delivered = 0;
  let duplicates = 0;
  let unexpected = 0;
  for (const c of clients) {
    expected += c.expected.size;
    for (const seq of c.expected) if (c.received.has(seq)) delivered++;
    for (const [seq, n] of c.received) {
      duplicates += n - 1;
      if (!c.expected.has(seq)) unexpected++;
    }
  }
  const reconnects = clients.flatMap((c) => c.reconnectMs);
  const handshakes = clients.flatMap((c) => c.handshakeMs);
  clients.forEach((c) => c.socket.close());
  await Promise.all(replicas.map((r) => r.stop()));
  return {
    variant: name,
    passengers: PASSENGERS,
    secs: SECS,
    pushes_offered: pushes,
    pushes_accepted: expected,
    pushes_refused: refused,
    delivered,
    delivery_ratio: expected ? delivered / expected : null,
    duplicates,
    delivered_unaccepted: unexpected,
    drops: clients.reduce((n, c) => n + c.drops, 0),
    reconnect_ms: { p50: percentile(reconnects, 50), p99: percentile(reconnects, 99), max: percentile(reconnects, 100), count: reconnects.length },
    // From the CONNECT acknowledgement to `hello`: what the server does after admitting the
    // reconnect (the gateway replays what was missed in this interval).
    connect_to_hello_ms: { p50: percentile(handshakes, 50), p99: percentile(handshakes, 99), max: percentile(handshakes, 100) },
  };
}

const db = await createDatabase();
const users = [];
for (let i = 0; i < PASSENGERS; i++) users.push(await createIdentity(db, 'PASSENGER'));
const only = process.env.VARIANTS?.split(',');
const runs = [];
for (const [name, variant] of Object.entries(variants)) {
  if (only && !only.some((o) => name.includes(o))) continue;
  const r = await run(name, variant, users, db);
  console.error(JSON.stringify(r));
  runs.push(r);
}
await db.drop();
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results', process.env.OUT ?? 'churn.json'), JSON.stringify({ machine, passengers: PASSENGERS, rate: RATE, secs: SECS, runs }, null, 2));
const pct = (x) => (x === null ? 'n/a' : `${(100 * x).toFixed(2)}%`);
console.log(`| ${PASSENGERS} passengers dropping every 5-15 s, ${RATE} pushes/s for ${SECS} s, 3 replicas | delivered / accepted | delivery ratio | duplicates | drops | reconnect, drop to hello: p50 / p99 | connect to hello: p50 / p99 |`);
console.log('|---|---|---|---|---|---|---|');
for (const r of runs) {
  console.log(`| ${r.variant} | ${r.delivered.toLocaleString('en')} / ${r.pushes_accepted.toLocaleString('en')} | ${pct(r.delivery_ratio)} | ${r.duplicates} | ${r.drops.toLocaleString('en')} | ${r.reconnect_ms.p50} / ${r.reconnect_ms.p99} ms | ${r.connect_to_hello_ms.p50} / ${r.connect_to_hello_ms.p99} ms |`);
}
console.log(`\nmachine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB; command: node loadtest/bench.d/churn.mjs (PASSENGERS=${PASSENGERS}, RATE=${RATE}, SECS=${SECS})`);
