import { sql } from 'kysely';
import pino from 'pino';
import t from 'tap';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { ticketsWrittenAsSets } from '../src/domains/tickets/set-writes.ts';
import { agentWithToken, buildTestApp } from './helpers/app.ts';

// An import's batches write their tickets as sets (src/domains/tickets/set-writes.ts): each ticket
// once, in its final state, with its messages and events. Written record by record instead (as an
// import that runs rules is, and as every live change is), the same history must leave the same
// rows: the same two files imported under two sources, one each way, give tickets, messages and
// events equal column by column (ids, numbers and the real time of the write aside). The second
// file adds to tickets the first one wrote, and a call, a microsecond time and an attachment send
// records down the ordinary path in the middle of a batch.

const ctx = await buildTestApp(t);
const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
const log = pino({ level: 'silent' });
const work = () => processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log });

type Rec = Record<string, unknown> & { type: string; external_id: string };

/** Two files of one help desk's history: setup, tickets and half their timeline; then the rest. */
function history(): [Rec[], Rec[]] {
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const first: Rec[] = [
    { type: 'agent', external_id: 'a1', email: 'ann@set.test', name: 'Ann' },
    { type: 'agent', external_id: 'a2', email: 'bob@set.test', name: 'Bob' },
    { type: 'department', external_id: 'd1', name: 'Sales (set)' },
    { type: 'department', external_id: 'd2', name: 'Support (set)' },
    { type: 'membership', external_id: 'd1:a1', department: 'd1', agent: 'a1', role: 'solver' },
    { type: 'membership', external_id: 'd2:a1', department: 'd2', agent: 'a1', role: 'solver' },
    { type: 'membership', external_id: 'd1:a2', department: 'd1', agent: 'a2', role: 'solver' },
  ];
  for (let c = 1; c <= 5; c++) {
    first.push({ type: 'contact', external_id: `c${c}`, name: `Buyer ${c}`, emails: [`buyer${c}@set.test`] });
  }
  const second: Rec[] = [];
  let n = 0;
  for (let i = 1; i <= 45; i++) {
    let at = Date.parse('2025-03-01T00:00:00Z') + Math.floor(random() * 200 * 86_400_000);
    const ticket = `t${i}`;
    let department = pick(['d1', 'd2']);
    first.push({
      type: 'ticket',
      external_id: ticket,
      created_at: new Date(at).toISOString(),
      subject: `Parcel ${i}`,
      channel: pick(['email', 'contact_form', 'api']),
      contact: `c${1 + (i % 5)}`,
      department,
      priority: pick(['low', 'normal', 'high']),
      tags: i % 4 === 0 ? ['vip'] : [],
      ...(i % 6 !== 0 && {
        message:
          i % 5 === 0
            ? { body: `We called about ${i}.`, author: 'agent', agent: 'a1' }
            : { body: `Where is parcel ${i}?` },
      }),
    });
    for (let s = 0; s < 8; s++) {
      // Several records at one instant, and some in a zone of their own (same instants).
      if (random() > 0.15) at += Math.floor(random() * 20 * 3_600_000) + 1000;
      // A source's timeline a little out of order: the event follows the ticket's latest one.
      else if (random() < 0.5) at -= 1_800_000;
      const when =
        s % 5 === 4
          ? new Date(at + 7_200_000).toISOString().replace('Z', '+02:00')
          : new Date(at).toISOString();
      const into = s < 4 ? first : second;
      const id = `e${++n}`;
      const r = random();
      const base = { external_id: id, ticket, at: when };
      if (r < 0.2)
        into.push({
          ...base,
          type: 'message',
          kind: 'reply',
          body: `Sent ${id}.`,
          agent: pick(['a1', 'a2']),
        });
      else if (r < 0.35)
        into.push({ ...base, type: 'message', kind: 'customer', body: `Still waiting ${id}` });
      else if (r < 0.42)
        into.push({ ...base, type: 'message', kind: 'note', body: `Checked ${id}`, agent: 'a2' });
      else if (r < 0.5) {
        department = department === 'd1' ? 'd2' : 'd1';
        into.push({ ...base, type: 'transfer', department, agent: 'a1' });
      } else if (r < 0.58)
        into.push({ ...base, type: 'assignment', assignee: pick(['a1', 'a2', null]), agent: 'a1' });
      else if (r < 0.68)
        into.push({ ...base, type: 'status', status: pick(['resolved', 'open', 'answered']), agent: 'a1' });
      else if (r < 0.72) {
        const until = new Date(at + 3 * 86_400_000).toISOString();
        into.push({ ...base, type: 'status', status: 'postponed', postponed_until: until, agent: 'a1' });
      } else if (r < 0.8)
        into.push({ ...base, type: 'tags', tags: pick([['vip', 'late'], [], ['late']]), agent: 'a2' });
      else if (r < 0.86)
        into.push({ ...base, type: 'priority', priority: pick(['urgent', 'low']), agent: 'a1' });
      else if (r < 0.9)
        into.push({ ...base, type: 'subject', subject: `Parcel ${i}, again ${id}`, agent: 'a1' });
      else if (r < 0.94) {
        into.push({
          ...base,
          type: 'call',
          direction: 'inbound',
          outcome: 'answered',
          agent: 'a1',
          answered_at: new Date(at + 10_000).toISOString(),
          ended_at: new Date(at + 90_000).toISOString(),
        });
        at += 90_000;
      } else if (r < 0.97) {
        // A time the set cannot stamp exactly (microseconds): written the ordinary way.
        into.push({
          ...base,
          at: new Date(at).toISOString().replace('Z', '').concat('417Z'),
          type: 'message',
          kind: 'customer',
          body: `Precise ${id}`,
        });
      } else {
        into.push({
          ...base,
          type: 'message',
          kind: 'reply',
          body: `With the label ${id}`,
          agent: 'a1',
          attachments: ['label'],
        });
      }
    }
  }
  return [first, second];
}

