import t from 'tap';
import { preparedWhileFewTexts } from '../src/db/prepared.ts';
import { findTicketRecord, writeTicketChanges } from '../src/domains/tickets/repository.ts';
import { buildTestApp } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';
import { makeTicket } from './helpers/tickets.ts';

// A ticket's change runs as a named statement while the process has named fewer than FEW_TEXTS
// texts (src/db/prepared.ts, preparedWhileFew). Its text must follow which columns change, never
// their values nor the order the change was put together in, or one-off texts would use the
// budget up and the usual changes would be parsed and planned every time again.
const embedded = (await testDatabaseKind()) === 'pglite';

t.test(
  "a ticket change's statement text follows the columns it sets, not their values or order",
  { skip: embedded ? 'PGlite has no named statements: the pg client that counts them is not used' : false },
  async (t) => {
    const ctx = await buildTestApp(t);
    const a = await makeTicket(ctx.db);
    const b = await makeTicket(ctx.db);
    const write = async (id: string, patch: Record<string, unknown>) => {
      const before = await findTicketRecord(ctx.db, id);
      if (!before) throw new Error(`no ticket ${id}`);
      const { ticket } = await ctx.db
        .transaction()
        .execute((trx) => writeTicketChanges(trx, before, { patch, touch: true, events: [], messages: [] }));
      return ticket;
    };

    const start = preparedWhileFewTexts();
    const first = await write(a.id, { priority: 'high', subject: 'First subject' });
    t.equal(first.priority, 'high', 'the change is written');
    t.equal(first.subject, 'First subject');
    const afterFirst = preparedWhileFewTexts();
    t.equal(afterFirst - start, 1, 'a new set of columns is one new text');

    const second = await write(b.id, { subject: 'Another subject', priority: 'low' });
    t.equal(second.priority, 'low', 'the same columns in the other order are written');
    t.equal(second.subject, 'Another subject');
    await write(a.id, { priority: 'normal', subject: 'Third subject' });
    t.equal(preparedWhileFewTexts(), afterFirst, 'other values, in any order: no new text');

    await write(a.id, { priority: 'urgent' });
    t.equal(preparedWhileFewTexts(), afterFirst + 1, 'another set of columns is another text');
  },
);
