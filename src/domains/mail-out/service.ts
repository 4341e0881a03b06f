import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import type { Principal } from '../../access/policy.ts';
import type { MailConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import { describe } from '../../db/outage.ts';
import type { JobQueue } from '../../jobs/queue.ts';
import { consumeFeedBatch } from '../events/consumer.ts';
import { requireReadable } from '../tickets/service.ts';
import { MAIL_CONSUMER, type PlanDeps, planMails } from './plan.ts';
import { listTicketMails } from './repository.ts';

const BATCH = 200;

/** Runs the mail consumer until the feed is drained. Returns how many live events it looked at (imported history is passed by). */
export async function drainMailFeed(db: Db, deps: PlanDeps) {
  let total = 0;
  for (;;) {
    const handled = await consumeFeedBatch(db, MAIL_CONSUMER, BATCH, (trx, rows) =>
      planMails(deps, trx, rows),
    );
    total += handled;
    if (handled < BATCH) return total;
  }
}

/**
 * The mail consumer, on every instance (like the webhooks' dispatch): the feed consumer's lock
 * lets one process at a time turn events into outbox rows and their jobs, in the transaction
 * that moves its cursor, so each event makes its mails once across processes and restarts.
 */
export function startMailOut(db: Db, log: Logger, queue: JobQueue, config: MailConfig): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const turn = async () => {
    try {
      await drainMailFeed(db, { config, queue, log });
    } catch (err) {
      log.warn({ reason: describe(err) }, 'mail dispatch failed; next turn retries');
    }
    if (!stopped) timer = setTimeout(() => (running = turn()), config.dispatchIntervalMs);
  };
  running = turn();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}

/** A ticket's outgoing mails, for whoever may read the ticket (others: 404). */
export async function ticketMails(
  db: Db,
  principal: Principal,
  ticketId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  await requireReadable(db, principal, ticketId);
  return listTicketMails(db, ticketId, page);
}
