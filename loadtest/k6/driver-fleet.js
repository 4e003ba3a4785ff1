// Driver fleet: each virtual user is a driver app holding a /drivers connection and sending
// `driver:location` {lat, lng, heading, speed} once a second with an acknowledgement, expecting
// {ok: true}. After SESSION_S it stops sending, collects the last acks, leaves, and reconnects.
//
// Measures  handshake_ms        WebSocket open → `hello`
//           handshake_errors    connections that never got `hello`
//           location_ack_ms     driver:location sent → its ack
//           location_errors     updates answered {ok: false} or not at all within ACK_TIMEOUT_MS
//           location_refused    {ok: false} answers, tagged with error.code (RATE_LIMITED, ...)
//           locations_sent, dropped_connections (closed by the server or the network mid-session)
//
// Env  GATEWAY_URL          public http base (default http://localhost:3000)
//      TOKENS_FILE          DRIVER tokens, one per line (default tokens.txt; a relative path is
//                           resolved from this script's directory); one driver per token, so give
//                           at least DRIVERS tokens (VUs beyond that share a driver's rate limit)
//      DRIVERS (100)        concurrent drivers at the plateau
//      RAMP (1m), HOLD (5m), RAMP_DOWN (30s) ramp-up, time at the plateau, ramp-down
//      SESSION_S (120)      how long one connection lives before the app reconnects
//      RATE_HZ (1)          updates per second per driver (the gateway accepts LOCATION_RATE_PER_S, 10)
//      CENTER_LAT (52.52), CENTER_LNG (13.405), ACK_TIMEOUT_MS (5000), HANDSHAKE_TIMEOUT_MS (10000)
//
// Example  k6 run -e GATEWAY_URL=http://localhost:3000 -e TOKENS_FILE=tokens.txt loadtest/k6/driver-fleet.js
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';
import { Session, reconnectDelayMs, wsUrl } from './lib/socketio.js';

const NSP = '/drivers';
const SOCKET_URL = wsUrl(__ENV.GATEWAY_URL || 'http://localhost:3000');
const DRIVERS = Number(__ENV.DRIVERS || 100);
const SESSION_MS = Number(__ENV.SESSION_S || 120) * 1000;
const SEND_EVERY_MS = 1000 / Number(__ENV.RATE_HZ || 1);
const ACK_TIMEOUT_MS = Number(__ENV.ACK_TIMEOUT_MS || 5000);
const HANDSHAKE_TIMEOUT_MS = Number(__ENV.HANDSHAKE_TIMEOUT_MS || 10000);
const CENTER_LAT = Number(__ENV.CENTER_LAT || 52.52);
const CENTER_LNG = Number(__ENV.CENTER_LNG || 13.405);

const tokens = new SharedArray('tokens', () =>
  open(__ENV.TOKENS_FILE || 'tokens.txt')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== ''));

const handshakeMs = new Trend('handshake_ms', true);
const handshakeErrors = new Rate('handshake_errors');
const ackMs = new Trend('location_ack_ms', true);
const locationErrors = new Rate('location_errors');
const locationRefused = new Counter('location_refused');
const locationsSent = new Counter('locations_sent');
const droppedConnections = new Counter('dropped_connections');

export const options = {
  scenarios: {
    driver_fleet: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { target: DRIVERS, duration: __ENV.RAMP || '1m' },
        { target: DRIVERS, duration: __ENV.HOLD || '5m' },
        { target: 0, duration: __ENV.RAMP_DOWN || '30s' },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: {
    handshake_ms: ['p(95)<500', 'p(99)<1000'],
    handshake_errors: ['rate<0.01'],
    location_ack_ms: ['p(95)<100', 'p(99)<250'],
    location_errors: [{ threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: '30s' }],
  },
};

/** A driver wandering around the centre: ~10 m/s, heading drifting a little each step. */
function walker() {
  let lat = CENTER_LAT + (Math.random() - 0.5) * 0.1;
  let lng = CENTER_LNG + (Math.random() - 0.5) * 0.1;
  let heading = Math.floor(Math.random() * 360);
  return function step(seconds) {
    heading = (heading + Math.floor(Math.random() * 21) - 10 + 360) % 360; // integer in [0, 360)
    const speed = Math.round((8 + Math.random() * 4) * 10) / 10; // m/s
    const rad = (heading * Math.PI) / 180;
    lat += (speed * seconds * Math.cos(rad)) / 111320;
    lng += (speed * seconds * Math.sin(rad)) / (111320 * Math.cos((lat * Math.PI) / 180));
    return { lat: Math.round(lat * 1e6) / 1e6, lng: Math.round(lng * 1e6) / 1e6, heading, speed };
  };
}

export default function () {
  const token = tokens[(__VU - 1) % tokens.length];
  const next = walker();
  let openedAt = 0;
  let greeted = false;
  let sending = false;
  let dropped = false;

  const res = ws.connect(SOCKET_URL, null, (socket) => {
    const session = new Session(NSP, { token }, (m) => socket.send(m));
    const lost = (ids) => ids.forEach(() => locationErrors.add(true, { reason: 'no ack' }));

    socket.on('open', () => {
      openedAt = Date.now();
    });
    socket.on('message', (message) => {
      const p = session.receive(message); // answers pings, sends CONNECT on open
      if (p.kind === 'event' && p.event === 'hello') {
        greeted = true;
        sending = true;
        handshakeMs.add(Date.now() - openedAt);
      } else if (p.kind === 'ack' && p.latencyMs !== undefined) {
        const answer = p.args[0];
        const ok = Boolean(answer && answer.ok === true);
        ackMs.add(p.latencyMs);
        locationErrors.add(!ok);
        if (!ok) {
          const code = answer && answer.error ? answer.error.code : 'MALFORMED';
          locationRefused.add(1, { code: String(code) });
        }
      } else if (p.kind === 'connect_error' || p.kind === 'disconnect') {
        socket.close();
      }
    });
    socket.on('close', () => {
      if (sending) {
        dropped = true;
        droppedConnections.add(1);
      }
      sending = false;
      lost(session.expire(0)); // whatever is still unanswered
    });

    socket.setInterval(() => {
      lost(session.expire(ACK_TIMEOUT_MS));
      if (!sending) return;
      session.emitWithAck('driver:location', next(SEND_EVERY_MS / 1000));
      locationsSent.add(1);
    }, SEND_EVERY_MS);
    socket.setTimeout(() => {
      if (!greeted) socket.close();
    }, HANDSHAKE_TIMEOUT_MS);
    // Stop sending, give the last updates time to be answered, then leave.
    socket.setTimeout(() => {
      sending = false;
    }, SESSION_MS);
    socket.setTimeout(() => {
      if (greeted) session.disconnect();
      socket.close();
    }, SESSION_MS + Math.min(ACK_TIMEOUT_MS, 2000));
  });

  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  handshakeErrors.add(!greeted);
  backOff(greeted && !dropped);
}

// Failed or dropped connections in a row, this VU's (k6 keeps module state per VU).
let failures = 0;

/** Waits as socket.io-client would before the next connection when this one failed. */
function backOff(succeeded) {
  failures = succeeded ? 0 : failures + 1;
  if (failures > 0) sleep(reconnectDelayMs(failures, Math.random()) / 1000);
}
