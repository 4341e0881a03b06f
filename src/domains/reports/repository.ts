import { CompiledQuery, type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import { arrayRows, preparedWhileRecent } from '../../db/prepared.ts';
import type { Database } from '../../db/types.ts';
import { CHANNELS } from '../tickets/schemas.ts';
import {
  cacheScope,
  countScope,
  KEPT_FOR,
  offUtcDays,
  settled,
  settledCounts,
  takeKeepingLock,
} from './cache.ts';
import { countsAgg } from './counters.ts';
import { histogramAgg, twoStep, twoStepHistogramAgg } from './percentiles.ts';
import {
  chunkable,
  periodCtes,
  periodStartsQuery,
  piecesCte,
  reportColumns,
  reportEntitiesQuery,
  reportQuery,
  sortKeyCount,
} from './query.ts';
import { byTime, entityDims, neededSamples, type ReportSpec, type SortValue } from './spec.ts';

// The reports domain's queries, by concern: spec.ts (the report spec and the SQL every part
// shares), periods.ts (periods, pieces, ranges and time zones), counters.ts (the counter tables,
// reading them, their upkeep), percentiles.ts (medians and 90th percentiles from histograms),
// query.ts (the one report statement). This module runs that statement (pages, totals, the
// export's cursor) and answers the service's look-ups; it also re-exports what callers outside
// the domain (the scheduler through the service, seed and bench scripts, tests) use.

export {
  compactReportTables,
  countPendingEvents,
  rebuildReportCounters,
  tryReportCompactionLock,
} from './counters.ts';
export { knownTimeZones, type RangeInstants, type RangePreset, rangeInstants } from './periods.ts';
export { reportQuery, sortKeyCount } from './query.ts';
export type { Dimension, EntityDimension, Interval, ReportSpec, SortValue } from './spec.ts';

type Executor = Kysely<Database>;

/** One row of a report: the group it describes, its figures, and its sort key for cursors. */
export interface ReportRow {
  period_start: string | null;
  period_end: string | null;
  department_id: string | null;
  department_name: string | null;
  /** The department was deleted; department_name is the name it had then. */
  department_deleted: boolean;
  agent_id: string | null;
  agent_name: string | null;
  agent_deleted: boolean;
  channel: string | null;
  /** The tag; null: figures of tickets that had no tag. */
  tag: string | null;
  values: Record<string, number | null>;
  sortKey: SortValue[];
}

// The tickets' own list: a channel added there is reported without a second edit.
export { CHANNELS };

function localTime(local: unknown, offsetSeconds: unknown): string | null {
  if (typeof local !== 'string') return null;
  const offset = Number(offsetSeconds);
  const sign = offset < 0 ? '-' : '+';
  const minutes = Math.abs(offset) / 60;
  const hh = String(Math.floor(minutes / 60)).padStart(2, '0');
  const mm = String(minutes % 60).padStart(2, '0');
  return `${local}${sign}${hh}:${mm}`;
}

/**
 * Reads the given row fields of raw report rows straight into cells (an export's hot path:
 * one array per row, no intermediate objects). Null becomes ''.
 */
export function cellReader(fields: string[]): (raw: Record<string, unknown>) => (string | number)[] {
  const readers = fields.map((field): ((raw: Record<string, unknown>) => string | number) => {
    if (field === 'period_start' || field === 'period_end') {
      return (raw) => localTime(raw[`${field}_local`], raw[`${field}_offset`]) ?? '';
    }
    const column = ['department_id', 'department_name', 'agent_id', 'agent_name', 'channel', 'tag'].includes(
      field,
    )
      ? field
      : `m_${field}`;
    return (raw) => (raw[column] ?? '') as string | number;
  });
  return (raw) => readers.map((read) => read(raw));
}

export function toReportRow(spec: ReportSpec, raw: Record<string, unknown>): ReportRow {
  return reportRowReader(spec)(raw);
}

/**
 * A row of a report statement as the driver gives it: by column name, or, for a statement
 * marked arrayRows where the driver is pg, as an array in reportColumns order.
 */
export type RawReportRow = Record<string, unknown> | unknown[];

/** Where a column is in a raw row of this report: its name, or its index in an array row. */
type ColumnAt = (column: string) => string | number;

function columnsAt(spec: ReportSpec): { byName: ColumnAt; byIndex: ColumnAt } {
  const index = new Map(reportColumns(spec).map((c, i) => [c, i]));
  return {
    byName: (column) => column,
    byIndex: (column) => {
      const at = index.get(column);
      if (at === undefined) throw new Error(`report rows have no column ${column}`);
      return at;
    },
  };
}

/** Reads raw rows of this report, arrays or objects, with a reader made per column layout. */
function eitherLayout<T>(
  spec: ReportSpec,
  make: (at: ColumnAt) => (raw: never) => T,
): (raw: RawReportRow) => T {
  const { byName, byIndex } = columnsAt(spec);
  const fromObject = make(byName) as (raw: RawReportRow) => T;
  let fromArray: ((raw: RawReportRow) => T) | undefined;
  return (raw) => {
    if (!Array.isArray(raw)) return fromObject(raw);
    fromArray ??= make(byIndex) as (raw: RawReportRow) => T;
    return fromArray(raw);
  };
}

/** Reads a raw row's sort key (k0, k1, ...): what a cursor after it carries. */
export function sortKeyReader(spec: ReportSpec): (raw: RawReportRow) => SortValue[] {
  return eitherLayout(spec, (at) => {
    const keys = Array.from({ length: sortKeyCount(spec) }, (_, i) => at(`k${i}`));
    return (row: Record<string | number, unknown>) =>
      keys.map((key) => {
        const v = row[key];
        return v instanceof Date ? v.toISOString() : (v as SortValue);
      });
  });
}

const TEXT_DIMENSIONS = new Set([
  'department_id',
  'department_name',
  'agent_id',
  'agent_name',
  'channel',
  'tag',
]);

const jsonText = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : 'null');

