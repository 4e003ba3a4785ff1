// A driver app's realtime side: go ONLINE, report positions, answer trip offers, follow trips.
//   GATEWAY_URL=http://localhost:3000 TOKEN=$DRIVER_TOKEN node e2e/examples/driver-app.mjs
// With ONCE=1 it goes ONLINE, sends one position, prints the acks and exits.
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const socket = io(`${url}/drivers`, { auth: { token: process.env.TOKEN }, withCredentials: true });

socket.on('hello', async () => {
  // Every event answers its acknowledgement: { ok: true, ... } or { ok: false, error: { code, message } }.
  console.log('status ack:', JSON.stringify(await socket.emitWithAck('driver:status', { status: 'ONLINE' })));
  const position = { lat: 48.8566, lng: 2.3522, heading: 90, speed: 8.3, accuracy: 5, recordedAt: new Date().toISOString() };
  console.log('location ack:', JSON.stringify(await socket.emitWithAck('driver:location', position)));
  if (process.env.ONCE) return socket.disconnect();
  // Then report once a second (the gateway accepts LOCATION_RATE_PER_S, default 10).
  setInterval(async () => {
    position.lat += 0.0001;
    position.recordedAt = new Date().toISOString();
    const ack = await socket.emitWithAck('driver:location', position);
    if (!ack.ok) console.error('location refused:', ack.error.code, ack.error.message);
  }, 1000);
});

// Dispatch offers a trip; answer with { accept } before expiresAt.
socket.on('trip:offer', (offer, answer) => {
  console.log('offer:', JSON.stringify(offer));
  answer({ accept: true });
});

socket.on('trip:updated', (trip) => console.log('trip:', JSON.stringify(trip)));
socket.on('auth:session_revoked', (notice) => console.log('another session revoked:', JSON.stringify(notice)));
// The access token runs out: get a new one and refresh in band (no reconnect). NEXT_TOKEN stands
// in for the app's call to the auth service.
socket.on('auth:token_expiring', async ({ expiresAt }) => {
  console.log('token expiring at', expiresAt);
  const token = process.env.NEXT_TOKEN;
  if (!token) return;
  socket.auth.token = token; // reconnects use it too
  const ack = await socket.emitWithAck('auth:refresh', { token });
  console.log('refresh ack:', JSON.stringify(ack));
});
socket.on('auth:expired', () => console.log('expired: the server disconnects; reconnect with a fresh token'));
socket.on('auth:connection_replaced', ({ by }) => console.log('replaced by another connection of this user:', by));
socket.on('connect_error', (err) => {
  console.error('connect_error:', err.message);
  if (process.env.ONCE) process.exit(1);
});
