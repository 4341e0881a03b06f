import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import t, { type Test } from 'tap';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/db/client.ts';
import { createDatabase } from '../src/db/database.ts';
import { outsideRequest, withStatementDeadline } from '../src/db/deadline.ts';
import { isDatabaseUnreachable } from '../src/db/outage.ts';
import { final } from '../src/db/prepared.ts';
import { currentRuleSet } from '../src/domains/automation-rules/runner.ts';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { activePolicies } from '../src/domains/sla-policies/repository.ts';
import { agentWithToken, buildTestApp, type TestContext } from './helpers/app.ts';
import { assertMatchesSpec } from './helpers/contract.ts';
import { createTestDatabase } from './helpers/database.ts';
import { closedPort, relayTo } from './helpers/network.ts';
import { SseStream } from './helpers/sse.ts';

// How the server outlives its database (docs/architecture.md, "Faults"). The tests that kill
// PostgreSQL backends need a server; the ones with an absent or silent PostgreSQL run on both
// paths, since the app then gets a pg pool of its own whatever the suite runs on.

const serverUrl = process.env.TEST_DATABASE_URL;
const needsServer = serverUrl ? false : 'needs a PostgreSQL server to terminate backends (PGlite has none)';
const JWT_SECRET = 'test-secret-that-is-long-enough-0123456789';
// A well-formed API token: looking it up is the first thing the request asks of the database.
const UNKNOWN_TOKEN = `drt_${'A'.repeat(43)}`;

/** Fails the test when an 'error' escapes to the process, which without a listener ends it. */
function watchEscapes(t: Test) {
  const escaped: unknown[] = [];
  const onEscape = (error: unknown) => escaped.push(error);
  process.on('uncaughtException', onEscape);
  t.teardown(() => {
    process.off('uncaughtException', onEscape);
  });
  return escaped;
}

/** A test database of its own, and a connection of the test's own to it (to take locks from). */
async function databaseWithAdmin(t: Test) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const admin = new pg.Client({ connectionString: database.url! });
  await admin.connect();
  t.teardown(() => admin.end());
  return { database, admin };
}

/** A connection of the test's own to the app's database, to kill the app's backends from. */
async function adminOf(t: Test, ctx: TestContext) {
  const admin = new pg.Client({ connectionString: ctx.database.url! });
  await admin.connect();
  t.teardown(() => admin.end());
  const database = new URL(ctx.database.url!).pathname.slice(1);
  const others = async (except: number[] = []) =>
    (
      await admin.query<{ pid: number }>(
        `select pid from pg_stat_activity
          where datname = $1 and pid <> pg_backend_pid() and not (pid = any($2::int[]))`,
        [database, except],
      )
    ).rows.map((r) => r.pid);
  return {
    admin,
    database,
    others,
    /** Terminates the app's backends and waits until PostgreSQL has let them go. */
    async terminate(except: number[] = []) {
      const pids = await others(except);
      await admin.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [pids]);
      for (let i = 0; i < 100 && (await others(except)).length > 0; i++) await sleep(50);
      t.same(await others(except), [], 'the terminated backends are gone');
      // Their sockets are closed by now; one more turn of the event loop lets pg read that.
      await sleep(50);
      return pids;
    },
  };
}

function isProblem(t: Test, res: { statusCode: number; headers: Record<string, unknown>; body: string }) {
  t.equal(res.statusCode, 503);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/);
  t.equal(res.headers['retry-after'], '5', 'Retry-After says when to come back');
  t.equal(JSON.parse(res.body).code, 'database_unavailable');
}

t.test(
  'backends terminated while idle in the pool: the process lives, the next request is served',
  {
    skip: needsServer,
  },
  async (t) => {
    const escaped = watchEscapes(t);
    const ctx = await buildTestApp(t);
    const { token } = await agentWithToken(ctx);
    // Several connections into the pool, then idle.
    const first = await Promise.all(
      Array.from({ length: 4 }, () => ctx.request({ method: 'GET', url: '/v1/me', token })),
    );
    t.same(
      first.map((r) => r.statusCode),
      [200, 200, 200, 200],
    );
    const { terminate } = await adminOf(t, ctx);
    t.ok((await terminate()).length > 0, 'the app had backends to terminate');
    const res = await ctx.request({ method: 'GET', url: '/v1/me', token });
    t.equal(res.statusCode, 200, 'served on a new connection');
    t.same(escaped, [], 'no error escaped to the process');
  },
);

