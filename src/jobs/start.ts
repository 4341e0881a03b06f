import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import type { Config } from '../config.ts';
import type { Db } from '../db/database.ts';
import { describe } from '../db/outage.ts';
import { consumeFeedBatch } from '../domains/events/consumer.ts';
import {
  attemptMails,
  MAIL_DEAD_QUEUE,
  MAIL_QUEUE,
  type MailJob,
  reviveMails,
} from '../domains/mail-out/delivery.ts';
import { startMailOut } from '../domains/mail-out/service.ts';
import {
  attemptDeliveries,
  DELIVERY_DEAD_QUEUE,
  DELIVERY_QUEUE,
  type DeliveryJob,
  dispatchEvents,
  jobDeliveryIds,
  pruneDeliveries,
  reviveDeliveries,
} from '../domains/webhooks/delivery.ts';
import { anyActiveWebhook } from '../domains/webhooks/repository.ts';
import { recordDisabled } from '../domains/webhooks/service.ts';
import type { BlobStore } from '../storage/blobs.ts';
import { type JobQueue, openQueue } from './queue.ts';
import { MAX_WAIT_MS, RequestLoad, YieldGate } from './yield.ts';

const DISPATCH_BATCH = 200;

/** How often a process looks for deliveries past their retention. */
const PRUNE_EVERY_MS = 60_000;

/**
 * The webhooks' feed consumer: turns new events into deliveries (and their first jobs) in the
 * transaction that moves its cursor, so each event is dispatched once across processes and
 * restarts. It runs on every instance; one holds the consumer's row at a time, the others skip
 * their turn. A full batch is followed at once by the next.
 */
function startDispatch(
  db: Db,
  log: Logger,
  queue: JobQueue,
  gate: YieldGate,
  intervalMs: number,
): () => Promise<void> {
  return startLoop(intervalMs, async (stopped) => {
    try {
      let handled = DISPATCH_BATCH;
      const batch = () =>
        consumeFeedBatch(db, 'webhooks', DISPATCH_BATCH, async (trx, rows) => {
          await dispatchEvents({ queue }, trx, rows);
        });
      while (!stopped() && handled === DISPATCH_BATCH) {
        // With no subscription on, a batch only moves the cursor past events no subscription
        // will ever get (migration 0045): it never yields, so no backlog builds up under load
        // for the first subscription to wait behind.
        handled = (await anyActiveWebhook(db)) ? await gate.run(batch) : await batch();
      }
    } catch (err) {
      log.warn({ reason: describe(err) }, 'webhook dispatch failed; next turn retries');
    }
  });
}

/**
 * The delivery retention, in a loop of its own so that a backlog (the first run, a shorter
 * retention) never holds dispatch up: every minute, batches until nothing is left, one process
 * at a time (delivery.ts pruneDeliveries).
 */
function startRetention(db: Db, log: Logger, days: number): () => Promise<void> {
  return startLoop(PRUNE_EVERY_MS, async (stopped) => {
    try {
      const pruned = await pruneDeliveries(db, days, stopped);
      if (pruned.deliveries + pruned.bodies > 0)
        log.info({ ...pruned, days }, 'webhook deliveries past their retention deleted');
    } catch (err) {
      log.warn({ reason: describe(err) }, 'webhook delivery retention failed; next minute retries');
    }
  });
}

/** Runs `turn` now and then `intervalMs` after each one ends; the stop waits for the turn under way. */
function startLoop(intervalMs: number, turn: (stopped: () => boolean) => Promise<void>): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const run = async () => {
    await turn(() => stopped);
    if (!stopped) timer = setTimeout(() => (running = run()), intervalMs);
  };
  running = run();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}

export interface Jobs {
  queue: JobQueue;
  /** Whether webhook work yields to requests now (yield.ts). */
  gate: YieldGate;
  stop(): Promise<void>;
}

/**
 * Opens the queue and runs this process's workers (webhook deliveries). Every instance runs
 * them: the queue hands each job to one. `stop` lets running attempts finish first. `load` is
 * the requests this process's app is answering (the app counts them): webhook work yields to
 * them (yield.ts).
 */
