import { randomBytes, randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import { Webhook as Signer } from 'standardwebhooks';
import type { WebhookConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import type { Database, WebhookRow } from '../../db/types.ts';
import type { JobQueue, NewJob } from '../../jobs/queue.ts';
import { decodeCursor } from '../events/repository.ts';
import { postOnce } from './http-post.ts';

export const DELIVERY_QUEUE = 'webhook-delivery';
export const DELIVERY_DEAD_QUEUE = 'webhook-delivery-dead';
/**
 * Deliveries per job: one job, one claim and a few grouped records for up to this many attempts,
 * instead of a job and a dozen statements per attempt (bench:events).
 */
export const DELIVERY_BATCH = 25;

export interface DeliveryDeps {
  db: Db;
  log: Logger;
  config: WebhookConfig;
  queue: JobQueue | undefined;
  /** Told when a subscription is disabled for failing (emits webhook.disabled). */
  onDisabled?: (trx: Transaction<Database>, webhook: WebhookRow) => Promise<void>;
}

/** `whsec_` + base64 of 32 random bytes (Standard Webhooks: 24 to 64 bytes). */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): attempt n waits a
 * random time up to min(cap, base * 2^(n-1)), so receivers coming back from an outage are not
 * hit by every sender at the same second. The schedule ends by time, not by a count: a delivery
 * is retried until `retryWindowMs` after its first attempt (24 h by default), so it spans at
 * least that long whatever the dice say.
 */
export function retryDelayMs(config: WebhookConfig, failedAttempts: number, random = Math.random): number {
  const ceiling = Math.min(
    config.retryMaxDelayMs,
    config.retryBaseMs * 2 ** Math.min(30, failedAttempts - 1),
  );
  return Math.max(1, Math.floor(random() * ceiling));
}

/** The signatures for one attempt: the current secret, and the previous one during its overlap. */
export function signatureHeaders(
  webhook: Pick<WebhookRow, 'secret' | 'previous_secret' | 'previous_secret_expires_at'>,
  deliveryId: string,
  body: string,
  at: Date,
) {
  const secrets = [webhook.secret];
  if (
    webhook.previous_secret &&
    webhook.previous_secret_expires_at &&
    webhook.previous_secret_expires_at > at
  ) {
    secrets.push(webhook.previous_secret);
  }
  return {
    'webhook-id': deliveryId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': secrets.map((s) => new Signer(s).sign(deliveryId, at, body)).join(' '),
  };
}

export interface AttemptJob {
  deliveryId: string;
  at?: Date | null;
}

/** A delivery job's data: the deliveries to attempt (`deliveryId`: jobs queued before 2026-12-04). */
export interface DeliveryJob {
  deliveryIds?: string[];
  deliveryId?: string;
}

export const jobDeliveryIds = (job: DeliveryJob): string[] =>
  job.deliveryIds ?? (job.deliveryId ? [job.deliveryId] : []);

/**
 * The next attempts' jobs, in the caller's transaction, in one statement however many: attempts
 * due at the same moment share a job of up to DELIVERY_BATCH deliveries, so a dispatch of
 * thousands of deliveries costs the queue a few hundred jobs, not thousands.
 */
export async function enqueueAttempts(queue: JobQueue | undefined, executor: Db, attempts: AttemptJob[]) {
  if (!queue || attempts.length === 0) return;
  const byTime = new Map<number, string[]>();
  for (const a of attempts) {
    const at = a.at ? a.at.getTime() : 0;
    const ids = byTime.get(at) ?? [];
    ids.push(a.deliveryId);
    byTime.set(at, ids);
  }
  const jobs: NewJob[] = [];
  for (const [at, ids] of byTime) {
    for (let i = 0; i < ids.length; i += DELIVERY_BATCH) {
      jobs.push({
        data: { deliveryIds: ids.slice(i, i + DELIVERY_BATCH) } satisfies DeliveryJob,
        ...(at > 0 && { startAt: new Date(at) }),
      });
    }
  }
  await queue.enqueueMany(executor, DELIVERY_QUEUE, jobs);
}

export async function enqueueAttempt(
  queue: JobQueue | undefined,
  executor: Db,
  deliveryId: string,
  at?: Date,
) {
  await enqueueAttempts(queue, executor, [{ deliveryId, at: at ?? null }]);
}

/** A delivery this process has leased: it alone makes the attempt now. */
interface Claimed {
  id: string;
  /** null: its event's body is gone (never, while a delivery of the event is kept). */
  body: string | null;
  attempts: number;
  first_attempt_at: Date;
  webhook: Pick<WebhookRow, 'id' | 'url' | 'secret' | 'previous_secret' | 'previous_secret_expires_at'>;
}

interface Outcome {
  claim: Claimed;
  startedAt: Date;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  nextAt: Date | null;
  status: 'delivered' | 'pending' | 'failed';
}

/**
 * Delivery attempts, run by the queue's workers on batches of jobs (and inline by ping). Each
 * attempt is made once across processes: claiming takes a lease (`locked_until`) on every
 * delivery of the batch that is due, pending, unleased, of an active subscription and first in its
 * ticket's lane, in one short transaction; the POSTs run with no transaction and no connection
 * held; outcomes are written as they come back, those that arrive together in one transaction
 * (the attempts, the deliveries, the next attempts' jobs, the lanes they free, the
 * subscriptions' health). A process killed mid-POST leaves the lease to expire, and the queue
 * runs the job again (its expiry is longer than the lease). Jobs of deliveries already settled,
 * or duplicated, find nothing to claim and end.
 */
export async function attemptDeliveries(
  deps: DeliveryDeps,
  deliveryIds: string[],
  options: { retry: boolean; evenIfInactive?: boolean } = { retry: true },
): Promise<void> {
  const ids = [...new Set(deliveryIds)];
  if (ids.length === 0) return;
  const claimed = await claim(deps, ids, options.evenIfInactive === true);
  if (claimed.length === 0) return;
  const recorder = groupRecorder(deps);
  await Promise.all(
    claimed.map(async (c) => {
      const startedAt = new Date();
      if (c.body === null)
        deps.log.warn({ delivery: c.id }, 'webhook delivery without its event body: failed');
      const result =
        c.body === null
          ? { statusCode: null, latencyMs: 0, error: 'the event body is gone', resent: false }
          : await postOnce(
              c.webhook.url,
              {
                'content-type': 'application/json',
                'user-agent': 'Deskroute-Webhooks/1',
                ...signatureHeaders(c.webhook, c.id, c.body, startedAt),
              },
              c.body,
              {
                timeoutMs: deps.config.timeoutMs,
                allowPrivate: deps.config.allowPrivate,
                dns: deps.config.dns,
              },
            );
      const ok = result.error === null;
      let nextAt: Date | null = null;
      if (!ok && options.retry && c.body !== null) {
        const candidate = new Date(Date.now() + retryDelayMs(deps.config, c.attempts + 1));
        if (candidate.getTime() <= c.first_attempt_at.getTime() + deps.config.retryWindowMs)
          nextAt = candidate;
      }
      const outcome: Outcome = {
        claim: c,
        startedAt,
        statusCode: result.statusCode,
        latencyMs: result.latencyMs,
        error: result.error,
        nextAt,
        status: ok ? 'delivered' : nextAt ? 'pending' : 'failed',
      };
      deps.log.info(
        {
          delivery: c.id,
          webhook: c.webhook.id,
          attempt: c.attempts + 1,
          status: outcome.status,
          code: outcome.statusCode,
          ms: outcome.latencyMs,
          ...(result.resent && { resent: 'a kept connection closed under it: sent again on a new one' }),
        },
        'webhook attempt',
      );
      await recorder.add(outcome);
    }),
  );
}

/**
 * Deliveries whose job spent its crash retries: each still pending gets a new job a minute from
 * now, or fails if its retry window has passed (a lane behind it is then woken).
 */
export async function reviveDeliveries(deps: DeliveryDeps, deliveryIds: string[]): Promise<void> {
  if (deliveryIds.length === 0) return;
  await deps.db.transaction().execute(async (trx) => {
    const { rows } = await sql<{
      id: string;
      webhook_id: string;
      ticket_id: string | null;
      expired: boolean;
    }>`
      select d.id, d.webhook_id, d.ticket_id,
             coalesce(d.first_attempt_at, d.created_at)
               + ${deps.config.retryWindowMs} * interval '1 millisecond' < now() as expired
        from webhook_deliveries d
       where d.id = any(${deliveryIds}::uuid[]) and d.status = 'pending'
       order by d.id
       for update`.execute(trx);
    const expired = rows.filter((r) => r.expired);
    if (expired.length > 0) {
      await trx
        .updateTable('webhook_deliveries')
        .set({
          status: 'failed',
          settled_at: sql<Date>`now()`,
          locked_until: null,
          next_attempt_at: null,
          last_error: 'retries exhausted',
        })
        .where(
          'id',
          'in',
          expired.map((r) => r.id),
        )
        .execute();
      await wakeLanes(deps, trx, expired);
    }
    const at = new Date(Date.now() + 60_000);
    await enqueueAttempts(
      deps.queue,
      trx,
      rows.filter((r) => !r.expired).map((r) => ({ deliveryId: r.id, at })),
    );
    deps.log.warn({ revived: rows.length - expired.length, failed: expired.length }, 'webhook jobs revived');
  });
}

/** One attempt now (ping, tests). */
export async function attemptDelivery(
  deps: DeliveryDeps,
  deliveryId: string,
  options: { retry: boolean; evenIfInactive?: boolean } = { retry: true },
): Promise<void> {
  await attemptDeliveries(deps, [deliveryId], options);
}

// The lane statements below are exported for test/webhook-lanes.test.ts, which reads their plans
// when the statistics were taken with no delivery pending (migrations/0051_webhook_lanes_whole.ts).

/** The pending deliveries queued before these in their lanes (subscription, ticket). */
export function pendingAheadInLanes(ids: string[]) {
  return sql<{ id: string }>`
    select e.id from webhook_deliveries b
      join webhook_deliveries e
        on e.webhook_id = b.webhook_id and e.ticket_id = b.ticket_id and e.seq < b.seq
     where b.id = any(${ids}::uuid[]) and e.status = 'pending'`;
}

/**
 * Leases the deliveries of `ids` that are due, pending, not leased, of an active subscription
 * (or any, `evenIfInactive`) and first in their lane, with what an attempt needs.
 */
export function claimStatement(ids: string[], leaseMs: number, evenIfInactive: boolean) {
  return sql<{
    id: string;
    body: string | null;
    attempts: number;
    first_attempt_at: Date;
    webhook_id: string;
    url: string;
    secret: string;
    previous_secret: string | null;
    previous_secret_expires_at: Date | null;
  }>`
    update webhook_deliveries d
       set locked_until = now() + ${leaseMs} * interval '1 millisecond',
           first_attempt_at = coalesce(d.first_attempt_at, now())
      from webhooks w
     where d.id = any(${ids}::uuid[])
       and w.id = d.webhook_id
       and d.status = 'pending'
       and d.next_attempt_at <= now()
       and (d.locked_until is null or d.locked_until <= now())
       and (w.active or ${evenIfInactive})
       and (d.ticket_id is null or not exists (
             select 1 from webhook_deliveries e
              where e.webhook_id = d.webhook_id and e.ticket_id = d.ticket_id
                and e.status = 'pending' and e.seq < d.seq))
    returning d.id, (select b.body from webhook_bodies b where b.event_id = d.event_id) as body,
              d.attempts, d.first_attempt_at, w.id as webhook_id, w.url, w.secret,
              w.previous_secret, w.previous_secret_expires_at`;
}

/** The next pending delivery of each lane. */
export function nextInLanes(lanes: { webhook_id: string; ticket_id: string | null }[]) {
  return sql<{ id: string }>`
    select distinct on (e.webhook_id, e.ticket_id) e.id
      from webhook_deliveries e
      join jsonb_to_recordset(${JSON.stringify(lanes)}::jsonb) as l(webhook_id uuid, ticket_id uuid)
        on e.webhook_id = l.webhook_id and e.ticket_id = l.ticket_id
     where e.status = 'pending' and e.ticket_id = any(${lanes.map((l) => l.ticket_id)}::uuid[])
     order by e.webhook_id, e.ticket_id, e.seq`;
}

async function claim(deps: DeliveryDeps, ids: string[], evenIfInactive: boolean): Promise<Claimed[]> {
  const leaseMs = deps.config.timeoutMs + 5_000;
  return deps.db.transaction().execute(async (trx) => {
    // Rows are locked in one pass in id order, by every writer of many deliveries (claims and
    // outcome records), so two of them never wait on each other in a cycle. Locked here: the
    // batch, and the earlier pending deliveries of its lanes. Ordered per ticket: a delivery goes
    // only when no earlier one of its subscription's lane for that ticket is pending; locking
    // those makes this wait for one being settled right now, so the check below sees its outcome
    // (else a settle that looked for its lane's next delivery before this one was dispatched, and
    // committed after this check, would wake nobody).
    const { rows: earlier } = await pendingAheadInLanes(ids).execute(trx);
    // One list of ids (not an OR with a subquery, which PostgreSQL answers with a sequential scan).
    await sql`
      select id from webhook_deliveries
       where id = any(${[...new Set([...ids, ...earlier.map((e) => e.id)])]}::uuid[])
       order by id
       for update`.execute(trx);
    const { rows } = await claimStatement(ids, leaseMs, evenIfInactive).execute(trx);
    if (rows.length < ids.length) {
      const taken = new Set(rows.map((r) => r.id));
      await settleUnclaimed(
        deps,
        trx,
        ids.filter((id) => !taken.has(id)),
        evenIfInactive,
      );
    }
    return rows.map((r) => ({
      id: r.id,
      body: r.body,
      attempts: r.attempts,
      first_attempt_at: r.first_attempt_at,
      webhook: {
        id: r.webhook_id,
        url: r.url,
        secret: r.secret,
        previous_secret: r.previous_secret,
        previous_secret_expires_at: r.previous_secret_expires_at,
      },
    }));
  });
}

/**
 * Jobs whose delivery could not be claimed: settled ones end here; one that is early (clocks) or
 * leased by another process (which may die) comes back when it is due or its lease ends; one of a
 * subscription no longer active fails; one waiting behind an earlier delivery of its ticket is
 * woken when that one is settled.
 */
async function settleUnclaimed(deps: DeliveryDeps, trx: Db, ids: string[], evenIfInactive: boolean) {
  const { rows } = await sql<{
    id: string;
    webhook_id: string;
    ticket_id: string | null;
    active: boolean;
    next_attempt_at: Date | null;
    leased_until: Date | null;
    due: boolean;
  }>`
    select d.id, d.webhook_id, d.ticket_id, w.active, d.next_attempt_at,
           case when d.locked_until > now() then d.locked_until end as leased_until,
           coalesce(d.next_attempt_at <= now(), true) as due
      from webhook_deliveries d
      join webhooks w on w.id = d.webhook_id
     where d.id = any(${ids}::uuid[]) and d.status = 'pending'`.execute(trx);
  const later: AttemptJob[] = [];
  const inactive: typeof rows = [];
  for (const row of rows) {
    if (!row.active && !evenIfInactive) inactive.push(row);
    else if (row.leased_until)
      later.push({ deliveryId: row.id, at: new Date(row.leased_until.getTime() + 100) });
    else if (!row.due) later.push({ deliveryId: row.id, at: row.next_attempt_at });
    // Else it waits behind an earlier delivery of its lane, which wakes it (wakeLanes).
  }
  if (inactive.length > 0) {
    await trx
      .updateTable('webhook_deliveries')
      .set({
        status: 'failed',
        settled_at: sql<Date>`now()`,
        last_error: 'the webhook is not active',
        locked_until: null,
      })
      .where(
        'id',
        'in',
        inactive.map((r) => r.id),
      )
      .execute();
    await wakeLanes(deps, trx, inactive);
  }
  await enqueueAttempts(deps.queue, trx, later);
}

/**
 * Writes outcomes as they come: the first is written at once, and those that arrive while a write
 * runs are written together by the next one (group commit), so a batch of fast receivers costs a
 * few transactions and a slow receiver delays no one else's record.
 */
function groupRecorder(deps: DeliveryDeps) {
  let waiting: { outcome: Outcome; done: (err?: unknown) => void }[] = [];
  let writing = false;
  const drain = async () => {
    writing = true;
    while (waiting.length > 0) {
      const group = waiting;
      waiting = [];
      try {
        await recordOutcomes(
          deps,
          group.map((g) => g.outcome),
        );
        for (const g of group) g.done();
      } catch (err) {
        for (const g of group) g.done(err);
      }
    }
    writing = false;
  };
  return {
    add(outcome: Outcome): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        waiting.push({ outcome, done: (err) => (err ? reject(err) : resolve()) });
        if (!writing) void drain();
      });
    },
  };
}

