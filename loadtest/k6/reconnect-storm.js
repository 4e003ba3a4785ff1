// Reconnect storm: drivers connect to /drivers, wait for `hello`, leave, and connect again, at a
// ramping arrival rate of new connections (one iteration = one full handshake). What a fleet of
// apps does after a network blip or a deploy.
//
// Measures  handshake_ms      WebSocket open → `hello` (Engine.IO open, CONNECT with the token, JWT,
//                             PostgreSQL lookup, rooms); the upgrade itself is k6's ws_connecting
//           handshake_errors  iterations without `hello` (refused, closed, or HANDSHAKE_TIMEOUT_MS)
//           connect_refused   connect_error packets, tagged with their message
//
// Env  GATEWAY_URL           public http base (default http://localhost:3000)
//      TOKENS_FILE           DRIVER tokens, one per line (default tokens.txt; a relative path is
//                            resolved from this script's directory)
//      PEAK_RATE (200)       new connections per second at the peak
//      RAMP (30s), HOLD (1m) ramp-up to the peak, then time at the peak
//      PRE_VUS (50), MAX_VUS (1000), HANDSHAKE_TIMEOUT_MS (10000)
//
// Example  k6 run -e GATEWAY_URL=http://localhost:3000 -e TOKENS_FILE=tokens.txt loadtest/k6/reconnect-storm.js
import ws from 'k6/ws';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';
import { Session, wsUrl } from './lib/socketio.js';

const NSP = '/drivers';
const SOCKET_URL = wsUrl(__ENV.GATEWAY_URL || 'http://localhost:3000');
const PEAK_RATE = Number(__ENV.PEAK_RATE || 200);
const HANDSHAKE_TIMEOUT_MS = Number(__ENV.HANDSHAKE_TIMEOUT_MS || 10000);

const tokens = new SharedArray('tokens', () =>
  open(__ENV.TOKENS_FILE || 'tokens.txt')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== ''));

const handshakeMs = new Trend('handshake_ms', true);
const handshakeErrors = new Rate('handshake_errors');
const connectRefused = new Counter('connect_refused');

export const options = {
  scenarios: {
    reconnect_storm: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: Number(__ENV.PRE_VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
      stages: [
        { target: PEAK_RATE, duration: __ENV.RAMP || '30s' },
        { target: PEAK_RATE, duration: __ENV.HOLD || '1m' },
        { target: 0, duration: '10s' },
      ],
    },
  },
  thresholds: {
    handshake_ms: ['p(95)<500', 'p(99)<1000'],
    handshake_errors: [{ threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: '15s' }],
  },
};

export default function () {
  const token = tokens[(__VU - 1) % tokens.length];
  let openedAt = 0;
  let greeted = false;

  const res = ws.connect(SOCKET_URL, null, (socket) => {
    const session = new Session(NSP, { token }, (m) => socket.send(m));
    socket.on('open', () => {
      openedAt = Date.now();
    });
    socket.on('message', (message) => {
      const p = session.receive(message); // answers pings, sends CONNECT on open
      if (p.kind === 'event' && p.event === 'hello') {
        greeted = true;
        handshakeMs.add(Date.now() - openedAt);
        session.disconnect();
        socket.close();
      } else if (p.kind === 'connect_error') {
        connectRefused.add(1, { message: String(p.message) });
        socket.close();
      }
    });
    socket.setTimeout(() => socket.close(), HANDSHAKE_TIMEOUT_MS);
  });

  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  handshakeErrors.add(!greeted);
}
