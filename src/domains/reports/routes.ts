import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { ExportSlots, sendCsvReport, wantsCsv } from './csv.ts';
import {
  ColumnCatalogueSchema,
  LeaderboardQuery,
  LeaderboardSchema,
  ReportColumnSchema,
  ReportQuery,
  ReportRowSchema,
  ReportSchema,
  ReportTotalsSchema,
} from './schemas.ts';
import { columnCatalogue, jsonReport, leaderboard, type ReportKind, resolveReport } from './service.ts';

export const reportSchemas = [
  ReportColumnSchema,
  ReportRowSchema,
  ReportTotalsSchema,
  ReportSchema,
  ColumnCatalogueSchema,
  LeaderboardSchema,
];

const tags = ['reports'];

const CSV_SCHEMA = {
  type: 'string',
  description:
    "A header row of column labels (and, with unit_row=true, a row of units), then one row per group. Times in seconds. Text that a spreadsheet would read as a formula (starting with = + - @, their full-width forms, tab, CR or LF) is prefixed with ', and so is such a character after a ;, tab or line break inside a cell, where a spreadsheet splitting on ; starts a new cell (OWASP); numbers are plain numbers.",
};

const KINDS: { kind: ReportKind; title: string; by: string }[] = [
  { kind: 'departments', title: 'Departments', by: 'department' },
  { kind: 'agents', title: 'Agents', by: 'agent' },
  { kind: 'channels', title: 'Channels', by: 'channel' },
  { kind: 'tags', title: 'Tags', by: 'tag' },
];

const VISIBILITY =
  'Owners and admins see every department; an agent sees the figures of the departments they belong to (any role) and of tickets in no department (another department answers 403). A department_id or agent_id that never existed answers 404; a deleted one keeps its past figures, under the name it had. A read-only API token is enough.';

/** Where the rows go in the serialized envelope (a JSON string's quotes are escaped: never there). */
const NO_ROWS = '"data":[]';

/**
 * The JSON report as bytes, sent as such: handed a string, fastify would measure its UTF-8
 * length and then encode it again. The envelope is serialized by the route's own serializer
 * with no rows, and each row's JSON text (jsonReport: rowJsonWriter, in the row schema's order
 * and form) is encoded at once and put in its data array. Serialized whole, the 930 rows of the
 * last 30 days by tag became one string of 1.9 MB built from some 100,000 pieces, two-byte
 * throughout for the ’ of a column description, which Buffer.from took ~16 ms to flatten and
 * encode (a fifth of the request); row by row, each string is small and still in cache.
 */
function reportBody(reply: FastifyReply, report: Awaited<ReturnType<typeof jsonReport>>): Buffer {
  const serialize = reply.getSerializationFunction('200', 'application/json');
  if (!serialize) throw new Error('the report route has no serializer for its JSON');
  const envelope = serialize(report.envelope);
  const at = envelope.indexOf(NO_ROWS);
  if (at < 0) throw new Error('the report envelope has no data array');
  const parts: Buffer[] = [Buffer.from(envelope.slice(0, at + NO_ROWS.length - 1))];
  report.rows.forEach((row, i) => {
    parts.push(Buffer.from(i === 0 ? row : `,${row}`));
  });
  parts.push(Buffer.from(envelope.slice(at + NO_ROWS.length - 1)));
  return Buffer.concat(parts);
}

export const reportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;
  const defaults = { timezone: config.timezone };
  const keeper = app.reportKeeper;
  const exportLimits = {
    keeper,
    queries: new ExportSlots(config.exports.maxConcurrent),
    reads: app.exportReads,
    open: new ExportSlots(config.exports.maxOpen),
    stallTimeoutMs: config.exports.stallTimeoutMs,
  };

  app.get(
    '/v1/reports/columns',
    {
      schema: {
        operationId: 'listReportColumns',
        tags,
        summary: 'List the columns reports can have',
        description:
          'Every column with its key, label, unit and definition (docs/metrics.md has the details).',
        response: { 200: ref(ColumnCatalogueSchema) },
      },
    },
    async () => ({ data: columnCatalogue() }),
  );

  for (const { kind, title, by } of KINDS) {
    const summary = `${title} report`;
    const description = `Figures by ${by} by default; group_by any of time, department, agent, channel and tag (a ticket with two tags counts in both; totals count each figure once), with an interval for a time series. Counts come from counters kept with every ticket event, exact in any time zone. ${VISIBILITY}`;

    app.get(
      `/v1/reports/${kind}`,
      {
        schema: {
          operationId: `get${title}Report`,
          tags,
          summary,
          description: `${description} Answers CSV instead of JSON when Accept prefers text/csv (or use /v1/reports/${kind}.csv).`,
          querystring: ReportQuery,
          response: {
            200: {
              description:
                'The report: JSON rows with metadata and totals, or CSV (then with Content-Disposition naming the file).',
              headers: {
                'Content-Disposition': {
                  ...responseHeaders.contentDisposition['Content-Disposition'],
                  'x-required': false,
                },
              },
              content: {
                'application/json': { schema: ref(ReportSchema) },
                'text/csv': { schema: CSV_SCHEMA },
              },
            },
            ...problems(403, 404),
          },
        },
      },
      async (request, reply) => {
        const resolved = await resolveReport(db, principalOf(request), kind, request.query, defaults);
        if (wantsCsv(request.headers.accept)) {
          return sendCsvReport(reply, db, resolved, request.query.unit_row ?? false, exportLimits);
        }
        const body = reportBody(reply, await jsonReport(db, resolved, keeper));
        return reply.type('application/json; charset=utf-8').send(body);
      },
    );

    app.get(
      `/v1/reports/${kind}.csv`,
      {
        schema: {
          operationId: `export${title}ReportCsv`,
          tags,
          summary: `${summary} as CSV`,
          description: `${description} The whole report, streamed, with Content-Disposition naming the file; limit and cursor do not apply. At most EXPORT_MAX_CONCURRENT report CSVs are prepared at once: one more answers 503 export_busy with Retry-After (ticket and contact exports streaming never cause it: a report's query waits its turn among their batches). HEAD answers the headers and computes nothing. A client that takes no data for EXPORT_STALL_TIMEOUT_MS is cut.`,
          querystring: ReportQuery,
          response: {
            200: {
              description: 'The report as CSV.',
              headers: responseHeaders.contentDisposition,
              content: { 'text/csv': { schema: CSV_SCHEMA } },
            },
            ...problems(403, 404),
          },
        },
      },
      async (request, reply) => {
        const resolved = await resolveReport(db, principalOf(request), kind, request.query, defaults);
        return sendCsvReport(reply, db, resolved, request.query.unit_row ?? false, exportLimits);
      },
    );
  }

  app.get(
    '/v1/reports/agents/leaderboard',
    {
      schema: {
        operationId: 'getAgentLeaderboard',
        tags,
        summary: 'Agents ranked by answers, resolved tickets and positive ratings',
        description: `Ranked by answers, then resolved tickets, then positive ratings (default range: last 30 days). ${VISIBILITY}`,
        querystring: LeaderboardQuery,
        response: { 200: ref(LeaderboardSchema), ...problems(403, 404) },
      },
    },
    async (request) => leaderboard(db, principalOf(request), request.query, defaults),
  );
};
