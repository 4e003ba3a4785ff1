// A passenger app's realtime side: follow the trip and the assigned driver's position.
//   GATEWAY_URL=http://localhost:3000 TOKEN=$PASSENGER_TOKEN node e2e/examples/passenger-app.mjs
// With EXIT_ON=COMPLETED it exits once the trip completes.
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const socket = io(`${url}/passengers`, { auth: { token: process.env.TOKEN }, withCredentials: true });

socket.on('hello', (hello) => console.log('hello:', JSON.stringify(hello)));

// { tripId, status, passengerId, driverId, data, at }
socket.on('trip:updated', (trip) => {
  console.log('trip:', trip.status, JSON.stringify(trip));
  if (process.env.EXIT_ON === trip.status) socket.disconnect();
});

// Every accepted position of the assigned driver while the trip is active:
// { tripId, driverId, lat, lng, heading, speed, at }
socket.on('trip:driver_location', (p) => console.log('driver at:', p.lat, p.lng, 'heading', p.heading));

socket.on('connect_error', (err) => {
  console.error('connect_error:', err.message);
  process.exit(1);
});
