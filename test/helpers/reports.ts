import type { Kysely } from 'kysely';
import type { Channel, Database } from '../../src/db/types.ts';
import type { Metric } from '../../src/domains/reports/metrics.ts';
import { type ReportSpec, reportQuery, toReportRow } from '../../src/domains/reports/repository.ts';

/** A report by department over [from, to) in UTC, from the counters, unsorted: tests vary it. */
export function departmentSpec(from: Date, to: Date, metrics: Metric[]): ReportSpec {
  return {
    from,
    to,
    timezone: 'UTC',
    interval: 'none',
    weekShift: 0,
    groupBy: ['department'],
    departments: null,
    agents: null,
    channels: null,
    attribution: 'event',
    source: 'counters',
    metrics,
    sort: [],
  };
}

/** A report's rows, run straight (not through the routes, which count pending events first). */
export async function reportRows(db: Kysely<Database>, spec: ReportSpec) {
  return (await reportQuery(spec).execute(db)).rows.map((r) => toReportRow(spec, r));
}

/** A ticket as it is now (resolved), and its history written with explicit times and data. */
export async function insertHistory(
  db: Kysely<Database>,
  subject: string,
  now: { department: string; assignee: string; channel: Channel },
  events: { type: string; at: string; department: string; agent: string; data?: Record<string, unknown> }[],
) {
  const contact = await db
    .insertInto('contacts')
    .values({ name: 'Customer' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const ticket = await db
    .insertInto('tickets')
    .values({
      subject,
      channel: now.channel,
      status: 'resolved',
      priority: 'normal',
      department_id: now.department,
      assignee_id: now.assignee,
      contact_id: contact.id,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('ticket_events')
    .values(
      events.map((e) => ({
        ticket_id: ticket.id,
        type: e.type,
        actor_type: 'system' as const,
        actor_agent_id: null,
        actor_contact_id: null,
        department_id: e.department,
        agent_id: e.agent,
        channel: now.channel,
        data: JSON.stringify(e.data ?? {}),
        occurred_at: new Date(e.at),
      })),
    )
    .execute();
  return ticket.id;
}

/** A small RFC 4180 reader for the tests (quoted fields, doubled quotes, commas inside). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
