import { sql } from 'kysely';
import t from 'tap';
import { preparedWhileFewTexts } from '../src/db/prepared.ts';
import { findTicketRecord, writeTicketChanges } from '../src/domains/tickets/repository.ts';
import { agentWithToken, buildTestApp } from './helpers/app.ts';
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

t.test(
  "a change meeting a newer release's migration of the tickets' columns answers 503 schema_changed, then works again",
  { skip: embedded ? 'PGlite has no named statements: nothing prepared can go stale' : false },
  async (t) => {
    const ctx = await buildTestApp(t);
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const ticket = await makeTicket(ctx.db);
    const patch = (priority: string) =>
      ctx.request({
        method: 'PATCH',
        url: `/v1/tickets/${ticket.id}`,
        token: admin.token,
        payload: { priority },
      });
    t.equal((await patch('high')).statusCode, 200, 'the change is prepared on the connection that made it');
    // A newer release retypes a column every ticket statement returns, while this one runs.
    await sql`alter table tickets alter column subject type varchar(2000)`.execute(ctx.db);

    // Requests run one after the other take the pool's last released connection: the one whose
    // statements went stale. Each connection fails once per stale statement, then prepares it anew.
    const answers: { status: number; code?: string; retryAfter?: string }[] = [];
    let last = await patch('low');
    for (let i = 0; i < 30 && last.statusCode !== 200; i++) {
      answers.push({
        status: last.statusCode,
        code: last.json().code,
        retryAfter: last.headers['retry-after'] as string,
      });
      t.equal(last.headers['content-type'], 'application/problem+json; charset=utf-8', 'a problem document');
      last = await patch('low');
    }
    t.ok(answers.length > 0, 'the stale statement was met');
    t.same(
      answers.filter((a) => !(a.status === 503 && a.code === 'schema_changed' && a.retryAfter === '1')),
      [],
      'every refusal is 503 schema_changed with Retry-After: 1',
    );
    t.equal(last.statusCode, 200, 'a retry works');
    t.equal(last.json().priority, 'low');
    const after = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token: admin.token });
    t.equal(after.json().priority, 'low', 'the retried change is saved');
  },
);
