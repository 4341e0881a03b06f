import { createHash } from 'node:crypto';
import { type RawBuilder, sql } from 'kysely';

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

const names = new Map<string, string>();

/** The statement's name: from its text, so that one name always means one text. */
export function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `dr_${createHash('sha256').update(text).digest('base64url').slice(0, 32)}`;
    // Marked texts are few (a handful of shapes); the bound only guards against misuse.
    if (names.size < 1000) names.set(text, name);
  }
  return name;
}

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