const [first, second] = history();
const ndjson = (records: Rec[]) => `${records.map((r) => JSON.stringify(r)).join('\n')}\n`;

async function importFile(source: string, records: Rec[], runRules: boolean) {
  const res = await ctx.request({
    method: 'POST',
    url: `/v1/imports?source=${source}${runRules ? '&run_rules=true' : ''}`,
    token: admin,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: ndjson(records),
  });
  if (res.statusCode !== 202) throw new Error(`import: ${res.statusCode} ${res.body}`);
  await work();
  const id = res.json().id;
  const done = (await ctx.request({ method: 'GET', url: `/v1/imports/${id}`, token: admin })).json();
  if (done.counts.failed > 0) {
    // What went wrong, in the failure's output.
    const errors = await ctx.request({
      method: 'GET',
      url: `/v1/imports/${id}/errors?limit=5`,
      token: admin,
    });
    done.errors = errors.json().data;
  }
  return done;
}

/** A ticket, its messages and its events, as the source's import wrote them, without ids. */
async function ticketAsWritten(source: string, external: string) {
  const target = (
    await sql<{ id: string }>`select target_id as id from import_keys
      where source = ${source} and type = 'ticket' and external_id = ${external}`.execute(ctx.db)
  ).rows[0]!.id;
  const [ticket] = (
    await sql<
      Record<string, unknown>
    >`select *, search::text as search from tickets where id = ${target}`.execute(ctx.db)
  ).rows;
  const { id: _id, number: _number, changed_at: _changed, ...columns } = ticket!;
  // Messages named by their record (the opening message by none), for the events that name them.
  const messages = (
    await sql<Record<string, unknown> & { id: string }>`select m.*, k.external_id as record
      from ticket_messages m left join import_keys k on k.target_id = m.id and k.type = 'message'
      where m.ticket_id = ${target} order by m.created_at, m.body`.execute(ctx.db)
  ).rows;
  const named = new Map<unknown, string>(messages.map((m) => [m.id, String(m.record ?? 'opening')]));
  // Calls are named by their record too.
  const calls = await sql<{ id: string; record: string }>`select target_id as id, external_id as record
    from import_keys where source = ${source} and type = 'call'`.execute(ctx.db);
  for (const c of calls.rows) named.set(c.id, c.record);
  const events = (
    await sql<
      Record<string, unknown> & { data: Record<string, unknown> }
    >`select type, actor_type, actor_agent_id,
        actor_contact_id, via_token_id, department_id, agent_id, channel, data, occurred_at,
        import_id is not null as imported, tx::text::bigint <= pg_current_xact_id()::text::bigint as tx_in_order
      from ticket_events where ticket_id = ${target} order by id`.execute(ctx.db)
  ).rows.map((e) => ({
    ...e,
    data: Object.fromEntries(
      Object.entries(e.data).map(([k, v]) => [k, k === 'message_id' || k === 'call_id' ? named.get(v) : v]),
    ),
  }));
  return {
    columns,
    messages: messages.map(({ id: _m, ticket_id: _t, ...m }) => m),
    events,
  };
}

t.test('batches written as sets leave the rows a record-by-record replay leaves', async (t) => {
  // The file the attachment names, uploaded once per source.
  for (const source of ['sets', 'records']) {
    const res = await ctx.request({
      method: 'PUT',
      url: `/v1/imports/files/label?source=${source}&filename=label.pdf`,
      token: admin,
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from('%PDF-1.4 label'),
    });
    t.equal(res.statusCode < 300, true, `the file is uploaded for ${source}: ${res.statusCode} ${res.body}`);
  }
  const before = ticketsWrittenAsSets();
  for (const file of [first, second]) {
    const done = await importFile('sets', file, false);
    t.same(
      { counts: done.counts, errors: done.errors ?? [] },
      { counts: { read: file.length, created: file.length, updated: 0, skipped: 0, failed: 0 }, errors: [] },
    );
  }
  const asSets = ticketsWrittenAsSets() - before;
  t.ok(asSets >= 45, `the tickets went in as sets (${asSets} rows written so)`);
  // Rules on (none is defined): every record is written as a live change is.
  for (const file of [first, second]) {
    const done = await importFile('records', file, true);
    t.same(
      { counts: done.counts, errors: done.errors ?? [] },
      { counts: { read: file.length, created: file.length, updated: 0, skipped: 0, failed: 0 }, errors: [] },
    );
  }
  t.equal(ticketsWrittenAsSets() - before, asSets, 'an import that runs rules writes no set');

  let compared = 0;
  for (const record of first.filter((r) => r.type === 'ticket')) {
    const sets = await ticketAsWritten('sets', record.external_id);
    const records = await ticketAsWritten('records', record.external_id);
    t.same(sets.columns, records.columns, `${record.external_id}: the ticket's columns`);
    t.same(sets.messages, records.messages, `${record.external_id}: its messages`);
    t.same(sets.events, records.events, `${record.external_id}: its events, in order`);
    compared += sets.events.length;
  }
  t.ok(compared > 45 * 5, `${compared} events compared`);
});
