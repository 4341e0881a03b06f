import type { FastifyBaseLogger } from 'fastify';
import type { Db } from './db/database.ts';
import { describe, isDatabaseUnreachable } from './db/outage.ts';
import { sweepStagedAttachments } from './domains/attachments/service.ts';
import { sweepIdleTickets } from './domains/automation-rules/idle.ts';
import { compactReports } from './domains/reports/service.ts';
import { forgetOldIdempotencyKeys } from './domains/tickets/idempotency.ts';
import { fireSlaTimers, type OnJobFailure, wakePostponedTickets } from './domains/tickets/service.ts';
import type { BlobStore } from './storage/blobs.ts';

export const SLA_TIMER_BATCH = 50;
/** Transactions draining a backlog of SLA timers at once, in each process (of its pool of 10). */
const SLA_TIMER_WORKERS = 3;

/**
 * Runs `job` every `everyMs` (and at once when `now`), never two runs at a time: a tick that
 * finds the previous run still going skips its turn. Failures are logged, never thrown.
 */
function every(
  everyMs: number,
  now: boolean,
  log: FastifyBaseLogger,
  failure: string,
  job: () => Promise<void>,
) {
  let running: Promise<void> | null = null;
  const tick = () => {
    running ??= job()
      .catch((err: unknown) => {
        // An outage is expected to end by itself: one line per missed turn, no stack trace.
        if (isDatabaseUnreachable(err))
          log.warn({ reason: describe(err) }, `${failure}: database unavailable`);
        else log.error({ err }, failure);
      })
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  if (now) tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/**
 * Periodic housekeeping: postponed tickets whose time came go back to open, old
 * Idempotency-Keys are forgotten, and staged attachments nobody sent within a day are removed. Every instance may run it; the work is safe to repeat and
 * instances skip the rows another one holds. Every few seconds the report rows appended since
 * the last run are compacted (docs/metrics.md); an advisory lock lets one instance at a time do
 * it, the others skip their turn. Every second or so each instance fires the SLA timers that came
 * due (docs/sla.md "Timers"): batches of locked tickets, rows another instance holds skipped, a
 * full batch followed at once by the next, so a backlog after downtime drains in one turn
 * (stopping ends it after the batch under way).
 * ticket.idle rules run on the tickets that went quiet for long enough, on the housekeeping
 * period but in a loop of their own (a long catch-up after downtime does not hold up postponed
 * tickets); every instance sweeps, each taking tickets the others do not hold, and each rule
 * runs once per quiet spell (automation-rules/idle.ts).
 */
export function startScheduler(
  db: Db,
  log: FastifyBaseLogger,
  everyMs = 30_000,
  compactEveryMs = 5_000,
  slaTimerMs = 1_000,
  /** Where attachments live: with it, staged attachments nobody sent within a day are removed. */
  blobs?: BlobStore,
): () => Promise<void> {
  const stopHousekeeping = every(everyMs, true, log, 'housekeeping failed', async () => {
    const woken = await wakePostponedTickets(db, 500, (failure) =>
      log.warn(
        failure,
        failure.outcome === 'woken_without_rules'
          ? 'a postponed ticket woke without its rules: a rule could not apply'
          : 'a postponed ticket could not wake; it is tried again next turn',
      ),
    );
    const forgotten = await forgetOldIdempotencyKeys(db);
    const staged = blobs ? await sweepStagedAttachments(db, blobs) : 0;
    if (woken + forgotten + staged > 0) log.info({ woken, forgotten, staged }, 'housekeeping');
  });
  const stopIdle = every(everyMs, true, log, 'idle rule sweep failed', async () => {
    const { runs, failures } = await sweepIdleTickets(db);
    for (const failure of failures)
      log.warn(failure, 'a ticket.idle rule could not apply; it waits for new activity');
    if (runs > 0) log.info({ runs }, 'ticket.idle rules ran');
  });
  const stopCompaction = every(compactEveryMs, false, log, 'report compaction failed', async () => {
    await compactReports(db);
  });
  // A shutdown lets the batch in hand commit and leaves the rest of a backlog to the next process.
  let stopping = false;
  const timerFailed: OnJobFailure = (failure) =>
    log.warn(failure, 'an SLA timer could not plan a ticket; it is tried again in a minute');
  const stopSlaTimers = every(slaTimerMs, true, log, 'SLA timers failed', async () => {
    let fired = 0;
    // A backlog (10,000 breaches in one minute, a restart) is drained by a few transactions at
    // once, each on rows the others skip; a quiet turn is one small query.
    const drain = async () => {
      let batch: number;
      do {
        batch = await fireSlaTimers(db, SLA_TIMER_BATCH, timerFailed);
        fired += batch;
      } while (batch === SLA_TIMER_BATCH && !stopping);
    };
    fired = await fireSlaTimers(db, SLA_TIMER_BATCH, timerFailed);
    if (fired === SLA_TIMER_BATCH && !stopping)
      await Promise.all(Array.from({ length: SLA_TIMER_WORKERS }, drain));
    if (fired > 0) log.info({ tickets: fired }, 'SLA timers');
  });
  return async () => {
    stopping = true;
    await Promise.all([stopHousekeeping(), stopIdle(), stopCompaction(), stopSlaTimers()]);
  };
}