function jsonNumber(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  const n = Number(v);
  if (Number.isNaN(n)) throw new Error(`a report figure is not a number: ${String(v)}`);
  return Number.isFinite(n) ? `${n}` : 'null';
}

/**
 * Writes raw rows of a report (either layout) as JSON objects with these fields, in this
 * order, straight from the statement's columns: the text the row schema's serializer writes
 * for the row's object (strings as JSON.stringify writes them, numbers as `${n}`, an infinite
 * one as null, a deleted flag as a boolean), without the two objects per row in between. For
 * the last 30 days by day by tag (930 rows of 69 columns), reading rows into ReportRows, then
 * objects of the row's fields, then serializing those was a quarter of the request's
 * JavaScript.
 */
export function rowJsonWriter(spec: ReportSpec, fields: readonly string[]): (raw: RawReportRow) => string {
  if (fields.length === 0) return () => '{}';
  return eitherLayout(spec, (at) => {
    const writers = fields.map((field, i): ((raw: Record<string | number, unknown>) => string) => {
      const name = `${i === 0 ? '{' : ','}${JSON.stringify(field)}:`;
      if (field === 'period_start' || field === 'period_end') {
        const local = at(`${field}_local`);
        const offset = at(`${field}_offset`);
        return (raw) => name + jsonText(localTime(raw[local], raw[offset]));
      }
      if (field === 'department_deleted' || field === 'agent_deleted') {
        const column = at(field);
        return (raw) => name + (raw[column] === true ? 'true' : 'false');
      }
      const column = at(TEXT_DIMENSIONS.has(field) ? field : `m_${field}`);
      if (TEXT_DIMENSIONS.has(field)) return (raw) => name + jsonText(raw[column]);
      return (raw) => name + jsonNumber(raw[column]);
    });
    return (raw: Record<string | number, unknown>) => {
      let text = '';
      for (const write of writers) text += write(raw);
      return `${text}}`;
    };
  });
}

