// A simple handshake latency measurement (the full benchmarks: loadtest/bench): sequential raw
// WebSocket Socket.IO handshakes against one replica, after a warm-up, so the pool is warm.
//   GATEWAY_URL=http://127.0.0.1:3001 TOKEN=... [NSP=/drivers N=2000 WARMUP=200] node loadtest/bench.d/handshake-latency.mjs
// Prints JSON: latency percentiles in ms of
//   total:     TCP connect + WebSocket upgrade + Engine.IO open + namespace CONNECT until `hello`;
//   namespace: from sending CONNECT (with the token) until `hello` (JWT, PostgreSQL, rooms).
import { createRequire } from 'node:module';
// `ws` is the shared testkit's (no package of its own here).
const WebSocket = createRequire(new URL('../../testkit/package.json', import.meta.url))('ws');

const base = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/^http/, 'ws');
const nsp = process.env.NSP ?? '/drivers';
const token = process.env.TOKEN;
const n = Number(process.env.N ?? 2000);
const warmup = Number(process.env.WARMUP ?? 200);
if (!token) throw new Error('TOKEN is required');

function handshake() {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let t1;
    const ws = new WebSocket(`${base}/socket.io/?EIO=4&transport=websocket`);
    ws.on('message', (data) => {
      const msg = data.toString();
      if (msg.startsWith('0{')) {
        t1 = performance.now();
        ws.send(`40${nsp},${JSON.stringify({ token })}`);
      } else if (msg.startsWith(`44${nsp},`)) {
        reject(new Error(`refused: ${msg}`));
        ws.close();
      } else if (msg.startsWith(`42${nsp},["hello"`)) {
        const t2 = performance.now();
        ws.close();
        resolve({ total: t2 - t0, namespace: t2 - t1 });
      }
    });
    ws.on('error', reject);
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const summary = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (x) => Math.round(x * 1000) / 1000;
  return { p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]) };
};

for (let i = 0; i < warmup; i++) await handshake();
const total = [];
const namespace = [];
const started = performance.now();
for (let i = 0; i < n; i++) {
  const r = await handshake();
  total.push(r.total);
  namespace.push(r.namespace);
}
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ nsp, n, sequentialPerSecond: Math.round(n / seconds), totalMs: summary(total), namespaceMs: summary(namespace) }, null, 2));
