// The connection guide's error handling switch, runnable:
//   GATEWAY_URL=http://localhost:3000 NSP=/drivers TOKEN=... node e2e/examples/errors.mjs
// Prints the branch taken for the connect_error, then exits.
import { io } from 'socket.io-client';

const url = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const socket = io(`${url}${process.env.NSP ?? '/drivers'}`, {
  auth: process.env.TOKEN ? { token: process.env.TOKEN } : {},
  reconnection: false,
});

socket.on('connect_error', (error) => {
  switch (error.message) {
    case 'Missing token':
      console.error('No JWT token provided');
      // Redirect to login
      break;
    case 'Missing sub/sid':
      console.error('Invalid token payload');
      // Refresh token or re-login
      break;
    case 'User not found':
      console.error('User account not found');
      // Clear local data, redirect to login
      break;
    case 'Wrong userType':
      console.error('User type mismatch');
      // Connect to correct namespace
      break;
    case 'User inactive':
      console.error('User account is inactive');
      // Show account suspended message
      break;
    case 'Invalid session':
      console.error('Session not found or revoked');
      // Re-login required
      break;
    case 'Access expired':
      console.error('Access token expired');
      // Refresh token
      break;
    default:
      console.error('Connection error:', error.message);
  }
  process.exit(0);
});

socket.on('connect', () => {
  console.error('Connected (no error to handle)');
  socket.disconnect();
});