t.test(
  'a backend terminated while its connection is checked out: the transaction fails, the process lives',
  {
    skip: needsServer,
  },
  async (t) => {
    const escaped = watchEscapes(t);
    const ctx = await buildTestApp(t);
    const { token } = await agentWithToken(ctx);
    const { terminate } = await adminOf(t, ctx);
    const outcome = await ctx.db
      .transaction()
      .execute(async (trx) => {
        await sql`select 1`.execute(trx);
        await terminate();
        await sql`select 2`.execute(trx);
      })
      .then(
        () => null,
        (error: unknown) => error,
      );
    t.ok(outcome instanceof Error, 'the transaction failed');
    t.ok(isDatabaseUnreachable(outcome), `a lost connection: ${(outcome as Error).message}`);
    const res = await ctx.request({ method: 'GET', url: '/v1/me', token });
    t.equal(res.statusCode, 200, 'the dead connection was not reused');
    t.same(escaped, [], 'no error escaped to the process');
  },
);

t.test(
  'a request whose backend is terminated under it answers 503 database_unavailable',
  {
    skip: needsServer,
  },
  async (t) => {
    const escaped = watchEscapes(t);
    const ctx = await buildTestApp(t);
    const { token } = await agentWithToken(ctx);
    const { admin, database, terminate } = await adminOf(t, ctx);
    // Holds the agents table, so the request's look-up of its agent waits inside PostgreSQL.
    const locker = new pg.Client({ connectionString: ctx.database.url! });
    await locker.connect();
    t.teardown(() => locker.end());
    const lockerPid = (await locker.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    await locker.query('begin');
    await locker.query('lock table agents in access exclusive mode');
    const pending = ctx.request({ method: 'GET', url: '/v1/me', token });
    const waiting = async () =>
      (
        await admin.query(`select 1 from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'`, [
          database,
        ])
      ).rowCount;
    for (let i = 0; i < 100 && (await waiting()) === 0; i++) await sleep(50);
    t.equal(await waiting(), 1, 'the request waits on the lock');
    await terminate([lockerPid]);
    isProblem(t, await pending);
    await locker.query('rollback');
    const res = await ctx.request({ method: 'GET', url: '/v1/me', token });
    t.equal(res.statusCode, 200, 'served again on a new connection');
    t.same(escaped, [], 'no error escaped to the process');
  },
);

t.test(
  'a connection lost mid-pipeline rejects its statement and leaves the pool before its end arrives',
  {
    skip: needsServer,
  },
  async (t) => {
    const escaped = watchEscapes(t);
    const target = new URL(serverUrl!);
    const relay = relayTo(target.hostname, Number(target.port || 5432), { holdCloseMs: 1_000 });
    const url = new URL(serverUrl!);
    url.port = String(await relay.listen());
    const pool = createPool(url.toString(), { max: 1 });
    t.teardown(async () => {
      await pool.end();
      relay.close();
    });
    const client = await pool.connect();
    const pid = (client as unknown as { processID: number }).processID;
    // BEGIN leaves with the statement (client.ts); the FATAL answers the statement at once,
    // while the relay holds back the end of the connection.
    t.equal((await client.query('begin')).command, 'BEGIN');
    const sleeping = client.query('select pg_sleep(60)');
    const admin = new pg.Client({ connectionString: serverUrl! });
    await admin.connect();
    t.teardown(() => admin.end());
    for (let i = 0; i < 100; i++) {
      const state = await admin.query(
        `select 1 from pg_stat_activity where pid = $1 and wait_event = 'PgSleep'`,
        [pid],
      );
      if (state.rowCount === 1) break;
      await sleep(50);
    }
    await admin.query('select pg_terminate_backend($1)', [pid]);
    const settled = await Promise.race([
      sleeping.then(
        () => 'resolved',
        (error: unknown) => error,
      ),
      sleep(10_000, 'still pending after 10 s'),
    ]);
    t.ok(settled instanceof Error, `the pipelined statement was rejected (${String(settled)})`);
    client.release();
    t.equal(pool.totalCount, 0, 'the dead client left the pool instead of going back to it');
    t.equal((await pool.query('select 1 as one')).rows[0].one, 1, 'the pool serves on a new connection');
    t.same(escaped, [], 'no error escaped to the process');
  },
);

async function appOn(
  t: Test,
  databaseUrl: string,
  connectTimeoutMs: number,
  env: Record<string, string> = {},
) {
  const db = await createDatabase({ databaseUrl, connectTimeoutMs });
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    DATABASE_CONNECT_TIMEOUT_MS: String(connectTimeoutMs),
    ...env,
  });
  const app = await buildApp(config, { db, jwtSecret: JWT_SECRET });
  await app.ready();
  t.teardown(async () => {
    await app.close();
    await db.destroy();
  });
  return async (options: {
    method: 'GET' | 'POST';
    url: string;
    headers?: Record<string, string>;
    payload?: object;
  }) => {
    // Answers within 10 s, or the test says so instead of hanging until tap's timeout.
    const res = await Promise.race([app.inject(options), sleep(10_000, null)]);
    if (res === null) throw new Error(`${options.method} ${options.url} hung for 10 s`);
    assertMatchesSpec(options.method, options.url, res);
    return res;
  };
}

