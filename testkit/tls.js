// A private CA and a server certificate for localhost / 127.0.0.1, made with openssl, for tests
// of TLS to Redis.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Returns the paths of `ca.pem`, `server.pem` and `server.key` in a new directory. */
export function makeCertificates() {
  const dir = mkdtempSync(path.join(tmpdir(), 'gw-tls-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=e2e test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem');
  writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-extfile', 'san.ext', '-out', 'server.pem');
  return { dir, ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

/** redis-server arguments that serve TLS only on `port` (cluster bus and replication too). */
export function redisTlsArgs(certs, port) {
  return ['--port', '0', '--tls-port', String(port), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key,
    '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no', '--tls-cluster', 'yes', '--tls-replication', 'yes'];
}
