import { once } from 'node:events';
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { format } from 'fast-csv';
import type { FastifyReply } from 'fastify';
import type { Db } from '../../db/database.ts';
import { unavailable } from '../../errors.ts';
import { sendHeadersOnly } from '../../plugins/head.ts';
import {
  csvFileName,
  type ReportKeeper,
  type ResolvedReport,
  reportFields,
  streamReport,
} from './service.ts';

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
// The same inside a cell, after a character some spreadsheet starts a new cell or row at: `;`
// (Excel's list separator for CSV in much of Europe), tab (an importer's separator) and line
// breaks. Such a reader does not honour our quotes there (a quote counts only at the start of one
// of its cells), so `Sam;=cmd|...;` opens as a cell `=cmd|...`. The formula character gets the `'`,
// also behind quotes (`Sam;"=cmd|..."`: that reader takes a quote opening its cell as quoting).
const FORMULA_AFTER_SEPARATOR = /([;\t\r\n][\s"]*)([=+\-@\uFF1D\uFF0B\uFF0D\uFF20])/gu;
const PLAIN_NUMBER = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/**
 * A text cell made safe to open in a spreadsheet: a cell that would start a formula gets a leading
 * `'`, as OWASP recommends, so it shows as the text it is, and so does a formula character after a
 * `;`, tab or line break inside it (FORMULA_AFTER_SEPARATOR). Other text is left alone.
 */
export function formulaSafe(text: string): string {
  const inner = text.replace(FORMULA_AFTER_SEPARATOR, "$1'$2");
  return FORMULA_START.test(inner) ? `'${inner}` : inner;
}

/** A number cell: numbers (negative ones too) stay numbers; anything else is treated as text. */
export function numberCell(value: string | number): string | number {
  if (typeof value === 'number' || value === '' || PLAIN_NUMBER.test(value)) return value;
  return formulaSafe(value);
}

/**
 * A budget of slots (exports reading the database, exports in flight): `tryTake()` is refused
 * when all are taken, `take()` waits for one, in order of asking (so report queries and download
 * batches that share the read slots each wait behind what came first, never for ever).
 */
export class ExportSlots {
  readonly max: number;
  #taken = 0;
  #waiting: (() => void)[] = [];

  constructor(max: number) {
    this.max = max;
  }

  /** A release function, or null when every slot is taken. */
  tryTake(): (() => void) | null {
    if (this.#taken >= this.max) return null;
    this.#taken++;
    return this.#releaser();
  }

  /**
   * A release function, once a slot is free. A waiter whose `signal` aborts leaves the queue
   * (rejected with the signal's reason): a client gone holds no place.
   */
  take(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const now = this.tryTake();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiting = this.#waiting.filter((w) => w !== grant);
        reject(signal?.reason);
      };
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.#releaser());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  /** Slots taken, and waiters (for tests and metrics). */
  get usage(): { taken: number; waiting: number } {
    return { taken: this.#taken, waiting: this.#waiting.length };
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The slot goes straight to whoever waits (still taken), else back.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#taken--;
    };
  }
}

export interface ExportLimits {
  /**
   * Report CSVs being prepared (EXPORT_MAX_CONCURRENT): one more is refused. Counted apart from
   * `reads`, so that data exports' batches, which wait their turn, never get a report refused.
   */
  queries: ExportSlots;
  /**
   * Exports reading the database at once (app.exportReads, shared with the data exports'
   * batches): a report's query waits for one in order of asking (batches are short reads).
   */
  reads: ExportSlots;
  /**
   * Exports in flight, from their query to the client's last byte: each holds a temporary file
   * and a descriptor for as long as its client reads, however slowly.
   */
  open: ExportSlots;
  /** A client that takes no data for this long is cut. */
  stallTimeoutMs: number;
  /** Keeps the percentiles of the reports exported (cache.ts). */
  keeper?: ReportKeeper;
}

// Seconds a refused export is told to wait: a report's query usually takes a few.
const EXPORT_BUSY_RETRY_SECONDS = 5;

const exportBusy = (slots: ExportSlots, doing: string) =>
  unavailable(
    'export_busy',
    `${slots.max} exports are ${doing} already; try again shortly.`,
    EXPORT_BUSY_RETRY_SECONDS,
  );

/** A slot of `slots`, or 503 export_busy (Retry-After) saying that `max` exports are `doing`. */
export function takeExportSlot(slots: ExportSlots, doing: string): () => void {
  const release = slots.tryTake();
  if (!release) throw exportBusy(slots, doing);
  return release;
}

/**
 * The 503 takeExportSlot would throw now, without taking a slot: a HEAD answers what its GET
 * would, holding nothing.
 */
export function assertExportRoom(slots: ExportSlots, doing: string): void {
  if (slots.usage.taken >= slots.max) throw exportBusy(slots, doing);
}

/**
 * Cuts a download (an export, a report CSV, an attachment or raw message) whose client takes no
 * data for `stallTimeoutMs` while data waits for it, with a connection reset (a FIN queued
 * behind data the client never reads would free nothing). The
 * function returned pauses the clock while the export waits for the database instead, which is
 * no fault of the client's. (app.inject has no socket to watch: nothing is cut there.)
 */
export function cutWhenStalled(reply: FastifyReply, stallTimeoutMs: number): (waiting: boolean) => void {
  if (!(reply.raw.socket instanceof Socket)) return () => {};
  reply.raw.setTimeout(stallTimeoutMs, () => {
    reply.log.warn({ stallTimeoutMs, url: reply.request.url }, 'download cut: its client took no data');
    reply.raw.socket?.resetAndDestroy();
  });
  return (waiting) => {
    if (!reply.raw.destroyed) reply.raw.setTimeout(waiting ? 0 : stallTimeoutMs);
  };
}

/**
 * Sends a report as CSV. The report is read through a database cursor at the database's pace
 * into an unnamed temporary file (an export slot held meanwhile), and the response reads that
 * file at the client's pace, following the writes: no database connection ever waits for a
 * client, so slow or stalled readers cannot starve the API (on PGlite, whose one connection
 * serves every request, a reader holding it would stop everything), and the first bytes still
 * leave as soon as the first rows are in: a report whose rows go period by period is computed a
 * few periods at a time (streamReportRows), so they come after its first chunk's work rather
 * than the whole report's. A client that hangs up stops the query. A client that takes no data
 * for `stallTimeoutMs` while some waits for it is cut with a connection reset.
 * The (first) statement answers before any byte is sent, so a report that cannot be computed
 * still answers problem+json: sending the status and header row earlier would gain a fraction
 * of a second for chunked reports and lose that. A failure mid-stream, in a later chunk too,
 * cuts the response short (curl -f then reports a transfer error instead of saving a truncated
 * file as complete).
 */
export async function sendCsvReport(
  reply: FastifyReply,
  db: Db,
  resolved: ResolvedReport,
  unitRow: boolean,
  limits: ExportLimits,
) {
  const headers = () =>
    reply
      .type(CSV_CONTENT_TYPE)
      .header('content-disposition', `attachment; filename="${csvFileName(resolved)}"`);
  if (reply.request.method === 'HEAD') {
    // The headers alone and the 503 a GET would meet now, nothing computed, no slot taken.
    assertExportRoom(limits.open, 'being downloaded');
    assertExportRoom(limits.queries, 'being prepared');
    return sendHeadersOnly(headers());
  }
  const releaseOpen = takeExportSlot(limits.open, 'being downloaded');
  let release: () => void;
  try {
    release = takeExportSlot(limits.queries, 'being prepared');
  } catch (error) {
    releaseOpen();
    throw error;
  }
  let spool: Spool;
  try {
    spool = await Spool.create();
  } catch (error) {
    release();
    releaseOpen();
    throw error;
  }
  const abort = new AbortController();
  const started = Promise.withResolvers<void>();
  const spooled = (async () => {
    // A read slot, in turn with the data exports' batches; a client gone meanwhile leaves the queue.
    const read = await limits.reads.take(abort.signal);
    try {
      await spoolReport(spool, db, resolved, unitRow, abort.signal, () => started.resolve(), limits.keeper);
    } finally {
      read();
    }
  })()
    .then(
      () => {
        started.resolve(); // an empty report: the header alone
        spool.end();
      },
      (error: unknown) => {
        const failure = error instanceof Error ? error : new Error(String(error));
        started.reject(failure); // no effect once started: the reader then cuts the response
        spool.end(failure);
      },
    )
    .finally(release);
  // However the response ends (sent, failed, cut, or the client gone), the query stops and the
  // file goes with it.
  const onClose = () => {
    if (!reply.raw.writableFinished) abort.abort(new Error('the client went away'));
    void spooled.finally(() => spool.file.close().catch(() => {})).finally(releaseOpen);
  };
  if (reply.raw.destroyed) onClose();
  else reply.raw.once('close', onClose);
  await started.promise;
  // Socket inactivity while data waits for the client; paused while the reader waits for the
  // spool (that is, the database) instead.
  const body = spool.reader(cutWhenStalled(reply, limits.stallTimeoutMs));
  return headers().send(body);
}

/** Writes a report's CSV into the spool; `onStarted` once its first statement has answered. */
async function spoolReport(
  spool: Spool,
  db: Db,
  resolved: ResolvedReport,
  unitRow: boolean,
  signal: AbortSignal,
  onStarted: () => void,
  keeper: ReportKeeper | undefined,
) {
  const fields = reportFields(resolved.spec);
  const cell = fields.map((f) =>
    f.type === 'number' ? numberCell : (v: string | number) => formulaSafe(String(v)),
  );
  const csv = format<(string | number)[], (string | number)[]>({ headers: false });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      spool.append(chunk).then(() => callback(), callback);
    },
  });
  const written = pipeline(csv, sink);
  try {
    csv.write(fields.map((f) => formulaSafe(f.label)));
    if (unitRow) csv.write(fields.map((f) => formulaSafe(f.unit ?? '')));
    await streamReport(db, resolved, {
      signal,
      onStarted,
      keeper,
      onRows: async (rows) => {
        for (const row of rows) {
          if (!csv.write(row.map((value, i) => cell[i]!(value)))) await once(csv, 'drain', { signal });
        }
      },
    });
    csv.end();
    await written;
  } catch (error) {
    csv.destroy();
    await written.catch(() => {});
    throw error;
  }
}