/**
 * Reads raw rows of this report into ReportRows, with the column names worked out once per
 * report instead of once per cell: a page of 930 rows x 69 columns spent 10 ms on them.
 */
export function reportRowReader(spec: ReportSpec): (raw: Record<string, unknown>) => ReportRow {
  const time = byTime(spec);
  const sortKey = sortKeyReader(spec);
  const keys = spec.metrics.map((m) => m.key);
  const columns = keys.map((key) => `m_${key}`);
  return (raw) => {
    const values: Record<string, number | null> = {};
    for (let i = 0; i < keys.length; i++) {
      const v = raw[columns[i]!];
      values[keys[i]!] = v === null || v === undefined ? null : Number(v);
    }
    return {
      period_start: time ? localTime(raw.period_start_local, raw.period_start_offset) : null,
      period_end: time ? localTime(raw.period_end_local, raw.period_end_offset) : null,
      department_id: (raw.department_id as string | null) ?? null,
      department_name: (raw.department_name as string | null) ?? null,
      department_deleted: raw.department_deleted === true,
      agent_id: (raw.agent_id as string | null) ?? null,
      agent_name: (raw.agent_name as string | null) ?? null,
      agent_deleted: raw.agent_deleted === true,
      channel: (raw.channel as string | null) ?? null,
      tag: (raw.tag as string | null) ?? null,
      values,
      sortKey: sortKey(raw),
    };
  };
}

/**
 * Report statements run in a read-only transaction of their own, without JIT (whose compiling
 * costs several times what these queries take: their row estimates are pessimistic), with
 * room to sort and hash in memory, and with random page reads costed as what they are for
 * report tables that stay cached: at the default 4 the planner read a whole day of every
 * department's counter rows in bucket order (1,500 rows a day, filtered) rather than the 77 of
 * the one department asked for through its index.
 */
async function inReportTransaction<T>(
  db: Executor,
  spec: ReportSpec,
  isolation: 'read committed' | 'repeatable read',
  fn: (trx: Transaction<Database>) => Promise<T>,
  options: { readOnly?: boolean; genericPlans?: boolean } = {},
): Promise<T> {
  const { readOnly = true, genericPlans = false } = options;
  // The two-step percentiles join a few thousand rows on estimates a hundred times too high,
  // which makes merge joins (each sorting its inputs) look cheaper than hashing: measured, the
  // hash joins take a third of the time.
  const mergeJoins = twoStep(spec) ? 'off' : 'on';
  // From the events, the planner may cache the samples of each event by the event's columns
  // (Memoize): every event is a key of its own, so it only misses. It picks that when many
  // events share an instant, as a write's events and the SLA clock's verdicts do: measured on
  // the benchmark's data, the last 30 days by agent from the events took 15.6 s with it
  // (149,620 misses, no hit) and 1.3-1.8 s without. Statements on the counters keep it.
  const memoize = spec.source === 'events' ? 'off' : 'on';
  return db
    .transaction()
    .setIsolationLevel(isolation)
    .execute(async (trx) => {
      if (readOnly) await sql`set transaction read only`.execute(trx);
      await sql`select set_config('jit', 'off', true), set_config('work_mem', '64MB', true),
      set_config('enable_mergejoin', ${mergeJoins}, true), set_config('random_page_cost', '1.1', true),
      set_config('enable_memoize', ${memoize}, true)
      ${genericPlans ? sql`, set_config('plan_cache_mode', 'force_generic_plan', true)` : sql``}`.execute(
        trx,
      );
      return fn(trx);
    });
}

/** Periods whose percentiles or counts one call keeps at most (a year by hour has 8,760). */
const KEPT_PER_CALL = 400;

/**
 * Keeps the percentiles of a report's periods that ended and have none kept (cache.ts): after
 * a report, so that the next read of the same periods finds them. Returns how many periods it
 * kept.
 */