async function checkAway(t: Test, request: Awaited<ReturnType<typeof appOn>>) {
  const me = await request({
    method: 'GET',
    url: '/v1/me',
    headers: { authorization: `Bearer ${UNKNOWN_TOKEN}` },
  });
  isProblem(t, me);
  const signIn = await request({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { email: 'nobody@example.com', password: 'correct horse battery staple' },
  });
  isProblem(t, signIn);
  isProblem(t, await request({ method: 'GET', url: '/readyz' }));
  t.equal((await request({ method: 'GET', url: '/healthz' })).statusCode, 200, '/healthz stays 200');
}

t.test('PostgreSQL refusing connections: 503 with Retry-After, /readyz 503, /healthz 200', async (t) => {
  const escaped = watchEscapes(t);
  const request = await appOn(t, `postgres://postgres@127.0.0.1:${await closedPort()}/deskroute`, 5_000);
  await checkAway(t, request);
  t.same(escaped, [], 'no error escaped to the process');
});

t.test(
  'PostgreSQL accepting connections but never answering: 503 after the connect timeout, not a hang',
  async (t) => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    t.teardown(() => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
    const { port } = silent.address() as net.AddressInfo;
    const request = await appOn(t, `postgres://postgres@127.0.0.1:${port}/deskroute`, 300);
    await checkAway(t, request);
  },
);

t.test(
  'PostgreSQL falling silent on open connections: 503 after the statement deadline, not a hang',
  { skip: needsServer },
  async (t) => {
    const escaped = watchEscapes(t);
    const ctx = await buildTestApp(t);
    const { token } = await agentWithToken(ctx, { role: 'admin' });
    const target = new URL(ctx.database.url!);
    const relay = relayTo(target.hostname, Number(target.port || 5432));
    const relayed = new URL(ctx.database.url!);
    relayed.port = String(await relay.listen());
    t.teardown(() => relay.close());
    const request = await appOn(t, relayed.toString(), 1_000, { DATABASE_STATEMENT_TIMEOUT_MS: '500' });
    const departments = () =>
      request({ method: 'GET', url: '/v1/departments', headers: { authorization: `Bearer ${token}` } });
    const warm = await Promise.all([departments(), departments(), departments()]);
    t.same(
      warm.map((r) => r.statusCode),
      [200, 200, 200],
      'connections open in the pool',
    );
    // A frozen server, or a partition no reset crosses: the open connections answer nothing.
    relay.freeze();
    isProblem(t, await departments());
    // The connection was dropped, not handed back: the next request fails the same bounded way.
    isProblem(t, await departments());
    t.same(escaped, [], 'no error escaped to the process');
  },
);

t.test(
  'the statement deadline binds what a request does, not what outlives it',
  { skip: needsServer },
  async (t) => {
    const db = await createDatabase({ databaseUrl: serverUrl! });
    t.teardown(() => db.destroy());
    const slow = () => sql`select pg_sleep(0.4)`.execute(db);
    const bound = await withStatementDeadline(100, () =>
      slow().then(
        () => null,
        (error: unknown) => error,
      ),
    );
    t.ok(bound && isDatabaseUnreachable(bound), 'past the bound: the connection is dropped, an outage (503)');
    t.match(String((bound as Error).message), /did not answer within 100 ms/);
    await withStatementDeadline(100, () => outsideRequest(slow));
    t.pass('work a request leaves behind (outsideRequest) is not bound');
    await slow();
    t.pass('nor is background work');
    await withStatementDeadline(1_000, slow);
    t.pass('a statement within its bound is answered');
  },
);

