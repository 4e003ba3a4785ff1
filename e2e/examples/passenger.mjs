// The connection guide's passenger example, runnable:
//   GATEWAY_URL=http://localhost:3000 TOKEN=... node e2e/examples/passenger.mjs
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const passengerSocket = io(`${url}/passengers`, {
  auth: {
    token: process.env.TOKEN ?? 'your-jwt-access-token',
  },
});

passengerSocket.on('connect', () => {
  console.log('Connected to /passengers namespace');
});

passengerSocket.on('hello', (data) => {
  console.log('Server hello:', JSON.stringify(data));
  if (process.env.ONCE) passengerSocket.disconnect();
});

passengerSocket.on('auth:session_revoked', (data) => {
  console.log('Session revoked:', JSON.stringify(data));
});

passengerSocket.on('connect_error', (error) => {
  console.error('Connection error:', error.message);
  if (process.env.ONCE) process.exit(1);
});
