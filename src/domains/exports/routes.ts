import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { principalOf } from '../../plugins/auth.ts';
import { sendHeadersOnly } from '../../plugins/head.ts';
import { problems } from '../../plugins/openapi.ts';
import { assertExportRoom, cutWhenStalled, ExportSlots, takeExportSlot } from '../reports/csv.ts';
import type { BatchReader } from './repository.ts';
import { ContactExportQuery, TicketExportQuery } from './schemas.ts';
import {
  contactExportHeaders,
  type ExportHeaders,
  type ExportStream,
  exportContacts,
  exportTickets,
  ticketExportHeaders,
} from './service.ts';

const tags = ['exports'];

const HEADERS = {
  'Content-Disposition': {
    type: 'string',
    description: 'attachment; filename="deskroute-<tickets|contacts>-<horizon>.<ndjson|import.ndjson|csv>"',
    'x-required': true,
  },
  'Export-Next-Cursor': {
    type: 'string',
    description:
      'Pass as `cursor` (same filters) to get only what changed after this export. Sent before the body: it names the horizon the export stops at, not its last row.',
    'x-required': true,
  },
};

const CONTENT = (line: string) => ({
  'application/x-ndjson': {
    schema: {
      type: 'string',
      description: `One JSON value per line (LF): ${line}`,
    },
  },
  'text/csv': {
    schema: {
      type: 'string',
      description:
        "A header row, then one row per item (CRLF). Lists are joined with ;. Text that a spreadsheet would read as a formula (starting with = + - @, their full-width forms, tab, CR or LF) is prefixed with ', and so is such a character after a ;, tab or line break inside a cell, where a spreadsheet splitting on ; starts a new cell (OWASP), as in the report CSVs.",
    },
  },
});

const WINDOW =
  'Streamed in batches of the database, at the pace the client reads, in the order they last changed in this help desk (tickets: when they changed here, whatever updated_at an import gave them; contacts: updated_at); a client that hangs up stops the export. Only what changed before a safe horizon is exported (every change stamped before it has committed), so a change committed late is never skipped: the Export-Next-Cursor header, sent before the body, resumes from that horizon and gives each change once, in the state it has when read. At most EXPORT_MAX_OPEN exports are in flight at once: one more answers 503 export_busy with Retry-After. A client that takes no data for EXPORT_STALL_TIMEOUT_MS is cut.';

function sendHeaders(reply: FastifyReply, stream: ExportHeaders) {
  return reply
    .type(stream.contentType)
    .header('content-disposition', `attachment; filename="${stream.fileName}"`)
    .header('export-next-cursor', stream.nextCursor);
}

export const exportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;
  // In flight, from the request to the client's last byte: a stalled client holds no connection
  // but two batches of memory and a socket, so they are capped as the report CSVs are (their
  // own EXPORT_MAX_OPEN, apart from the reports'). Each batch read takes one of the slots of
  // the exports reading the database (app.exportReads, shared with the report CSVs' queries,
  // each waiting in order of asking), waiting for one rather than refused (a batch is a short
  // read), so downloads at full speed cannot take the pool from the API.
  const open = new ExportSlots(config.exports.maxOpen);

  async function exporting(
    request: FastifyRequest,
    reply: FastifyReply,
    make: (reader: BatchReader) => Promise<ExportStream>,
    describe: () => Promise<ExportHeaders>,
  ): Promise<FastifyReply> {
    if (request.method === 'HEAD') {
      // What a GET would answer now (503 when every slot is taken), taking no slot and reading
      // no row: the cursor checked and the horizon read, nothing more.
      assertExportRoom(open, 'being downloaded');
      return sendHeadersOnly(sendHeaders(reply, await describe()));
    }
    const release = takeExportSlot(open, 'being downloaded');
    // Its client may have gone before the handler ran: then 'close' has been and gone.
    if (reply.raw.destroyed) {
      release();
      return reply;
    }
    const gone = new AbortController();
    reply.raw.once('close', () => {
      release();
      gone.abort(new Error('the client went away'));
    });
    let waiting: (waiting: boolean) => void = () => {};
    const reader: BatchReader = async (read) => {
      waiting(true);
      try {
        // A read whose client goes away while it waits for its turn leaves the queue, reading nothing.
        const done = await app.exportReads.take(gone.signal).catch(() => null);
        if (!done) return [];
        try {
          return gone.signal.aborted ? [] : await read();
        } finally {
          done();
        }
      } finally {
        waiting(false);
      }
    };
    let stream: ExportStream;
    try {
      stream = await make(reader);
    } catch (error) {
      release();
      throw error;
    }
    waiting = cutWhenStalled(reply, config.exports.stallTimeoutMs);
    return sendHeaders(reply, stream).send(stream.body);
  }

  app.get(
    '/v1/exports/tickets',
    {
      schema: {
        operationId: 'exportTickets',
        tags,
        summary: 'Export tickets',
        description: `The tickets you may see (as GET /v1/tickets shows them), with the filters of the ticket list. ${WINDOW} format=import writes each ticket as a ticket record (its state at creation) followed by its timeline (message, status, transfer, assignment, tags, call, chat, rating records) rebuilt from its history, external ids being this help desk's ids: import contacts first, and agents and departments under the same ids. A message's files are named by their attachment ids (\`attachments\`); upload them to the other help desk before the import (docs/import.md, "Attachments": \`npm run upload:import-files -- --from-records\`).`,
        querystring: TicketExportQuery,
        response: {
          200: {
            description: 'The tickets, one per line or row.',
            headers: HEADERS,
            content: CONTENT('a Ticket (format=ndjson) or an import record (format=import).'),
          },
          ...problems(),
        },
      },
    },
    async (request, reply) =>
      exporting(
        request,
        reply,
        (reader) => exportTickets(db, principalOf(request), request.query, reader),
        () => ticketExportHeaders(db, principalOf(request), request.query),
      ),
  );

  app.get(
    '/v1/exports/contacts',
    {
      schema: {
        operationId: 'exportContacts',
        tags,
        summary: 'Export contacts',
        description: `Every agent may export contacts (as GET /v1/contacts/{id} shows them), filtered like the contact list. ${WINDOW} format=import writes contact records of the import format.`,
        querystring: ContactExportQuery,
        response: {
          200: {
            description: 'The contacts, one per line or row.',
            headers: HEADERS,
            content: CONTENT('a Contact (format=ndjson) or a contact record (format=import).'),
          },
          ...problems(),
        },
      },
    },
    async (request, reply) =>
      exporting(
        request,
        reply,
        (reader) => exportContacts(db, principalOf(request), request.query, reader),
        () => contactExportHeaders(db, principalOf(request), request.query),
      ),
  );
};
