import { sql } from 'kysely';
import t from 'tap';
import { feedPage, type Position } from '../src/domains/events/repository.ts';
import { createTestDatabase } from './helpers/database.ts';
import { type PlanNode, rowsRead } from './helpers/plans.ts';
import { makeTicket } from './helpers/tickets.ts';

// Every consumer of the feed (the live stream's tailer, webhook dispatch, notifications) reads a
// page after its cursor many times a second. The page joins each message event to its message;
// that must stay a look-up per row of the page. Pulled up into a plain join, the planner hashed
// the whole of ticket_messages whenever it guessed the page large (its guess for a cursor's
// window is rough): bench:events (c), after (a) and (b) had filled the tables, spent 20-55 ms a
// poll on it and its fan-out p50 went from 28 ms to 218 ms.

t.test('a page of the feed looks up its messages, whatever the planner guesses of its size', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const db = database.db;
  await sql`alter table ticket_messages set (autovacuum_enabled = false)`.execute(db);
  await sql`alter table ticket_events set (autovacuum_enabled = false)`.execute(db);

  const tickets = [];
  for (let i = 0; i < 20; i++) tickets.push((await makeTicket(db)).id);
  // A help desk's worth of replies: 20,000 notes. Each event below has a transaction of its own,
  // as live ones do (the ids are set here, above this database's own): the planner's guess for a
  // cursor's window comes from how the ids spread.
  const base = BigInt(
    (await sql<{ x: string }>`select pg_current_xact_id()::text as x`.execute(db)).rows[0]!.x,
  );
  await sql`
    insert into ticket_messages (id, ticket_id, kind, channel, body)
    select gen_random_uuid(), (${sql.val(tickets)}::uuid[])[1 + n % 20], 'note', 'email', 'note ' || n
    from generate_series(1, 20000) n`.execute(db);
  // Each note with its message_added event and a priority change after it, as a help desk's
  // history has more events than messages.
  await sql`
    insert into ticket_events (ticket_id, type, actor_type, channel, data, tx)
    select m.ticket_id, x.type, 'system', 'email', x.data,
      (${base.toString()}::bigint + 1000 + 2 * m.n + x.k)::text::xid8
    from (select id, ticket_id, row_number() over (order by id) as n
      from ticket_messages where kind = 'note') m
    cross join lateral (values
      (0, 'message_added', jsonb_build_object('message_id', m.id, 'kind', 'note')),
      (1, 'priority_changed', '{"from": "normal", "to": "high"}'::jsonb)) x(k, type, data)`.execute(db);
  await sql`analyze ticket_messages`.execute(db);
  await sql`analyze ticket_events`.execute(db);

  // The last ten events, as a consumer that has read everything before them asks for them.
  const last = await sql<{ tx: string; id: string }>`
    select e.tx::text as tx, e.id::text as id from ticket_events e order by e.tx desc, e.id desc offset 10 limit 1`.execute(
    db,
  );
  const after: Position = { tx: BigInt(last.rows[0]!.tx), source: 0, id: BigInt(last.rows[0]!.id) };
  const horizon = base + 1000n + 40_002n;
  const page = feedPage(db, { limit: 500 }, after, horizon)!;

  const { rows } = await page.execute(db);
  t.equal(rows.length, 10, 'the page holds the ten events after the cursor');
  const notes = rows.filter((r) => r.stored_type === 'message_added');
  t.equal(notes.length, 5, 'five of them are notes');
  t.ok(
    notes.every((r) => r.m_id === r.data.message_id && r.m_kind === 'note'),
    'each note carries its message, read with it',
  );
  const plan = await sql<{
    'QUERY PLAN': { Plan: PlanNode }[];
  }>`explain (analyze, format json) ${page}`.execute(db);
  console.error(
    'PLAN',
    (await sql<{ 'QUERY PLAN': string }>`explain ${page}`.execute(db)).rows
      .map((r) => r['QUERY PLAN'])
      .join('\n'),
  );
  const read = rowsRead(plan.rows[0]!['QUERY PLAN'][0]!.Plan, 'ticket_messages');
  t.ok(read <= 5, `the page read ${read} rows of ticket_messages for its 5 notes (20,020 in the table)`);

  // The consumers' page, which passes imported history by in its statement (`live`): the same
  // look-ups, and the events read from the cursor on, not the table.
  const live = feedPage(db, { limit: 500, live: true }, after, horizon)!;
  t.equal((await live.execute(db)).rows.length, 10, 'the live page holds the same ten (none imported)');
  const livePlan = (
    await sql<{ 'QUERY PLAN': { Plan: PlanNode }[] }>`explain (analyze, format json) ${live}`.execute(db)
  ).rows[0]!['QUERY PLAN'][0]!.Plan;
  const liveMessages = rowsRead(livePlan, 'ticket_messages');
  t.ok(liveMessages <= 5, `the live page read ${liveMessages} rows of ticket_messages for its 5 notes`);
  const liveEvents = rowsRead(livePlan, 'ticket_events');
  t.ok(
    liveEvents <= 100,
    `the live page read ${liveEvents} rows of ticket_events for its 10 (40,000 in the table)`,
  );
});
