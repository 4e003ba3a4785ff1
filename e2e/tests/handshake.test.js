// Every handshake outcome of the contract, seen from the official client.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDatabase, createIdentity, startReplica, client, connectOk, connectError, sign, freePort,
  JWT_SECRET, INTERNAL_TOKEN,
} from '../../testkit/harness.js';

let db;
let replica;

before(async () => {
  db = await createDatabase();
  replica = await startReplica({ db });
});

after(async () => {
  await replica?.stop();
  await db?.drop();
});

const refusal = (nsp, opts) => connectError(client(replica.url, nsp, opts));
const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

describe('accepted handshakes', () => {
  test('a driver connects over websocket, gets hello, and the socket carries its id', async () => {
    const { token } = await createIdentity(db, 'DRIVER');
    const { socket, hello } = await connectOk(client(replica.url, '/drivers', { auth: { token }, transports: ['websocket'] }));
    assert.deepEqual(hello, { ok: true, nsp: '/drivers' });
    assert.equal(socket.io.engine.transport.name, 'websocket');
    socket.close();
  });

  test('a driver connects over polling only', async () => {
    const { token } = await createIdentity(db, 'DRIVER');
    const { socket, hello } = await connectOk(client(replica.url, '/drivers', { auth: { token }, transports: ['polling'] }));
    assert.deepEqual(hello, { ok: true, nsp: '/drivers' });
    assert.equal(socket.io.engine.transport.name, 'polling');
    socket.close();
  });

  test('polling upgrades to websocket', async () => {
    const { token } = await createIdentity(db, 'PASSENGER');
    const socket = client(replica.url, '/passengers', { auth: { token } });
    const upgraded = new Promise((resolve) => socket.io.on('open', () => socket.io.engine.once('upgrade', (t) => resolve(t.name))));
    const { hello } = await connectOk(socket);
    assert.deepEqual(hello, { ok: true, nsp: '/passengers' });
    assert.equal(await upgraded, 'websocket');
    socket.close();
  });

  test('the token may come from the Authorization header, on both transports', async () => {
    for (const transports of [['polling'], ['websocket']]) {
      const { token } = await createIdentity(db, 'DRIVER');
      const { hello, socket } = await connectOk(
        client(replica.url, '/drivers', { transports, extraHeaders: { Authorization: `Bearer ${token}` } }),
      );
      assert.equal(hello.nsp, '/drivers', transports[0]);
      socket.close();
    }
  });

  test('admins, dispatchers and support agents connect to /admin', async () => {
    for (const role of ['ADMIN', 'DISPATCHER', 'SUPPORT']) {
      const { token } = await createIdentity(db, role, { orgId: 'acme' });
      const { hello, socket } = await connectOk(client(replica.url, '/admin', { auth: { token } }));
      assert.deepEqual(hello, { ok: true, nsp: '/admin' }, role);
      socket.close();
    }
  });

  test('an aud claim is ignored while no audience is configured', async () => {
    const { userId, sid } = await createIdentity(db, 'DRIVER');
    const token = sign({ sub: userId, sid, aud: 'some-other-service' });
    const { hello, socket } = await connectOk(client(replica.url, '/drivers', { auth: { token } }));
    assert.equal(hello.ok, true);
    socket.close();
  });
});

