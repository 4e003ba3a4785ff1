// A throwaway Redis Cluster from Debian's redis-server (`--cluster-enabled yes`) and
// `redis-cli --cluster create`: masters, optionally one replica each, on free loopback ports.
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { redisTlsArgs } from './tls.js';

const running = new Set();
// Servers end with the test process that started them.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** redis-cli against one node; with `certs`, over TLS. */
function cliFor(certs) {
  const tls = certs ? ['--tls', '--cacert', certs.ca] : [];
  return (port, args) => new Promise((resolve, reject) => {
    execFile('redis-cli', [...tls, '-p', String(port), ...args], (error, stdout, stderr) =>
      error ? reject(new Error(`redis-cli -p ${port} ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout.trim()),
    );
  });
}

/** A free port whose cluster bus port (+10000) is free too. */
async function freePortPair() {
  for (;;) {
    const port = await listenFree(0);
    if (port < 55000 && (await listenFree(port + 10000).then(() => true, () => false))) return port;
  }
}

function listenFree(port) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const { port: bound } = srv.address();
      srv.close(() => resolve(bound));
    });
  });
}

async function until(probe, ms, what, every = 100) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe().catch((error) => {
      if (error.message.includes('exited')) throw error;
      return false;
    })) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

async function startNode(port, dir, nodeTimeoutMs, certs, cli) {
  // Logs to a file and no pipes: the test process may exit while the servers run (its exit
  // handler kills them).
  const listen = certs ? redisTlsArgs(certs, port) : ['--port', String(port)];
  const child = spawn('redis-server', [
    ...listen, '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
    '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', String(nodeTimeoutMs),
    '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', path.join(dir, `${port}.log`),
  ], { stdio: 'ignore' });
  running.add(child);
  const exited = once(child, 'exit');
  child.once('exit', () => running.delete(child));
  child.unref();
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited ${child.exitCode}`);
    return (await cli(port, ['PING'])) === 'PONG';
  }, 10000, `redis-server on ${port} to answer PING`);
  return { port, child, exited };
}

/**
 * Starts a cluster of `masters` masters (over TLS only when `certs` come from tls.js) with `replicas` replicas each and resolves once every
 * node reports `cluster_state:ok`. `url` is the gateway's `REDIS_URL` for it.
 */
export async function startRedisCluster({ masters = 3, replicas = 0, nodeTimeoutMs = 2000, certs = null } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'gw-redis-cluster-'));
  const cli = cliFor(certs);
  const ports = [];
  for (let i = 0; i < masters * (1 + replicas); i += 1) ports.push(await freePortPair());
  const nodes = await Promise.all(ports.map((port) => startNode(port, dir, nodeTimeoutMs, certs, cli)));
  await cli(ports[0], [
    '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
    '--cluster-replicas', String(replicas), '--cluster-yes',
  ]);
  const healthy = async () => {
    for (const { port } of nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null)) {
      const info = await cli(port, ['CLUSTER', 'INFO']);
      if (!info.includes('cluster_state:ok')) return false;
    }
    return true;
  };
  await until(healthy, 20000, 'the Redis Cluster to be ok on every node');
  const url = `${certs ? 'rediss' : 'redis'}-cluster://127.0.0.1:${ports[0]}?${ports.slice(1).map((p) => `node=127.0.0.1:${p}`).join('&')}`;
  return {
    url,
    ports,
    nodes,
    cli,
    /** Resolves once every running node agrees the cluster is ok (after a failover). */
    healthy: (ms = 20000) => until(healthy, ms, 'the Redis Cluster to be ok on every running node'),
    /** Subscribers of a (non-sharded) channel over every node: PUBLISH counts only its node's. */
    async subscribers(channel) {
      let total = 0;
      for (const { port, child } of nodes) {
        if (child.exitCode !== null || child.signalCode !== null) continue;
        total += Number((await cli(port, ['PUBSUB', 'NUMSUB', channel])).split('\n')[1]);
      }
      return total;
    },
    /** The ports of the current masters, from a running node's view. */
    async masters() {
      const alive = nodes.find((n) => n.child.exitCode === null && n.child.signalCode === null);
      const lines = (await cli(alive.port, ['CLUSTER', 'NODES'])).split('\n');
      return lines
        .filter((l) => l.includes('master') && !l.includes('fail'))
        .map((l) => Number(l.split(' ')[1].split('@')[0].split(':')[1]));
    },
    /**
     * Resolves once the replica of master `port` is online and at most `behind` bytes behind it
     * (replication is async: what the replica has not got is what a failover loses).
     */
    async replicated(port, { behind = 0, ms = 10000 } = {}) {
      await until(async () => {
        const info = await cli(port, ['INFO', 'replication']);
        const master = Number(/master_repl_offset:(\d+)/.exec(info)[1]);
        const replica = /slave0:.*state=online,offset=(\d+)/.exec(info);
        return replica && master - Number(replica[1]) <= behind;
      }, ms, `the replica of ${port} to be online and at most ${behind} bytes behind`, 50);
    },
    /** Resolves once another node serves the killed master `victim`'s slots and every running node says ok. */
    async failedOver(victim, ms = 30000) {
      await until(async () => {
        const now = await this.masters();
        return now.length === masters && !now.includes(victim);
      }, ms, `a replica to take over the killed master ${victim}`, 50);
      await this.healthy(ms);
    },
    async stop() {
      for (const { child } of nodes) {
        // Referenced again, or the process could end before their exit is seen.
        child.ref();
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      await Promise.all(nodes.map((n) => n.exited));
    },
  };
}
