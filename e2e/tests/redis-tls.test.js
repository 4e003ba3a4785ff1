// REDIS_URL over TLS: a throwaway redis-server, and a three-master Redis Cluster, that accept TLS
// only, with a certificate from a private CA this test makes with openssl; the replicas trust
// that CA through SSL_CERT_FILE (docs/operations.md). Two replicas share each: state and a
// revocation cross them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  createDatabase, createIdentity, startCluster, startReplica, connectAs, internalPost, disconnected,
  within, freePort, eventually, ask,
} from '../../testkit/harness.js';
import { startRedisCluster } from '../../testkit/redis-cluster.js';
import { makeCertificates, redisTlsArgs } from '../../testkit/tls.js';

let db;
let redis;
let certs;

before(async () => {
  db = await createDatabase();
  certs = makeCertificates();
  const port = await freePort();
  const child = spawn('redis-server', [...redisTlsArgs(certs, port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', certs.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
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

/** Two replicas on `url`: ready with Redis, and a revocation through A disconnects B's socket. */
async function revocationCrosses(url) {
  const cluster = await startCluster(db, 2, { redis: url, env: { SSL_CERT_FILE: certs.ca } });
  try {
    const [A, B] = cluster.replicas;
    await eventually(async () => {
      const res = await fetch(`${A.internalUrl}/readyz`);
      const body = await res.json();
      return res.status === 200 && body.checks?.redis?.ok;
    }, 10000, 'replica A ready with Redis over TLS');
    const u = await createIdentity(db, 'DRIVER');
    const socket = await connectAs(B, '/drivers', u.token);
    // State on the way: a position stored and read back through the other replica.
    assert.equal((await ask(socket, 'driver:location', { lat: 1.5, lng: 2.5 })).ok, true);
    const admin = await connectAs(A, '/admin', (await createIdentity(db, 'ADMIN')).token);
    const state = await ask(admin, 'admin:driver_state', { driverId: u.userId });
    assert.equal(state.driver?.lastLocation?.lat, 1.5, JSON.stringify(state));
    admin.close();
    const gone = disconnected(socket);
    await db.revokeSession(u.sid);
    const res = await internalPost(A, `/internal/v1/sessions/${u.sid}/revoke`, { userId: u.userId });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await within(gone, 5000, 'the revoked socket on B to disconnect'), 'io server disconnect');
  } finally {
    await cluster.stop();
  }
}

test('rediss:// with a private CA in SSL_CERT_FILE: replicas connect and share state and revocations', async () => {
  await revocationCrosses(`rediss://localhost:${redis.port}`);
});

test('rediss-cluster:// to a TLS-only Redis Cluster of three masters (cluster bus over TLS too)', async () => {
  const cluster = await startRedisCluster({ masters: 3, certs });
  try {
    assert.match(cluster.url, /^rediss-cluster:/);
    await revocationCrosses(cluster.url);
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