async function recordOutcomes(deps: DeliveryDeps, all: Outcome[]) {
  await deps.db.transaction().execute(async (trx) => {
    // The subscriptions whose health this may update (a failure in the group, or failures to
    // reset), locked before the deliveries: deleting or moving a subscription locks it, then its
    // deliveries, so the same order here leaves no cycle. A healthy subscription's successes
    // update nothing and take no lock.
    const hooks = [...new Set(all.map((o) => o.claim.webhook.id))];
    const failing = [...new Set(all.filter((o) => o.status !== 'delivered').map((o) => o.claim.webhook.id))];
    await sql`
      select id from webhooks
       where id = any(${hooks}::uuid[]) and (consecutive_failures > 0 or id = any(${failing}::uuid[]))
       order by id
       for no key update`.execute(trx);
    // The id list keeps the planner on the primary key whatever its statistics say (autovacuum
    // may be off, and the table grows fast).
    const { rows: locked } = await sql<{ id: string }>`
      select id from webhook_deliveries where id = any(${all.map((o) => o.claim.id)}::uuid[])
       order by id for update`.execute(trx);
    // A delivery deleted while its attempt ran (its subscription deleted or moved) has nothing
    // to record: its attempt row would break the foreign key and roll back the others' outcomes.
    const present = new Set(locked.map((r) => r.id));
    const outcomes = all.filter((o) => present.has(o.claim.id));
    if (outcomes.length > 0) await recordPresent(deps, trx, outcomes);
  });
}

