/*
 * The PostgreSQL-backed job queue: pg-boss 12.
 *
 * Why pg-boss (tried here, December 2026, Node 24, pg-boss 12.38, graphile-worker 0.18):
 * - pg-boss 12 takes a database adapter instead of its own pool (`db: IDatabase`, one method
 *   `executeSql`) and ships two we need: `fromPglite(pglite)` with `backend: 'pglite'`, and
 *   `fromKysely(trx)`. A probe (start, createQueue, send inside a Kysely transaction that
 *   commits and one that rolls back, send with startAfter, work) behaved the same on PGlite 0.5
 *   (start ~1.0 s: it creates its schema) and on PostgreSQL 15 (~0.7 s): the rolled-back job
 *   never ran, the delayed one ran after its delay. PGlite's `query()` takes one statement, and
 *   pg-boss's schema set-up sends several at once without parameters, hence `fromPglite` (it
 *   uses `exec()` for those) rather than our Kysely for everything. Kysely's PGlite dialect
 *   takes PGlite's exclusive transaction lock, so the queue's statements never land inside a
 *   request's transaction on the one connection.
 * - graphile-worker needs a pg Pool (its `pgPool` / `connectionString`) and LISTEN on a
 *   dedicated connection; PGlite offers neither a pg wire server nor a Pool, so it serves only
 *   PostgreSQL. It was not kept.
 *
 * So: on PostgreSQL pg-boss has a small pool of its own (it needs a session for LISTEN/NOTIFY
 * and runs its maintenance there, away from the API's pool); on PGlite it shares the one
 * in-process instance. Jobs are enqueued in the caller's transaction (`fromKysely(trx)`), so a
 * job exists exactly when the change that asked for it committed. pg-boss fetches with
 * FOR UPDATE SKIP LOCKED, so each job runs in one process; a process killed mid-job leaves the
 * job active until `expireInSeconds`, then pg-boss's supervisor retries it elsewhere.
 *
 * Retries that follow a schedule of ours (webhook backoff) are new jobs with `startAfter`, not
 * pg-boss retries: the attempt history lives in our tables, and pg-boss's own retries are kept
 * for the crash case only.
 */
import { type ConstructorOptions, fromKysely, fromPglite, PgBoss } from 'pg-boss';
import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import type { Config } from '../config.ts';
import { type Db, embeddedPglite } from '../db/database.ts';
import { describe } from '../db/outage.ts';

export interface QueueDefinition {
  name: string;
  /** A job still active after this long is taken as lost (its process died) and run again. */
  expireInSeconds: number;
  /** Crash retries before pg-boss gives up on a job. */
  retryLimit: number;
  retryDelaySeconds: number;
  /** Where a job goes once its crash retries are spent (a queue defined before this one). */
  deadLetter?: string;
}

/** Runs a batch of jobs' data; a throw fails (and later retries) the whole batch. */
export type JobHandler<T> = (batch: T[]) => Promise<void>;

export interface NewJob {
  data: object;
  startAt?: Date;
}

export interface JobQueue {
  /** Adds a job in the caller's transaction (or on its own when given the database). */
  enqueue(executor: Db, queue: string, data: object, options?: { startAt?: Date }): Promise<void>;
  /** Adds many jobs in one statement, in the caller's transaction. */
  enqueueMany(executor: Db, queue: string, jobs: NewJob[]): Promise<void>;
  /**
   * Runs `handler` on batches of up to `batchSize` jobs of `queue` (one fetch and one completion
   * per batch), up to `concurrency` batches at once in this process.
   */
  work<T>(
    queue: string,
    options: { concurrency: number; batchSize?: number },
    handler: JobHandler<T>,
  ): Promise<void>;
  /** Stops fetching, lets running jobs finish (up to `timeoutMs`), then closes. */
  stop(timeoutMs?: number): Promise<void>;
}