/** A database of the test's own, with a row to write, and a connection of the test's. */
async function rowAndAdmin(t: Test) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await sql`create table deadline_probe (id int primary key, v int not null)`.execute(database.db);
  await sql`insert into deadline_probe values (1, 0)`.execute(database.db);
  const admin = new pg.Client({ connectionString: database.url! });
  await admin.connect();
  t.teardown(() => admin.end());
  return { db: database.db, url: database.url!, admin };
}

/** rowAndAdmin's row and connection, and a relay to the database that behaves as PgBouncer. */
async function rowBehindPooler(t: Test) {
  const { url, admin } = await rowAndAdmin(t);
  const target = new URL(url);
  // PgBouncer drops a cancel whose client has gone, and closes the server's connection when
  // its client goes without stopping the statement: the cancel must go first.
  const relay = relayTo(target.hostname, Number(target.port || 5432), { pooler: true });
  const relayed = new URL(url);
  relayed.port = String(await relay.listen());
  return { admin, relay, relayedUrl: relayed.toString() };
}

/** The test's connection locks the row; the app's update of it runs past a 300 ms deadline. */
async function updateLockedRow(admin: pg.Client, db: Kysely<any>) {
  await admin.query('begin');
  await admin.query('select v from deadline_probe where id = 1 for update');
  return withStatementDeadline(300, () =>
    sql`update deadline_probe set v = v + 1 where id = 1`.execute(db),
  ).then(
    () => null,
    (error: unknown) => error,
  );
}

/** No backend waits on the test's row lock any more, and once it goes the update never runs. */
async function lockLeftAlone(t: Test, admin: pg.Client) {
  const waiting = async () => {
    // The admin's transaction would otherwise see pg_stat_activity as it first read it.
    await admin.query('select pg_stat_clear_snapshot()');
    const { rows } = await admin.query(
      `select pid from pg_stat_activity
        where datname = current_database() and query like 'update deadline_probe%' and pid <> pg_backend_pid()`,
    );
    return rows;
  };
  for (let i = 0; i < 60 && (await waiting()).length > 0; i++) await sleep(50);
  const left = await waiting();
  await admin.query('rollback');
  if (left.length > 0) await admin.query('select pg_terminate_backend($1)', [left[0].pid]);
  t.same(left, [], 'no backend still waits on the lock');
  await sleep(300);
  const { rows } = await admin.query('select v from deadline_probe where id = 1');
  t.same(rows, [{ v: 0 }], 'the update did not run once the lock went');
}

t.test(
  'a statement past its deadline is cancelled: its backend ends and its locks go with it',
  { skip: needsServer },
  async (t) => {
    const { db, admin } = await rowAndAdmin(t);
    const outcome = await withStatementDeadline(300, () =>
      db.transaction().execute(async (trx) => {
        await sql`update deadline_probe set v = v + 1 where id = 1`.execute(trx);
        await sql`select pg_sleep(30)`.execute(trx);
      }),
    ).then(
      () => null,
      (error: unknown) => error,
    );
    t.ok(isDatabaseUnreachable(outcome), 'an outage (503)');
    t.match(
      String((outcome as Error).message),
      /did not answer within 300 ms/,
      'the transaction fails with the deadline, not with the ROLLBACK sent after it',
    );
    const abandoned = async () =>
      (
        await admin.query(
          `select pid from pg_stat_activity where query = 'select pg_sleep(30)' and pid <> pg_backend_pid()`,
        )
      ).rows;
    for (let i = 0; i < 60 && (await abandoned()).length > 0; i++) await sleep(50);
    const left = await abandoned();
    if (left.length > 0) await admin.query('select pg_terminate_backend($1)', [left[0].pid]);
    t.same(left, [], 'no backend runs on the abandoned statement');
    const lock = await admin.query('select v from deadline_probe where id = 1 for update nowait').then(
      (r) => r.rows,
      (error: Error) => error.message,
    );
    t.same(lock, [{ v: 0 }], 'the row it updated is neither locked nor changed');
  },
);