export async function keepPercentiles(db: Executor, spec: ReportSpec): Promise<number> {
  const samples = neededSamples(spec);
  const scope = cacheScope(spec, samples);
  if (scope === null) return 0;
  return keepPeriods(db, spec, {
    table: 'report_percentile_cache',
    scope,
    worth: settled(spec, sql`c.s`, sql`c.e`),
    rows: (twoStep(spec) ? twoStepHistogramAgg : histogramAgg)(spec, samples),
  });
}

/**
 * Keeps the counts of a report's periods that ended and have none kept (cache.ts), as
 * keepPercentiles keeps percentiles; only those with an end inside a UTC day (cache.ts,
 * offUtcDays). Returns how many periods it kept.
 */
export async function keepCounts(db: Executor, spec: ReportSpec): Promise<number> {
  const scope = countScope(spec);
  if (scope === null) return 0;
  return keepPeriods(db, spec, {
    table: 'report_count_cache',
    scope,
    worth: sql`${offUtcDays(sql`c.s`, sql`c.e`)} and ${settledCounts(spec, sql`c.s`, sql`c.e`)}`,
    rows: countsAgg(spec),
  });
}

/**
 * Keeps what `rows` computes per period (keyed by period_start) for the report's clipped periods
 * `c` that ended, are `worth` keeping and have no entry of `scope` in `table`. Computes and
 * writes them in one statement under the keeping lock, so no fold of fresh rows runs in between
 * (the fold deletes the entries it makes stale). Returns how many periods it kept.
 */
async function keepPeriods(
  db: Executor,
  spec: ReportSpec,
  kept: {
    table: 'report_percentile_cache' | 'report_count_cache';
    scope: string;
    worth: RawBuilder<unknown>;
    rows: RawBuilder<unknown>;
  },
): Promise<number> {
  const table = sql.table(kept.table);
  return inReportTransaction(
    db,
    spec,
    'read committed',
    async (trx) => {
      await takeKeepingLock.execute(trx);
      // Every float8 as its shortest exact text in the kept jsonb, whatever the session says.
      await sql`select set_config('extra_float_digits', '3', true)`.execute(trx);
      const result = await sql`
        with ${sql.join(periodCtes(spec))},
        missing as materialized (
          select c.* from clipped c
          where c.e <= now() and ${kept.worth}
            and not exists (
              select 1 from ${table} k
              where k.scope = ${kept.scope} and k.lo = c.s and k.hi = c.e and k.created_at > now() - ${KEPT_FOR})
          -- the latest first: what dashboards read again
          order by c.period_start desc
          limit ${KEPT_PER_CALL}
        ),
        computed as materialized (
          with clipped as (select * from missing), ${piecesCte(spec.source === 'counters')}
          select * from (${kept.rows}) a
        )
        insert into ${table} as k (scope, lo, hi, rows)
        select ${kept.scope}, m.s, m.e,
          coalesce(jsonb_agg(to_jsonb(x) - 'period_start') filter (where x.period_start is not null), '[]')
        from missing m
        left join computed x on x.period_start = m.period_start
        group by m.s, m.e
        on conflict (scope, lo, hi) do update set rows = excluded.rows, created_at = excluded.created_at`.execute(
        trx,
      );
      return Number(result.numAffectedRows ?? 0);
    },
    { readOnly: false },
  );
}

/**
 * A report read from the counters runs as a named statement with a generic plan: planned once
 * per connection instead of on every read. Once a report's percentiles are kept, planning its
 * statements cost more than running them (the year by month by department at 1,000,000 tickets:
 * 8-9 ms to plan each of its two, then 12 ms and 3 ms to run; PostgreSQL's own choice, after
 * five runs, kept planning them). From the events, each read is planned for its values.
 */
function readAgain(spec: ReportSpec, query: RawBuilder<Record<string, unknown>>) {
  return spec.source === 'counters' ? preparedWhileRecent(query) : query;
}

const readOptions = (spec: ReportSpec) => ({ genericPlans: spec.source === 'counters' });

/**
 * One page of a report as its statement's rows (limit + 1 rows fetched: the extra one says
 * whether more follow), as objects by column name, or with `arrays` as arrays where the driver
 * is pg (prepared.ts, arrayRows): rowJsonWriter and sortKeyReader read either, reportRowReader
 * objects.
 */
