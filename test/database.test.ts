import { type Kysely, sql } from 'kysely';
import t from 'tap';
import { createPool, roundTrips } from '../src/db/client.ts';
import {
  FEW_TEXTS,
  final,
  PREPARED_WHILE_RECENT_MARK,
  prepared,
  preparedWhileFew,
  preparedWhileFewTexts,
  preparedWhileRecent,
  RECENT_TEXTS,
  shapedStatement,
  verifyShapedStatements,
  withNext,
} from '../src/db/prepared.ts';
import type { Database } from '../src/db/types.ts';
import { METRICS } from '../src/domains/reports/metrics.ts';
import { findReportRows, findReportTotals } from '../src/domains/reports/repository.ts';
import { createTestDatabase, testDatabaseKind } from './helpers/database.ts';
import { departmentSpec } from './helpers/reports.ts';

// These check the pg client of src/db/client.ts (named statements, pipelined BEGIN / COMMIT),
// which PGlite does not use: on PGlite only what holds for every database runs.
const embedded = (await testDatabaseKind()) === 'pglite';
const onlyServer = (reason: string) => ({ skip: embedded ? reason : false });

/** The texts of the statements prepared on this connection. */
const preparedOn = async (conn: Kysely<Database>) =>
  (
    await sql<{ statement: string }>`select statement from pg_prepared_statements order by statement`.execute(
      conn,
    )
  ).rows.map((r) => r.statement);

