// The connection guide's driver example, runnable:
//   GATEWAY_URL=http://localhost:3000 TOKEN=... node e2e/examples/driver.mjs
// With ONCE=1 it disconnects after the server's hello (used by the tests).
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const driverSocket = io(`${url}/drivers`, {
  auth: {
    token: process.env.TOKEN ?? 'your-jwt-access-token',
  },
  transports: (process.env.TRANSPORTS ?? 'websocket,polling').split(','),
  reconnection: true,
  reconnectionAttempts: 5,
  reconnectionDelay: 1000,
});

// Listen for successful connection
driverSocket.on('connect', () => {
  console.log('Connected to /drivers namespace');
  console.log('Socket ID:', driverSocket.id);
});

// Listen for hello event (server confirmation)
driverSocket.on('hello', (data) => {
  console.log('Server hello:', JSON.stringify(data));
  console.log('Transport:', driverSocket.io.engine.transport.name);
  if (process.env.ONCE) driverSocket.disconnect();
});

// Another session of this driver was revoked (logout elsewhere)
driverSocket.on('auth:session_revoked', (data) => {
  console.log('Session revoked:', JSON.stringify(data));
});

// Handle connection errors
driverSocket.on('connect_error', (error) => {
  console.error('Connection error:', error.message);
  if (process.env.ONCE) process.exit(1);
});

// Handle disconnection
driverSocket.on('disconnect', (reason) => {
  console.log('Disconnected:', reason);
});