t.test(
  'behind a pooler, the cancel goes while the connection is still open: the statement stops',
  { skip: needsServer },
  async (t) => {
    const { admin, relay, relayedUrl } = await rowBehindPooler(t);
    const db = await createDatabase({ databaseUrl: relayedUrl });
    t.teardown(async () => {
      await db.destroy();
      relay.close();
    });
    const outcome = await updateLockedRow(admin, db);
    t.ok(isDatabaseUnreachable(outcome), 'an outage (503)');
    t.match(String((outcome as Error).message), /did not answer within 300 ms/);
    await lockLeftAlone(t, admin);
    t.same(relay.cancels, { forwarded: 1, dropped: 0 }, 'the cancel reached PostgreSQL through the pooler');
  },
);

t.test(
  'a connection given up at its deadline is not reported as an idle connection lost',
  { skip: needsServer },
  async (t) => {
    const { url, admin } = await rowAndAdmin(t);
    // server.ts logs these as "idle database connection lost".
    const idleErrors: unknown[] = [];
    const pool = createPool(url, { onIdleError: (error) => idleErrors.push(error) });
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    t.teardown(() => db.destroy());
    const outcome = await updateLockedRow(admin, db);
    t.ok(isDatabaseUnreachable(outcome), 'an outage (503)');
    // The request has released the client by now; it leaves the pool once its cancel has gone
    // and its socket is closed, after what PostgreSQL sent it meanwhile (the cancel's 57014).
    await new Promise((resolve) => pool.once('remove', resolve));
    await admin.query('rollback');
    t.same(idleErrors.map(String), [], 'nothing reported about idle connections');
  },
);

t.test(
  'shutting down right after a deadline: the pool closes only once the cancel has gone',
  { skip: needsServer },
  async (t) => {
    const { admin, relay, relayedUrl } = await rowBehindPooler(t);
    let closed = false;
    const closeRelay = () => {
      if (!closed) relay.close();
      closed = true;
    };
    t.teardown(closeRelay);
    const db = await createDatabase({ databaseUrl: relayedUrl });
    const outcome = await updateLockedRow(admin, db);
    t.ok(isDatabaseUnreachable(outcome), 'an outage (503)');
    // server.ts at shutdown: the pool closes, then the process exits, and every connection it
    // still has goes with it (the relay's closing stands for that: nothing gets through after).
    await db.destroy();
    t.same(relay.cancels, { forwarded: 1, dropped: 0 }, 'the cancel went before the pool was closed');
    closeRelay();
    await lockLeftAlone(t, admin);
  },
);

t.test(
  'a final statement past its deadline behind a lock: the COMMIT sent with it commits nothing later',
  { skip: needsServer },
  async (t) => {
    const { db, admin } = await rowAndAdmin(t);
    await admin.query('begin');
    await admin.query('lock table deadline_probe in access exclusive mode');
    const outcome = await withStatementDeadline(300, () =>
      db.transaction().execute(async (trx) => {
        await final(sql`update deadline_probe set v = 1 where id = 1`).execute(trx);
      }),
    ).then(
      () => null,
      (error: unknown) => error,
    );
    t.ok(isDatabaseUnreachable(outcome), 'the request answers 503');
    await sleep(200);
    // The lock goes: a backend still waiting on it would now update and commit.
    await admin.query('rollback');
    await sleep(500);
    const { rows } = await admin.query('select v from deadline_probe where id = 1');
    t.same(rows, [{ v: 0 }], 'what failed by its deadline did not commit after the answer');
  },
);

t.test(
  'a load shared across callers: a request is bound in it, background work is not',
  { skip: needsServer },
  async (t) => {
    const { database, admin } = await databaseWithAdmin(t);
    /** The policies' statement waits on a lock for `ms`. */
    const blockFor = async (ms: number) => {
      await admin.query('begin');
      await admin.query('lock table sla_policies in access exclusive mode');
      return { released: sleep(ms).then(() => admin.query('rollback')) };
    };
    let { released } = await blockFor(3_000);
    const background = activePolicies(database.db, 'key-1').catch((error: unknown) => error);
    await sleep(100);
    let started = Date.now();
    const joined = await withStatementDeadline(300, () => activePolicies(database.db, 'key-1')).then(
      () => null,
      (error: unknown) => error,
    );
    t.ok(isDatabaseUnreachable(joined), 'a request finding a background load under way waits its own bound');
    t.ok(Date.now() - started < 1_500, `not the background load's (${Date.now() - started} ms)`);
    await released;
    t.notOk((await background) instanceof Error, 'the background load is not cut');

    ({ released } = await blockFor(1_500));
    const request = withStatementDeadline(300, () => activePolicies(database.db, 'key-2')).catch(
      (error: unknown) => error,
    );
    await sleep(100);
    started = Date.now();
    const later = await activePolicies(database.db, 'key-2').then(
      () => null,
      (error: unknown) => error,
    );
    t.equal(later, null, "background work finding a request's load under way does not fail by its deadline");
    t.ok(isDatabaseUnreachable(await request), 'the request does');
    await released;
  },
);