export async function findReportPage(
  db: Executor,
  spec: ReportSpec,
  page: { after?: SortValue[] | undefined; limit: number; arrays?: boolean },
): Promise<RawReportRow[]> {
  const query = reportQuery(spec, { after: page.after, limit: page.limit + 1 });
  const result = await inReportTransaction(
    db,
    spec,
    'read committed',
    (trx) => readAgain(spec, page.arrays ? arrayRows(query) : query).execute(trx),
    readOptions(spec),
  );
  return result.rows;
}

/** One page of a report as ReportRows (limit + 1, as findReportPage). */
export async function findReportRows(
  db: Executor,
  spec: ReportSpec,
  page: { after?: SortValue[] | undefined; limit: number },
): Promise<ReportRow[]> {
  return ((await findReportPage(db, spec, page)) as Record<string, unknown>[]).map(reportRowReader(spec));
}

export async function findReportTotals(
  db: Executor,
  spec: ReportSpec,
): Promise<Record<string, number | null>> {
  const totals: ReportSpec = { ...spec, groupBy: [], sort: [] };
  const result = await inReportTransaction(
    db,
    totals,
    'read committed',
    (trx) => readAgain(totals, reportQuery(totals)).execute(trx),
    readOptions(totals),
  );
  return toReportRow(totals, result.rows[0] ?? {}).values;
}

// A chunked export's first chunk is this many periods, each next one twice the last, up to
// the larger of CHUNK_PERIODS_MAX and a sixteenth of the periods: the first rows come after a
// few periods' work, and a long report by hour is not hundreds of statements.
const FIRST_CHUNK_PERIODS = 2;
const CHUNK_PERIODS_MAX = 64;
const CHUNKS_AT_MOST_PER_CAP = 16;
const QUARTER_HOUR_MS = 15 * 60 * 1000;

/**
 * A chunkable report (query.ts, chunkable) as the specs of its chunks, in order, given the
 * starts of its periods (cut to the range); the report itself when it is one chunk anyway. A
 * chunk starts only on a quarter hour: the events are bucketed by quarter hours, and a chunk
 * read from the events reads those of its own span (a zone's local midnight is off the quarters
 * only with local mean time, before time zones).
 */
export function exportChunks(spec: ReportSpec, starts: Date[]): ReportSpec[] {
  const cap = Math.max(CHUNK_PERIODS_MAX, Math.ceil(starts.length / CHUNKS_AT_MOST_PER_CAP));
  const bounds: Date[] = [spec.from];
  let size = FIRST_CHUNK_PERIODS;
  let next = size;
  for (let i = 1; i < starts.length; i++) {
    const start = starts[i]!;
    if (i < next || start.getTime() % QUARTER_HOUR_MS !== 0) continue;
    bounds.push(start);
    size = Math.min(size * 2, cap);
    next = i + size;
  }
  if (bounds.length === 1) return [spec];
  bounds.push(spec.to);
  return bounds.slice(1).map((to, i) => ({ ...spec, chunk: { from: bounds[i]!, to } }));
}

/**
 * Streams every row of a report through server-side cursors, `batch` rows at a time, inside
 * a read-only transaction: memory stays flat however long the report is. A report whose rows
 * go period by period (chunkable) is computed in chunks of whole periods (exportChunks), one
 * statement each, in a repeatable-read transaction so that every chunk reads the same snapshot:
 * its first rows come after the first chunk's work rather than the whole report's. `onStarted`
 * once the first statement has answered (with rows or none): past it, the report can be
 * computed. `onRows` resolves when the consumer wants more (backpressure). `signal` stops
 * between fetches and, where the database has more than one connection, also cancels a fetch
 * that is running.
 */
