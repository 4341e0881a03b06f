import { randomUUID } from 'node:crypto';
import { type RawBuilder, sql } from 'kysely';
import t from 'tap';
import {
  claimStatement,
  insertDeliveries,
  nextInLanes,
  pendingAheadInLanes,
} from '../src/domains/webhooks/delivery.ts';
import { createTestDatabase } from './helpers/database.ts';
import { type PlanNode, rowsRead } from './helpers/plans.ts';

// A webhook queue is mostly empty: statistics taken then (an idle hour, a drained backlog) say
// no delivery is pending. A burst then fills it, and each claim looks up its batch's lanes. Those
// lookups must read about the batch, not every pending delivery: with the lane index partial on
// the pending ones, the planner took it for empty and scanned all of it once per claimed
// delivery (bench:events: 3 s a claim, the backlog stalled; migrations/0051).

t.test(
  'lane lookups read no more with statistics taken while nothing was pending than with fresh ones',
  async (t) => {
    const database = await createTestDatabase();
    t.teardown(() => database.drop());
    const db = database.db;
    // Statistics stay as the ANALYZE below leaves them (autovacuum may be on elsewhere).
    await sql`alter table webhook_deliveries set (autovacuum_enabled = false)`.execute(db);
    const [hook] = (
      await sql<{ id: string }>`
      insert into webhooks (url, secret) values ('http://127.0.0.1:9/lanes', 'whsec_bGFuZXM=') returning id`.execute(
        db,
      )
    ).rows;
    const delivery = (ticketId: string | null) => ({
      id: randomUUID(),
      webhook_id: hook!.id,
      event_id: `lanes_${randomUUID()}`,
      event_type: 'ticket.updated',
      ticket_id: ticketId,
      body: '{}',
    });

    // An earlier burst, all settled; the statistics are taken then.
    const settled = Array.from({ length: 300 }, () => delivery(randomUUID()));
    await insertDeliveries(db, settled);
    await sql`update webhook_deliveries set status = 'delivered', settled_at = now()`.execute(db);
    await sql`analyze webhook_deliveries`.execute(db);

    // The next burst: 1,500 tickets, two deliveries each (a lane of two).
    const lanes = Array.from({ length: 1_500 }, () => randomUUID());
    const first = lanes.map((ticket) => delivery(ticket));
    const second = lanes.map((ticket) => delivery(ticket));
    await insertDeliveries(db, first);
    await insertDeliveries(db, second);
    const pending = first.length + second.length;

    // A claim's batch: the second deliveries of 50 lanes (their first ones are ahead of them).
    const batch = second.slice(0, 50).map((d) => d.id);
    const statements: [string, RawBuilder<unknown>][] = [
      ['the deliveries ahead in the batch’s lanes', pendingAheadInLanes(batch)],
      ['the claim', claimStatement(batch, 10_000, false)],
      [
        'the next of each lane',
        nextInLanes(second.slice(0, 50).map((d) => ({ webhook_id: hook!.id, ticket_id: d.ticket_id }))),
      ],
    ];
    /** What each statement's plan reads of webhook_deliveries, run inside a transaction rolled back (the claim writes). */
    const reads = () =>
      db.connection().execute(async (connection) => {
        const read: number[] = [];
        for (const [, statement] of statements) {
          await sql`begin`.execute(connection);
          try {
            const { rows } = await sql<{ 'QUERY PLAN': { Plan: PlanNode }[] }>`
            explain (analyze, format json) ${statement}`.execute(connection);
            read.push(rowsRead(rows[0]!['QUERY PLAN'][0]!.Plan, 'webhook_deliveries'));
          } finally {
            await sql`rollback`.execute(connection);
          }
        }
        return read;
      });
    const stale = await reads();
    await sql`analyze webhook_deliveries`.execute(db);
    const fresh = await reads();
    // With fresh statistics the planner may read the table once (a hash join is the cheaper plan
    // at this size); stale ones must not make it read the pending deliveries once per delivery.
    statements.forEach(([name], i) => {
      t.ok(
        stale[i]! <= 2 * fresh[i]! + 10 * batch.length,
        `${name}: ${stale[i]} delivery rows read for a batch of ${batch.length} among ${pending} pending, ` +
          `${fresh[i]} with fresh statistics`,
      );
    });
    // The lookups above found what they look for (the plans are not measured on empty answers).
    const ahead = await pendingAheadInLanes(batch).execute(db);
    t.equal(ahead.rows.length, batch.length, 'each delivery of the batch has one pending ahead of it');
    const next = await nextInLanes(
      second.slice(0, 50).map((d) => ({ webhook_id: hook!.id, ticket_id: d.ticket_id })),
    ).execute(db);
    t.same(
      new Set(next.rows.map((r) => r.id)),
      new Set(first.slice(0, 50).map((d) => d.id)),
      'the next of each lane is its first delivery',
    );
  },
);
