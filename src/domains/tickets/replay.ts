import { AsyncLocalStorage } from 'node:async_hooks';
import type { SetWrites } from './set-writes.ts';

/**
 * Replaying history (the importer, docs/import.md): a ticket write made inside `replaying()` is
 * a record of the past, not a change happening now. The write path then plans no SLA clock (the
 * policies of the time are unknown, and a replayed due in the past would fire as a breach today)
 * and runs the automation rules only when the import asked for them. The transaction's clock and
 * the events' import mark come from the transaction itself (deskroute.now, deskroute.import_id).
 */
export interface Replay {
  importId: string;
  runRules: boolean;
  /**
   * The batch that holds this record's writes until it writes them as a set (set-writes.ts);
   * absent, the write path writes as live changes do. Never with runRules: rules read the database.
   */
  batch?: SetWrites | undefined;
}

const current = new AsyncLocalStorage<Replay>();

export function replaying<T>(replay: Replay, work: () => Promise<T>): Promise<T> {
  return current.run(replay, work);
}

/** The replay this write belongs to, if any. */
export function currentReplay(): Replay | undefined {
  return current.getStore();
}

/**
 * What a replayed batch reads again and again of the help desk's setup (an agent, a department, a
 * membership), read once per batch (set-writes.ts); elsewhere, read each time.
 */
export function readOncePerBatch<T>(key: string, read: () => Promise<T>): Promise<T> {
  const batch = current.getStore()?.batch;
  return batch ? batch.readOnce(key, read) : read();
}