export async function streamReportRows(
  db: Executor,
  spec: ReportSpec,
  options: {
    batch: number;
    signal: AbortSignal;
    onStarted?: () => void;
    onRows: (rows: Record<string, unknown>[]) => Promise<void>;
  },
): Promise<void> {
  // PGlite has one connection, busy with this very transaction: nothing to cancel from.
  const cancellable = db.getExecutor().adapter.supportsMultipleConnections;
  const chunked = chunkable(spec);
  // Every chunk reads the same snapshot, as one statement would.
  const isolation = chunked ? 'repeatable read' : 'read committed';
  await inReportTransaction(db, spec, isolation, async (trx) => {
    const pid = cancellable
      ? Number((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]?.pid)
      : null;
    let fetching = false;
    // The cancel travels on another connection and lands on whatever this backend runs then. It
    // must have been sent before this transaction ends and its connection goes back to the pool:
    // late, it would cancel the next request's statement there. (A cancel that finds the backend
    // idle, reading its next command, is ignored by PostgreSQL.)
    let cancelling: Promise<unknown> | null = null;
    const onAbort = () => {
      if (pid !== null && fetching)
        cancelling = sql`select pg_cancel_backend(${pid})`.execute(db).catch(() => {});
    };
    options.signal.addEventListener('abort', onAbort, { once: true });
    /** A statement a hang-up cancels: the entities' list may take seconds, as a fetch may. */
    const cancellableRun = async <R>(run: () => Promise<R>): Promise<R> => {
      options.signal.throwIfAborted();
      fetching = true;
      let result: R;
      try {
        result = await run();
      } catch (error) {
        // Our own cancel says the client went away; any other error is itself.
        if (options.signal.aborted && (error as { code?: string }).code === '57014')
          throw options.signal.reason;
        throw error;
      } finally {
        fetching = false;
      }
      options.signal.throwIfAborted();
      return result;
    };
    try {
      let chunks = chunked
        ? exportChunks(
            spec,
            (await periodStartsQuery(spec).execute(trx)).rows.map((r) => new Date(r.s)),
          )
        : [spec];
      if (chunks.length > 1 && entityDims(spec).length === 1) {
        // Each chunk has rows for the entities of the whole range, read first.
        const entities = (await cancellableRun(() => reportEntitiesQuery(spec).execute(trx))).rows.map(
          (r) => r.entity,
        );
        chunks = chunks.map((c) => ({ ...c, chunk: { ...c.chunk!, entities } }));
      }
      const fetch = CompiledQuery.raw(`fetch ${options.batch} from report_rows`);
      let started = false;
      for (const chunk of chunks) {
        options.signal.throwIfAborted();
        const query = reportQuery(chunk).compile(trx);
        await trx.executeQuery(
          CompiledQuery.raw(`declare report_rows no scroll cursor for ${query.sql}`, [...query.parameters]),
        );
        for (;;) {
          const { rows } = await cancellableRun(() => trx.executeQuery<Record<string, unknown>>(fetch));
          if (!started) {
            started = true;
            options.onStarted?.();
          }
          if (rows.length > 0) await options.onRows(rows);
          if (rows.length < options.batch) break;
        }
        await trx.executeQuery(CompiledQuery.raw('close report_rows'));
      }
    } finally {
      options.signal.removeEventListener('abort', onAbort);
      await cancelling;
    }
  });
}

/**
 * Which of the ids name a department (or agent) that exists or existed: a deleted one keeps its
 * figures, so filtering on it is a fair question; an id never seen is a mistake.
 */
export async function knownEntityIds(
  db: Executor,
  dim: 'department' | 'agent',
  ids: string[],
): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const [live, deleted] =
    dim === 'department'
      ? (['departments', 'deleted_departments'] as const)
      : (['agents', 'deleted_agents'] as const);
  const rows = await db
    .selectFrom(live)
    .select('id')
    .where('id', 'in', ids)
    .union(db.selectFrom(deleted).select('id').where('id', 'in', ids))
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** The departments an agent belongs to (any role). */
export async function departmentIdsOf(db: Executor, agentId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('department_members')
    .select('department_id')
    .where('agent_id', '=', agentId)
    .execute();
  return rows.map((r) => r.department_id);
}
