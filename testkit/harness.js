// Test harness shared by the e2e suites (e2e/) and the load tools (loadtest/): real `gateway`
// processes, a fresh PostgreSQL database per test file, a fresh Redis prefix per cluster, and the
// official socket.io-client.
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import net from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import pg from 'pg';
import jwt from 'jsonwebtoken';
import { io } from 'socket.io-client';
import { startRedisCluster } from './redis-cluster.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const GATEWAY_BIN =
  process.env.GATEWAY_BIN ?? path.resolve(here, '../target/debug/gateway');
export const LOADGEN_BIN =
  process.env.LOADGEN_BIN ?? path.resolve(here, '../target/debug/loadgen');
/** PostgreSQL server the tests create their databases on (trust auth on this machine). */
export const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
/** The shared Redis; each cluster gets its own REDIS_PREFIX on it. */
// With E2E_REDIS_CLUSTER=1 every deployment of this test file runs on a Redis Cluster of three
// masters started for it (scripts/test.sh runs the multi-replica suites this way too).
export const ON_REDIS_CLUSTER = process.env.E2E_REDIS_CLUSTER === '1';
const redisCluster = ON_REDIS_CLUSTER ? await startRedisCluster() : null;
export const REDIS_URL = redisCluster?.url ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The deployments a suite runs against: a single replica is not repeated on a cluster run. */
export const MODES = ON_REDIS_CLUSTER ? ['cluster'] : ['cluster', 'single'];
export const JWT_SECRET = 'e2e-secret-' + randomBytes(8).toString('hex');
export const INTERNAL_TOKEN = 'e2e-internal-' + randomBytes(8).toString('hex');

const uniq = () => randomBytes(5).toString('hex');

/** Runs a `gateway` subcommand to completion: { code, stdout, stderr }. */
export function runGateway(args, env = {}) {
  return new Promise((resolve) => {
    execFile(GATEWAY_BIN, args, { env: { PATH: process.env.PATH, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? error.code : 0, stdout, stderr });
    });
  });
}

/**
 * Runs the load generator against `db` with this harness' secrets and parses its JSON result.
 * Asynchronous on purpose: the replicas' log pipes must keep flowing while it runs.
 */
