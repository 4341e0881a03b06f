import { Readable } from 'node:stream';
import type { Principal } from '../../access/policy.ts';
import { loadTicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { invalid } from '../../errors.ts';
import { decodeCursor, encodeCursor } from '../../plugins/pagination.ts';
import { toContact } from '../contacts/repository.ts';
import type { Contact } from '../contacts/schemas.ts';
import { CSV_CONTENT_TYPE, formulaSafe } from '../reports/csv.ts';
import { toListedTicket } from '../tickets/repository.ts';
import type { Ticket, TicketFilter } from '../tickets/schemas.ts';
import { contactRecord, ticketRecords } from './import-records.ts';
import * as repo from './repository.ts';
import type { ExportFormat } from './schemas.ts';

export const NDJSON_CONTENT_TYPE = 'application/x-ndjson; charset=utf-8';

/** Rows per statement: big enough to amortise a round trip, small enough to bound memory. */
const BATCH = 1000;
/** Tickets per batch in the import format, whose histories are read with them. */
const HISTORY_BATCH = 200;

/** What an export's answer says before its body: known from one statement, no rows read. */
export interface ExportHeaders {
  /** Pass as `cursor` next time for what changed after this export (known before the body). */
  nextCursor: string;
  fileName: string;
  contentType: string;
}

export interface ExportStream extends ExportHeaders {
  body: Readable;
}

/** A CSV cell (RFC 4180 quoting), text neutralised like the report CSVs'. */
function cell(value: string | number | boolean | null): string {
  if (value === null) return '';
  if (typeof value !== 'string') return String(value);
  const text = formulaSafe(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
const csvLine = (values: (string | number | boolean | null)[]) => `${values.map(cell).join(',')}\r\n`;

const TICKET_COLUMNS = [
  'id',
  'reference',
  'subject',
  'channel',
  'status',
  'priority',
  'department_id',
  'assignee_id',
  'contact_id',
  'contact_name',
  'contact_email',
  'contact_phone',
  'tags',
  'support_address',
  'postponed_until',
  'created_at',
  'updated_at',
  'first_answered_at',
  'last_customer_message_at',
  'resolved_at',
  'created_in_working_hours',
  'sla_due_at',
  'sla_breached',
];

function ticketCsvRow(t: Ticket): string {
  return csvLine([
    t.id,
    t.reference,
    t.subject,
    t.channel,
    t.status,
    t.priority,
    t.department_id,
    t.assignee_id,
    t.contact.id,
    t.contact.name,
    t.contact.email,
    t.contact.phone,
    t.tags.join(';'),
    t.support_address,
    t.postponed_until,
    t.created_at,
    t.updated_at,
    t.first_answered_at,
    t.last_customer_message_at,
    t.resolved_at,
    t.created_in_working_hours,
    t.sla?.due_at ?? null,
    t.sla?.breached ?? false,
  ]);
}

const CONTACT_COLUMNS = ['id', 'name', 'emails', 'phones', 'custom_fields', 'created_at', 'updated_at'];

function contactCsvRow(c: Contact): string {
  return csvLine([
    c.id,
    c.name,
    c.emails.join(';'),
    c.phones.join(';'),
    JSON.stringify(c.custom_fields),
    c.created_at,
    c.updated_at,
  ]);
}

const ndjson = (items: unknown[]) => {
  let out = '';
  for (const item of items) out += `${JSON.stringify(item)}\n`;
  return out;
};

/** The instant a cursor resumes from; 400 when it is not one this export handed out. */
function resumeFrom(list: string, cursor: string | undefined): Date | null {
  if (cursor === undefined) return null;
  const [at] = decodeCursor(list, cursor, 1);
  const from = typeof at === 'string' ? new Date(at) : new Date(Number.NaN);
  if (Number.isNaN(from.getTime())) {
    throw invalid('invalid_cursor', 'The cursor is not one this export handed out.', [
      { field: 'querystring/cursor', message: 'is not a valid cursor for this export' },
    ]);
  }
  return from;
}

/**
 * 400 invalid_text when a text filter holds U+0000, as the GET answers it: the schemas let the
 * character through and only the database refuses it (22021, the problem handler's
 * invalid_text), when the first batch is read. A HEAD reads no batch, so without this it
 * answered 200 where its GET answers 400; both now refuse it here, before the horizon.
 */
function refuseUnstorableText(filter: Record<string, unknown>): void {
  const fields = Object.entries(filter)
    .filter(([, value]) => [value].flat().some((v) => typeof v === 'string' && v.includes('\u0000')))
    .map(([name]) => ({ field: `querystring/${name}`, message: 'contains U+0000, which cannot be stored' }));
  if (fields.length > 0) {
    throw invalid(
      'invalid_text',
      'A text value contains a character that cannot be stored (U+0000).',
      fields,
    );
  }
}

function windowOf(from: Date | null, horizon: Date): repo.Window {
  // A horizon behind the cursor (only a clock moved back does that) exports nothing, again.
  return { from, to: from !== null && horizon < from ? from : horizon };
}

/**
 * A readable over the batches, once the first has been read: a filter or cursor the database
 * refuses answers problem+json before any byte (or header of a download) is sent. Each later
 * batch is read when the previous one has been taken by the response (pipe stops reading while
 * the socket's buffer is full), so memory holds about two batches whatever the size of the
 * export; destroying it (the client went away) ends the generator after the statement in flight,
 * and no connection is held between batches.
 */
async function startedStream(header: string, batches: AsyncIterable<string>): Promise<Readable> {
  const chunks = batches[Symbol.asyncIterator]();
  const first = await chunks.next();
  return Readable.from(
    (async function* () {
      try {
        if (header !== '') yield header;
        for (let next = first; !next.done; next = await chunks.next()) {
          if (next.value !== '') yield next.value;
        }
      } finally {
        await chunks.return?.();
      }
    })(),
    { objectMode: false },
  );
}

type TicketExportQuery = TicketFilter & { format?: ExportFormat | undefined; cursor?: string | undefined };

/**
 * The headers of a ticket export, as its GET would send them now: the cursor checked and the
 * horizon read (one statement), no ticket read and no slot taken. For HEAD.
 */
export async function ticketExportHeaders(
  db: Db,
  principal: Principal,
  query: TicketExportQuery,
): Promise<ExportHeaders> {
  const { format = 'ndjson', cursor, ...filter } = query;
  const list = `export:tickets:${principal.agentId}:${JSON.stringify(filter)}`;
  const from = resumeFrom(list, cursor);
  refuseUnstorableText(filter);
  const window = windowOf(from, await repo.exportHorizon(db));
  return exportHeaders(list, 'tickets', format, window);
}

export async function exportTickets(
  db: Db,
  principal: Principal,
  query: TicketExportQuery,
  reader: repo.BatchReader = repo.readAtOnce,
): Promise<ExportStream> {
  const { format = 'ndjson', cursor, ...filter } = query;
  const list = `export:tickets:${principal.agentId}:${JSON.stringify(filter)}`;
  const from = resumeFrom(list, cursor);
  refuseUnstorableText(filter);
  const access = await loadTicketAccess(db, principal);
  const horizon = await repo.exportHorizon(db);
  const window = windowOf(from, horizon);
  const batches = repo.ticketBatches(
    db,
    access,
    filter,
    window,
    format === 'import' ? HISTORY_BATCH : BATCH,
    reader,
  );
  async function* encode() {
    for await (const rows of batches) {
      if (format === 'import') {
        const histories = await reader(() => repo.ticketHistories(db, rows));
        yield ndjson(histories.flatMap(ticketRecords));
      } else if (format === 'csv') {
        let out = '';
        for (const row of rows) out += ticketCsvRow(toListedTicket(row));
        yield out;
      } else {
        yield ndjson(rows.map(toListedTicket));
      }
    }
  }
  return {
    ...exportHeaders(list, 'tickets', format, window),
    body: await startedStream(format === 'csv' ? csvLine(TICKET_COLUMNS) : '', encode()),
  };
}

interface ContactExportQuery {
  format?: ExportFormat | undefined;
  cursor?: string | undefined;
  q?: string | undefined;
  updated_from?: string | undefined;
}

async function contactExportPlan(db: Db, principal: Principal, query: ContactExportQuery) {
  const { format = 'ndjson', cursor, updated_from, ...filter } = query;
  const list = `export:contacts:${principal.agentId}:${JSON.stringify({ ...filter, updated_from })}`;
  const resumed = resumeFrom(list, cursor);
  refuseUnstorableText(filter);
  const from = resumed ?? (updated_from === undefined ? null : new Date(updated_from));
  const window = windowOf(from, await repo.exportHorizon(db));
  return { format, filter, window, headers: exportHeaders(list, 'contacts', format, window) };
}

/** The headers of a contact export, as its GET would send them now; no contact read. For HEAD. */
export async function contactExportHeaders(
  db: Db,
  principal: Principal,
  query: ContactExportQuery,
): Promise<ExportHeaders> {
  return (await contactExportPlan(db, principal, query)).headers;
}

export async function exportContacts(
  db: Db,
  principal: Principal,
  query: ContactExportQuery,
  reader: repo.BatchReader = repo.readAtOnce,
): Promise<ExportStream> {
  const { format, filter, window, headers } = await contactExportPlan(db, principal, query);
  const batches = repo.contactBatches(db, filter, window, BATCH, reader);
  async function* encode() {
    for await (const rows of batches) {
      const contacts = rows.map(toContact);
      if (format === 'import') yield ndjson(contacts.map(contactRecord));
      else if (format === 'csv') yield contacts.map(contactCsvRow).join('');
      else yield ndjson(contacts);
    }
  }
  return {
    ...headers,
    body: await startedStream(format === 'csv' ? csvLine(CONTACT_COLUMNS) : '', encode()),
  };
}

function exportHeaders(
  list: string,
  what: 'tickets' | 'contacts',
  format: ExportFormat,
  window: repo.Window,
): ExportHeaders {
  return {
    nextCursor: encodeCursor(list, [window.to.toISOString()]),
    fileName: fileName(what, format, window.to),
    contentType: format === 'csv' ? CSV_CONTENT_TYPE : NDJSON_CONTENT_TYPE,
  };
}

function fileName(what: string, format: ExportFormat, until: Date): string {
  const stamp = until.toISOString().replace(/[:.]/g, '-');
  const suffix = format === 'csv' ? 'csv' : format === 'import' ? 'import.ndjson' : 'ndjson';
  return `deskroute-${what}-${stamp}.${suffix}`;
}
