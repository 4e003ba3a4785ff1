// Delivery to apps on mobile networks (issue 23, item 4), side by side with Node's Socket.IO peer,
// every client the official socket.io-client reconnecting by itself, three replicas:
//  - offers: drivers whose connections drop every 5-15 s receive trip offers (15 s expiry) at a
//    steady rate, and answer each after a human's 0.5-3 s; an app that sees an offer again
//    answers it at once with the same decision (docs/events.md: offers are idempotent by
//    offerId). Counted: offers answered / sent (every driver's app runs throughout, so every
//    offer's driver is present), 404 and 504, offers the app saw more than once, and answers
//    lost (the app answered, dispatch did not get it). The peer offers with Node's natural
//    `timeout(expiresInMs).emit(..., ack)` to the driver's room.
//  - a Redis restart: passengers stay connected while pushes flow through the replicas in turn;
//    Redis shuts down (saving its data) and comes back. Counted: accepted pushes delivered,
//    duplicates, clients that had to reconnect.
// Writes loadtest/results/mobile.json and prints Markdown tables.
//   node loadtest/bench.d/mobile.mjs   (DRIVERS=150, OFFER_RATE=10/s, SECS=60, PASSENGERS=150,
//                                       PUSH_RATE=200/s, RESTART_SECS=20, PARTS=offers,restart)
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import {
  createDatabase, createIdentity, startReplica, startRedis, redisCli, INTERNAL_TOKEN,
} from '../../testkit/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { io } = createRequire(path.join(root, 'testkit/package.json'))('socket.io-client');
const GATEWAY = process.env.GATEWAY_BIN ?? path.join(root, 'target/release/gateway');
const PEER = path.join(root, 'loadtest/peers/node-socketio/server.js');
const DRIVERS = Number(process.env.DRIVERS ?? 150);
const OFFER_RATE = Number(process.env.OFFER_RATE ?? 10);
const SECS = Number(process.env.SECS ?? 60);
const PASSENGERS = Number(process.env.PASSENGERS ?? 150);
const PUSH_RATE = Number(process.env.PUSH_RATE ?? 200);
const RESTART_SECS = Number(process.env.RESTART_SECS ?? 20);
const EXPIRES_IN_MS = 15000;
const PARTS = (process.env.PARTS ?? 'offers,restart').split(',');

