import pg from 'pg';
import t from 'tap';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { roundTrips } from '../src/db/client.ts';
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

  // Changed in a transaction: in effect once it commits, not before, and not at all if rolled back.
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

  await ctx.db
    .updateTable('agents')
    .set({ password_changed_at: new Date() })
    .where('id', '=', agent.id)
    .execute();
  t.equal((await read(session)).statusCode, 401, 'a password change ends the session at once');
  await ctx.db
    .updateTable('api_tokens')
    .set({ revoked_at: new Date() })
    .where('agent_id', '=', agent.id)
    .execute();
  const revoked = await read(secret);
  t.equal(revoked.statusCode, 401, 'a revoked token is refused at once');
  t.equal(revoked.json().code, 'token_revoked');
});

t.test(
  "another process's changes take effect once their notification arrives",
  { skip: TWO_CONNECTIONS },
  async (t) => {
    const ctx = await buildTestApp(t);
    const url = ctx.database.url!;
    // A second server process on the same database: its own pool, its own cache.
    const other = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), {
      db: ctx.db,
      databaseUrl: url,
      jwtSecret: TEST_JWT_SECRET,
    });
    t.teardown(() => other.close());
    await other.ready();
    await until('both caches to listen', () => ctx.app.authCache.listening && other.authCache.listening);
    const { token: session } = await agentWithToken(ctx, { role: 'admin' });
    const secret = await mintApiToken(ctx, session);
    const me = (app: typeof other) =>
      app.inject({ method: 'GET', url: '/v1/departments', headers: { authorization: `Bearer ${secret}` } });
    t.equal((await me(other)).statusCode, 200, 'the other process has the token cached');

    const revoked = await ctx.request({ method: 'GET', url: '/v1/api-tokens', token: session });
    const id = revoked.json().data[0].id;
    const res = await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${id}`, token: session });
    t.equal(res.statusCode, 204, res.body);
    t.equal((await me(ctx.app)).statusCode, 401, 'the revoking process refuses it at once');
    await until('the other process to refuse it', async () => (await me(other)).statusCode === 401, 5_000);

    // A change by some other client altogether (psql, a migration): the triggers tell every process.
    const { agent } = await agentWithToken(ctx, { role: 'admin' });
    const secret2 = await mintApiToken(ctx, await signIn(ctx, agent.email));
    const use = () =>
      other.inject({
        method: 'GET',
        url: '/v1/departments',
        headers: { authorization: `Bearer ${secret2}` },
      });
    t.equal((await use()).statusCode, 200);
    const psql = new pg.Client({ connectionString: url });
    await psql.connect();
    t.teardown(() => psql.end());
    await psql.query(`update agents set status = 'disabled' where id = $1`, [agent.id]);
    await until('a disabled agent to be refused', async () => (await use()).statusCode === 401, 5_000);
  },
);

t.test('while it cannot hear changes, nothing is cached', { skip: TWO_CONNECTIONS }, async (t) => {
  const ctx = await buildTestApp(t);
  const url = new URL(ctx.database.url!);
  const relay = relayTo(url.hostname, Number(url.port || 5432));
  const port = await relay.listen();
  t.teardown(() => relay.close());
  const relayed = new URL(url);
  relayed.port = String(port);
  const other = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), {
    db: ctx.db,
    databaseUrl: relayed.toString(),
    jwtSecret: TEST_JWT_SECRET,
  });
  t.teardown(() => other.close());
  await other.ready();
  await until('the cache to listen', () => other.authCache.listening);
  const { agent, token: session } = await agentWithToken(ctx, { role: 'admin' });
  const secret = await mintApiToken(ctx, session);
  const use = () =>
    other.inject({ method: 'GET', url: '/v1/departments', headers: { authorization: `Bearer ${secret}` } });
  t.equal((await use()).statusCode, 200, 'cached');

  // Its listening connection is cut, and stays down.
  relay.close();
  await until('the cache to stop listening', () => !other.authCache.listening);
  const psql = new pg.Client({ connectionString: ctx.database.url! });
  await psql.connect();
  t.teardown(() => psql.end());
  await psql.query('update api_tokens set revoked_at = now() where agent_id = $1', [agent.id]);
  t.equal((await use()).statusCode, 401, 'a change it could not hear of is in effect at once');

  // Back: it listens again, and starts empty.
  await relay.listen(port);
  await until('the cache to listen again', () => other.authCache.listening, 40_000);
  await psql.query('update api_tokens set revoked_at = null where agent_id = $1', [agent.id]);
  await until('the change to be heard', async () => (await use()).statusCode === 200, 5_000);
});