async function recordPresent(deps: DeliveryDeps, trx: Transaction<Database>, outcomes: Outcome[]) {
  const rows = outcomes.map((o) => ({
    id: o.claim.id,
    attempt: o.claim.attempts + 1,
    started_at: o.startedAt.toISOString(),
    status_code: o.statusCode,
    latency_ms: o.latencyMs,
    error: o.error,
    last_error: o.error?.slice(0, 500) ?? null,
    status: o.status,
    next_at: o.nextAt?.toISOString() ?? null,
  }));
  {
    const json = JSON.stringify(rows);
    const ids = rows.map((r) => r.id);
    await sql`
      insert into webhook_delivery_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error)
      select r.id, r.attempt, r.started_at, r.status_code, r.latency_ms, r.error
        from jsonb_to_recordset(${json}::jsonb) as r(
          id uuid, attempt int, started_at timestamptz, status_code int, latency_ms int, error text)
      on conflict do nothing`.execute(trx);
    const { rows: settled } = await sql<{
      id: string;
      webhook_id: string;
      ticket_id: string | null;
      status: string;
    }>`
      update webhook_deliveries d
         set status = r.status,
             attempts = r.attempt,
             locked_until = null,
             next_attempt_at = r.next_at,
             last_attempt_at = r.started_at,
             last_status_code = r.status_code,
             last_latency_ms = r.latency_ms,
             last_error = r.last_error,
             delivered_at = case when r.status = 'delivered' then now() else d.delivered_at end,
             settled_at = case when r.status <> 'pending' then now() end
        from jsonb_to_recordset(${json}::jsonb) as r(
          id uuid, attempt int, started_at timestamptz, status_code int, latency_ms int,
          last_error text, status text, next_at timestamptz)
       where d.id = r.id and d.id = any(${ids}::uuid[])
      returning d.id, d.webhook_id, d.ticket_id, d.status`.execute(trx);
    await enqueueAttempts(
      deps.queue,
      trx,
      outcomes.filter((o) => o.nextAt).map((o) => ({ deliveryId: o.claim.id, at: o.nextAt })),
    );
    await wakeLanes(
      deps,
      trx,
      settled.filter((s) => s.status !== 'pending'),
    );
    // In the order the attempts started, per subscription, webhooks in id order (no deadlocks
    // between two groups touching the same subscriptions).
    const byWebhook = new Map<string, boolean[]>();
    // A delivery whose body was gone failed for our sake, not the receiver's: not counted.
    for (const o of [...outcomes]
      .filter((o) => o.claim.body !== null)
      .sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime())) {
      const list = byWebhook.get(o.claim.webhook.id) ?? [];
      list.push(o.status === 'delivered');
      byWebhook.set(o.claim.webhook.id, list);
    }
    for (const webhookId of [...byWebhook.keys()].sort()) {
      await trackHealth(deps, trx, webhookId, byWebhook.get(webhookId) ?? []);
    }
  }
}

