// Passengers: each virtual user is a passenger app holding a /passengers connection and counting
// what the gateway pushes to it: `trip:updated` and `trip:driver_location`. The events come from
// elsewhere: run driver-fleet.js at the same time, with trips binding these passengers to those
// drivers (TRIPS_FILE below, or your own calls to POST /internal/v1/trips/{tripId}/events).
//
// Measures  handshake_ms             WebSocket open → `hello`
//           handshake_errors         connections that never got `hello`
//           trip_updated_received, trip_driver_location_received   events received
//           driver_location_age_ms   the event's `at` (set by the gateway) → received; only
//                                    meaningful when k6 and the gateway share a clock
//           dropped_connections      closed by the server or the network mid-session
//
// Env  GATEWAY_URL            public http base (default http://localhost:3000)
//      TOKENS_FILE            PASSENGER tokens, one per line (default tokens.txt; a relative path
//                             is resolved from this script's directory)
//      PASSENGERS (100)       concurrent passengers; RAMP (1m), HOLD (5m), RAMP_DOWN (30s); SESSION_S (300)
//      TRIPS_FILE, INTERNAL_URL, INTERNAL_API_TOKEN   optional: `tripId,passengerId,driverId` lines;
//                             setup() posts DRIVER_ASSIGNED for each, so the drivers' positions are
//                             forwarded to the passengers (a repeat is answered as a duplicate)
//
// Example  k6 run -e GATEWAY_URL=http://localhost:3000 -e TOKENS_FILE=passenger-tokens.txt loadtest/k6/passengers.js
import ws from 'k6/ws';
import http from 'k6/http';
import { check, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';
import { Session, reconnectDelayMs, wsUrl } from './lib/socketio.js';

const NSP = '/passengers';
const SOCKET_URL = wsUrl(__ENV.GATEWAY_URL || 'http://localhost:3000');
const PASSENGERS = Number(__ENV.PASSENGERS || 100);
const SESSION_MS = Number(__ENV.SESSION_S || 300) * 1000;
const HANDSHAKE_TIMEOUT_MS = Number(__ENV.HANDSHAKE_TIMEOUT_MS || 10000);

const lines = (text) =>
  text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
const tokens = new SharedArray('tokens', () => lines(open(__ENV.TOKENS_FILE || 'tokens.txt')));
const trips = __ENV.TRIPS_FILE ? lines(open(__ENV.TRIPS_FILE)).map((line) => line.split(',')) : [];

const handshakeMs = new Trend('handshake_ms', true);
const handshakeErrors = new Rate('handshake_errors');
const tripUpdated = new Counter('trip_updated_received');
const driverLocation = new Counter('trip_driver_location_received');
const locationAgeMs = new Trend('driver_location_age_ms', true);
const droppedConnections = new Counter('dropped_connections');

export const options = {
  scenarios: {
    passengers: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { target: PASSENGERS, duration: __ENV.RAMP || '1m' },
        { target: PASSENGERS, duration: __ENV.HOLD || '5m' },
        { target: 0, duration: __ENV.RAMP_DOWN || '30s' },
      ],
      gracefulRampDown: '5s',
    },
  },
  thresholds: {
    handshake_ms: ['p(95)<500', 'p(99)<1000'],
    handshake_errors: ['rate<0.01'],
    driver_location_age_ms: ['p(95)<250'],
  },
};

/** Binds each trip's passenger to its driver, so driver positions reach the passenger. */
export function setup() {
  for (const [tripId, passengerId, driverId] of trips) {
    const res = http.post(
      `${__ENV.INTERNAL_URL}/internal/v1/trips/${encodeURIComponent(tripId)}/events`,
      JSON.stringify({ type: 'DRIVER_ASSIGNED', passengerId, driverId }),
      {
        headers: {
          Authorization: `Bearer ${__ENV.INTERNAL_API_TOKEN}`,
          'Content-Type': 'application/json',
        },
        tags: { name: 'trip-event' },
      });
    check(res, { 'trip bound (200)': (r) => r.status === 200 });
  }
}

export default function () {
  const token = tokens[(__VU - 1) % tokens.length];
  let openedAt = 0;
  let greeted = false;
  let leaving = false;
  let dropped = false;

  const res = ws.connect(SOCKET_URL, null, (socket) => {
    const session = new Session(NSP, { token }, (m) => socket.send(m));
    socket.on('open', () => {
      openedAt = Date.now();
    });
    socket.on('message', (message) => {
      const p = session.receive(message); // answers pings, sends CONNECT on open
      if (p.kind === 'event') {
        if (p.event === 'hello') {
          greeted = true;
          handshakeMs.add(Date.now() - openedAt);
        } else if (p.event === 'trip:updated') {
          tripUpdated.add(1, { status: String(p.data && p.data.status) });
        } else if (p.event === 'trip:driver_location') {
          driverLocation.add(1);
          const at = p.data && Date.parse(p.data.at);
          if (at) locationAgeMs.add(Date.now() - at);
        }
      } else if (p.kind === 'connect_error' || p.kind === 'disconnect') {
        socket.close();
      }
    });
    socket.on('close', () => {
      if (greeted && !leaving) {
        dropped = true;
        droppedConnections.add(1);
      }
    });
    socket.setTimeout(() => {
      if (!greeted) socket.close();
    }, HANDSHAKE_TIMEOUT_MS);
    socket.setTimeout(() => {
      leaving = true;
      if (greeted) session.disconnect();
      socket.close();
    }, SESSION_MS);
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
