import { createHash } from 'node:crypto';
import { type RawBuilder, sql } from 'kysely';
import { type TSchema, Type } from 'typebox';
import { invalid } from '../errors.ts';

/** Query parameters every list accepts. */
export const PageQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (1-200).' }),
  cursor: Type.Optional(
    Type.String({ minLength: 1, maxLength: 1000, description: 'The `next_cursor` of the previous page.' }),
  ),
};

/** A page of items with the cursor of the next page (null on the last page). */
export function PageOf<T extends TSchema>(item: T, id: string) {
  return Type.Object(
    {
      data: Type.Array(item),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` to get the next page; null when there is none.',
      }),
    },
    { $id: id, additionalProperties: false },
  );
}

type CursorValue = string | number | boolean | null;

/**
 * Cursors carry the sort key of the last row they returned (keyset pagination), so inserts and
 * deletes elsewhere in the list never shift a page. They are bound to the list they came from,
 * so one list's cursor handed to another answers 400, not a silently wrong page.
 */
export function encodeCursor(list: string, values: CursorValue[]): string {
  return Buffer.from(JSON.stringify([fingerprint(list), ...values])).toString('base64url');
}

export function decodeCursor(list: string, cursor: string, length: number): CursorValue[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== length + 1 ||
    parsed[0] !== fingerprint(list) ||
    !parsed.every((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v))
  ) {
    throw invalid('invalid_cursor', 'The cursor is not one this list handed out.', [
      { field: 'querystring/cursor', message: 'is not a valid cursor for this list' },
    ]);
  }
  return parsed.slice(1) as CursorValue[];
}

function fingerprint(list: string) {
  return createHash('sha256').update(list).digest('base64url').slice(0, 8);
}

export interface Keyset<Row> {
  /** Names the list, so its cursors are not accepted by another. Include the filters. */
  list: string;
  /** SQL expressions of the sort key, most significant first, ending with a unique column. */
  columns: RawBuilder<unknown>[];
  /** Reads the sort key back from a returned row, in the same order. */
  key: (row: Row) => CursorValue[];
  direction: 'asc' | 'desc';
}

/** The `where` condition that starts a page after the cursor's row. */
export function afterCursor<Row>(
  keyset: Keyset<Row>,
  cursor: string | undefined,
): RawBuilder<boolean> | null {
  if (cursor === undefined) return null;
  const values = decodeCursor(keyset.list, cursor, keyset.columns.length);
  const op = keyset.direction === 'asc' ? sql`>` : sql`<`;
  return sql<boolean>`(${sql.join(keyset.columns)}) ${op} (${sql.join(values)})`;
}

export function orderBy<Row>(keyset: Keyset<Row>): RawBuilder<unknown> {
  const dir = keyset.direction === 'asc' ? sql`asc` : sql`desc`;
  return sql.join(keyset.columns.map((c) => sql`${c} ${dir}`));
}

/** Fetch limit + 1 rows, then cut: the extra row tells whether there is a next page. */
export function toPage<Row, Item>(keyset: Keyset<Row>, rows: Row[], limit: number, map: (row: Row) => Item) {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept[kept.length - 1];
  return {
    data: kept.map(map),
    next_cursor: more && last ? encodeCursor(keyset.list, keyset.key(last)) : null,
  };
}
