import { once } from 'node:events';
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { format } from 'fast-csv';
import type { FastifyReply } from 'fastify';
import type { Db } from '../../db/database.ts';
import { unavailable } from '../../errors.ts';
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

// A text cell that a spreadsheet would read as a formula (OWASP "CSV Injection"): one that starts
// with = + - @, their full-width forms (some spreadsheets honour those too), or tab, CR or LF, which
// importers trim, leaving whatever follows in first place. Leading white space is looked through
// for the same reason. https://owasp.org/www-community/attacks/CSV_Injection
const FORMULA_START = /^(?:[\t\r\n]|\s*[=+\-@\uFF1D\uFF0B\uFF0D\uFF20])/u;
const PLAIN_NUMBER = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/**
 * A text cell made safe to open in a spreadsheet: a cell that would start a formula gets a leading
 * `'`, as OWASP recommends, so it shows as the text it is. Other text is left alone.
 */
export function formulaSafe(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

/** A number cell: numbers (negative ones too) stay numbers; anything else is treated as text. */
export function numberCell(value: string | number): string | number {
  if (typeof value === 'number' || value === '' || PLAIN_NUMBER.test(value)) return value;
  return formulaSafe(value);
}

/** A budget of CSV exports that may read the database at once; the rest are refused, not queued. */
export class ExportSlots {
  readonly max: number;
  #taken = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** A release function, or null when every slot is taken. */
  tryTake(): (() => void) | null {
    if (this.#taken >= this.max) return null;
    this.#taken++;
    let released = false;
    return () => {
      if (!released) {
        released = true;
        this.#taken--;
      }
    };
  }
}

export interface ExportLimits {
  slots: ExportSlots;
  /** A client that takes no data for this long is cut. */
  stallTimeoutMs: number;
}

// Seconds a refused export is told to wait: a report's query usually takes a few.
const EXPORT_BUSY_RETRY_SECONDS = 5;

/**
 * Sends a report as CSV. The report is read through a database cursor at the database's pace into
 * a temporary file (an export slot held meanwhile), then the file is sent: no database connection
 * ever waits for a client, so slow or stalled readers cannot starve the API (on PGlite, whose one
 * connection serves every request, a reader holding it would stop everything). A client that
 * hangs up while the report is read stops the query. Once sending, a client that takes no data for
 * `stallTimeoutMs` is cut with a connection reset. The query runs before any byte is sent, so a
 * report that cannot be computed still answers problem+json, and Content-Length tells the client
 * whether the file it got is whole.
 */
export async function sendCsvReport(
  reply: FastifyReply,
  db: Db,
  resolved: ResolvedReport,
  unitRow: boolean,
  limits: ExportLimits,
) {
  const release = limits.slots.tryTake();
  if (!release) {
    throw unavailable(
      'export_busy',
      `${limits.slots.max} CSV exports are being prepared already; try again shortly.`,
      EXPORT_BUSY_RETRY_SECONDS,
    );
  }
  const abort = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) abort.abort(new Error('the client went away'));
  };
  reply.raw.on('close', onClose);
  let file: FileHandle;
  try {
    file = await spoolReport(db, resolved, unitRow, abort.signal);
  } finally {
    release();
    reply.raw.off('close', onClose);
  }
  try {
    abort.signal.throwIfAborted();
    const { size } = await file.stat();
    // However the response ends (sent, cut, or the client gone), the file goes with it.
    reply.raw.once('close', () => {
      file.close().catch(() => {});
    });
    // Socket inactivity: no byte taken by the client's side while the response waits to be sent.
    reply.raw.setTimeout(limits.stallTimeoutMs, () => {
      reply.log.warn({ stallTimeoutMs: limits.stallTimeoutMs }, 'CSV export cut: its client took no data');
      // A reset, not a FIN queued behind data the client never reads: frees both ends now.
      reply.raw.socket?.resetAndDestroy();
    });
    return reply
      .type(CSV_CONTENT_TYPE)
      .header('content-length', size)
      .header('content-disposition', `attachment; filename="${csvFileName(resolved)}"`)
      .send(file.createReadStream({ start: 0 }));
  } catch (error) {
    await file.close();
    throw error;
  }
}

/** The whole CSV of a report in an unnamed temporary file, open for reading from the start. */
async function spoolReport(db: Db, resolved: ResolvedReport, unitRow: boolean, signal: AbortSignal) {
  const fields = reportFields(resolved.spec);
  const cell = fields.map((f) =>
    f.type === 'number' ? numberCell : (v: string | number) => formulaSafe(String(v)),
  );
  const dir = await mkdtemp(path.join(tmpdir(), 'deskroute-export-'));
  let file: FileHandle;
  try {
    file = await open(path.join(dir, 'report.csv'), 'w+');
  } finally {
    // The open handle keeps the data: nothing is left on disk, whatever happens next.
    await rm(dir, { recursive: true, force: true });
  }
  const csv = format<(string | number)[], (string | number)[]>({ headers: false });
  // Not file.createWriteStream(): a stream that must leave the file open keeps a reference that
  // makes file.close() wait forever (Node 24), so the descriptor would leak.
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      file.write(chunk).then(() => callback(), callback);
    },
  });
  const written = pipeline(csv, sink);
  try {
    csv.write(fields.map((f) => formulaSafe(f.label)));
    if (unitRow) csv.write(fields.map((f) => formulaSafe(f.unit ?? '')));
    await streamReport(db, resolved, {
      signal,
      onRows: async (rows) => {
        for (const row of rows) {
          if (!csv.write(row.map((value, i) => cell[i]!(value)))) await once(csv, 'drain', { signal });
        }
      },
    });
    csv.end();
    await written;
    return file;
  } catch (error) {
    csv.destroy();
    await written.catch(() => {});
    await file.close();
    throw error;
  }
}