t.test(
  'a request finding the rule set loading for background work waits its own bound',
  { skip: needsServer },
  async (t) => {
    const { database, admin } = await databaseWithAdmin(t);
    // A key of its own: no rule set cached for it in this process.
    await admin.query('update automation_rules_state set rules_key = gen_random_uuid()');
    await admin.query('begin');
    await admin.query('lock table automation_rules in access exclusive mode');
    const released = sleep(3_000).then(() => admin.query('rollback'));
    const background = currentRuleSet(database.db).catch((error: unknown) => error);
    await sleep(200);
    const started = Date.now();
    const joined = await withStatementDeadline(300, () => currentRuleSet(database.db)).then(
      () => null,
      (error: unknown) => error,
    );
    t.ok(isDatabaseUnreachable(joined), 'the request fails by its own deadline');
    t.ok(Date.now() - started < 1_500, `not after the background load (${Date.now() - started} ms)`);
    await released;
    t.notOk((await background) instanceof Error, 'the background load is not cut');
  },
);

t.test(
  'only errors of an unreachable database count as an outage (503), never ours or the client’s',
  async (t) => {
    const pgError = (code: string, severity = 'ERROR') =>
      Object.assign(new Error(`pg ${code}`), { code, severity });
    const cases: [string, unknown, boolean][] = [
      [
        'connection refused',
        Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        true,
      ],
      ['socket closed by PostgreSQL', new Error('Connection terminated unexpectedly'), true],
      ['connection failure (08006)', pgError('08006', 'FATAL'), true],
      ['terminated by an administrator (57P01)', pgError('57P01', 'FATAL'), true],
      ['starting up (57P03)', pgError('57P03', 'FATAL'), true],
      [
        'a client that hung up mid-upload (fastify sets 400)',
        Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 }),
        false,
      ],
      ['a message of ours PostgreSQL could not read (08P01)', pgError('08P01'), false],
      ['a unique violation', pgError('23505'), false],
      ['a syntax error of ours', pgError('42601'), false],
      [
        'a message that merely mentions a timeout',
        new Error('timeout exceeded when trying to connect!'),
        false,
      ],
    ];
    for (const [what, error, expected] of cases) t.equal(isDatabaseUnreachable(error), expected, what);
  },
);

t.test(
  'an import cut off by an outage goes on as soon as the database is back, not after its lease',
  { skip: needsServer },
  async (t) => {
    const ctx = await buildTestApp(t);
    const { token } = await agentWithToken(ctx, { role: 'admin' });
    const lines = [
      JSON.stringify({ type: 'contact', external_id: 'c1', name: 'Jo', emails: ['jo@example.com'] }),
    ];
    const TICKETS = 1500;
    for (let i = 0; i < TICKETS; i++) {
      lines.push(
        JSON.stringify({
          type: 'ticket',
          external_id: `t${i}`,
          created_at: '2025-03-01T09:00:00Z',
          subject: `Ticket ${i}`,
          contact: 'c1',
          message: { body: 'Hello.' },
        }),
      );
    }
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/imports?source=outage',
      token,
      headers: { 'content-type': 'application/x-ndjson' },
      payload: lines.join('\n'),
    });
    t.equal(created.statusCode, 202, created.body);
    const id = created.json().id;

    // The worker reaches PostgreSQL through a relay, cut once its first batches are in.
    const target = new URL(serverUrl!);
    const relay = relayTo(target.hostname, Number(target.port || 5432));
    const relayed = new URL(ctx.database.url!);
    const port = await relay.listen();
    relayed.port = String(port);
    const db = await createDatabase({ databaseUrl: relayed.toString() });
    t.teardown(async () => {
      relay.close();
      await db.destroy();
    });
    const deps = { db, blobs: ctx.app.blobs, log: pino({ level: 'silent' }) };
    const position = async () =>
      (await ctx.db.selectFrom('imports').select('position').where('id', '=', id).executeTakeFirstOrThrow())
        .position;
    const first = processPendingImports(deps).then(
      () => null,
      (error: unknown) => error,
    );
    while ((await position()) === 0) await sleep(10);
    relay.close();
    const error = await first;
    t.ok(error && isDatabaseUnreachable(error), 'the worker stopped on the outage');
    t.ok((await position()) < lines.length, 'part way through');
    const lease = await ctx.db
      .selectFrom('imports')
      .select('lease_until')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    t.ok(lease.lease_until && lease.lease_until > new Date(), 'its lease could not be handed back');

    await relay.listen(port);
    t.equal(await processPendingImports(deps), 1, 'back: the same process takes it up again at once');
    const done = await ctx.request({ method: 'GET', url: `/v1/imports/${id}`, token });
    t.equal(done.json().state, 'finished', done.body);
    const tickets = await ctx.db
      .selectFrom('tickets')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    t.equal(Number(tickets.n), TICKETS, 'every ticket once');
  },
);

