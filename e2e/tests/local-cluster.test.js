// The README's first command, as a new user runs it: deploy/local/cluster.sh starts three
// replicas behind HAProxy; a polling-only client connects through the balancer; Ctrl-C stops it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { client, connectOk, disconnected, freePort, PG_BASE, REDIS_URL } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('deploy/local/cluster.sh: three replicas behind HAProxy, polling through the balancer, Ctrl-C stops all', async () => {
  const state = mkdtempSync(path.join(tmpdir(), 'gw-cluster-'));
  const database = `gw_local_${randomBytes(4).toString('hex')}`;
  const lbPort = await freePort();
  const env = {
    ...process.env,
    GATEWAY_PORT: String(lbPort),
    PUBLIC_BASE_PORT: '23101',
    INTERNAL_BASE_PORT: '29101',
    DATABASE_URL: `${PG_BASE}/${database}`,
    REDIS_URL,
    REDIS_PREFIX: `local-${randomBytes(4).toString('hex')}`,
    CLUSTER_STATE_DIR: state,
    INTERNAL_API_TOKEN: 'local-test-token',
  };
  const script = spawn('bash', [path.join(root, 'deploy/local/cluster.sh')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(script, 'exit');
  const output = [];
  const ready = new Promise((resolve, reject) => {
    createInterface({ input: script.stdout }).on('line', (line) => {
      output.push(line);
      if (line.startsWith('Ctrl-C stops everything')) resolve();
    });
    createInterface({ input: script.stderr }).on('line', (line) => output.push(line));
    exited.then(() => reject(new Error(`cluster.sh exited early:\n${output.join('\n')}`)));
  });
  try {
    await ready;
    const token = (name) => output.find((l) => l.trim().startsWith(`${name}=`)).trim().split('=')[1];
    const lb = `http://127.0.0.1:${lbPort}`;

    // Polling needs affinity: Node's client keeps the balancer's cookie with withCredentials.
    for (let i = 0; i < 6; i++) {
      const { socket, hello } = await connectOk(
        client(lb, '/drivers', { auth: { token: token('DRIVER_TOKEN') }, transports: ['polling'], withCredentials: true }),
      );
      assert.deepEqual(hello, { ok: true, nsp: '/drivers' });
      socket.close();
    }
    const { hello: p } = await connectOk(client(lb, '/passengers', { auth: { token: token('PASSENGER_TOKEN') }, transports: ['websocket'] }));
    assert.equal(p.nsp, '/passengers');
    const { socket: admin, hello: a } = await connectOk(client(lb, '/admin', { auth: { token: token('ADMIN_TOKEN') }, withCredentials: true }));
    assert.equal(a.nsp, '/admin');

    // The printed "Try" line runs as printed (from the repo root, with the printed token).
    const tryLine = output.find((l) => l.startsWith('Try:')).slice('Try:'.length).trim();
    const tried = await new Promise((resolve) => {
      execFile('bash', ['-c', tryLine], {
        cwd: root, timeout: 20000, env: { ...process.env, DRIVER_TOKEN: token('DRIVER_TOKEN'), ONCE: '1' },
      }, (error, stdout, stderr) => resolve({ error, stdout, stderr }));
    });
    assert.equal(tried.error, null, `the Try line failed: ${tried.stderr}`);
    assert.match(tried.stdout, /Server hello: \{"ok":true,"nsp":"\/drivers"\}/);

    // The printed revocation command works through any replica.
    const { socket: driver } = await connectOk(client(lb, '/drivers', { auth: { token: token('DRIVER_TOKEN') }, withCredentials: true }));
    const gone = disconnected(driver);
    const res = await fetch('http://127.0.0.1:29102/internal/v1/sessions/demo-driver-session/revoke', {
      method: 'POST',
      headers: { authorization: 'Bearer local-test-token', 'content-type': 'application/json' },
      body: JSON.stringify({ userId: '11111111-1111-4111-8111-111111111111', reason: 'logout' }),
    });
    assert.equal(res.status, 200);
    assert.equal(await gone, 'io server disconnect');
    admin.close();
  } finally {
    script.kill('SIGINT');
    await exited;
    rmSync(state, { recursive: true, force: true });
    const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
  }
  for (const port of [lbPort, 23101, 23102, 23103]) {
    const alive = await fetch(`http://127.0.0.1:${port}/healthz`).then(() => true, () => false);
    assert.equal(alive, false, `port ${port} released after Ctrl-C`);
  }
});