export function loadgen(db, args, { bin = LOADGEN_BIN, timeout = 0 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, {
      env: { PATH: process.env.PATH, JWT_SECRET, INTERNAL_API_TOKEN: INTERNAL_TOKEN, DATABASE_URL: db.url },
      maxBuffer: 64 << 20,
      timeout,
    }, (error, stdout, stderr) => (error ? reject(new Error(`loadgen ${args[0]}: ${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout))));
  });
}

/**
 * A fresh, migrated database with helpers to seed users and sessions; on the shared server, or
 * on `base` (a throwaway server's URL).
 */
export async function createDatabase({ base = PG_BASE } = {}) {
  const name = `gw_test_${uniq()}`;
  const url = `${base}/${name}`;
  const migrated = await runGateway(['migrate'], { DATABASE_URL: url });
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  // An idle connection the server closes (a test stopping its throwaway server) is replaced on
  // the next query; it is not a test failure.
  pool.on('error', () => {});
  return {
    name,
    url,
    pool,
    async user({ type = 'DRIVER', status = 'ACTIVE', orgId = null } = {}) {
      const id = randomUUID();
      await pool.query('INSERT INTO users (id, user_type, status, org_id) VALUES ($1, $2, $3, $4)', [
        id,
        type,
        status,
        orgId,
      ]);
      return id;
    },
    async session(userId, { revoked = false, expiresAt = null, sessionType = 'mobile' } = {}) {
      const sid = `sid-${uniq()}`;
      await pool.query(
        'INSERT INTO sessions (id, jti, user_id, session_type, revoked, access_token_expires_at) VALUES ($1, $2, $3, $4, $5, $6)',
        [randomUUID(), sid, userId, sessionType, revoked, expiresAt],
      );
      return sid;
    },
    /** What the auth service does before it publishes a revocation. */
    async revokeSession(sid) {
      await pool.query('UPDATE sessions SET revoked = true WHERE jti = $1', [sid]);
    },
    async drop() {
      await pool.end();
      const admin = new pg.Client({ connectionString: `${base}/postgres` });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** A user with one session and a valid token, of the given type. */
export async function createIdentity(db, type = 'DRIVER', opts = {}) {
  const userId = await db.user({ type, ...opts });
  const sid = await db.session(userId);
  return { userId, sid, token: sign({ sub: userId, sid }) };
}

/** Signs an access token; `claims.exp` defaults to an hour from now. */
export function sign(claims, { secret = JWT_SECRET, algorithm = 'HS256', noExp = false } = {}) {
  const body = { iat: Math.floor(Date.now() / 1000), ...claims };
  if (!noExp && body.exp === undefined) body.exp = Math.floor(Date.now() / 1000) + 3600;
  return jwt.sign(body, secret, { algorithm, noTimestamp: true });
}

/**
 * Starts `gateway serve` on ephemeral ports and resolves once its `/readyz` answers 200.
 * `command` runs another server that speaks the same contract, `/readyz` and `listeners bound`
 * line (the benchmark peer).
 */
export async function startReplica({ db, redis = REDIS_URL, prefix, nodeId = `node-${uniq()}`, env = {}, waitReady = true, command = [GATEWAY_BIN, 'serve'] } = {}) {
  prefix ??= `e2e-${uniq()}`;
  const childEnv = {
    PATH: process.env.PATH,
    BIND_ADDR: '127.0.0.1:0',
    INTERNAL_BIND_ADDR: '127.0.0.1:0',
    DATABASE_URL: db.url,
    JWT_SECRET,
    INTERNAL_API_TOKEN: INTERNAL_TOKEN,
    NODE_ID: nodeId,
    RUST_LOG: 'info',
    LOG_FORMAT: 'json',
    SHUTDOWN_GRACE_MS: '5000',
    ...(redis ? { REDIS_URL: redis, REDIS_PREFIX: prefix } : {}),
    ...env,
  };
  const child = spawn(command[0], command.slice(1), { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = [];
  const waiters = [];
  const onLine = (line) => {
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      entry = { message: line };
    }
    logs.push(entry);
    for (const w of [...waiters]) {
      if (w.match(entry)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
  const replica = {
    nodeId,
    prefix,
    child,
    logs,
    exited,
    /** Resolves with the first log entry from index `since` on (past or future) that matches. */
    waitForLog(match, timeoutMs = 20000, since = 0) {
      const past = logs.slice(since).find(match);
      if (past) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${nodeId}: no matching log line`)), timeoutMs);
        waiters.push({ match, resolve: (e) => { clearTimeout(timer); resolve(e); } });
      });
    },
    /**
     * Polls the internal `GET /readyz` every 50 ms until `until(status, body)` holds (by default
     * 200); rejects after `ms` naming `what` it waited for, or once the process exits.
     */
    async waitReadyz({ until = (status) => status === 200, what = 'ready', ms = 20000 } = {}) {
      const deadline = Date.now() + ms;
      let last = 'no answer';
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`${nodeId} exited before it was ${what} (/readyz): ${JSON.stringify(await exited)}`);
        }
        try {
          // The probe asks the database (up to 2 s): never past the deadline.
          const res = await fetch(`${replica.internalUrl}/readyz`, { signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
          const text = await res.text();
          let body = null;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: `until` sees null, the error below the text
          }
          if (until(res.status, body)) return body;
          last = `${res.status} ${text}`;
        } catch (error) {
          last = error.message;
        }
        if (Date.now() >= deadline) throw new Error(`${nodeId} not ${what} (/readyz) within ${ms / 1000}s; last answer: ${last}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    /** Signals the process and resolves with how it exited; one still running 20 s later is
     * killed and reported (a replica that does not exit after its drain is a defect). */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let timer;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`${nodeId} did not exit within 20 s of ${signal}`));
        }, 20000);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
  const bound = await Promise.race([
    replica.waitForLog((e) => e.message === 'listeners bound'),
    exited.then((x) => { throw new Error(`${nodeId} exited early (${JSON.stringify(x)}): ${logs.map((l) => l.message).join(' | ')}`); }),
  ]);
  replica.url = `http://${bound.public}`;
  replica.internalUrl = `http://${bound.internal}`;
  if (waitReady) await replica.waitReadyz();
  return replica;
}

/** Starts `n` replicas sharing one Redis prefix (one cluster). */
export async function startCluster(db, n = 3, opts = {}) {
  const prefix = `e2e-${uniq()}`;
  const replicas = await Promise.all(
    Array.from({ length: n }, (_, i) => startReplica({ db, prefix, nodeId: `${'abcdefgh'[i]}-${uniq()}`, ...opts })),
  );
  return { prefix, replicas, stop: () => Promise.all(replicas.map((r) => r.stop())) };
}

/** A socket.io-client socket that does not reconnect unless asked. */
/** The stock client's own reconnection, quickened: what an app does after its transport closes. */
export const RECONNECTING = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };

