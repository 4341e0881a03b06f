import type { Db } from '../../src/db/database.ts';
import { type CreateTicketInput, insertNewTicket } from '../../src/domains/tickets/service.ts';

export const GHOST = '00000000-0000-4000-8000-000000000000';

let seq = 0;

/**
 * A ticket opened through the service's own insert path (contact resolved, first message and
 * `created` event written), without the caller checks of POST /v1/tickets: tests use it to place
 * tickets where the API would refuse to, e.g. with an assignee who has since left the department.
 */
export async function makeTicket(db: Db, input: Partial<CreateTicketInput> = {}) {
  const n = `${process.pid}-${++seq}`;
  return db.transaction().execute((trx) =>
    insertNewTicket(
      trx,
      {
        subject: `Ticket ${n}`,
        channel: 'email',
        contact: { email: `customer-${n}@example.com`, name: `Customer ${n}` },
        message: { body: `Hello, this is message ${n}.` },
        ...input,
      },
      { type: 'system', agentId: null, contactId: null },
      null,
    ),
  );
}

/** Everything stored about one ticket, to prove that a refused request changed nothing. */
export async function ticketState(db: Db, id: string) {
  const row = await db
    .selectFrom('tickets as t')
    .selectAll('t')
    .select((eb) =>
      (['ticket_events', 'ticket_messages', 'ratings', 'calls', 'chats'] as const).map((table) =>
        eb
          .selectFrom(table)
          .select((c) => c.fn.countAll().as('n'))
          .whereRef(`${table}.ticket_id`, '=', 't.id')
          .as(table),
      ),
    )
    .where('t.id', '=', id)
    .executeTakeFirst();
  return {
    row: JSON.stringify(row ?? null),
    events: Number(row?.ticket_events ?? 0),
  };
}

export async function countTickets(db: Db) {
  return Number(
    (
      await db
        .selectFrom('tickets')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );
}

/** A moment `seconds` before now, as an ISO string. */
export const ago = (seconds: number) => new Date(Date.now() - seconds * 1000).toISOString();
