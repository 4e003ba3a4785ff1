// A simple sustained-rate measurement of driver:location with acknowledgements (the full
// benchmarks: loadtest/bench): one raw WebSocket client per token in TOKENS (a file, one per
// line), each sending RATE updates a second (at most WINDOW unanswered), for SECONDS, against one
// replica.
//   GATEWAY_URL=http://127.0.0.1:3001 TOKENS=tokens.txt [RATE=10 WINDOW=4 SECONDS=10] node loadtest/bench.d/location-rate.mjs
// Keep RATE within LOCATION_RATE_PER_S and the socket's event budget (30/s), so every update is
// one the gateway should accept. Prints JSON: offered and accepted per second, refusals, ack
// latency percentiles (ms).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
// `ws` is the shared testkit's (no package of its own here).
const WebSocket = createRequire(new URL('../../testkit/package.json', import.meta.url))('ws');

const base = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/^http/, 'ws');
const tokens = readFileSync(process.env.TOKENS, 'utf8').split('\n').filter(Boolean);
const windowSize = Number(process.env.WINDOW ?? 4);
const rate = Number(process.env.RATE ?? 10);
const seconds = Number(process.env.SECONDS ?? 10);

const latencies = [];
let accepted = 0;
let refused = 0;
let running = true;

function driver(token, index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}/socket.io/?EIO=4&transport=websocket`);
    const sent = new Map();
    let next = 0;
    const send = () => {
      if (!running || sent.size >= windowSize) return;
      const id = next++;
      const lat = 10 + (index % 80) + (id % 1000) / 1e4;
      sent.set(id, performance.now());
      ws.send(`42/drivers,${id}["driver:location",{"lat":${lat},"lng":20.5,"heading":90,"speed":10}]`);
    };
    ws.on('message', (data) => {
      const msg = data.toString();
      if (msg === '2') return ws.send('3'); // Engine.IO ping
      if (msg.startsWith('0{')) return ws.send(`40/drivers,${JSON.stringify({ token })}`);
      if (msg.startsWith('44/drivers,')) return reject(new Error(msg));
      if (msg.startsWith('42/drivers,["hello"')) {
        let timer;
        resolve({
          // Spread the drivers over the interval instead of sending in lockstep.
          start: () => setTimeout(() => { timer = setInterval(send, 1000 / rate); }, Math.random() * (1000 / rate)),
          close: () => { clearInterval(timer); ws.close(); },
        });
        return;
      }
      const ack = /^43\/drivers,(\d+)\[(.*)\]$/.exec(msg);
      if (ack) {
        const started = sent.get(Number(ack[1]));
        sent.delete(Number(ack[1]));
        if (running) {
          latencies.push(performance.now() - started);
          if (ack[2].startsWith('{"ok":true')) accepted++;
          else refused++;
        }
      }
    });
    ws.on('error', reject);
  });
}

const drivers = await Promise.all(tokens.map((t, i) => driver(t, i)));
for (const d of drivers) d.start();
const started = performance.now();
await new Promise((r) => setTimeout(r, seconds * 1000));
running = false;
const elapsed = (performance.now() - started) / 1000;
for (const d of drivers) d.close();
latencies.sort((a, b) => a - b);
const pct = (p) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] * 100) / 100;
console.log(JSON.stringify({
  drivers: drivers.length, ratePerDriver: rate, offeredPerSecond: drivers.length * rate,
  seconds: Math.round(elapsed * 10) / 10,
  acceptedPerSecond: Math.round(accepted / elapsed), refused,
  ackMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: pct(100) },
}, null, 2));