/**
 * Resolves once `socket` is connected again after a close (its CONNECT answered: what is kept
 * from then on reaches it), with whether it recovered. Call it before the close.
 */
export function reconnected(socket) {
  return new Promise((resolve) => socket.once('connect', () => resolve(socket.recovered)));
}

export function client(baseUrl, nsp, opts = {}) {
  return io(baseUrl + nsp, { forceNew: true, reconnection: false, ...opts });
}

/**
 * Resolves with { socket, hello } once connected and greeted; rejects with the connect_error.
 * Events emitted right after connect are recorded in `socket.received` (name -> payloads).
 */
export function connectOk(socket) {
  socket.received ??= new Map();
  socket.onAny((event, ...args) => {
    if (!socket.received.has(event)) socket.received.set(event, []);
    socket.received.get(event).push(args[0]);
  });
  return new Promise((resolve, reject) => {
    socket.once('hello', (hello) => resolve({ socket, hello }));
    socket.once('connect_error', (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
}

/** Resolves with the connect_error message; rejects if the socket connects instead. */
export function connectError(socket) {
  return new Promise((resolve, reject) => {
    socket.once('connect_error', (err) => {
      socket.close();
      resolve(err.message);
    });
    socket.once('connect', () => {
      socket.close();
      reject(new Error('connected, expected connect_error'));
    });
  });
}

/**
 * Resolves as `promise` does, or rejects after `ms` with an error naming `what` was awaited.
 */
export function within(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Resolves with the disconnect reason. */
export function disconnected(socket) {
  return new Promise((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
}

/** Resolves with the next payload of `event`. */
export function nextEvent(socket, event) {
  return new Promise((resolve) => socket.once(event, resolve));
}

/** POST to the internal API with the bearer token; resolves { status, body }. */
export async function internalPost(replica, pathname, body, { token = INTERNAL_TOKEN, raw } = {}) {
  const res = await fetch(replica.internalUrl + pathname, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: raw ?? JSON.stringify(body),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}

/** A command on the deployment's Redis (one server or a cluster), as a backend would (uses redis-cli). */
export function redisCli(args, redisUrl = REDIS_URL) {
  const { hostname, port, protocol } = new URL(redisUrl);
  // On a cluster, follow MOVED redirections to the key's master.
  const cluster = protocol.startsWith('redis-cluster') ? ['-c'] : [];
  return new Promise((resolve, reject) => {
    execFile('redis-cli', [...cluster, '-h', hostname, '-p', port || '6379', ...args], (error, stdout) =>
      error ? reject(error) : resolve(stdout.trim()),
    );
  });
}

/** How many connections subscribe to a (non-sharded) channel of the deployment's Redis. */
export async function subscribers(channel) {
  if (redisCluster) return redisCluster.subscribers(channel);
  return Number((await redisCli(['PUBSUB', 'NUMSUB', channel])).split('\n')[1]);
}

/** A free TCP port on loopback. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * A throwaway redis-server on its own port (for tests that stop and restart Redis). It keeps no
 * data across a restart unless the test runs `SAVE` and passes the same `dir` again.
 */
export async function startRedis(port, { dir = mkdtempSync(path.join(tmpdir(), 'gw-redis-')) } = {}) {
  port ??= await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited ${code}`)));
  });
  await ready;
  const exited = once(child, 'exit');
  return {
    port,
    dir,
    url: `redis://127.0.0.1:${port}`,
    /** SIGSTOP: connections stay open and nothing answers, as on a frozen host. */
    freeze() {
      child.kill('SIGSTOP');
    },
    thaw() {
      child.kill('SIGCONT');
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * A throwaway PostgreSQL server (Debian's binaries, run as the `postgres` user) on its own port and
 * data directory, for tests that stop or freeze the database. `freeze()` SIGSTOPs the server and
 * every backend (connections hang, as on a frozen host); `stop()` and `start()` take it down and
 * bring it back with its data.
 */
/** Sends `sig` to each process; one that exited since it was listed is no longer there to stop. */
function signal(pids, sig) {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch (error) {
      if (error.code !== 'ESRCH') throw error;
    }
  }
}

export async function startPostgres() {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  const bin = `/usr/lib/postgresql/${versions[0]}/bin`;
  const dir = mkdtempSync(path.join(tmpdir(), 'gw-pg-'));
  const asPostgres = ['--reuid=postgres', '--regid=postgres', '--init-groups'];
  await new Promise((resolve, reject) => execFile('chown', ['postgres:postgres', dir], (e) => (e ? reject(e) : resolve())));
  await new Promise((resolve, reject) =>
    execFile('setpriv', [...asPostgres, `${bin}/initdb`, '-D', dir, '-A', 'trust', '-U', 'postgres'], (e, _out, err) =>
      e ? reject(new Error(`initdb: ${err}`)) : resolve()),
  );
  const port = await freePort();
  let child;
  let exited;
  const server = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}`,
    async start() {
      child = spawn('setpriv', [...asPostgres, `${bin}/postgres`, '-D', dir, '-p', String(port), '-k', dir,
        '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { stdio: ['ignore', 'ignore', 'pipe'] });
      exited = once(child, 'exit');
      const ready = new Promise((resolve, reject) => {
        createInterface({ input: child.stderr }).on('line', (line) => {
          if (line.includes('ready to accept connections')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`postgres exited ${code}`)));
      });
      await within(ready, 30000, 'the throwaway PostgreSQL to accept connections');
    },
    /** Every process of the server: the postmaster (setpriv exec'd into it) and its children. */
    pids() {
      const children = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
          return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(child.pid);
        } catch {
          return false;
        }
      });
      return [child.pid, ...children.map(Number)];
    },
    freeze() {
      signal(server.pids(), 'SIGSTOP');
    },
    thaw() {
      signal(server.pids(), 'SIGCONT');
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        server.thaw();
        child.kill('SIGINT'); // fast shutdown
      }
      await within(exited, 30000, 'the throwaway PostgreSQL to stop');
    },
    async remove() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

/** Records every payload of `event` on `socket`; `until(pred)` resolves with the first match. */
export function record(socket, event) {
  const seen = [];
  const waiters = [];
  socket.on(event, (payload) => {
    seen.push(payload);
    for (const w of [...waiters]) {
      if (w.pred(payload)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(payload);
      }
    }
  });
  return {
    seen,
    until(pred = () => true) {
      const past = seen.findIndex(pred);
      if (past >= 0) return Promise.resolve(seen[past]);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

/** Connects a socket with `token` and resolves once greeted (throws on connect_error). */
export async function connectAs(replica, nsp, token, opts = {}) {
  const { socket } = await connectOk(client(replica.url, nsp, { auth: { token }, ...opts }));
  return socket;
}

/** Emits with an acknowledgement; resolves with the ack (rejects after `ms`). */
export function ask(socket, event, payload, ms = 5000) {
  return socket.timeout(ms).emitWithAck(event, payload).catch((error) => {
    throw new Error(`no acknowledgement of ${event} within ${ms} ms (${error.message})`);
  });
}

/** POST helper bound to one replica's internal API. */
export const api = (replica) => ({
  post: (pathname, body, opts) => internalPost(replica, pathname, body, opts),
});

/** Polls `probe` until it returns a truthy value (or throws after `ms`). For state that is
 * only observable by asking, such as stats replicas report every second. */
export async function eventually(probe, ms = 10000, every = 100, what = 'the condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Starts the deployment a test suite runs against: a 3-replica cluster or a single replica. */
export async function startDeployment(db, mode, env = {}) {
  if (mode === 'single') {
    const replica = await startReplica({ db, redis: null, env });
    return { mode, prefix: null, replicas: [replica, replica, replica], stop: () => replica.stop() };
  }
  const cluster = await startCluster(db, 3, { env });
  return { mode, ...cluster };
}
