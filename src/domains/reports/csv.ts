import { once } from 'node:events';
import { format } from 'fast-csv';
import type { FastifyReply } from 'fastify';
import type { Db } from '../../db/database.ts';
import { csvFileName, type ResolvedReport, reportFields, streamReport } from './service.ts';

export const CSV_CONTENT_TYPE = 'text/csv; charset=utf-8';

/** Whether the Accept header prefers CSV to JSON (by q-value, then by order). */
export function wantsCsv(accept: string | undefined): boolean {
  if (!accept) return false;
  let best: { type: string; q: number } | undefined;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.trim().toLowerCase().split(';');
    if (type !== 'text/csv' && type !== 'application/json') continue;
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (!best || q > best.q) best = { type, q };
  }
  return best?.type === 'text/csv';
}

/**
 * Sends a report as CSV, streamed from a database cursor through fast-csv with backpressure:
 * the next batch is fetched only when the client has taken the previous one, and a client that
 * hangs up stops the query. The query runs before any byte is sent, so a report that cannot be
 * computed still answers problem+json; a failure mid-stream cuts the response short (curl -f
 * then reports a transfer error instead of saving a truncated file as complete).
 */
export async function sendCsvReport(reply: FastifyReply, db: Db, resolved: ResolvedReport, unitRow: boolean) {
  const fields = reportFields(resolved.spec);
  const csv = format<(string | number)[], (string | number)[]>({ headers: false });
  csv.write(fields.map((f) => f.label));
  if (unitRow) csv.write(fields.map((f) => f.unit ?? ''));

  const abort = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort(new Error('the client went away'));
  });

  const started = Promise.withResolvers<void>();
  let begun = false;
  const begin = () => {
    if (!begun) {
      begun = true;
      started.resolve();
    }
  };
  streamReport(db, resolved, {
    signal: abort.signal,
    onRows: async (rows) => {
      begin();
      for (const row of rows) {
        if (!csv.write(row)) await once(csv, 'drain', { signal: abort.signal });
      }
    },
  })
    .then(() => {
      begin();
      csv.end();
    })
    .catch((error: unknown) => {
      if (!begun) {
        begun = true;
        started.reject(error);
      } else {
        csv.destroy(error instanceof Error ? error : new Error(String(error)));
      }
    });
  await started.promise;
  return reply
    .type(CSV_CONTENT_TYPE)
    .header('content-disposition', `attachment; filename="${csvFileName(resolved)}"`)
    .send(csv);
}