t.test(
  "the live stream's tailer is background work: a request's bound does not follow it",
  { skip: needsServer },
  async (t) => {
    // The first subscriber's request starts the tailer; its statements must not carry that
    // request's bound (here 300 ms) for as long as the stream lives.
    const ctx = await buildTestApp(t, {
      DATABASE_STATEMENT_TIMEOUT_MS: '300',
      STREAM_POLL_INTERVAL_MS: '20',
    });
    const { token } = await agentWithToken(ctx, { role: 'admin' });
    await ctx.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = ctx.app.server.address() as net.AddressInfo;
    const stream = await SseStream.open(`http://127.0.0.1:${port}/v1/events/stream`, token);
    t.teardown(() => stream.close());
    t.equal(stream.status, 200);
    // The tailer reads the feed only once the feed's horizon (the oldest transaction of this
    // database still running, else the next xid) has moved from where it read last. Taking an
    // ACCESS EXCLUSIVE lock gives the locking transaction an xid (the lock is logged for
    // standbys), which then holds the horizon: had the tailer last read with the horizon at that
    // very xid (the next one, when nothing ran), nothing would move it while the lock is held and
    // the tailer would never read (CI on 7 December saw that). So a holder takes an xid first:
    // from then on the tailer's last horizon is at most the holder's xid, below the lock's. The
    // holder's commit, after the lock, moves the horizon to the lock's xid, and the tailer's next
    // read waits on the lock.
    const { admin: holder } = await adminOf(t, ctx);
    await holder.query('begin');
    await holder.query('select pg_current_xact_id()');
    const { admin, database } = await adminOf(t, ctx);
    await admin.query('begin');
    await admin.query('lock table ticket_events in access exclusive mode');
    await holder.query('commit');
    // The tailer's statement waits for the lock: for over a second, which a 300 ms bound would
    // never let it do (a bound tailer's statement is cut at 300 ms, and fails below).
    let rows: { waited_ms: number }[] = [];
    for (const until = Date.now() + 30_000; Date.now() < until; await sleep(100)) {
      ({ rows } = await admin.query<{ waited_ms: number }>(
        `select extract(epoch from clock_timestamp() - query_start) * 1000 as waited_ms from pg_stat_activity
          where datname = $1 and pid <> pg_backend_pid() and wait_event_type = 'Lock'`,
        [database],
      ));
      if (rows.some((r) => Number(r.waited_ms) > 1_000)) break;
    }
    await admin.query('rollback');
    t.ok(
      rows.some((r) => Number(r.waited_ms) > 1_000),
      `the tailer's statement waits on, unbound (waiting: ${JSON.stringify(rows)})`,
    );
    // And it goes on: a ticket made now reaches the stream.
    const made = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token,
      payload: {
        subject: 'After the lock',
        contact: { email: 'after@example.com' },
        message: { body: 'Hi' },
      },
    });
    t.equal(made.statusCode, 201, made.body);
    const id = made.json().id;
    await stream.until(
      () => stream.events().some((e) => e.type === 'ticket.created' && e.event.ticket_id === id),
      10_000,
      'the ticket made after the lock',
    );
    t.pass('the ticket made after the lock arrived');
  },
);