export async function startJobs(
  db: Db,
  log: Logger,
  config: Pick<Config, 'databaseUrl' | 'webhooks' | 'jobs' | 'mail'>,
  blobs: BlobStore,
  load: RequestLoad = new RequestLoad(),
): Promise<Jobs> {
  const queue = await openQueue(
    db,
    log,
    config,
    [
      // Jobs whose crash retries ran out (a database away for minutes) land here, and the
      // delivery gets a new job or, past its retry window, fails: none stays pending unseen.
      { name: DELIVERY_DEAD_QUEUE, expireInSeconds: 60, retryLimit: 10, retryDelaySeconds: 30 },
      {
        name: DELIVERY_QUEUE,
        deadLetter: DELIVERY_DEAD_QUEUE,
        // Longer than an attempt's lease (counted from its claim), so a job is only run again
        // once its process is gone; a handler may first wait up to MAX_WAIT_MS for its turn
        // while webhook work yields to requests (yield.ts).
        expireInSeconds: Math.ceil((config.webhooks.timeoutMs + MAX_WAIT_MS) / 1000) + 10,
        retryLimit: 10,
        retryDelaySeconds: 5,
      },
      // Mail out (docs/email.md): the same shape; retries on SMTP failures are our own jobs.
      { name: MAIL_DEAD_QUEUE, expireInSeconds: 60, retryLimit: 10, retryDelaySeconds: 30 },
      {
        name: MAIL_QUEUE,
        deadLetter: MAIL_DEAD_QUEUE,
        expireInSeconds: Math.ceil(config.mail.sendTimeoutMs / 1000) + 15,
        retryLimit: 10,
        retryDelaySeconds: 5,
      },
    ],
    {
      pollingIntervalSeconds: config.jobs.pollIntervalMs / 1000,
      superviseIntervalSeconds: config.jobs.superviseIntervalSeconds,
      workers: config.jobs.concurrency,
    },
  );
  const deps = { db, log, config: config.webhooks, queue, onDisabled: recordDisabled };
  const gate = new YieldGate(load, config.webhooks.yieldTo, {
    // A warning: the process is saturated, and webhook deliveries fall behind until it is not.
    onChange: (busy, inFlight) =>
      busy
        ? log.warn({ inFlight, share: config.webhooks.yieldTo.share }, 'webhook work yields to requests')
        : log.info({ inFlight }, 'webhook work at full speed again'),
  });
  gate.start();
  // A handler gets a few jobs at once (each with up to DELIVERY_BATCH deliveries).
  await queue.work<DeliveryJob>(
    DELIVERY_QUEUE,
    { concurrency: config.jobs.concurrency, batchSize: 2 },
    (jobs) => gate.run(() => attemptDeliveries(deps, jobs.flatMap(jobDeliveryIds), { retry: true })),
  );
  await queue.work<DeliveryJob>(DELIVERY_DEAD_QUEUE, { concurrency: 1, batchSize: 10 }, (jobs) =>
    reviveDeliveries(deps, jobs.flatMap(jobDeliveryIds)),
  );
  const mailDeps = { db, log, config: config.mail, queue, blobs };
  await queue.work<MailJob>(MAIL_QUEUE, { concurrency: config.jobs.concurrency, batchSize: 2 }, (jobs) =>
    attemptMails(
      mailDeps,
      jobs.flatMap((j) => j.outboxIds ?? []),
    ),
  );
  await queue.work<MailJob>(MAIL_DEAD_QUEUE, { concurrency: 1, batchSize: 10 }, (jobs) =>
    reviveMails(
      mailDeps,
      jobs.flatMap((j) => j.outboxIds ?? []),
    ),
  );
  const stopDispatch = startDispatch(db, log, queue, gate, config.webhooks.dispatchIntervalMs);
  const stopRetention = startRetention(db, log, config.webhooks.deliveryRetentionDays);
  const stopMailOut = startMailOut(db, log, queue, config.mail);
  return {
    queue,
    gate,
    async stop() {
      // Pauses end at once: what is left runs at full speed.
      gate.stop();
      await Promise.all([stopDispatch(), stopRetention()]);
      await stopMailOut();
      await queue.stop(Math.max(config.webhooks.timeoutMs, config.mail.sendTimeoutMs) + 1_000);
    },
  };
}