const servers = {
  gateway: { command: [GATEWAY, 'serve'], env: { RUST_LOG: 'warn,gateway::app=info', HANDSHAKE_RATE_PER_USER: '0' } },
  'Node peer (redis-adapter)': { command: ['node', PEER], env: {} },
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function post(replica, pathname, body) {
  const res = await fetch(`${replica.internalUrl}${pathname}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${INTERNAL_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}

async function startThree(db, redis, { command, env }, name) {
  const prefix = `mobile-${name.split(' ')[0]}-${Date.now()}`;
  const replicas = [];
  for (let i = 0; i < 3; i++) {
    replicas.push(await startReplica({ db, redis: redis.url, prefix, nodeId: `mobile-${i + 1}`, command, env }));
  }
  return replicas;
}

async function allConnected(clients, what) {
  for (let t = 0; !clients.every((c) => c.socket.connected); t++) {
    if (t > 300) throw new Error(`${what}: clients did not all connect within 30 s`);
    await sleep(100);
  }
}

/** Drivers dropping every 5-15 s, offers at OFFER_RATE for SECS. */
async function offers(name, server, users, db, redis) {
  const replicas = await startThree(db, redis, server, name);
  const seen = new Map(); // offerId -> times the app saw it
  const answeredByApp = new Set();
  const drivers = users.map((u, i) => {
    const d = { user: u, drops: 0, timer: null };
    d.socket = io(`${replicas[i % 3].url}/drivers`, {
      transports: ['websocket'], reconnectionDelay: 200, reconnectionDelayMax: 1000, auth: { token: u.token },
    });
    d.socket.on('trip:offer', (offer, ack) => {
      const times = (seen.get(offer.offerId) ?? 0) + 1;
      seen.set(offer.offerId, times);
      const answer = () => {
        answeredByApp.add(offer.offerId);
        ack({ accept: true });
      };
      // Already decided (seen before): the same answer at once; else a human's 0.5-3 s.
      if (answeredByApp.has(offer.offerId) || times > 1) answer();
      else setTimeout(answer, 500 + Math.random() * 2500);
    });
    return d;
  });
  await allConnected(drivers, name);
  let churning = true;
  const scheduleDrop = (d) => {
    d.timer = setTimeout(() => {
      if (!churning) return;
      if (d.socket.connected) {
        d.drops++;
        d.socket.io.engine.close();
      }
      scheduleDrop(d);
    }, 5000 + Math.random() * 10000);
  };
  drivers.forEach(scheduleDrop);
  const outcomes = new Map();
  const lost = [];
  const started = Date.now();
  const inFlight = new Set();
  let sent = 0;
  while (Date.now() < started + SECS * 1000) {
    const due = Math.floor(((Date.now() - started) / 1000) * OFFER_RATE);
    while (sent < due) {
      sent++;
      const d = drivers[Math.floor(Math.random() * drivers.length)];
      const offerId = randomUUID();
      const p = post(replicas[sent % 3], `/internal/v1/drivers/${d.user.userId}/offers`, {
        offerId, tripId: `trip-${offerId}`, expiresInMs: EXPIRES_IN_MS,
      }).catch(() => 0).then((status) => {
        outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
        if (status !== 200 && answeredByApp.has(offerId)) lost.push(offerId);
      }).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await sleep(10);
  }
  await Promise.all(inFlight);
  churning = false;
  drivers.forEach((d) => clearTimeout(d.timer));
  drivers.forEach((d) => d.socket.close());
  await Promise.all(replicas.map((r) => r.stop()));
  const answered = outcomes.get(200) ?? 0;
  return {
    server: name,
    drivers: users.length,
    secs: SECS,
    offers_sent: sent,
    answered,
    answered_ratio: sent ? answered / sent : null,
    not_found_404: outcomes.get(404) ?? 0,
    timed_out_504: outcomes.get(504) ?? 0,
    other: [...outcomes].filter(([s]) => ![200, 404, 504].includes(s)).reduce((n, [, c]) => n + c, 0),
    seen_twice_or_more: [...seen.values()].filter((n) => n > 1).length,
    answers_lost: lost.length,
    drops: drivers.reduce((n, d) => n + d.drops, 0),
  };
}

/** Connected passengers, pushes at PUSH_RATE, Redis restarted with its data halfway. */
async function restart(name, server, users, db, redis) {
  const replicas = await startThree(db, redis, server, name);
  const passengers = users.map((u, i) => {
    const p = { user: u, received: new Map(), accepted: new Set(), reconnects: 0 };
    p.socket = io(`${replicas[i % 3].url}/passengers`, {
      transports: ['websocket'], reconnectionDelay: 200, reconnectionDelayMax: 1000, auth: { token: u.token },
    });
    p.socket.on('promo:offer', (data) => p.received.set(data.seq, (p.received.get(data.seq) ?? 0) + 1));
    p.socket.io.on('reconnect', () => p.reconnects++);
    return p;
  });
  await allConnected(passengers, name);
  const seqs = new Map();
  let pushes = 0;
  let refused = 0;
  const inFlight = new Set();
  const started = Date.now();
  let restarted = null;
  while (Date.now() < started + RESTART_SECS * 1000) {
    if (!restarted && Date.now() > started + (RESTART_SECS * 1000) / 3) {
      restarted = (async () => {
        await redisCli(['SHUTDOWN', 'SAVE'], redis.url).catch(() => {});
        await redis.stop();
        redis.current = await startRedis(redis.port, { dir: redis.dir });
      })();
    }
    const due = Math.floor(((Date.now() - started) / 1000) * PUSH_RATE);
    while (pushes < due) {
      pushes++;
      const p = passengers[Math.floor(Math.random() * passengers.length)];
      const seq = (seqs.get(p) ?? 0) + 1;
      seqs.set(p, seq);
      const req = post(replicas[pushes % 3], '/internal/v1/emit', {
        namespace: '/passengers', rooms: [`passenger:${p.user.userId}`], event: 'promo:offer', data: { seq },
      }).catch(() => 0).then((status) => {
        if (status === 200) p.accepted.add(seq);
        else refused++;
      }).finally(() => inFlight.delete(req));
      inFlight.add(req);
    }
    await sleep(5);
  }
  await Promise.all(inFlight);
  await restarted;
  await allConnected(passengers, name).catch(() => {});
  await sleep(3000);
  let accepted = 0;
  let delivered = 0;
  let duplicates = 0;
  for (const p of passengers) {
    accepted += p.accepted.size;
    for (const seq of p.accepted) if (p.received.has(seq)) delivered++;
    for (const n of p.received.values()) duplicates += n - 1;
  }
  passengers.forEach((p) => p.socket.close());
  await Promise.all(replicas.map((r) => r.stop()));
  return {
    server: name,
    passengers: users.length,
    pushes_offered: pushes,
    accepted,
    refused,
    delivered,
    delivery_ratio: accepted ? delivered / accepted : null,
    duplicates,
    clients_reconnected: passengers.filter((p) => p.reconnects > 0).length,
  };
}

const db = await createDatabase();
const drivers = [];
for (let i = 0; i < DRIVERS; i++) drivers.push(await createIdentity(db, 'DRIVER'));
const passengers = [];
for (let i = 0; i < PASSENGERS; i++) passengers.push(await createIdentity(db, 'PASSENGER'));
const results = { offers: [], restart: [] };
for (const [name, server] of Object.entries(servers)) {
  // Each server its own Redis, which the restart part stops and starts again.
  const redis = await startRedis();
  const handle = {
    get url() { return redis.url; },
    port: redis.port,
    dir: redis.dir,
    current: redis,
    stop() { return this.current.stop(); },
  };
  try {
    if (PARTS.includes('offers')) {
      const r = await offers(name, server, drivers, db, handle);
      console.error(JSON.stringify(r));
      results.offers.push(r);
    }
    if (PARTS.includes('restart')) {
      const r = await restart(name, server, passengers, db, handle);
      console.error(JSON.stringify(r));
      results.restart.push(r);
    }
  } finally {
    await handle.stop();
  }
}
await db.drop();
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30) };
mkdirSync(path.join(root, 'loadtest/results'), { recursive: true });
writeFileSync(path.join(root, 'loadtest/results', process.env.OUT ?? 'mobile.json'),
  JSON.stringify({ machine, drivers: DRIVERS, offer_rate: OFFER_RATE, secs: SECS, passengers: PASSENGERS, push_rate: PUSH_RATE, results }, null, 2));
const pct = (x) => (x === null ? 'n/a' : `${(100 * x).toFixed(2)}%`);
if (results.offers.length) {
  console.log(`| ${DRIVERS} drivers dropping every 5-15 s, ${OFFER_RATE} offers/s (15 s expiry) for ${SECS} s, 3 replicas | answered / sent | answered | 404 | 504 | offers seen twice by the app | answers lost | drops |`);
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of results.offers) {
    console.log(`| ${r.server} | ${r.answered} / ${r.offers_sent} | ${pct(r.answered_ratio)} | ${r.not_found_404} | ${r.timed_out_504} | ${r.seen_twice_or_more} | ${r.answers_lost} | ${r.drops} |`);
  }
  console.log('');
}
if (results.restart.length) {
  console.log(`| ${PASSENGERS} connected passengers, ${PUSH_RATE} pushes/s for ${RESTART_SECS} s, Redis restarted with its data | delivered / accepted | delivery ratio | duplicates | refused (Redis down) | clients that reconnected |`);
  console.log('|---|---|---|---|---|---|');
  for (const r of results.restart) {
    console.log(`| ${r.server} | ${r.delivered} / ${r.accepted} | ${pct(r.delivery_ratio)} | ${r.duplicates} | ${r.refused} | ${r.clients_reconnected} |`);
  }
  console.log('');
}
console.log(`machine: ${machine.cpus} x ${machine.model}, ${machine.memory_gib} GiB; command: node loadtest/bench.d/mobile.mjs (DRIVERS=${DRIVERS}, OFFER_RATE=${OFFER_RATE}, SECS=${SECS}, PASSENGERS=${PASSENGERS}, PUSH_RATE=${PUSH_RATE}, RESTART_SECS=${RESTART_SECS})`);
