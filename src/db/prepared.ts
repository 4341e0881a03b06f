import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import {
  type Compilable,
  CompiledQuery,
  type InferResult,
  type QueryExecutorProvider,
  type QueryResult,
  type RawBuilder,
  sql,
} from 'kysely';

// Named prepared statements for the hottest statements (a ticket's creation makes four).
// PostgreSQL parses, analyses and plans an unnamed statement on every execution: for these,
// measured, that was more than half of the PostgreSQL time of a creation. A named one is
// parsed once per connection and, once PostgreSQL judges its generic plan as good as the
// custom ones (after five runs), planned once too; each run then sends only its parameters.
//
// Opt-in, statement by statement: only fixed-shape statements whose plan does not depend on
// the values (key look-ups and inserts) should be marked. Each connection keeps every statement
// it prepared until it closes, so statements whose text varies without bound (IN lists of any
// length, optional filters) must not be. PgBouncer in transaction mode does not support named
// statements: run it in session mode, or not at all.

/** What a marked statement's text starts with (database.ts's client looks for it). */
export const PREPARED_MARK = '/* prepared */ ';

/** The statement, run as a named prepared statement where the driver is pg (PGlite: as is). */
export function prepared<T>(query: RawBuilder<T>): RawBuilder<T> {
  return sql<T>`${sql.raw(PREPARED_MARK)}${query}`;
}

/** A Kysely query builder's statement, marked prepared(), its rows typed as the builder's. */
export function preparedQuery<Q extends Compilable>(query: Q): RawBuilder<InferResult<Q>[number]> {
  return prepared(sql<InferResult<Q>[number]>`${query}`);
}

/** What a final statement's text holds (client.ts sends COMMIT with it). */
export const FINAL_MARK = '/* final */ ';

/**
 * The last statement of its transaction, for the caller that knows nothing follows it: with the
 * pg client, COMMIT goes out in the same write and the transaction's own COMMIT costs no round
 * trip. The caller must do nothing after it that could want to roll back (the transaction is
 * committed when the statement's result arrives). Elsewhere (PGlite, outside a transaction) a
 * comment.
 */
export function final<T>(query: RawBuilder<T>): RawBuilder<T> {
  return sql<T>`${sql.raw(FINAL_MARK)}${query}`;
}

/** What a statement's text starts with when it is prepared only while such texts are few. */
export const PREPARED_WHILE_FEW_MARK = '/* prepared while few */ ';

/** How many distinct texts marked preparedWhileFew a process runs as named statements. */
export const FEW_TEXTS = 64;

/**
 * The statement, run as a named prepared statement while the process has seen fewer than
 * FEW_TEXTS distinct texts so marked, and unnamed after that (PGlite: as is). For statements
 * whose text is one of a bounded but open set of shapes: a ticket's change, whose SET list
 * follows the fields it changes. The first FEW_TEXTS texts keep their names for the process's
 * life, so a connection holds at most FEW_TEXTS of them, however many shapes turn up; the usual
 * ones come first and stay.
 */
export function preparedWhileFew<T>(query: RawBuilder<T>): RawBuilder<T> {
  return sql<T>`${sql.raw(PREPARED_WHILE_FEW_MARK)}${query}`;
}

/** What a statement's text starts with when each connection keeps its latest such texts prepared. */
export const PREPARED_WHILE_RECENT_MARK = '/* prepared while recent */ ';

/**
 * How many texts marked preparedWhileRecent a connection keeps prepared. A report's statement
 * with its generic plan holds about 4 MB of its backend's memory (migrations up to 0052, the year
 * by month by department): 6 of them, 25 MB a connection at most.
 */
export const RECENT_TEXTS = 6;

/**
 * The statement, run as a named prepared statement that its connection keeps among its
 * RECENT_TEXTS latest so marked (PGlite: as is): client.ts closes the one run longest ago
 * (DEALLOCATE) before the connection's next transaction begins. For large statements of an open
 * set of shapes that run again and again while they are in use: a report a dashboard polls,
 * whose planning costs more than running it once its figures are kept. Run them in a
 * transaction that asks for generic plans (plan_cache_mode), or PostgreSQL goes on planning
 * each run for its values.
 */
export function preparedWhileRecent<T>(query: RawBuilder<T>): RawBuilder<T> {
  return sql<T>`${sql.raw(PREPARED_WHILE_RECENT_MARK)}${query}`;
}

const admitted = new Set<string>();

/** How many texts marked preparedWhileFew this process has named so far (for the tests). */
export const preparedWhileFewTexts = (): number => admitted.size;

/** The name the pg client runs a statement under, or undefined to run it unnamed (client.ts). */
export function nameToRunAs(text: string): string | undefined {
  if (text.startsWith(PREPARED_MARK)) return statementName(text);
  // Large texts of many shapes: hashed each run (a few hundredths of a millisecond), not kept.
  if (text.startsWith(PREPARED_WHILE_RECENT_MARK)) return nameOf(text);
  if (!text.startsWith(PREPARED_WHILE_FEW_MARK)) return undefined;
  if (!admitted.has(text)) {
    if (admitted.size >= FEW_TEXTS) return undefined;
    admitted.add(text);
  }
  return statementName(text);
}

const names = new Map<string, string>();

/** The statement's name: from its text, so that one name always means one text. */
export function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = nameOf(text);
    // Marked texts are few (a handful of shapes); the bound only guards against misuse.
    if (names.size < 1000) names.set(text, name);
  }
  return name;
}

