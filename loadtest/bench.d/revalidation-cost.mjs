// The cost of session re-validation (lifecycle.md) at COUNT connected sockets (default 18,900: a
// process here is capped at 20,000 open files, and the gateway keeps 1,024 of them for itself, so one
// replica takes at most 18,976) on one cluster-mode replica,
// held by two loadgen processes as distinct users, connecting at 500/s each (the bench's idle rate): the duration of a round (its batched queries, from the replica's
// gateway_session_revalidation_seconds) and the CPU it adds to the replica and to PostgreSQL,
// from a HOLD_SECS idle hold with a round every second against the same hold with re-validation
// off. Writes loadtest/results/revalidation-cost.json and prints a Markdown table.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, startReplica, loadgen as runLoadgen, eventually } from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOADGEN = process.env.LOADGEN_BIN ?? path.join(root, 'target/release/loadgen');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const count = Number(process.env.COUNT ?? 18900);
const holdSecs = Number(process.env.HOLD_SECS ?? 30);
// USER_HZ: clock ticks per second of /proc/<pid>/stat on Linux.
const TICKS = 100;

/** utime + stime of a process, in seconds. */
function cpuOf(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds of every postgres process. */
function postgresCpu() {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('postgres')) total += cpuOf(pid);
    } catch { /* gone */ }
  }
  return total;
}

async function metric(replica, name) {
  const text = await (await fetch(`${replica.internalUrl}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

const db = await createDatabase();
await runLoadgen(db, ['seed', '--drivers', String(count), '--passengers', '10', '--admins', '1'], { bin: LOADGEN });

async function measure(name, revalidateMs) {
  const replica = await startReplica({
    db, prefix: `revalidation-${Date.now()}`, nodeId: 'revalidation-1', command: [GATEWAY, 'serve'],
    env: { RUST_LOG: 'warn,gateway::app=info', SESSION_REVALIDATE_MS: String(revalidateMs), MAX_SOCKETS_PER_USER: '0', HANDSHAKE_RATE_PER_USER: '0' },
  });
  const addr = replica.url.replace('http://', '');
  const pid = replica.child.pid;
  try {
    const half = Math.floor(count / 2);
    const idle = Promise.all([[0, half], [half, count - half]].map(([first, n]) => runLoadgen(db, ['idle', '--first', String(first),
      '--count', String(n), '--rate', '500', '--servers', addr, '--hold-secs', String(holdSecs + 40)], { bin: LOADGEN })));
    const failed = idle.then(() => false, (error) => error);
    await eventually(async () => {
      const error = await Promise.race([failed, Promise.resolve(false)]);
      if (error) throw error;
      return (await metric(replica, 'gateway_sockets')) >= count;
    }, 300000, 1000, `${count} connected sockets`);
    // Let the connect burst settle before the clock starts.
    await new Promise((r) => setTimeout(r, 3000));
    const before = { gw: cpuOf(pid), pg: postgresCpu(), rounds: await metric(replica, 'gateway_session_revalidations_total'),
      secs: await metric(replica, 'gateway_session_revalidation_seconds_sum'), sessions: await metric(replica, 'gateway_session_revalidated_total') };
    await new Promise((r) => setTimeout(r, holdSecs * 1000));
    const after = { gw: cpuOf(pid), pg: postgresCpu(), rounds: await metric(replica, 'gateway_session_revalidations_total'),
      secs: await metric(replica, 'gateway_session_revalidation_seconds_sum'), sessions: await metric(replica, 'gateway_session_revalidated_total') };
    await idle;
    const rounds = after.rounds - before.rounds;
    return {
      variant: name,
      sockets: count,
      hold_secs: holdSecs,
      rounds,
      sessions_per_round: rounds ? (after.sessions - before.sessions) / rounds : 0,
      round_ms: rounds ? ((after.secs - before.secs) / rounds) * 1000 : null,
      gateway_cpu_s: after.gw - before.gw,
      postgres_cpu_s: after.pg - before.pg,
    };
  } finally {
    await replica.stop();
  }
}

const off = await measure('re-validation off', 0);
console.error(JSON.stringify(off));
const on = await measure('a round every second', 1000);
console.error(JSON.stringify(on));
await db.drop();

const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results/revalidation-cost.json'), JSON.stringify({ machine, runs: [off, on] }, null, 2));
const perRound = (key) => (((on[key] - off[key]) / on.rounds) * 1000).toFixed(1);
console.log(`| ${count.toLocaleString('en')} sockets, ${holdSecs} s hold | re-validation off | a round every second |`);
console.log('|---|---|---|');
console.log(`| rounds | 0 | ${on.rounds} (${on.sessions_per_round.toFixed(0)} sessions each) |`);
console.log(`| round duration (queries, wall) | | ${on.round_ms.toFixed(1)} ms |`);
console.log(`| gateway CPU over the hold | ${off.gateway_cpu_s.toFixed(2)} s | ${on.gateway_cpu_s.toFixed(2)} s |`);
console.log(`| PostgreSQL CPU over the hold | ${off.postgres_cpu_s.toFixed(2)} s | ${on.postgres_cpu_s.toFixed(2)} s |`);
console.log(`\nadded per round: gateway ${perRound('gateway_cpu_s')} ms CPU, PostgreSQL ${perRound('postgres_cpu_s')} ms CPU; machine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB`);
