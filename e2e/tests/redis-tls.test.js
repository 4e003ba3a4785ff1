// REDIS_URL over TLS (rediss://): a throwaway redis-server that accepts TLS only, with a
// certificate from a private CA this test makes with openssl; the replicas trust that CA through
// SSL_CERT_FILE (docs/operations.md). Two replicas share it: a revocation crosses them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  createDatabase, createIdentity, startCluster, startReplica, connectAs, internalPost, disconnected,
  within, freePort, eventually,
} from '../lib/harness.js';

let db;
let redis;
let dir;

before(async () => {
  db = await createDatabase();
  dir = mkdtempSync(path.join(tmpdir(), 'gw-redis-tls-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=e2e test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem');
  writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'redis.key', '-out', 'redis.csr');
  ssl('x509', '-req', '-in', 'redis.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-extfile', 'san.ext', '-out', 'redis.pem');
  const port = await freePort();
  const child = spawn('redis-server', ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1',
    '--tls-cert-file', path.join(dir, 'redis.pem'), '--tls-key-file', path.join(dir, 'redis.key'),
    '--tls-ca-cert-file', path.join(dir, 'ca.pem'), '--tls-auth-clients', 'no',
    '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit');
  await within(new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => { if (chunk.toString().includes('Ready to accept connections')) resolve(); });
    child.once('exit', (code) => reject(new Error(`redis-server (TLS) exited ${code}`)));
  }), 10000, 'redis-server with TLS to start');
  redis = { port, stop: async () => { child.kill('SIGKILL'); await exited; } };
});

after(async () => {
  await redis?.stop();
  await db?.drop();
});

test('rediss:// with a private CA in SSL_CERT_FILE: replicas connect and share revocations', async () => {
  const env = { SSL_CERT_FILE: path.join(dir, 'ca.pem') };
  const cluster = await startCluster(db, 2, { redis: `rediss://localhost:${redis.port}`, env });
  try {
    const [A, B] = cluster.replicas;
    const health = await eventually(async () => {
      const res = await fetch(`${A.internalUrl}/readyz`);
      const body = await res.json();
      return res.status === 200 && body.checks?.redis?.ok ? body : null;
    }, 10000, 'replica A ready with Redis over TLS');
    assert.equal(health.checks.redis.ok, true);
    const u = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(B, '/drivers', u.token);
    const gone = disconnected(socket);
    await db.revokeSession(u.sid);
    const res = await internalPost(A, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await within(gone, 5000, 'the revoked socket on B to disconnect'), 'io server disconnect');
  } finally {
    await cluster.stop();
  }
});

test('rediss:// without the CA: the certificate is refused and the replica stays not ready', async () => {
  const replica = await startReplica({ db, redis: `rediss://localhost:${redis.port}`, waitReady: false });
  try {
    // It keeps retrying (a Redis down at start-up is not fatal) and never serves unverified.
    const logged = await replica.waitForLog((e) => e.message === 'redis connection failed; retrying', 15000);
    assert.match(logged.error, /certificate|UnknownIssuer/i, 'the log line says why');
    const res = await fetch(`${replica.internalUrl}/readyz`);
    assert.equal(res.status, 503);
  } finally {
    await replica.stop();
  }
});