describe('refused handshakes get the contract message as connect_error', () => {
  test('Missing token: no auth object, a number, a non-string or empty token', async () => {
    assert.equal(await refusal('/drivers', {}), 'Missing token');
    assert.equal(await refusal('/drivers', { auth: 42 }), 'Missing token');
    assert.equal(await refusal('/drivers', { auth: { token: 123 } }), 'Missing token');
    assert.equal(await refusal('/passengers', { auth: { token: '' } }), 'Missing token');
    assert.equal(await refusal('/admin', { auth: { token: 123 }, transports: ['websocket'] }), 'Missing token');
  });

  test('Invalid token: garbage, 64 KB, no exp, alg none, HS512, wrong key', async () => {
    const { userId, sid } = await createIdentity(db, 'DRIVER');
    const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: userId, sid, exp: Math.floor(Date.now() / 1000) + 3600 })}.`;
    const cases = {
      garbage: 'not-a-jwt',
      '64 KB': 'a'.repeat(64 * 1024),
      'no exp': sign({ sub: userId, sid }, { noExp: true }),
      'alg none': none,
      HS512: sign({ sub: userId, sid }, { algorithm: 'HS512' }),
      'wrong key': sign({ sub: userId, sid }, { secret: 'not-the-secret' }),
    };
    for (const [name, token] of Object.entries(cases)) {
      assert.equal(await refusal('/drivers', { auth: { token } }), 'Invalid token', name);
    }
  });

  test('Access expired: an expired JWT, and a session whose access expired', async () => {
    const { userId, sid } = await createIdentity(db, 'DRIVER');
    const expired = sign({ sub: userId, sid, exp: Math.floor(Date.now() / 1000) - 5 });
    assert.equal(await refusal('/drivers', { auth: { token: expired } }), 'Access expired');
    const sid2 = await db.session(userId, { expiresAt: new Date(Date.now() - 60_000) });
    assert.equal(await refusal('/drivers', { auth: { token: sign({ sub: userId, sid: sid2 }) } }), 'Access expired');
  });

  test('Missing sub/sid', async () => {
    const { userId, sid } = await createIdentity(db, 'DRIVER');
    for (const claims of [{ sub: userId }, { sid }, { sub: 123, sid }, { sub: userId, sid: ['x'] }]) {
      assert.equal(await refusal('/drivers', { auth: { token: sign(claims) } }), 'Missing sub/sid', JSON.stringify(claims));
    }
  });

  test('User not found: unknown id, non-UUID sub, SQL-injection-shaped sub', async () => {
    const { sid } = await createIdentity(db, 'DRIVER');
    for (const sub of ['00000000-0000-4000-8000-000000000000', 'driver-42', "' OR '1'='1' --", "1; DROP TABLE users; --"]) {
      assert.equal(await refusal('/drivers', { auth: { token: sign({ sub, sid }) } }), 'User not found', sub);
    }
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM users');
    assert.ok(rows[0].n > 0, 'users table intact');
  });

  test('Wrong userType on each namespace', async () => {
    const passenger = await createIdentity(db, 'PASSENGER');
    const driver = await createIdentity(db, 'DRIVER');
    assert.equal(await refusal('/drivers', { auth: { token: passenger.token } }), 'Wrong userType');
    assert.equal(await refusal('/passengers', { auth: { token: driver.token } }), 'Wrong userType');
    assert.equal(await refusal('/admin', { auth: { token: driver.token } }), 'Wrong userType');
  });

  test('User inactive', async () => {
    for (const status of ['INACTIVE', 'SUSPENDED']) {
      const { token } = await createIdentity(db, 'DRIVER', { status });
      assert.equal(await refusal('/drivers', { auth: { token } }), 'User inactive', status);
    }
  });

  test("Invalid session: unknown sid, revoked, another user's sid, injection-shaped sid", async () => {
    const a = await createIdentity(db, 'DRIVER');
    const b = await createIdentity(db, 'DRIVER');
    const revokedSid = await db.session(a.userId, { revoked: true });
    for (const sid of ['no-such-session', revokedSid, b.sid, "x' OR '1'='1"]) {
      assert.equal(await refusal('/drivers', { auth: { token: sign({ sub: a.userId, sid }) } }), 'Invalid session', sid);
    }
  });

  test('an auth payload beyond MAX_PAYLOAD_BYTES is refused and the replica keeps serving', async () => {
    const socket = client(replica.url, '/drivers', { auth: { token: 'a'.repeat(200_000) }, transports: ['polling'] });
    const failed = await new Promise((resolve) => {
      socket.once('connect_error', () => resolve(true));
      socket.once('connect', () => resolve(false));
    });
    socket.close();
    assert.equal(failed, true);
    const { token } = await createIdentity(db, 'DRIVER');
    const { hello, socket: ok } = await connectOk(client(replica.url, '/drivers', { auth: { token } }));
    assert.equal(hello.ok, true);
    ok.close();
  });
});

test('Service unavailable when the database is down, and the replica is not ready', async () => {
  const port = await freePort();
  const down = await startReplica({ db: { url: `postgres://postgres@127.0.0.1:${port}/nothing` }, redis: null, waitReady: false });
  try {
    // Never ready without its database: wait until it serves.
    await down.waitReadyz({ until: (_, body) => body?.checks?.serving === true, what: 'serving' });
    const { token } = await createIdentity(db, 'DRIVER');
    assert.equal(await connectError(client(down.url, '/drivers', { auth: { token } })), 'Service unavailable');
    const res = await fetch(`${down.internalUrl}/readyz`);
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.checks.database.ok, false);
    assert.equal((await fetch(`${down.internalUrl}/livez`)).status, 200);
  } finally {
    await down.stop();
  }
});

test('JWT_ISSUER and JWT_AUDIENCE are enforced when set', async () => {
  const strict = await startReplica({ db, redis: null, env: { JWT_ISSUER: 'auth-svc', JWT_AUDIENCE: 'gateway' } });
  try {
    const { userId, sid } = await createIdentity(db, 'DRIVER');
    const good = sign({ sub: userId, sid, iss: 'auth-svc', aud: 'gateway' });
    const { socket } = await connectOk(client(strict.url, '/drivers', { auth: { token: good } }));
    socket.close();
    for (const claims of [{ iss: 'auth-svc' }, { aud: 'gateway' }, { iss: 'evil', aud: 'gateway' }, { iss: 'auth-svc', aud: 'other' }]) {
      const token = sign({ sub: userId, sid, ...claims });
      assert.equal(await connectError(client(strict.url, '/drivers', { auth: { token } })), 'Invalid token', JSON.stringify(claims));
    }
  } finally {
    await strict.stop();
  }
});

test('no secret or token ever reaches the logs', async () => {
  const { token } = await createIdentity(db, 'DRIVER');
  const { socket } = await connectOk(client(replica.url, '/drivers', { auth: { token } }));
  socket.close();
  assert.equal(await refusal('/drivers', { auth: { token: token + 'x' } }), 'Invalid token');
  const text = JSON.stringify(replica.logs);
  assert.ok(replica.logs.some((l) => l.message === 'socket connected'), 'connections are logged');
  for (const secret of [JWT_SECRET, INTERNAL_TOKEN, token, token.split('.')[2]]) {
    assert.ok(!text.includes(secret), 'a secret leaked into the logs');
  }
});