t.test(
  'marked statements run as named prepared statements, others as unnamed ones',
  onlyServer('PGlite has no named statements: the mark is a comment there'),
  async (t) => {
    const testDb = await createTestDatabase();
    t.teardown(() => testDb.drop());
    await testDb.db.connection().execute(async (conn) => {
      const statements = () => preparedOn(conn);
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
  },
);

t.test(
  'statements marked preparedWhileFew are named until FEW_TEXTS texts were, later texts run unnamed',
  onlyServer('PGlite has no named statements: the mark is a comment there'),
  async (t) => {
    const testDb = await createTestDatabase();
    t.teardown(() => testDb.drop());
    await testDb.db.connection().execute(async (conn) => {
      const named = async () => (await preparedOn(conn)).filter((s) => s.includes(' as few_'));
      // One text per i (its alias), each run with a parameter of its own.
      const run = async (i: number, n: number) => {
        const query = preparedWhileFew(
          sql<Record<string, number>>`select ${n}::int + ${sql.lit(i)} as ${sql.raw(`few_${i}`)}`,
        );
        return (await query.execute(conn)).rows[0]![`few_${i}`];
      };
      // The budget is the process's: what earlier statements of this process took is not ours.
      const free = FEW_TEXTS - preparedWhileFewTexts();
      const results = [];
      for (let i = 0; i < FEW_TEXTS + 3; i++) results.push(await run(i, 1));
      t.same(
        results,
        Array.from({ length: FEW_TEXTS + 3 }, (_, i) => i + 1),
        'every text answers with its own parameters, named or not',
      );
      const first = await named();
      t.ok(free > 0, 'this test has texts left to name');
      t.equal(first.length, free, `the first texts, up to ${FEW_TEXTS} in the process, are named statements`);
      t.notOk(
        first.some((s) => s.includes(`few_${FEW_TEXTS}`) || s.includes(`few_${FEW_TEXTS + 2}`)),
        'the texts past the bound are not kept',
      );
      t.equal(await run(0, 41), 41, 'a named text runs again with new parameters');
      t.equal(await run(FEW_TEXTS + 1, 10), FEW_TEXTS + 11, 'a text past the bound still runs');
      t.equal((await named()).length, free, 'running them again prepares nothing more');
    });
  },
);

t.test(
  'a connection keeps its RECENT_TEXTS latest preparedWhileRecent texts; older ones are closed between transactions',
  onlyServer('PGlite has no named statements: the mark is a comment there'),
  async (t) => {
    const testDb = await createTestDatabase();
    t.teardown(() => testDb.drop());
    await testDb.db.connection().execute(async (conn) => {
      const kept = async (db: Kysely<Database> = conn) =>
        (await preparedOn(db))
          .filter((s) => s.includes(' as recent_'))
          .map((s) => Number(/ as recent_(\d+)/.exec(s)![1]))
          .sort((a, b) => a - b);
      const text = (i: number, n: number) =>
        preparedWhileRecent(
          sql<Record<string, number>>`select ${n}::int + ${sql.lit(i)} as ${sql.raw(`recent_${i}`)}`,
        );
      const run = async (db: Kysely<Database>, i: number, n: number) =>
        (await text(i, n).execute(db)).rows[0]![`recent_${i}`];
      const all = Array.from({ length: RECENT_TEXTS }, (_, i) => i);
      for (const i of all) t.equal(await run(conn, i, 1), i + 1);
      t.same(await kept(), all, `the first ${RECENT_TEXTS} texts are prepared`);
      // Two more, in a transaction that then fails: nothing is closed within it.
      await t.rejects(
        conn.transaction().execute(async (trx) => {
          t.equal(await run(trx, RECENT_TEXTS, 1), RECENT_TEXTS + 1);
          t.equal(await run(trx, RECENT_TEXTS + 1, 1), RECENT_TEXTS + 2);
          // Run again while it waits to be closed: kept, the next oldest goes instead.
          t.equal(await run(trx, 0, 5), 5);
          t.same(
            await kept(trx),
            [...all, RECENT_TEXTS, RECENT_TEXTS + 1],
            'within the transaction, none is closed',
          );
          await sql`select 1 / 0`.execute(trx);
        }),
        { code: '22012' },
      );
      t.equal(await run(conn, 1, 7), 8, 'the one pushed out runs again, prepared afresh');
      // 2 went when 0 came back; 3 when 1 did: both closed before this statement.
      t.same(
        await kept(),
        [0, 1, ...Array.from({ length: RECENT_TEXTS - 2 }, (_, i) => i + 4)],
        'the texts run longest ago are closed once the transaction is over; those run again stay',
      );
      // Every text still answers, each with its own parameters, however often it was closed.
      for (let round = 0; round < 2; round++)
        for (let i = 0; i < RECENT_TEXTS + 2; i++) t.equal(await run(conn, i, 100), 100 + i);
      await sql`select 1`.execute(conn);
      t.equal((await kept()).length, RECENT_TEXTS, 'never more than RECENT_TEXTS prepared');
    });
  },
);

t.test(
  'preparedWhileRecent texts run at once on one connection: one pushed out while its Parse is on its way is closed later, not lost',
  onlyServer('PGlite has no named statements: the mark is a comment there'),
  async (t) => {
    const testDb = await createTestDatabase();
    const pool = createPool(testDb.url!, { max: 1 });
    const client = await pool.connect();
    t.teardown(async () => {
      client.release();
      await pool.end();
      await testDb.drop();
    });
    const text = (i: number) => `${PREPARED_WHILE_RECENT_MARK}select $1::int + ${i} as at_once_${i}`;
    const count = RECENT_TEXTS + 2;
    // Pipelined: the first texts are pushed out before their Parse is answered.
    const first = await Promise.all(Array.from({ length: count }, (_, i) => client.query(text(i), [1])));
    t.same(
      first.map((r, i) => r.rows[0][`at_once_${i}`]),
      Array.from({ length: count }, (_, i) => i + 1),
    );
    for (let round = 0; round < 2; round++) {
      const again = [];
      for (let i = 0; i < count; i++) again.push((await client.query(text(i), [10])).rows[0][`at_once_${i}`]);
      t.same(
        again,
        Array.from({ length: count }, (_, i) => i + 10),
        'each text runs again, prepared or parsed afresh',
      );
    }
    await client.query('select 1');
    const { rows } = await client.query(
      `select count(*)::int as n from pg_prepared_statements where statement like '%at_once_%'`,
    );
    t.equal(rows[0].n, RECENT_TEXTS, 'no more than RECENT_TEXTS left prepared');
  },
);

t.test(
  "a named statement whose result's columns changed type is prepared again, not refused for good",
  onlyServer('PGlite has no named statements: the mark is a comment there'),
  async (t) => {
    const testDb = await createTestDatabase();
    t.teardown(() => testDb.drop());
    await sql`create table retyped (id int primary key, label varchar(10))`.execute(testDb.db);
    await sql`insert into retyped values (1, 'one')`.execute(testDb.db);
    await testDb.db.connection().execute(async (conn) => {
      const read = async () =>
        (await prepared(sql<{ label: string }>`select label from retyped where id = ${1}`).execute(conn))
          .rows[0]!.label;
      t.equal(await read(), 'one', 'the statement is prepared on this connection');
      // What a newer release's migration does while this process still runs.
      await sql`alter table retyped alter column label type text`.execute(testDb.db);
      await t.rejects(
        read(),
        { code: '0A000' },
        'the run that meets the change fails (PostgreSQL: cached plan must not change result type)',
      );
      t.equal(await read(), 'one', 'the next run prepares the text again and answers');
      // Again, now met inside a transaction: its first statement goes out with the BEGIN.
      await sql`alter table retyped alter column label type varchar(20)`.execute(testDb.db);
      const inTransaction = () =>
        conn.transaction().execute(async (trx) => {
          const { rows } = await prepared(
            sql<{ label: string }>`select label from retyped where id = ${1}`,
          ).execute(trx);
          return rows[0]!.label;
        });
      await t.rejects(inTransaction(), { code: '0A000' }, 'a second change is met inside a transaction');
      t.equal(await inTransaction(), 'one', 'the next transaction runs it prepared again');
      t.equal(await read(), 'one', 'and so does a run outside one');
    });
  },
);

t.test('transactions: BEGIN travels with the first statement, COMMIT with a final one', async (t) => {
  const testDb = await createTestDatabase();
  t.teardown(() => testDb.drop());
  const { db } = testDb;
  await sql`create table pipelined (n int primary key)`.execute(db);
  const rows = async () =>
    (await sql<{ n: number }>`select n from pipelined order by n`.execute(db)).rows.map((r) => r.n);
  const insert = (n: number) => sql`insert into pipelined (n) values (${n})`;
  const counted = async <T>(fn: () => Promise<T>) => {
    const before = roundTrips();
    const result = await fn();
    return { result, trips: roundTrips() - before };
  };

  // The statements of a transaction still share it: one transaction time, one rollback.
  const sameTransaction = await db.transaction().execute(async (trx) => {
    const a = await sql<{ at: Date }>`select now() as at, pg_sleep(0.01)`.execute(trx);
    const b = await sql<{ at: Date; in_block: boolean }>`
      select now() as at, now() <> statement_timestamp() as in_block`.execute(trx);
    return a.rows[0]!.at.getTime() === b.rows[0]!.at.getTime() && b.rows[0]!.in_block;
  });
  t.ok(sameTransaction, 'both statements ran in one transaction block');
  const isolation = await db
    .transaction()
    .setIsolationLevel('serializable')
    .execute(
      async (trx) =>
        (await sql<{ level: string }>`select current_setting('transaction_isolation') as level`.execute(trx))
          .rows[0]!.level,
    );
  t.equal(
    isolation,
    'serializable',
    'a deferred START TRANSACTION keeps its isolation level',
    onlyServer(
      "Kysely's PGlite dialect drops isolation levels; PGlite runs one transaction at a time anyway",
    ),
  );
  if (embedded)
    t.pass(
      'a script that starts with BEGIN is sent as it is',
      onlyServer('PGlite runs one statement per query'),
    );
  else {
    await sql.raw('begin; insert into pipelined (n) values (100); commit').execute(db);
    t.same(await rows(), [100], 'a script that starts with BEGIN is sent as it is');
    await sql`delete from pipelined`.execute(db);
  }
  await db
    .transaction()
    .execute(async (trx) => {
      await insert(1).execute(trx);
      throw new Error('changed my mind');
    })
    .catch(() => {});
  t.same(await rows(), [], 'a rolled-back transaction left nothing, its deferred BEGIN included');

  // A final statement commits with its COMMIT: the row is there for everyone at once.
  const committed = await counted(() =>
    db.transaction().execute(async (trx) => {
      await insert(2).execute(trx);
      return (await final(sql<{ n: number }>`insert into pipelined (n) values (3) returning n`).execute(trx))
        .rows[0]!.n;
    }),
  );
  t.equal(committed.result, 3);
  t.same(await rows(), [2, 3]);
  const noTrips = onlyServer('PGlite has no round trips to count');
  t.equal(committed.trips, 2, 'BEGIN and COMMIT cost no round trip of their own', noTrips);
  t.equal(
    (await counted(() => db.transaction().execute(async () => 1))).trips,
    0,
    'an empty one costs none',
    noTrips,
  );

  // A failing final statement rolls the whole transaction back, and the connection goes on.
  const failed = await db
    .transaction()
    .execute(async (trx) => {
      await insert(4).execute(trx);
      await final(insert(2)).execute(trx); // duplicate key
    })
    .catch((e) => e);
  t.match(failed, { code: '23505' }, 'the final statement’s own error');
  t.same(await rows(), [2, 3], 'nothing of it stayed');
  await db.transaction().execute(async (trx) => {
    await insert(5).execute(trx);
  });
  t.same(await rows(), [2, 3, 5], 'later transactions run normally');

  if (embedded)
    t.pass(
      'nothing may follow a final statement',
      onlyServer('the pg client enforces it; PGlite runs without it'),
    );
  else {
    // Nothing may follow a final statement: it would run outside the transaction.
    const misuse = await db
      .transaction()
      .execute(async (trx) => {
        await final(insert(6)).execute(trx);
        await insert(7).execute(trx);
      })
      .catch((e) => e);
    t.match(misuse, { message: /after the final statement/ });
    t.same(await rows(), [2, 3, 5, 6], 'the statement after it never ran');
  }

  // A transaction that is one final statement sends it alone, without BEGIN and COMMIT: in the
  // implicit transaction PostgreSQL gives it, it is as atomic (a creation's opening).
  const alone = await counted(() =>
    db.transaction().execute(
      async (trx) =>
        (
          await final(
            sql<{ n: number; first: boolean }>`insert into pipelined (n) values (8)
              returning n, transaction_timestamp() = statement_timestamp() as first`,
          ).execute(trx)
        ).rows[0]!,
    ),
  );
  t.equal(alone.result.n, 8);
  t.ok((await rows()).includes(8), 'it committed');
  t.equal(alone.trips, 1, 'one round trip', noTrips);
  t.equal(
    alone.result.first,
    true,
    'the first command of its transaction: no BEGIN before it',
    onlyServer('PGlite runs every transaction with its BEGIN'),
  );
  const aloneFailed = await db
    .transaction()
    .execute(async (trx) => {
      await final(sql`insert into pipelined (n) select x from (values (9), (2)) v (x)`).execute(trx);
    })
    .catch((e) => e);
  t.match(aloneFailed, { code: '23505' }, 'its own error');
  t.notOk((await rows()).includes(9), 'nothing of it stayed');
  const level = await db
    .transaction()
    .setIsolationLevel('serializable')
    .execute(
      async (trx) =>
        (
          await final(
            sql<{ level: string }>`select current_setting('transaction_isolation') as level`,
          ).execute(trx)
        ).rows[0]!.level,
    );
  t.equal(
    level,
    'serializable',
    'an explicit isolation level keeps its START TRANSACTION',
    onlyServer(
      "Kysely's PGlite dialect drops isolation levels; PGlite runs one transaction at a time anyway",
    ),
  );
  t.same(
    await db.transaction().execute(async (trx) => {
      await insert(10).execute(trx);
      return (
        await final(sql<{ n: number }>`select count(*)::int as n from pipelined where n = 10`).execute(trx)
      ).rows[0]!.n;
    }),
    1,
    'a final statement after others still ends their transaction',
  );
});

t.test('a statement sent with the next one: its effect, its round trip saved, its error', async (t) => {
  const testDb = await createTestDatabase();
  t.teardown(() => testDb.drop());
  const { db } = testDb;
  await sql`create table held (n int primary key, at text)`.execute(db);
  const counted = async <T>(fn: () => Promise<T>) => {
    const before = roundTrips();
    const result = await fn();
    return { result, trips: roundTrips() - before };
  };
  const setting = (value: string) => withNext(sql`select set_config('deskroute.test', ${value}, true)`);
  const noTrips = onlyServer('PGlite has no round trips to count');

  // Its effect is there for the statement it travels with.
  const seen = await counted(() =>
    db.transaction().execute(async (trx) => {
      await setting('one').execute(trx);
      await sql`insert into held (n, at) values (1, current_setting('deskroute.test'))`.execute(trx);
      await setting('two').execute(trx);
      await setting('three').execute(trx);
      return (await sql<{ v: string }>`select current_setting('deskroute.test') as v`.execute(trx)).rows[0]!
        .v;
    }),
  );
  t.equal(seen.result, 'three', 'held statements run in their order, before the next one');
  t.same((await sql`select n, at from held`.execute(db)).rows, [{ n: 1, at: 'one' }]);
  t.equal(
    seen.trips,
    3,
    'the two statements and COMMIT: the held ones and BEGIN cost no round trip (6 without)',
    noTrips,
  );

  // Held until COMMIT: they still run, inside the transaction.
  await db.transaction().execute(async (trx) => {
    await sql`insert into held (n, at) values (2, 'x')`.execute(trx);
    await withNext(sql`update held set at = 'y' where n = 2`).execute(trx);
  });
  t.same((await sql`select at from held where n = 2`.execute(db)).rows, [{ at: 'y' }], 'sent with COMMIT');

  // A held statement that fails: the next statement throws its error, and nothing stays.
  const failed = await db
    .transaction()
    .execute(async (trx) => {
      await sql`insert into held (n, at) values (3, 'z')`.execute(trx);
      await withNext(sql`insert into held (n, at) values (1, 'duplicate')`).execute(trx);
      await sql`select 1`.execute(trx);
    })
    .catch((e) => e);
  t.match(failed, { code: '23505' }, 'the held statement’s own error');
  t.same(
    (await sql<{ n: number }>`select n from held order by n`.execute(db)).rows.map((r) => r.n),
    [1, 2],
    'nothing of it stayed',
  );
  // Dropped by a rollback.
  await db
    .transaction()
    .execute(async (trx) => {
      await sql`insert into held (n, at) values (4, 'w')`.execute(trx);
      await withNext(sql`insert into held (n, at) values (5, 'v')`).execute(trx);
      throw new Error('changed my mind');
    })
    .catch(() => {});
  t.same(
    (await sql<{ n: number }>`select n from held order by n`.execute(db)).rows.map((r) => r.n),
    [1, 2],
    'a rolled-back transaction ran none of it',
  );
  t.equal(
    (await sql<{ one: number }>`select 1 as one`.execute(db)).rows[0]!.one,
    1,
    'the connection goes on',
  );

  // Rolled back to a savepoint: dropped unsent, and the rollback does not fail for it. (PGlite
  // runs a held statement at once, so there it fails where it stands.)
  if (embedded) {
    t.pass('a rollback to a savepoint drops held statements', onlyServer('PGlite holds nothing'));
    return;
  }
  const kept = await db.transaction().execute(async (trx) => {
    await sql`insert into held (n, at) values (6, 'u')`.execute(trx);
    await sql`savepoint before_bad`.execute(trx);
    await withNext(sql`insert into held (n, at) values (1, 'duplicate')`).execute(trx);
    await sql`rollback to savepoint before_bad`.execute(trx);
    return 'kept';
  });
  t.equal(kept, 'kept', 'the rollback to the savepoint succeeds');
  t.same(
    (await sql<{ n: number }>`select n from held order by n`.execute(db)).rows.map((r) => r.n),
    [1, 2, 6],
    'what came before the savepoint stays',
  );
});

t.test("a shaped statement is built once per shape and runs with each run's values", async (t) => {
  const testDb = await createTestDatabase();
  t.teardown(() => testDb.drop());
  verifyShapedStatements(false);
  t.teardown(() => verifyShapedStatements(true));
  let builds = 0;
  const run = shapedStatement(
    (shape: { doubled: boolean }) => (shape.doubled ? 'doubled' : 'plain'),
    (shape: { doubled: boolean }, v: { a: number; label: string; tags: string[] }) => {
      builds++;
      const a = shape.doubled ? sql`${v.a}::int * 2` : sql`${v.a}::int`;
      // A constant among the values keeps its place: it is no value of the run.
      return sql<{
        a: number;
        label: string;
        tags: string[];
        one: number;
      }>`select ${a} as a, ${v.label}::text as label,
        ${v.tags}::text[] as tags, ${1}::int as one`;
    },
  );
  const rows = async (doubled: boolean, a: number, label: string, tags: string[]) =>
    (await run(testDb.db, { doubled }, { a, label, tags })).rows;
  t.same(await rows(false, 3, 'x', ['p']), [{ a: 3, label: 'x', tags: ['p'], one: 1 }]);
  t.same(
    await rows(false, 5, 'y', []),
    [{ a: 5, label: 'y', tags: [], one: 1 }],
    'the second run has its own values',
  );
  t.equal(builds, 1, 'one build for the two runs of a shape');
  t.same(await rows(true, 5, 'z', ['q', 'r']), [{ a: 10, label: 'z', tags: ['q', 'r'], one: 1 }]);
  t.same(await rows(true, 7, 'w', ['s']), [{ a: 14, label: 'w', tags: ['s'], one: 1 }]);
  t.equal(builds, 2, 'another shape, one more build');
  // Inside a transaction too (the opening statement runs in one).
  const inside = await testDb.db
    .transaction()
    .execute(async (trx) => (await run(trx, { doubled: false }, { a: 9, label: 'in', tags: [] })).rows);
  t.same(inside, [{ a: 9, label: 'in', tags: [], one: 1 }]);
});

t.test('a build that decides by a value fails its run under verification, not silently', async (t) => {
  const testDb = await createTestDatabase();
  t.teardown(() => testDb.drop());
  t.teardown(() => verifyShapedStatements(true));
  const make = () =>
    shapedStatement(
      () => 'one',
      // Wrong: which text is sent is decided by a value, which the first build only stands in for.
      (_shape: null, v: { yes: boolean }) =>
        v.yes ? sql<{ n: number }>`select 1 as n` : sql<{ n: number }>`select 2 as n`,
    );
  verifyShapedStatements(false);
  const unchecked = make();
  t.same((await unchecked(testDb.db, null, { yes: true })).rows, [{ n: 1 }]);
  t.same(
    (await unchecked(testDb.db, null, { yes: false })).rows,
    [{ n: 1 }],
    'unchecked, the cached text runs with the wrong answer: what verification is for',
  );
  verifyShapedStatements(true);
  const checked = make();
  t.same((await checked(testDb.db, null, { yes: true })).rows, [{ n: 1 }]);
  await t.rejects(checked(testDb.db, null, { yes: false }), /depends on more than its shape/);
});

t.test(
  'a report from the counters runs as a named statement planned once; from the events, planned each run',
  onlyServer('PGlite has no named statements: the mark is a comment there'),
  async (t) => {
    const testDb = await createTestDatabase();
    t.teardown(() => testDb.drop());
    const spec = departmentSpec(
      new Date('2026-01-01T00:00:00Z'),
      new Date('2026-02-01T00:00:00Z'),
      METRICS.filter((m) => m.key === 'created' || 'percentile' in m.formula),
    );
    await testDb.db.connection().execute(async (conn) => {
      const plans = async (marked: string) =>
        (
          await sql<{ generic: string; custom: string }>`
            select generic_plans::text as generic, custom_plans::text as custom from pg_prepared_statements
            where statement like ${`${marked}%`} and statement like ${'%periods as%'}`.execute(conn)
        ).rows.map((r) => ({ generic: Number(r.generic), custom: Number(r.custom) }));
      for (let i = 0; i < 3; i++) {
        await findReportRows(conn, spec, { limit: 100 });
        await findReportTotals(conn, spec);
      }
      t.same(
        await plans(PREPARED_WHILE_RECENT_MARK),
        [
          { generic: 3, custom: 0 },
          { generic: 3, custom: 0 },
        ],
        'the rows and the totals: one generic plan each, used by every run',
      );
      await findReportRows(conn, { ...spec, source: 'events' }, { limit: 100 });
      t.equal((await plans(PREPARED_WHILE_RECENT_MARK)).length, 2, 'from the events, nothing is prepared');
    });
  },
);
