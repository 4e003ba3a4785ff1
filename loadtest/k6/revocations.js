// Revocations: drivers hold /drivers connections while a second scenario revokes their sessions
// one after the other through the internal API; measures how long until the revoked driver sees
// the server's DISCONNECT (`41/drivers,`, what socket.io-client reports as `io server disconnect`).
//
// k6 VUs share no memory, so the two scenarios share a schedule instead: setup() fixes t0, session
// i is revoked at t0 + i * REVOKE_EVERY_MS, and driver i measures from that instant. The revokers
// sleep until it and then POST; revoke_lag_ms (scheduled → request sent) shows the schedule held.
//
// Measures  revocation_ms       scheduled revocation → DISCONNECT received by the driver
//           revocation_errors   drivers not disconnected within DISCONNECT_TIMEOUT_MS of their
//                               revocation (or not connected by then)
//           handshake_ms        WebSocket open → `hello`; handshake_errors
//           revoke_lag_ms       revoker lateness; the POST itself is http_req_duration{name:revoke}
//
// Env  GATEWAY_URL          public http base (default http://localhost:3000)
//      INTERNAL_URL         internal listener of any replica (default http://localhost:9001)
//      INTERNAL_API_TOKEN   its bearer token (default: the local cluster's)
//      SESSIONS_FILE        `userId,sid,token` lines of DRIVER sessions (default sessions.csv; a
//                           relative path is resolved from this script's directory); one driver
//                           and one revocation per line. The gateway does not write `sessions`
//                           (the auth service does), so the same file can be used again.
//      DRIVERS (all lines), REVOKE_EVERY_MS (50), LEAD_MS (15000: time for every driver to
//      connect before the first revocation), REVOKERS (10 VUs), DISCONNECT_TIMEOUT_MS (10000)
//
// Example  k6 run -e GATEWAY_URL=http://localhost:3000 -e INTERNAL_URL=http://localhost:9001 \
//            -e INTERNAL_API_TOKEN=local-dev-internal-token -e SESSIONS_FILE=sessions.csv loadtest/k6/revocations.js
import ws from 'k6/ws';
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { Rate, Trend } from 'k6/metrics';
import { Session, wsUrl } from './lib/socketio.js';

const NSP = '/drivers';
const SOCKET_URL = wsUrl(__ENV.GATEWAY_URL || 'http://localhost:3000');
const INTERNAL_URL = (__ENV.INTERNAL_URL || 'http://localhost:9001').replace(/\/+$/, '');
const INTERNAL_API_TOKEN = __ENV.INTERNAL_API_TOKEN || 'local-dev-internal-token';
const REVOKE_EVERY_MS = Number(__ENV.REVOKE_EVERY_MS || 50);
const LEAD_MS = Number(__ENV.LEAD_MS || 15000);
const DISCONNECT_TIMEOUT_MS = Number(__ENV.DISCONNECT_TIMEOUT_MS || 10000);

const sessions = new SharedArray('sessions', () =>
  open(__ENV.SESSIONS_FILE || 'sessions.csv')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('userId'))
    .map((line) => {
      const [userId, sid, token] = line.split(',');
      return { userId, sid, token };
    }));
if (sessions.length === 0) throw new Error('SESSIONS_FILE has no `userId,sid,token` lines');
const DRIVERS = Math.min(sessions.length, Number(__ENV.DRIVERS || sessions.length));
// Every driver is connected by t0 + LEAD_MS and gone shortly after its revocation.
const TEST_SECONDS = Math.ceil((LEAD_MS + DRIVERS * REVOKE_EVERY_MS + DISCONNECT_TIMEOUT_MS) / 1000) + 30;

const revocationMs = new Trend('revocation_ms', true);
const revocationErrors = new Rate('revocation_errors');
const handshakeMs = new Trend('handshake_ms', true);
const handshakeErrors = new Rate('handshake_errors');
const revokeLagMs = new Trend('revoke_lag_ms', true);

export const options = {
  scenarios: {
    drivers: {
      executor: 'per-vu-iterations',
      exec: 'driver',
      vus: DRIVERS,
      iterations: 1,
      maxDuration: `${TEST_SECONDS}s`,
    },
    revokers: {
      executor: 'shared-iterations',
      exec: 'revoke',
      vus: Math.max(1, Math.min(DRIVERS, Number(__ENV.REVOKERS || 10))),
      iterations: DRIVERS,
      maxDuration: `${TEST_SECONDS}s`,
    },
  },
  thresholds: {
    revocation_ms: ['p(95)<500', 'p(99)<1000'],
    revocation_errors: ['rate<0.01'],
    handshake_ms: ['p(95)<1000'],
    handshake_errors: ['rate<0.01'],
    revoke_lag_ms: ['p(95)<50'],
    'http_req_failed{name:revoke}': ['rate<0.01'],
  },
};

export function setup() {
  return { t0: Date.now() + LEAD_MS };
}

/** Driver i: connect, wait for the server's DISCONNECT after revocation i. */
export function driver(data) {
  const i = exec.scenario.iterationInTest;
  const revokeAt = data.t0 + i * REVOKE_EVERY_MS;
  let openedAt = 0;
  let greeted = false;
  let revoked = false;

  const res = ws.connect(SOCKET_URL, null, (socket) => {
    const session = new Session(NSP, { token: sessions[i].token }, (m) => socket.send(m));
    socket.on('open', () => {
      openedAt = Date.now();
    });
    socket.on('message', (message) => {
      const p = session.receive(message); // answers pings, sends CONNECT on open
      if (p.kind === 'event' && p.event === 'hello') {
        greeted = true;
        handshakeMs.add(Date.now() - openedAt);
      } else if (p.kind === 'disconnect' && p.nsp === NSP) {
        revoked = true;
        revocationMs.add(Date.now() - revokeAt);
        socket.close();
      } else if (p.kind === 'connect_error') {
        socket.close();
      }
    });
    socket.setTimeout(() => socket.close(), Math.max(0, revokeAt + DISCONNECT_TIMEOUT_MS - Date.now()));
  });

  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  handshakeErrors.add(!greeted);
  revocationErrors.add(!revoked);
}

/** Revocation i, at its scheduled time. */
export function revoke(data) {
  const i = exec.scenario.iterationInTest;
  const { userId, sid } = sessions[i];
  const revokeAt = data.t0 + i * REVOKE_EVERY_MS;
  if (revokeAt > Date.now()) sleep((revokeAt - Date.now()) / 1000);
  revokeLagMs.add(Date.now() - revokeAt);
  const res = http.post(
    `${INTERNAL_URL}/internal/v1/sessions/${encodeURIComponent(sid)}/revoke`,
    JSON.stringify({ userId, reason: 'load-test' }),
    {
      headers: { Authorization: `Bearer ${INTERNAL_API_TOKEN}`, 'Content-Type': 'application/json' },
      tags: { name: 'revoke' },
    });
  check(res, { 'revoked (200)': (r) => r.status === 200 });
}
