// Loading benchmark data as a bulk import would: without the table's indexes, built again after.
import type pg from 'pg';

/**
 * Drops the indexes of `table` (those behind constraints stay), runs `load`, then builds them
 * again: one sort per index instead of an index update per row. Returns how many were rebuilt.
 */
export async function withoutIndexes(client: pg.Client, table: string, load: () => Promise<void>) {
  const indexes = (
    await client.query(
      `select i.indexname, i.indexdef from pg_indexes i
       where i.tablename = $1 and i.indexname not in (select conname from pg_constraint where conrelid = $1::regclass)`,
      [table],
    )
  ).rows as { indexname: string; indexdef: string }[];
  for (const index of indexes) await client.query(`drop index ${index.indexname}`);
  await load();
  for (const index of indexes) await client.query(index.indexdef);
  return indexes.length;
}