/** The next pending delivery of each lane (subscription, ticket) whose delivery was just settled. */
async function wakeLanes(
  deps: Pick<DeliveryDeps, 'queue'>,
  trx: Db,
  settled: { webhook_id: string; ticket_id: string | null }[],
) {
  const lanes = settled.filter((s) => s.ticket_id !== null);
  if (lanes.length === 0) return;
  const { rows } = await nextInLanes(lanes).execute(trx);
  await enqueueAttempts(
    deps.queue,
    trx,
    rows.map((r) => ({ deliveryId: r.id })),
  );
}

/**
 * A subscription is disabled when its attempts have failed `disableAfterFailures` times in a
 * row and for at least `disableAfterMs` (20 and 24 h by default): one flaky hour does not
 * disable it, a receiver gone for a day does. Any 2xx resets both. `results`: this group's
 * attempts of the subscription, oldest first (true = delivered).
 */
async function trackHealth(
  deps: DeliveryDeps,
  trx: Transaction<Database>,
  webhookId: string,
  results: boolean[],
) {
  const lastOk = results.lastIndexOf(true);
  const failuresAfter = results.length - 1 - lastOk;
  if (failuresAfter === 0) {
    await trx
      .updateTable('webhooks')
      .set({ consecutive_failures: 0, failing_since: null })
      .where('id', '=', webhookId)
      .where('consecutive_failures', '>', 0)
      .execute();
    return;
  }
  // Failures since the last success of this group, or added to the run before it.
  const row = await trx
    .updateTable('webhooks')
    .set(
      lastOk >= 0
        ? { consecutive_failures: failuresAfter, failing_since: sql<Date>`now()` }
        : {
            consecutive_failures: sql<number>`consecutive_failures + ${failuresAfter}`,
            failing_since: sql<Date>`coalesce(failing_since, now())`,
          },
    )
    .where('id', '=', webhookId)
    .returning([
      'consecutive_failures',
      'active',
      sql<boolean>`failing_since <= now() - ${`${deps.config.disableAfterMs} milliseconds`}::interval`.as(
        'long_enough',
      ),
    ])
    .executeTakeFirst();
  if (!row?.active || row.consecutive_failures < deps.config.disableAfterFailures || !row.long_enough) return;
  const disabled = await trx
    .updateTable('webhooks')
    .set({
      active: false,
      disabled_at: sql<Date>`now()`,
      disabled_reason: `${row.consecutive_failures} delivery attempts in a row failed`,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', webhookId)
    .returningAll()
    .executeTakeFirstOrThrow();
  deps.log.warn(
    { webhook: webhookId, failures: row.consecutive_failures },
    'webhook disabled after failing deliveries',
  );
  await deps.onDisabled?.(trx, disabled);
}

/** A delivery as dispatch and ping create it (pending, due now). */
export interface NewDelivery {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  ticket_id: string | null;
  /** Its event as sent: kept once per event (webhook_bodies), whatever the deliveries. */
  body: string;
}

/**
 * Deliveries and their events' bodies, in one statement however many, in the given order (seq
 * follows it: the lanes' order). A body already kept for its event (a delivery to a subscription
 * added later, a dispatch run again) stays as it was; a delivery already made for its
 * (subscription, event) is not made again. Returns the deliveries made.
 */
export async function insertDeliveries(executor: Db, deliveries: NewDelivery[]): Promise<{ id: string }[]> {
  if (deliveries.length === 0) return [];
  const bodies = new Map<string, string>();
  for (const d of deliveries) if (!bodies.has(d.event_id)) bodies.set(d.event_id, d.body);
  const { rows } = await sql<{ id: string }>`
    with kept as (
      insert into webhook_bodies (event_id, body)
      select b.event_id, b.body
        from jsonb_to_recordset(${JSON.stringify([...bodies].map(([event_id, body]) => ({ event_id, body })))}::jsonb)
          as b(event_id text, body text)
      on conflict (event_id) do nothing
    )
    insert into webhook_deliveries (id, webhook_id, event_id, event_type, ticket_id, next_attempt_at)
    select d.id, d.webhook_id, d.event_id, d.event_type, d.ticket_id, now()
      from jsonb_to_recordset(${JSON.stringify(deliveries.map(({ body: _, ...d }, n) => ({ ...d, n })))}::jsonb)
        as d(n int, id uuid, webhook_id uuid, event_id text, event_type text, ticket_id uuid)
     order by d.n
    on conflict (webhook_id, event_id) do nothing
    returning id`.execute(executor);
  return rows;
}

/** The minimal shape of a feed row that dispatch reads (the events domain's FeedRow). */
export interface DispatchRow {
  event: { id: string; type: string; department_id: string | null; ticket_id: string | null };
  /** Its feed cursor, which holds its transaction id; absent (rows made by hand), it is new. */
  cursor?: string;
  /** null: a settings event, for help-desk-wide subscriptions only. */
  visibility: { department_id: string | null; assignee_id: string | null } | null;
}

/**
 * One delivery per matching active subscription for each event, and its first attempt's job,
 * in the caller's transaction (the feed consumer's, which also moves the consumer's cursor).
 * A department's subscription gets only ticket events of that department: what its managers
 * may see of the help desk through it.
 */
export async function dispatchEvents(
  deps: Pick<DeliveryDeps, 'queue'>,
  trx: Db,
  rows: DispatchRow[],
): Promise<number> {
  if (rows.length === 0) return 0;
  // Shared locks: a subscription moved to another department (which deletes its deliveries in
  // its transaction) waits for this batch, or this batch sees it moved; never a delivery of the
  // old scope after the move.
  const hooks = await trx
    .selectFrom('webhooks')
    .select(['id', 'event_types', 'department_id', 'active_since_tx'])
    .where('active', '=', true)
    .orderBy('id')
    .forShare()
    .execute();
  const since = new Map(hooks.map((h) => [h.id, BigInt(h.active_since_tx)]));
  const deliveries: NewDelivery[] = [];
  for (const { event, visibility, cursor } of rows) {
    let body: string | undefined;
    const tx = cursor === undefined ? undefined : decodeCursor(cursor)?.tx;
    for (const hook of hooks) {
      if (hook.event_types.length > 0 && !hook.event_types.includes(event.type)) continue;
      // Written before the subscription was created or turned on: not its own, however late
      // the dispatch comes to it (dispatch lags while webhook work yields to requests).
      if (tx !== undefined && tx < since.get(hook.id)!) continue;
      if (hook.department_id !== null) {
        // The event's department, and the ticket's now: the body carries the ticket as it is now
        // (the feed's policy), so an event from before a transfer out of the department, read
        // after it, does not go to the old department.
        if (
          visibility === null ||
          event.department_id !== hook.department_id ||
          visibility.department_id !== hook.department_id
        )
          continue;
      }
      body ??= JSON.stringify(event);
      deliveries.push({
        id: randomUUID(),
        webhook_id: hook.id,
        event_id: event.id,
        event_type: event.type,
        ticket_id: event.ticket_id,
        body,
      });
    }
  }
  if (deliveries.length === 0) return 0;
  const created = await insertDeliveries(trx, deliveries);
  await enqueueAttempts(
    deps.queue,
    trx,
    created.map((c) => ({ deliveryId: c.id })),
  );
  return created.length;
}

/** Deliveries deleted per statement by the retention. */
export const PRUNE_BATCH = 2_000;

/**
 * The retention: delivered and failed deliveries settled more than `retentionDays` ago
 * (`settled_at`: delivered, or failed, however) are deleted, oldest first,
 * with their attempts (cascade); then the bodies of events older than that which no
 * delivery needs any more (their deliveries pruned, or gone with a deleted or moved
 * subscription). Pending deliveries and their bodies stay whatever their age. Batches of
 * PRUNE_BATCH in short transactions, until a batch is not full or `stopped`; one process at a
 * time (a transaction-level advisory lock per batch: another process that finds it held ends its
 * turn), so two never split an event's deliveries between them and each leave its body.
 */
export async function pruneDeliveries(
  db: Db,
  retentionDays: number,
  stopped: () => boolean = () => false,
): Promise<{ deliveries: number; bodies: number }> {
  const pruned = { deliveries: 0, bodies: 0 };
  const batch = (statement: ReturnType<typeof sql<{ n: number }>>) =>
    db.transaction().execute(async (trx) => {
      const { rows: lock } = await sql<{ held: boolean }>`
        select pg_try_advisory_xact_lock(hashtextextended('deskroute.webhook_retention', 0)) as held`.execute(
        trx,
      );
      if (!lock[0]?.held) return null;
      const { rows } = await statement.execute(trx);
      return Number(rows[0]?.n ?? 0);
    });
  // At most a hundred years back: a larger figure would step outside PostgreSQL's timestamps.
  const cutoff = sql`now() - ${Math.min(retentionDays, 36_500)} * interval '1 day'`;
  for (const [kind, statement] of [
    [
      'deliveries',
      sql<{ n: number }>`
        with gone as (
          delete from webhook_deliveries
           where id in (
             select id from webhook_deliveries
              where status <> 'pending' and settled_at < ${cutoff}
              order by settled_at
              limit ${PRUNE_BATCH}
              -- A subscription being deleted or moved deletes its deliveries in its own order:
              -- never wait on (or deadlock with) it; its rows go with it anyway.
              for update skip locked)
          returning 1)
        select count(*)::int as n from gone`,
    ],
    [
      'bodies',
      sql<{ n: number }>`
        with gone as (
          delete from webhook_bodies
           where event_id in (
             select b.event_id from webhook_bodies b
              where b.created_at < ${cutoff}
                and not exists (select 1 from webhook_deliveries d where d.event_id = b.event_id)
              order by b.created_at
              limit ${PRUNE_BATCH})
          returning 1)
        select count(*)::int as n from gone`,
    ],
  ] as const) {
    for (;;) {
      const n = await batch(statement);
      if (n === null) return pruned;
      pruned[kind] += n;
      if (n < PRUNE_BATCH || stopped()) break;
    }
    if (stopped()) return pruned;
  }
  return pruned;
}
