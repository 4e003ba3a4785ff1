// Just enough of k6 to load the scripts of loadtest/k6 in Node and run one VU function of each
// against a scripted server, since k6 itself is not available where the tests run. Not k6: no
// real network, one WebSocket at a time, virtual time. Used by test/socketio-lib.test.js.
//
// - `import ... from 'k6'`, 'k6/ws', 'k6/http', 'k6/metrics', 'k6/data', 'k6/execution' resolve
//   to stubs forwarding to `shim` below (module hooks registered on first use);
// - `loadScript(file, env)` evaluates a script's init stage (`__ENV`, `__VU = 0`, `open()`
//   relative to the script like k6) and returns its exports and the metrics it created;
// - `run(fn)` calls a VU function under virtual time: `Date.now()`, `sleep()` and the socket's
//   timers advance one clock, and `ws.connect` drives `shim.server`, a scripted peer.
import { register } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const forward = (expr) => `const shim = globalThis.__k6shim;\n${expr}`;
const STUBS = {
  k6: forward(
    'export const check = (v, sets) => shim.check(v, sets);\n' +
      'export const sleep = (s) => shim.sleep(s);\n' +
      'export const group = (name, fn) => fn();\n' +
      'export const fail = (m) => { throw new Error(m); };',
  ),
  'k6/ws': forward('export default { connect: (url, params, cb) => shim.connect(url, params, cb) };'),
  'k6/http': forward(
    'export default { post: (url, body, params) => shim.http("POST", url, body, params),\n' +
      '  get: (url, params) => shim.http("GET", url, null, params) };',
  ),
  'k6/metrics': forward(
    'export class Counter { constructor(n, t) { this.m = shim.metric(n, "counter", t); } add(v, tags) { shim.sample(this.m, v, tags); } }\n' +
      'export class Gauge { constructor(n, t) { this.m = shim.metric(n, "gauge", t); } add(v, tags) { shim.sample(this.m, v, tags); } }\n' +
      'export class Rate { constructor(n) { this.m = shim.metric(n, "rate"); } add(v, tags) { shim.sample(this.m, v, tags); } }\n' +
      'export class Trend { constructor(n, t) { this.m = shim.metric(n, "trend", t); } add(v, tags) { shim.sample(this.m, v, tags); } }',
  ),
  'k6/data': forward(
    'export class SharedArray { constructor(name, fn) { const a = fn();\n' +
      '  if (!Array.isArray(a)) throw new Error("SharedArray: the callback must return an array"); return a; } }',
  ),
  'k6/execution': forward('export default shim.exec;'),
};

/** k6's built-in metrics and their types (thresholds may name them too). */
export const BUILTIN_METRICS = {
  checks: 'rate', data_received: 'counter', data_sent: 'counter', dropped_iterations: 'counter',
  iteration_duration: 'trend', iterations: 'counter', vus: 'gauge', vus_max: 'gauge',
  http_reqs: 'counter', http_req_failed: 'rate', http_req_duration: 'trend', http_req_blocked: 'trend',
  http_req_connecting: 'trend', http_req_sending: 'trend', http_req_waiting: 'trend', http_req_receiving: 'trend',
  ws_connecting: 'trend', ws_session_duration: 'trend', ws_sessions: 'counter', ws_msgs_sent: 'counter',
  ws_msgs_received: 'counter', ws_ping: 'trend',
};