const nameOf = (text: string) => `dr_${createHash('sha256').update(text).digest('base64url').slice(0, 32)}`;

/** What a statement's text starts with (after any other mark) when its rows come as arrays. */
export const ARRAY_ROWS_MARK = '/* array rows */ ';

/** Marks sit at the start of a text: this far in is where client.ts looks for ARRAY_ROWS_MARK. */
const MARKS_WITHIN = 96;

/**
 * The statement, its rows read as arrays of its columns' values in select-list order, where the
 * driver is pg (rowMode 'array'); elsewhere (PGlite) as objects by column name, so the reader
 * must take either. For statements of many columns and many rows: pg makes each row object by
 * copying an object of every column name, and for a report page of 930 rows of 80 columns those
 * objects were 9 MB a read, half of all it allocated. Mark inside any other mark
 * (`preparedWhileRecent(arrayRows(q))`): the prepared marks are looked for at the very start.
 */
export function arrayRows<T>(query: RawBuilder<T>): RawBuilder<T> {
  return sql<T>`${sql.raw(ARRAY_ROWS_MARK)}${query}`;
}

/** Whether the pg client reads this text's rows as arrays (arrayRows). */
export const readsArrayRows = (text: string): boolean =>
  text.slice(0, MARKS_WITHIN).includes(ARRAY_ROWS_MARK);

/** What a statement to send with the next one holds (client.ts). */
export const WITH_NEXT_MARK = '/* with next */ ';

/**
 * A statement whose result nobody reads (a set_config, say), in a transaction: with the pg
 * client it is answered at once, with no rows, and goes out in the same write as the
 * transaction's next statement, saving its round trip; should it fail, that next statement
 * fails with its error (a ROLLBACK, or a ROLLBACK TO a savepoint, drops it unsent). Never read
 * its result: elsewhere (PGlite, outside a transaction) it is a comment and runs at once.
 */
export function withNext<T>(query: RawBuilder<T>): RawBuilder<T> {
  return sql<T>`${sql.raw(WITH_NEXT_MARK)}${query}`;
}

/**
 * What a statement holds that writes the credential tables without changing anything the auth
 * caches keep (a token's last use): client.ts does not empty the caches for it.
 */
export const AUTH_NEUTRAL_MARK = '/* auth-neutral */ ';

/** AUTH_NEUTRAL_MARK for a query builder's modifyEnd. */
export const AUTH_NEUTRAL = sql.raw(AUTH_NEUTRAL_MARK);

/** Stands for the value named `key` in a statement compiled once (shapedStatement). */
class Slot {
  readonly key: PropertyKey;
  constructor(key: PropertyKey) {
    this.key = key;
  }
}

/** Where a shaped statement runs: a Kysely instance or transaction. */
interface ShapedExecutor extends QueryExecutorProvider {
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
}

let verifyShapes = false;

/**
 * Makes every shaped statement also build and compile afresh with its real values, and throw
 * unless the text and parameters are the cached ones: the tests turn it on (test/helpers), so
 * that a build that branches on a value fails the suite instead of sending the wrong text.
 */
export function verifyShapedStatements(on: boolean): void {
  verifyShapes = on;
}

/**
 * A hot statement whose text depends only on its shape, built and compiled once per shape. Kysely
 * builds a statement as a tree of frozen nodes and compiles the tree to text on every run; for a
 * ticket's opening (a few kilobytes, about forty values) that was a tenth of the server's CPU per
 * creation (scripts/bench/creation-profile.ts --cpu-prof). `build` gets the shape and the values;
 * at the first run of a shape it gets a stand-in for every value, so it must only put values in
 * the statement (`${v.subject}`), never decide anything by them: what decides the text belongs
 * in the shape, and `key(shape)` names it (null: not cacheable, built with the values each run).
 * A cached run is sent as compiled text: Kysely plugins that rewrite queries see it as raw SQL,
 * and the text is compiled with the plugins of the executor that ran its shape first (this app
 * uses none).
 */
export function shapedStatement<S, V extends object, R>(
  key: (shape: S) => string | null,
  build: (shape: S, values: V) => RawBuilder<R>,
): (db: ShapedExecutor, shape: S, values: V) => Promise<QueryResult<R>> {
  const compiled = new Map<string, { sql: string; parameters: readonly unknown[] }>();
  const slots = new Proxy({}, { get: (_target, name) => new Slot(name) }) as V;
  return async (db, shape, values) => {
    const name = key(shape);
    if (name === null) return build(shape, values).execute(db);
    let once = compiled.get(name);
    if (once === undefined) {
      const query = build(shape, slots).compile(db);
      once = { sql: query.sql, parameters: query.parameters };
      // The shapes are a handful; the bound only guards against a key that names the values.
      if (compiled.size < 100) compiled.set(name, once);
    }
    const parameters = once.parameters.map((p) =>
      p instanceof Slot ? (values as Record<PropertyKey, unknown>)[p.key] : p,
    );
    if (verifyShapes) {
      const fresh = build(shape, values).compile(db);
      if (fresh.sql !== once.sql || !isDeepStrictEqual(fresh.parameters, parameters)) {
        throw new Error(`shapedStatement: the statement of shape ${name} depends on more than its shape`);
      }
    }
    return db.executeQuery(CompiledQuery.raw(once.sql, parameters) as CompiledQuery<R>);
  };
}