/**
 * A CSV in an unnamed temporary file (removed from its folder at once: nothing is left on disk
 * whatever happens), written at one pace and read at another.
 */
class Spool {
  readonly file: FileHandle;
  #written = 0;
  #end: 'writing' | 'done' | Error = 'writing';
  #changed = Promise.withResolvers<void>();

  private constructor(file: FileHandle) {
    this.file = file;
  }

  static async create(): Promise<Spool> {
    const dir = await mkdtemp(path.join(tmpdir(), 'deskroute-export-'));
    try {
      return new Spool(await open(path.join(dir, 'report.csv'), 'w+'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async append(chunk: Buffer) {
    for (let offset = 0; offset < chunk.length; ) {
      const { bytesWritten } = await this.file.write(chunk, offset, chunk.length - offset, this.#written);
      offset += bytesWritten;
      this.#written += bytesWritten;
    }
    this.#notify();
  }

  end(error?: Error) {
    this.#end = error ?? 'done';
    this.#notify();
  }

  #notify() {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  /**
   * The file from its start, following the writes to their end (or their failure, which
   * destroys the stream). `onWait(true)` while it waits for more to be written.
   */
  reader(onWait: (waiting: boolean) => void): Readable {
    const spool = this;
    const cursor = { position: 0 };
    return new Readable({
      read(size) {
        spool.#readInto(this, cursor, size, onWait).catch((error: Error) => this.destroy(error));
      },
    });
  }

  async #readInto(
    stream: Readable,
    cursor: { position: number },
    size: number,
    onWait: (waiting: boolean) => void,
  ) {
    for (;;) {
      const available = this.#written - cursor.position;
      if (available > 0) {
        const buffer = Buffer.allocUnsafe(Math.min(available, Math.max(size, 65_536)));
        const { bytesRead } = await this.file.read(buffer, 0, buffer.length, cursor.position);
        cursor.position += bytesRead;
        stream.push(buffer.subarray(0, bytesRead));
        return;
      }
      if (this.#end instanceof Error) throw this.#end;
      if (this.#end === 'done') {
        stream.push(null);
        return;
      }
      onWait(true);
      await this.#changed.promise;
      onWait(false);
    }
  }
}