export const shim = {
  metrics: new Map(), // name → { type, isTime, samples: [{ value, tags }] }
  checks: [], // { name, ok }
  requests: [], // { method, url, body, params, at }
  clock: 0,
  exec: { scenario: { iterationInTest: 0, name: 'shim' }, vu: { idInTest: 1, iterationInScenario: 0 } },
  /** `(url) => ({ open(deliver), receive(message, deliver) })`; `deliver(message, delayMs = 0)`. */
  server: null,
  /** `(method, url, body, params) => response`; default: 200 `{"ok":true}`. */
  respond: null,

  metric(name, type, isTime = false) {
    if (typeof name !== 'string' || !/^[\p{L}\p{N}._ !?/&#()<>%-]{1,128}$/u.test(name)) {
      throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    }
    if (!shim.metrics.has(name)) shim.metrics.set(name, { type, isTime: Boolean(isTime), samples: [] });
    return shim.metrics.get(name);
  },
  sample(metric, value, tags) {
    metric.samples.push({ value: metric.type === 'rate' ? Boolean(value) : Number(value ?? 1), tags });
  },
  check(value, sets) {
    let all = true;
    for (const [name, fn] of Object.entries(sets)) {
      const ok = Boolean(fn(value));
      shim.checks.push({ name, ok });
      all &&= ok;
    }
    return all;
  },
  sleep(seconds) {
    shim.clock += seconds * 1000;
  },
  http(method, url, body, params) {
    shim.requests.push({ method, url, body, params, at: shim.clock });
    const res = shim.respond?.(method, url, body, params) ?? { status: 200, body: '{"ok":true}' };
    return { ...res, json: () => JSON.parse(res.body) };
  },

  /** k6/ws `connect`: blocks (here: runs the virtual clock) until the socket is closed. */
  connect(url, params, callback) {
    if (typeof params === 'function') [params, callback] = [null, params];
    const handlers = {};
    const timers = []; // { at, fn, every?, seq }
    let seq = 0;
    let closed = false;
    const schedule = (fn, ms, every) => timers.push({ at: shim.clock + Math.max(0, ms), fn, every, seq: seq++ });
    const peer = shim.server(url);
    const deliver = (message, delay = 0) => schedule(() => handlers.message?.(message), delay);
    const socket = {
      url,
      sent: [],
      on(event, fn) {
        handlers[event] = fn;
      },
      send(message) {
        if (closed) return;
        socket.sent.push(message);
        peer.receive(message, deliver);
      },
      close() {
        if (closed) return;
        closed = true;
        handlers.close?.(1000);
      },
      setTimeout: (fn, ms) => schedule(fn, ms),
      setInterval: (fn, ms) => schedule(fn, ms, ms),
      ping() {},
    };
    callback(socket);
    schedule(() => {
      handlers.open?.();
      peer.open(deliver);
    }, 0);
    const deadline = shim.clock + 3_600_000;
    while (!closed && timers.length > 0) {
      timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const t = timers.shift();
      if (t.at > deadline) throw new Error('k6 shim: a socket stayed open for an hour of virtual time');
      shim.clock = t.at;
      if (t.every) schedule(t.fn, t.every, t.every);
      t.fn();
    }
    if (!closed) throw new Error('k6 shim: nothing left to do but the socket is still open');
    shim.lastSocket = socket;
    return { status: 101, url };
  },
};

let installed = false;
let loads = 0;

function install() {
  if (installed) return;
  installed = true;
  globalThis.__k6shim = shim;
  const hooks = `const stubs = ${JSON.stringify(STUBS)};
export async function resolve(specifier, context, next) {
  if (Object.hasOwn(stubs, specifier)) return { url: 'k6-stub:' + specifier, shortCircuit: true };
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (url.startsWith('k6-stub:')) return { format: 'module', source: stubs[url.slice(8)], shortCircuit: true };
  return next(url, context);
}`;
  register('data:text/javascript,' + encodeURIComponent(hooks));
}

/** Evaluates a k6 script's init stage with `env`; returns { module, metrics }. */
export async function loadScript(file, env = {}) {
  install();
  const dir = path.dirname(file);
  shim.metrics = new Map();
  globalThis.__ENV = { ...env };
  globalThis.__VU = 0;
  globalThis.__ITER = 0;
  globalThis.open = (p) => readFileSync(path.resolve(dir, p), 'utf8');
  const module = await import(`${pathToFileURL(file).href}?load=${++loads}`);
  return { module, metrics: shim.metrics };
}

/** Runs a VU function as VU `vu` under virtual time (Date.now follows the shim's clock). */
export function run(fn, { vu = 1, iterationInTest = 0 } = {}) {
  const realNow = Date.now;
  if (shim.clock === 0) shim.clock = realNow();
  globalThis.__VU = vu;
  shim.exec.vu.idInTest = vu;
  shim.exec.scenario.iterationInTest = iterationInTest;
  shim.checks = [];
  Date.now = () => shim.clock;
  try {
    return fn();
  } finally {
    Date.now = realNow;
  }
}

export const K6_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
