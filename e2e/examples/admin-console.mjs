// An operations console: cluster stats, drivers near a point, one driver's state, live feed.
//   GATEWAY_URL=http://localhost:3000 TOKEN=$ADMIN_TOKEN [DRIVER_ID=...] node e2e/examples/admin-console.mjs
// With ONCE=1 it prints the answers and exits.
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const socket = io(`${url}/admin`, { auth: { token: process.env.TOKEN }, withCredentials: true });

socket.on('hello', async () => {
  console.log('stats:', JSON.stringify(await socket.emitWithAck('admin:stats', {})));
  const near = await socket.emitWithAck('admin:drivers_nearby', { lat: 48.8566, lng: 2.3522, radiusM: 5000, limit: 10 });
  console.log('nearby:', JSON.stringify(near));
  if (process.env.DRIVER_ID) {
    console.log('driver:', JSON.stringify(await socket.emitWithAck('admin:driver_state', { driverId: process.env.DRIVER_ID })));
  }
  if (process.env.ONCE) socket.disconnect();
});

socket.on('driver:status_changed', (c) => console.log('status:', c.driverId, c.status));
socket.on('driver:location', (p) => console.log('position:', p.driverId, p.lat, p.lng));
socket.on('trip:updated', (t) => console.log('trip:', t.tripId, t.status));
socket.on('connect_error', (err) => {
  console.error('connect_error:', err.message);
  process.exit(1);
});
