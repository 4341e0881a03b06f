import pg from 'pg';
import t, { type Test } from 'tap';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';

// The address locks (departments/addresses.ts lockMailAddresses) are taken in one order, but
// they are not the only locks in play. A support-address PUT locks its department's row
// (FOR UPDATE) and then the addresses; a mailbox made in (or moved to) that department took the
// address first and then, through its foreign key, a KEY SHARE lock on the same department row,
// which FOR UPDATE blocks: each waited for the other, PostgreSQL broke the deadlock after
// deadlock_timeout and one of two valid requests answered 409 concurrent_update. The usual set-up
// of a department (its support address, and a mailbox of its own receiving at it) did that.

t.setTimeout(120_000);

const skip =
  (await testDatabaseKind()) === 'pglite'
    ? 'needs PostgreSQL: a second connection holds the address lock; embedded PGlite has one connection'
    : false;

const address = 'help@acme.example';

/**
 * Holds the address in another transaction while `mailbox` and then the support-address PUT of
 * `department` start (the mailbox first, so the two meet in the order that deadlocked), then
 * lets them go: both must succeed.
 */
async function race(
  t: Test,
  ctx: TestContext,
  admin: string,
  department: string,
  mailbox: () => ReturnType<TestContext['request']>,
) {
  const other = new pg.Client({ connectionString: ctx.database.url! });
  await other.connect();
  t.teardown(() => other.end());
  const waiting = async () => {
    // Inside its transaction `other` would see one snapshot of the statistics: a fresh one.
    await other.query('select pg_stat_clear_snapshot()');
    const { rows } = await other.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
    );
    return rows[0]!.n;
  };
  const until = async (n: number) => {
    for (let i = 0; i < 200 && (await waiting()) < n; i++) await new Promise((r) => setTimeout(r, 25));
    t.equal(await waiting(), n, `${n} request(s) waiting for a lock`);
  };
  await other.query('begin');
  await other.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [
    `deskroute:mail-address:${address}`,
  ]);
  const made = mailbox();
  await until(1);
  const listed = ctx.request({
    method: 'PUT',
    url: `/v1/departments/${department}/mail-identity`,
    token: admin,
    payload: { addresses: [{ address }] },
  });
  await until(2);
  await other.query('commit');
  const [box, identity] = await Promise.all([made, listed]);
  t.ok(box.statusCode < 300, `the mailbox: ${box.statusCode} ${box.body}`);
  t.equal(identity.statusCode, 200, `the support address: ${identity.body}`);
}

t.test("a department's support address and its own mailbox at that address, at once", { skip }, async (t) => {
  const ctx = await buildTestApp(t);
  const support = await makeDepartment(ctx.db, 'Support');
  const sales = await makeDepartment(ctx.db, 'Sales');
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });

  await t.test('a new mailbox', async (t) => {
    await race(t, ctx, admin, support, () =>
      ctx.request({
        method: 'POST',
        url: '/v1/mailboxes',
        token: admin,
        payload: { name: 'Support inbox', department_id: support, kind: 'inbound', address },
      }),
    );
  });

  await t.test('a mailbox moved into the department', async (t) => {
    await ctx.db.deleteFrom('department_addresses').execute();
    await ctx.db.deleteFrom('mailboxes').execute();
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token: admin,
      payload: { name: 'Sales inbox', department_id: sales, kind: 'inbound', address },
    });
    t.equal(created.statusCode, 201, created.body);
    await race(t, ctx, admin, support, () =>
      ctx.request({
        method: 'PATCH',
        url: `/v1/mailboxes/${created.json().id}`,
        token: admin,
        payload: { department_id: support },
      }),
    );
  });
});
