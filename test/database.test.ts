import { sql } from 'kysely';
import t from 'tap';
import { prepared } from '../src/db/prepared.ts';
import { createTestDatabase } from './helpers/database.ts';

t.test('marked statements run as named prepared statements, others as unnamed ones', async (t) => {
  const testDb = await createTestDatabase();
  t.teardown(() => testDb.drop());
  if (testDb.kind === 'pglite') {
    t.pass('PGlite has no named statements to check: the mark is a comment there');
    return;
  }
  await testDb.db.connection().execute(async (conn) => {
    const statements = async () =>
      (
        await sql<{
          statement: string;
        }>`select statement from pg_prepared_statements order by statement`.execute(conn)
      ).rows.map((r) => r.statement);
    const marked = (n: number) => prepared(sql<{ n: number }>`select ${n}::int + 1 as n`);
    const results = [];
    for (let i = 0; i < 3; i++) results.push((await marked(i).execute(conn)).rows[0]!.n);
    t.same(results, [1, 2, 3], 'each run gets its own parameters');
    await sql`select ${7}::int as unmarked`.execute(conn);
    const names = await statements();
    t.equal(
      names.filter((s) => s.includes('::int + 1 as n')).length,
      1,
      'one prepared statement for the three runs',
    );
    t.notOk(
      names.some((s) => s.includes('unmarked')),
      'an unmarked statement is not kept',
    );
  });
});