export async function openQueue(
  db: Db,
  log: Logger,
  config: Pick<Config, 'databaseUrl'>,
  queues: QueueDefinition[],
  options: { pollingIntervalSeconds?: number; superviseIntervalSeconds?: number; workers?: number } = {},
): Promise<JobQueue> {
  const pglite = embeddedPglite(db);
  const common: ConstructorOptions = {
    schema: 'pgboss',
    application_name: 'deskroute-jobs',
    // Expired jobs (a killed process) are found by the supervisor, in its per-queue "monitor"
    // step, which runs at most every monitorIntervalSeconds (pg-boss default 60): both periods
    // bound recovery, so they are set together.
    superviseIntervalSeconds: options.superviseIntervalSeconds ?? 30,
    monitorIntervalSeconds: options.superviseIntervalSeconds ?? 30,
    useListenNotify: true,
  };
  let boss: PgBoss;
  if (pglite) {
    boss = new PgBoss({ ...common, db: fromPglite(pglite), backend: 'pglite' });
  } else if (config.databaseUrl) {
    boss = new PgBoss({
      ...common,
      connectionString: config.databaseUrl,
      // One session for LISTEN, one for maintenance, and one per worker fetching or completing:
      // fewer starved the workers (bench:events saw "timeout exceeded when trying to connect").
      max: (options.workers ?? 2) + 2,
      connectionTimeoutMillis: 5_000,
    });
  } else {
    throw new Error('The job queue needs DATABASE_URL or an embedded PGlite database.');
  }
  // pg-boss reports lost connections and failed maintenance here; an unheard 'error' would be
  // an uncaught exception (STACK-NOTES: pg.Pool without an error listener).
  boss.on('error', (err) => log.warn({ reason: describe(err) }, 'job queue error'));
  await boss.start();
  for (const q of queues) {
    const settings = {
      expireInSeconds: q.expireInSeconds,
      retryLimit: q.retryLimit,
      retryDelay: q.retryDelaySeconds,
      retryBackoff: true,
      notify: true,
      ...(q.deadLetter && { deadLetter: q.deadLetter }),
    };
    if (await boss.getQueue(q.name)) await boss.updateQueue(q.name, settings);
    else
      await boss.createQueue(q.name, settings).catch(async (err) => {
        // Another process created it between our look and our create.
        if (!(await boss.getQueue(q.name))) throw err;
      });
  }
  const pollingIntervalSeconds = options.pollingIntervalSeconds ?? 2;
  return {
    async enqueue(executor, queue, data, opts = {}) {
      await boss.send(queue, data, {
        db: fromKysely(executor),
        ...(opts.startAt && { startAfter: opts.startAt }),
      });
    },
    async enqueueMany(executor, queue, jobs) {
      if (jobs.length === 0) return;
      await boss.insert(
        queue,
        jobs.map((j) => ({ data: j.data, ...(j.startAt && { startAfter: j.startAt }) })),
        { db: fromKysely(executor) },
      );
    },
    async work<T>(
      queue: string,
      options: { concurrency: number; batchSize?: number },
      handler: JobHandler<T>,
    ) {
      const polling = {
        pollingIntervalSeconds,
        // NOTIFY wakes workers for jobs due now; a job due later (a retry) is only found by a
        // poll, so polling stays as frequent with NOTIFY on (pg-boss would relax it to 30 s).
        notifyPollingIntervalSeconds: pollingIntervalSeconds,
      };
      const batchSize = options.batchSize ?? 1;
      await boss.work<T>(
        queue,
        {
          batchSize,
          localConcurrency: options.concurrency,
          // A full batch means more are waiting: fetch again at once rather than after a poll.
          ...(batchSize > 1 && { burstWhenBatchFull: true }),
          ...polling,
        },
        async (jobs) => {
          await handler(jobs.map((job) => job.data));
        },
      );
    },
    async stop(timeoutMs = 10_000) {
      await boss.stop({ graceful: true, timeout: timeoutMs, close: true });
    },
  };
}
