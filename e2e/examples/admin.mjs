// The connection guide's admin example, runnable:
//   GATEWAY_URL=http://localhost:3000 TOKEN=... node e2e/examples/admin.mjs
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const adminSocket = io(`${url}/admin`, {
  auth: {
    token: process.env.TOKEN ?? 'your-admin-jwt-access-token',
  },
});

adminSocket.on('connect', () => {
  console.log('Connected to /admin namespace');
});

adminSocket.on('hello', (data) => {
  console.log('Server hello:', JSON.stringify(data));
  if (process.env.ONCE) adminSocket.disconnect();
});

adminSocket.on('connect_error', (error) => {
  console.error('Connection error:', error.message);
  if (process.env.ONCE) process.exit(1);
});
