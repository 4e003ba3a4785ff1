// Real network faults for the e2e suite (issue 24, item 1): a Redis of its own in a network
// namespace, reached by each replica over a link of its own (a veth pair), which a test cuts
// (a partition: connections hang) and heals, or, where the kernel has `netem`, delays or makes
// lossy in both directions (this machine's kernel has none: `hasNetem()`). The replicas, their
// clients and PostgreSQL stay in the host's namespace: a fault on replica A's link touches A's
// Redis traffic and nothing else. Needs root (the suite runs as root, here and in CI).
//
// Names are unique per process (`gwf<pid>x<n>`), addresses are 10.213.<n>.0/30 pairs this file
// makes, and every namespace is deleted when the test ends or the process exits, whatever
// happened (deleting the namespace deletes its ends of the links, and with them the host's).
import { execFile, spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const made = new Set();
process.on('exit', () => {
  for (const ns of made) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

let counter = 0;

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (error, stdout, stderr) =>
      error ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout.trim()),
    );
  });
}

const ip = (...args) => run('ip', args);
const inNs = (ns, cmd, ...args) => run('ip', ['netns', 'exec', ns, cmd, ...args]);

/** Whether this kernel has `netem` (a Firecracker guest built without modules does not). */
let netemAvailable;
export async function hasNetem() {
  if (netemAvailable === undefined) {
    netemAvailable = await run('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '0ms']).then(
      async () => {
        await run('tc', ['qdisc', 'del', 'dev', 'lo', 'root']).catch(() => {});
        return true;
      },
      () => false,
    );
  }
  return netemAvailable;
}

/**
 * One link between the host and the namespace: the namespace's end has `address`. A cut takes
 * the namespace's end down: the host's end loses its carrier and drops what it sends, and
 * nothing comes back, so open connections hang rather than reset, as in a partition. Delay and
 * loss need `netem` in the kernel.
 */
function link(ns, hostDev, farDev, address) {
  const netem = async (...args) => {
    if (!(await hasNetem())) throw new Error('this kernel has no netem: delay and loss cannot be made on a link');
    await run('tc', ['qdisc', 'replace', 'dev', hostDev, 'root', 'netem', ...args]);
    await inNs(ns, 'tc', 'qdisc', 'replace', 'dev', farDev, 'root', 'netem', ...args);
  };
  return {
    address,
    /** Adds `ms` of delay each way (a round trip costs twice that). */
    delay: (ms) => netem('delay', `${ms}ms`),
    /** Drops `percent` of the packets each way. */
    loss: (percent) => netem('loss', `${percent}%`),
    /** Nothing crosses the link any more; open connections hang. */
    cut: () => inNs(ns, 'ip', 'link', 'set', farDev, 'down'),
    /** Back to a plain link. */
    async heal() {
      await inNs(ns, 'ip', 'link', 'set', farDev, 'up');
      if (await hasNetem()) {
        await run('tc', ['qdisc', 'del', 'dev', hostDev, 'root']).catch(() => {});
        await inNs(ns, 'tc', 'qdisc', 'del', 'dev', farDev, 'root').catch(() => {});
      }
    },
  };
}

/**
 * A /30 of 10.213.0.0/16 that no interface of the host uses (test files run in parallel
 * processes): the host's address and the namespace's.
 */
async function freeSubnet() {
  for (;;) {
    const third = Math.floor(Math.random() * 256);
    const block = Math.floor(Math.random() * 64) * 4;
    const host = `10.213.${third}.${block + 1}`;
    if (!(await ip('-o', 'addr', 'show')).includes(`${host}/`)) return { host, far: `10.213.${third}.${block + 2}` };
  }
}

/**
 * A Redis in a namespace of its own with `links` links to the host: give replica i
 * `redis.urls[i]`, and `redis.links[i]` is the link its traffic takes. `stop()` ends Redis and
 * deletes the namespace; so does the process ending.
 */
export async function isolatedRedis({ links = 3, port = 6379 } = {}) {
  counter += 1;
  const id = `${process.pid % 100000}x${counter}`;
  const ns = `gwf${id}`;
  await ip('netns', 'add', ns);
  made.add(ns);
  const out = [];
  try {
    await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
    for (let i = 0; i < links; i++) {
      const subnet = await freeSubnet();
      const hostDev = `gwh${id}${i}`;
      const farDev = `gwn${id}${i}`;
      await ip('link', 'add', hostDev, 'type', 'veth', 'peer', 'name', farDev);
      await ip('link', 'set', farDev, 'netns', ns);
      await ip('addr', 'add', `${subnet.host}/30`, 'dev', hostDev);
      await ip('link', 'set', hostDev, 'up');
      await inNs(ns, 'ip', 'addr', 'add', `${subnet.far}/30`, 'dev', farDev);
      await inNs(ns, 'ip', 'link', 'set', farDev, 'up');
      out.push(link(ns, hostDev, farDev, subnet.far));
    }
  } catch (error) {
    await ip('netns', 'del', ns).catch(() => {});
    made.delete(ns);
    throw error;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'gw-redis-ns-'));
  const child = spawn('ip', ['netns', 'exec', ns, 'redis-server', '--port', String(port), '--bind', '0.0.0.0',
    '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit');
  await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server in ${ns} exited ${code}`)));
  });
  return {
    ns,
    links: out,
    urls: out.map((l) => `redis://${l.address}:${port}`),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await ip('netns', 'del', ns).catch(() => {});
      made.delete(ns);
    },
  };
}
