import type { FastifyBaseLogger } from 'fastify';
import type { Db } from './db/database.ts';
import { compactReports } from './domains/reports/service.ts';
import { forgetOldIdempotencyKeys } from './domains/tickets/idempotency.ts';
import { wakePostponedTickets } from './domains/tickets/service.ts';

/**
 * Periodic housekeeping: postponed tickets whose time came go back to open, and old
 * Idempotency-Keys are forgotten. Every instance may run it; the work is safe to repeat and
 * instances skip the rows another one holds. Every few seconds the report rows appended since
 * the last run are compacted (docs/metrics.md); an advisory lock lets one instance at a time do
 * it, the others skip their turn. A PostgreSQL-backed job queue takes over once there is more
 * background work (SLA timers, webhook delivery).
 */
export function startScheduler(
  db: Db,
  log: FastifyBaseLogger,
  everyMs = 30_000,
  compactEveryMs = 5_000,
): () => Promise<void> {
  let running: Promise<void> | null = null;
  const tick = () => {
    running ??= (async () => {
      try {
        const woken = await wakePostponedTickets(db);
        const forgotten = await forgetOldIdempotencyKeys(db);
        if (woken + forgotten > 0) log.info({ woken, forgotten }, 'housekeeping');
      } catch (err) {
        log.error({ err }, 'housekeeping failed');
      } finally {
        running = null;
      }
    })();
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  tick();

  let compacting: Promise<void> | null = null;
  const compact = () => {
    compacting ??= (async () => {
      try {
        await compactReports(db);
      } catch (err) {
        log.error({ err }, 'report compaction failed');
      } finally {
        compacting = null;
      }
    })();
  };
  const compactTimer = setInterval(compact, compactEveryMs);
  compactTimer.unref();

  return async () => {
    clearInterval(timer);
    clearInterval(compactTimer);
    await Promise.all([running, compacting]);
  };
}
