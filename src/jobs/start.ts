import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import type { Config } from '../config.ts';
import type { Db } from '../db/database.ts';
import { attemptDelivery, DELIVERY_QUEUE } from '../domains/webhooks/delivery.ts';
import { type JobQueue, openQueue } from './queue.ts';

export interface Jobs {
  queue: JobQueue;
  stop(): Promise<void>;
}

/**
 * Opens the queue and runs this process's workers (webhook deliveries). Every instance runs
 * them: the queue hands each job to one. `stop` lets running attempts finish first.
 */
export async function startJobs(
  db: Db,
  log: Logger,
  config: Pick<Config, 'databaseUrl' | 'webhooks' | 'jobs'>,
): Promise<Jobs> {
  const queue = await openQueue(
    db,
    log,
    config,
    [
      {
        name: DELIVERY_QUEUE,
        // Longer than an attempt's lease, so a job is only run again once its process is gone.
        expireInSeconds: Math.ceil(config.webhooks.timeoutMs / 1000) + 10,
        retryLimit: 10,
        retryDelaySeconds: 5,
      },
    ],
    {
      pollingIntervalSeconds: config.jobs.pollIntervalMs / 1000,
      superviseIntervalSeconds: config.jobs.superviseIntervalSeconds,
    },
  );
  const deps = { db, log, config: config.webhooks, queue };
  await queue.work<{ deliveryId: string }>(DELIVERY_QUEUE, config.jobs.concurrency, (data) =>
    attemptDelivery(deps, data.deliveryId, { retry: true }),
  );
  return {
    queue,
    stop: () => queue.stop(config.webhooks.timeoutMs + 1_000),
  };
}
