import pg from 'pg';
import t, { type Test } from 'tap';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { roundTrips, writesAuth } from '../src/db/client.ts';
import { createDatabase } from '../src/db/database.ts';
import {
  agentWithToken,
  buildTestApp,
  makeAgent,
  makeDepartment,
  mintApiToken,
  signIn,
} from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';
import { relayTo } from './helpers/network.ts';
import { TEST_JWT_SECRET } from './helpers/server.ts';
import { makeTicket } from './helpers/tickets.ts';

// Who a credential belongs to is cached per process (src/plugins/auth-cache.ts). Every change
// must still take effect: at once for this process's own writes, and as soon as the
// notification arrives for another process's.

const kind = await testDatabaseKind();
const TWO_CONNECTIONS =
  kind === 'pglite'
    ? 'needs PostgreSQL: the cache hears other connections through LISTEN/NOTIFY; embedded PGlite caches nothing (first test)'
    : false;

async function until<T>(what: string, probe: () => Promise<T> | T, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('every way of writing the credential tables is recognised as one', async (t) => {
  // What empties this process's caches at once (the NOTIFY would, a moment later, too).
  const writes = [
    'insert into agents (name) values ($1)',
    'UPDATE "agents" SET status = $1',
    'update public.agents set status = $1',
    'update "public"."api_tokens" set revoked_at = now()',
    'delete from only department_members where agent_id = $1',
    'DELETE FROM Departments WHERE id = $1',
    'merge into department_members m using x on true when matched then delete',
    'truncate table tickets, agents cascade',
    'truncate only api_tokens',
    'copy agents (name) from stdin',
    'with d as (delete from department_members where agent_id = $1 returning 1) select 1',
  ];
  for (const text of writes) t.ok(writesAuth(text), text);
  const reads = [
    'select * from agents where id = $1',
    'update tickets set assignee_id = (select id from agents limit 1)',
    'insert into agents_archive select * from agents',
    'delete from tickets where department_id in (select id from departments)',
    'update tickets set department_id = $1',
  ];
  for (const text of reads) t.notOk(writesAuth(text), text);
});

t.test("this process's own changes take effect on its very next request", async (t) => {
  const ctx = await buildTestApp(t);
  const cache = ctx.app.authCache;
  if (kind === 'pglite') t.equal(cache.listening, false, 'embedded PGlite: nothing is cached');
  else await until('the cache to listen', () => cache.listening);
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const agent = await makeAgent(ctx.db, { departments: [[a, 'solver']] });
  const session = await signIn(ctx, agent.email);
  const secret = await mintApiToken(ctx, session);
  const ticket = await makeTicket(ctx.db, { department_id: b });
  const read = (token: string) => ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token });

  t.equal((await read(secret)).statusCode, 404, 'not a member of B: the ticket is not there');
  if (kind !== 'pglite') {
    // A hit saves the look-up's round trip.
    cache.clear();
    const before = roundTrips();
    await read(secret);
    const missed = roundTrips() - before;
    const again = roundTrips();
    await read(secret);
    t.equal(roundTrips() - again, missed - 1, 'the second request did not look the token up');
  }

  // Each change below follows a request that left the credential cached.
  await ctx.db
    .insertInto('department_members')
    .values({ department_id: b, agent_id: agent.id, role: 'solver' })
    .execute();
  t.equal((await read(secret)).statusCode, 200, 'made a member of B: the next request sees the ticket');
  t.equal((await read(session)).statusCode, 200, 'and so does the session');
  await ctx.db
    .deleteFrom('department_members')
    .where('department_id', '=', b)
    .where('agent_id', '=', agent.id)
    .execute();
  t.equal((await read(secret)).statusCode, 404, 'removed from B: the next request no longer does');
  t.equal((await read(session)).statusCode, 404, 'nor the session');

  // Changed in a transaction: in effect once it commits, not at all if rolled back.
  await ctx.db
    .transaction()
    .execute(async (trx) => {
      await trx.updateTable('agents').set({ role: 'admin' }).where('id', '=', agent.id).execute();
      throw new Error('rolled back');
    })
    .catch(() => {});
  t.equal((await read(secret)).statusCode, 404, 'a rolled back promotion changes nothing');
  await ctx.db.transaction().execute(async (trx) => {
    await trx.updateTable('agents').set({ role: 'admin' }).where('id', '=', agent.id).execute();
  });
  t.equal((await read(secret)).statusCode, 200, 'a committed one takes effect at once');

  t.equal((await read(session)).statusCode, 200);
  await ctx.db
    .updateTable('agents')
    .set({ password_changed_at: new Date() })
    .where('id', '=', agent.id)
    .execute();
  t.equal((await read(session)).statusCode, 401, 'a password change ends the session at once');
  t.equal((await read(secret)).statusCode, 200);
  await ctx.db
    .updateTable('api_tokens')
    .set({ revoked_at: new Date() })
    .where('agent_id', '=', agent.id)
    .execute();
  const revoked = await read(secret);
  t.equal(revoked.statusCode, 401, 'a revoked token is refused at once');
  t.equal(revoked.json().code, 'token_revoked');
});

