import { type Kysely, sql } from 'kysely';
import { type TicketAccess, visibleTickets } from '../../access/tickets.ts';
import type { Database } from '../../db/types.ts';

/**
 * Tags on the tickets the caller may see (deleted tickets aside), with how many tickets carry
 * each, most used first. `prefix` is compared with tags as stored (trimmed, lower-cased).
 */
export async function countTags(
  db: Kysely<Database>,
  access: TicketAccess,
  filter: { prefix: string | null; limit: number },
): Promise<{ tag: string; tickets: number }[]> {
  const visible = db
    .selectFrom('tickets as t')
    .where(visibleTickets(access))
    .where('t.status', '!=', 'deleted')
    .select(sql<string>`unnest(t.tags)`.as('tag'));
  const rows = await db
    .selectFrom(visible.as('v'))
    .select(['v.tag', (eb) => eb.fn.countAll<string>().as('tickets')])
    .$if(filter.prefix !== null, (qb) => qb.where(sql<boolean>`starts_with(v.tag, ${filter.prefix})`))
    .groupBy('v.tag')
    .orderBy('tickets', 'desc')
    .orderBy('v.tag')
    .limit(filter.limit)
    .execute();
  return rows.map((r) => ({ tag: r.tag, tickets: Number(r.tickets) }));
}
