// Monitoring: the alert rules pass `promtool check rules` and their unit tests, and a real
// Prometheus scraping a three-replica cluster's GET /metrics (internal listener) answers every
// query of the Grafana dashboard (deploy/grafana/dashboards/gateway.json) with data.
// Needs `prometheus` and `promtool` on PATH (Debian's `prometheus` package; .ci/run installs it).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import {
  createDatabase, createIdentity, startCluster, client, connectError, connectAs, disconnected,
  internalPost, ask, freePort,
} from '../../testkit/harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../..');
const ALERTS = path.join(ROOT, 'deploy/prometheus/alerts.yaml');
const ALERT_TESTS = path.join(ROOT, 'deploy/prometheus/alerts.test.yaml');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/dashboards/gateway.json');

/** Fails (never skips) when a tool the test needs is missing. */
function requireTools(...names) {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const onPath = (name) => dirs.some((dir) => {
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  const missing = names.filter((n) => !onPath(n));
  if (missing.length > 0) {
    throw new Error(`${missing.join(' and ')} not found on PATH: this test needs Prometheus' binaries `
      + '(Debian: apt-get install prometheus; .ci/run installs them when promtool is missing)');
  }
}

/** Runs a command to completion: { code, stdout, stderr }. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20, timeout: 30000, ...opts }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr });
    });
  });
}

/** Polls `probe` until it returns a truthy value; the error names `what` and the last value seen. */
async function waitFor(what, probe, { ms = 20000, every = 250 } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const detail = typeof what === 'function' ? await what() : what;
      throw new Error(`timed out after ${ms} ms waiting for ${detail}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

// --- the dashboard's queries -------------------------------------------------------------

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));

/** Every panel, including those nested in (collapsed) rows. */
function allPanels(panels = dashboard.panels ?? []) {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}
const queryPanels = allPanels().filter((p) => p.type !== 'row');

/** The expression as Prometheus gets it with every replica and namespace selected. */
function substitute(expr) {
  return expr
    .replace(/\$\{?replica\}?/g, '.*')
    .replace(/\$\{?namespace\}?/g, '.*')
    .replace(/\$\{?__rate_interval\}?/g, '30s');
}

const variable = (name) => dashboard.templating?.list?.find((v) => v.name === name);
/** A query variable's query, in the old (string) or the current (object) form. */
const variableQuery = (v) => (typeof v.query === 'string' ? v.query : v.query?.query ?? v.definition);

test('prometheus and promtool are on PATH', () => {
  requireTools('prometheus', 'promtool');
});

describe('dashboard file', () => {
  test('identity, variables, and a description and a $replica filter everywhere', () => {
    assert.equal(dashboard.uid, 'gateway');
    assert.equal(dashboard.title, 'Realtime gateway');
    assert.equal(dashboard.schemaVersion, 39);
    assert.equal(variable('datasource')?.type, 'datasource');
    assert.equal(variable('datasource')?.query, 'prometheus');
    const replica = variable('replica');
    assert.equal(variableQuery(replica), 'label_values(gateway_build_info, instance)');
    assert.equal(replica.multi, true);
    assert.equal(replica.includeAll, true);
    const namespace = variable('namespace');
    assert.equal(namespace?.type, 'custom');
    assert.equal(namespace.query, 'drivers,passengers,admin');
    assert.equal(namespace.multi, true);
    assert.equal(namespace.includeAll, true);

    assert.ok(queryPanels.length >= 15, `only ${queryPanels.length} panels`);
    const ids = new Set();
    for (const p of queryPanels) {
      assert.ok(p.description?.trim(), `panel "${p.title}" has a description`);
      assert.ok(!ids.has(p.id), `panel "${p.title}": id ${p.id} is unique`);
      ids.add(p.id);
      assert.ok(p.targets?.length > 0, `panel "${p.title}" has a query`);
      for (const t of p.targets) {
        assert.match(t.expr, /instance=~"\$replica"/, `panel "${p.title}" (${t.refId}) filters on $replica`);
        assert.equal(t.datasource?.uid, '${datasource}', `panel "${p.title}" (${t.refId}) uses $datasource`);
      }
    }
  });
});

describe('alert rules', () => {
  before(() => requireTools('promtool'));

  test('promtool check rules', async () => {
    const res = await run('promtool', ['check', 'rules', ALERTS]);
    assert.equal(res.code, 0, `promtool check rules ${ALERTS}:\n${res.stdout}${res.stderr}`);
  });

  test('promtool test rules (the unit tests in alerts.test.yaml)', async () => {
    const res = await run('promtool', ['test', 'rules', ALERT_TESTS]);
    assert.equal(res.code, 0, `promtool test rules ${ALERT_TESTS}:\n${res.stdout}${res.stderr}`);
  });
});

describe('Prometheus scraping a three-replica cluster', () => {
  let db;
  let cluster;
  let prom;
  let promUrl;
  let tmp;
  const sockets = [];

  /** Instant query over the HTTP API: the result vector. */
  async function query(expr) {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = await res.json();
    if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? res.status}`);
    return body.data.result;
  }

  /** What the targets page says, for error messages. */
  async function targetsSummary() {
    try {
      const res = await fetch(`${promUrl}/api/v1/targets?state=active`);
      const { data } = await res.json();
      return data.activeTargets
        .map((t) => `${t.scrapeUrl} ${t.health}${t.lastError ? ` (${t.lastError})` : ''}`)
        .join('; ');
    } catch (error) {
      return `targets unavailable: ${error.message}`;
    }
  }

  before(async () => {
    requireTools('prometheus', 'promtool');
    db = await createDatabase();
    cluster = await startCluster(db, 3);
    const [A, B, C] = cluster.replicas;

    // --- a little load -----------------------------------------------------------------
    const driver = await createIdentity(db, 'DRIVER');
    const otherDriver = await createIdentity(db, 'DRIVER');
    const passenger = await createIdentity(db, 'PASSENGER');
    const admin = await createIdentity(db, 'ADMIN');
    const d1 = await connectAs(A, '/drivers', driver.token);
    const d2 = await connectAs(B, '/drivers', otherDriver.token, { transports: ['polling'] });
    const p1 = await connectAs(C, '/passengers', passenger.token);
    const a1 = await connectAs(A, '/admin', admin.token);
    sockets.push(d1, d2, p1, a1);

    assert.equal(await connectError(client(B.url, '/drivers', { auth: { token: 'nope' } })), 'Invalid token');

    for (const socket of [d1, d2]) {
      assert.equal((await ask(socket, 'driver:status', { status: 'ONLINE' })).ok, true);
      for (let i = 0; i < 3; i++) {
        assert.equal((await ask(socket, 'driver:location', { lat: 48.85 + i / 1000, lng: 2.35 })).ok, true);
      }
    }

    // a session revoked through replica C, its socket on B
    const victim = await createIdentity(db, 'DRIVER');
    const doomed = await connectAs(B, '/drivers', victim.token);
    const gone = disconnected(doomed);
    await db.revokeSession(victim.sid);
    const revoked = await internalPost(C, `/internal/v1/sessions/${victim.sid}/revoke`, { userId: victim.userId });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(await gone, 'io server disconnect');

    // an offer through C to the driver on A, who accepts
    d1.on('trip:offer', (_, callback) => callback({ accept: true }));
    const offered = await internalPost(C, `/internal/v1/drivers/${driver.userId}/offers`, {
      offerId: randomUUID(), tripId: `trip-${randomUUID()}`, expiresInMs: 500,
    });
    assert.equal(offered.status, 200, JSON.stringify(offered.body));
    assert.equal(offered.body.delivered, true);

    // --- Prometheus ----------------------------------------------------------------------
    // Fail fast, with the reason, when a replica does not serve metrics at all.
    for (const r of cluster.replicas) {
      const res = await fetch(`${r.internalUrl}/metrics`);
      const text = await res.text();
      assert.equal(res.status, 200, `${r.nodeId}: GET ${r.internalUrl}/metrics answered ${res.status}: ${text.slice(0, 200)}`);
    }

    tmp = await mkdtemp(path.join(os.tmpdir(), 'gw-prometheus-'));
    const targets = cluster.replicas.map((r) => new URL(r.internalUrl).host);
    const config = path.join(tmp, 'prometheus.yml');
    await writeFile(config, [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'rule_files:',
      `  - ${JSON.stringify(ALERTS)}`,
      'scrape_configs:',
      '  - job_name: gateway',
      '    metrics_path: /metrics',
      '    static_configs:',
      `      - targets: ${JSON.stringify(targets)}`,
      '',
    ].join('\n'));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const child = spawn('prometheus', [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(tmp, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = [];
    createInterface({ input: child.stdout }).on('line', (l) => log.push(l));
    createInterface({ input: child.stderr }).on('line', (l) => log.push(l));
    const exited = once(child, 'exit');
    prom = { child, log, exited };

    const ready = waitFor(`Prometheus ready on ${promUrl}/-/ready`, async () => (await fetch(`${promUrl}/-/ready`)).ok);
    await Promise.race([
      ready,
      exited.then(([code, signal]) => {
        throw new Error(`prometheus exited (${code ?? signal}) before it was ready:\n${log.slice(-20).join('\n')}`);
      }),
    ]);
    await waitFor(
      async () => `all three gateway targets up (count(up{job="gateway"}==1) == 3); targets: ${await targetsSummary()}`,
      async () => Number((await query('count(up{job="gateway"} == 1)'))[0]?.value[1]) === 3,
    );
    // Several scrapes of every replica, so that rate() over a window has points to work with.
    await waitFor(
      'five scrapes of gateway_handshakes_total from each of the three replicas',
      async () => {
        const counts = await query('count by (instance) (count_over_time(gateway_handshakes_total{job="gateway"}[30s]) >= 5)');
        return counts.length === 3;
      },
    );
  });

  after(async () => {
    if (prom && prom.child.exitCode === null && prom.child.signalCode === null) {
      prom.child.kill('SIGTERM');
      const timer = setTimeout(() => prom.child.kill('SIGKILL'), 10000);
      await prom.exited;
      clearTimeout(timer);
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
    for (const s of sockets) s.close();
    await cluster?.stop();
    await db?.drop();
  });

  test('the alert rules load and evaluate in Prometheus', async () => {
    const { data } = await waitFor('the gateway rule group to be evaluated', async () => {
      const body = await (await fetch(`${promUrl}/api/v1/rules`)).json();
      const group = body.data.groups.find((g) => g.name === 'gateway');
      return group?.rules.every((r) => r.lastEvaluation && !r.lastEvaluation.startsWith('0001')) && body;
    });
    const rules = data.groups.find((g) => g.name === 'gateway').rules;
    assert.equal(rules.length, 5);
    for (const r of rules) assert.equal(r.health, 'ok', `${r.name}: ${r.lastError}`);
  });

  test('the $replica variable lists the three replicas', async () => {
    const q = variableQuery(variable('replica'));
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
    assert.ok(m, `$replica query ${q} is label_values(metric, label)`);
    const [, selector, label] = m;
    const res = await run('promtool', ['query', 'instant', '-o', 'json', promUrl, substitute(selector)]);
    assert.equal(res.code, 0, `promtool query instant ${selector}: ${res.stderr}`);
    const series = JSON.parse(res.stdout);
    assert.ok(series.length > 0, `variable $replica: ${selector} has no series`);
    const values = new Set(series.map((s) => s.metric[label]).filter(Boolean));
    assert.equal(values.size, 3, `variable $replica: ${label} values ${[...values].join(', ')}`);
  });

  test('every query of every panel returns data', async (t) => {
    for (const p of queryPanels) {
      for (const target of p.targets ?? []) {
        if (!target.expr) continue;
        await t.test(`${p.title} (${target.refId})`, async () => {
          const expr = substitute(target.expr);
          const res = await run('promtool', ['query', 'instant', '-o', 'json', promUrl, expr]);
          assert.equal(res.code, 0, `panel "${p.title}" (${target.refId}): promtool query instant failed: ${res.stderr}\n${expr}`);
          const samples = JSON.parse(res.stdout);
          assert.ok(Array.isArray(samples) && samples.length > 0, `panel "${p.title}" (${target.refId}) has no data: ${expr}`);
        });
      }
    }
  });
});