/** A second server process on the same database: its own pool, its own cache. */
async function otherProcess(t: Test, databaseUrl: string, listenUrl = databaseUrl) {
  const db = await createDatabase({ databaseUrl });
  const other = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), {
    db,
    databaseUrl: listenUrl,
    jwtSecret: TEST_JWT_SECRET,
  });
  t.teardown(async () => {
    await other.close();
    await db.destroy();
  });
  await other.ready();
  await until('its cache to listen', () => other.authCache.listening);
  return other;
}

/** A client of its own (psql, a migration, another deployment): it empties no cache of ours itself. */
async function psqlOf(t: Test, url: string) {
  const psql = new pg.Client({ connectionString: url });
  await psql.connect();
  t.teardown(() => psql.end());
  return psql;
}

t.test(
  "another client's changes take effect once their notification arrives",
  { skip: TWO_CONNECTIONS },
  async (t) => {
    const ctx = await buildTestApp(t);
    const url = ctx.database.url!;
    const other = await otherProcess(t, url);
    const { agent, token: session } = await agentWithToken(ctx, { role: 'admin' });
    const secret = await mintApiToken(ctx, session);
    const use = async () => {
      const before = roundTrips();
      const res = await other.inject({
        method: 'GET',
        url: '/v1/departments',
        headers: { authorization: `Bearer ${secret}` },
      });
      return { status: res.statusCode, trips: roundTrips() - before };
    };
    const cold = await use();
    const warm = await use();
    t.equal(cold.status, 200);
    t.equal(warm.trips, cold.trips - 1, 'the other process has the token cached');

    const psql = await psqlOf(t, url);
    await psql.query(`update agents set status = 'disabled' where id = $1`, [agent.id]);
    await until('a disabled agent to be refused', async () => (await use()).status === 401, 5_000);
    await psql.query(`update agents set status = 'active' where id = $1`, [agent.id]);
    await until('the agent to be back', async () => (await use()).status === 200, 5_000);
    await use();
    await psql.query('update api_tokens set revoked_at = now() where agent_id = $1', [agent.id]);
    await until('a revoked token to be refused', async () => (await use()).status === 401, 5_000);
  },
);

/**
 * A second process whose cache listens through a relay the test cuts or freezes, and an API token
 * of an admin created in the first: `use` answers the status of a request the second one serves.
 */
async function listeningThroughRelay(t: Test) {
  const ctx = await buildTestApp(t);
  const url = new URL(ctx.database.url!);
  const relay = relayTo(url.hostname, Number(url.port || 5432));
  const port = await relay.listen();
  t.teardown(() => relay.close());
  const relayed = new URL(url);
  relayed.port = String(port);
  const other = await otherProcess(t, url.toString(), relayed.toString());
  const { agent, token: session } = await agentWithToken(ctx, { role: 'admin' });
  const secret = await mintApiToken(ctx, session);
  const use = async () =>
    (
      await other.inject({
        method: 'GET',
        url: '/v1/departments',
        headers: { authorization: `Bearer ${secret}` },
      })
    ).statusCode;
  const psql = await psqlOf(t, url.toString());
  const revoke = (revoked: boolean) =>
    psql.query(`update api_tokens set revoked_at = ${revoked ? 'now()' : 'null'} where agent_id = $1`, [
      agent.id,
    ]);
  return { relay, port, other, use, revoke };
}

t.test('while it cannot hear changes, nothing is cached', { skip: TWO_CONNECTIONS }, async (t) => {
  const { relay, port, other, use, revoke } = await listeningThroughRelay(t);
  t.equal(await use(), 200, 'cached');

  // Its listening connection is cut, and stays down.
  relay.close();
  await until('the cache to stop listening', () => !other.authCache.listening);
  t.equal(await use(), 200, 'used while it cannot listen');
  await revoke(true);
  t.equal(await use(), 401, 'a change it could not hear of is in effect at once');

  // Back: it listens again, starts empty, and hears changes.
  await relay.listen(port);
  await until('the cache to listen again', () => other.authCache.listening, 40_000);
  t.equal(await use(), 401, 'still revoked (and cached so)');
  await revoke(false);
  await until('the change to be heard', async () => (await use()) === 200, 5_000);
});

t.test(
  'a listening connection that dies without a word stops serving hits within seconds',
  { skip: TWO_CONNECTIONS },
  async (t) => {
    const { relay, use, revoke } = await listeningThroughRelay(t);
    t.equal(await use(), 200, 'cached');
    // A partition: nothing passes, no reset arrives; the notification below is lost.
    relay.freeze();
    await revoke(true);
    await until('the revoked token to be refused', async () => (await use()) === 401, 5_000);
  },
);
