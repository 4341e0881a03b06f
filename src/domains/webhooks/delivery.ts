import { randomBytes, randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import { Webhook as Signer } from 'standardwebhooks';
import type { WebhookConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import type { Database, WebhookRow } from '../../db/types.ts';
import type { JobQueue } from '../../jobs/queue.ts';
import { postOnce } from './http-post.ts';

export const DELIVERY_QUEUE = 'webhook-delivery';

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
export function signatureHeaders(webhook: WebhookRow, deliveryId: string, body: string, at: Date) {
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

export async function enqueueAttempt(
  queue: JobQueue | undefined,
  executor: Db,
  deliveryId: string,
  at?: Date,
) {
  if (!queue) return;
  await queue.enqueue(executor, DELIVERY_QUEUE, { deliveryId }, at ? { startAt: at } : {});
}

type Claim =
  | { kind: 'go'; webhook: WebhookRow; body: string; attempts: number; firstAttemptAt: Date }
  | { kind: 'skip' };

/**
 * One delivery attempt, run by the queue's worker (and inline by ping). Each attempt is made
 * once across processes: claiming it takes a lease (`locked_until`) in a short transaction; the
 * POST runs with no transaction and no connection held; the outcome is written in a second one,
 * with the next attempt's job. A process killed mid-POST leaves the lease to expire, and the
 * queue runs the job again (its expiry is longer than the lease).
 */
export async function attemptDelivery(
  deps: DeliveryDeps,
  deliveryId: string,
  options: { retry: boolean; evenIfInactive?: boolean } = { retry: true },
): Promise<void> {
  const { db, config } = deps;
  const leaseMs = config.timeoutMs + 5_000;
  const claim: Claim = await db.transaction().execute(async (trx) => {
    const row = await trx
      .selectFrom('webhook_deliveries as d')
      .innerJoin('webhooks as w', 'w.id', 'd.webhook_id')
      .select([
        'd.status',
        'd.body',
        'd.attempts',
        'd.seq',
        'd.ticket_id',
        'd.webhook_id',
        'd.next_attempt_at',
        sql<boolean>`d.next_attempt_at <= now()`.as('due'),
        sql<Date | null>`case when d.locked_until > now() then d.locked_until end`.as('leased_until'),
        sql<Date>`coalesce(d.first_attempt_at, now())`.as('first_attempt_at'),
      ])
      .where('d.id', '=', deliveryId)
      .forUpdate('d')
      .executeTakeFirst();
    if (row?.status !== 'pending') return { kind: 'skip' } as const;
    if (!row.due) {
      // Early (clocks, rounding): come back when it is due rather than lose the attempt.
      await enqueueAttempt(deps.queue, trx, deliveryId, row.next_attempt_at ?? undefined);
      return { kind: 'skip' } as const;
    }
    if (row.leased_until) {
      // Another process is on it; look again once its lease ends, in case it died.
      await enqueueAttempt(deps.queue, trx, deliveryId, new Date(row.leased_until.getTime() + 100));
      return { kind: 'skip' } as const;
    }
    const webhook = await trx
      .selectFrom('webhooks')
      .selectAll()
      .where('id', '=', row.webhook_id)
      .executeTakeFirstOrThrow();
    if (!webhook.active && !options.evenIfInactive) {
      await trx
        .updateTable('webhook_deliveries')
        .set({ status: 'failed', last_error: 'the webhook is not active', locked_until: null })
        .where('id', '=', deliveryId)
        .execute();
      await wakeLane(deps, trx, row.webhook_id, row.ticket_id);
      return { kind: 'skip' } as const;
    }
    if (row.ticket_id !== null) {
      // Ordered per ticket: an earlier delivery of this subscription for this ticket goes first;
      // when it is settled, it wakes this one (wakeLane).
      const earlier = await trx
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('webhook_id', '=', row.webhook_id)
        .where('ticket_id', '=', row.ticket_id)
        .where('status', '=', 'pending')
        .where('seq', '<', row.seq)
        .limit(1)
        .executeTakeFirst();
      if (earlier) return { kind: 'skip' } as const;
    }
    await trx
      .updateTable('webhook_deliveries')
      .set({
        locked_until: sql<Date>`now() + ${`${leaseMs} milliseconds`}::interval`,
        first_attempt_at: row.first_attempt_at,
      })
      .where('id', '=', deliveryId)
      .execute();
    return {
      kind: 'go',
      webhook,
      body: row.body,
      attempts: row.attempts,
      firstAttemptAt: row.first_attempt_at,
    } as const;
  });
  if (claim.kind === 'skip') return;

  const startedAt = new Date();
  const headers = {
    'content-type': 'application/json',
    'user-agent': 'Deskroute-Webhooks/1',
    ...signatureHeaders(claim.webhook, deliveryId, claim.body, startedAt),
  };
  const outcome = await postOnce(claim.webhook.url, headers, claim.body, {
    timeoutMs: config.timeoutMs,
    allowPrivate: config.allowPrivate,
  });
  const ok = outcome.error === null;
  const attempt = claim.attempts + 1;
  let nextAt: Date | null = null;
  if (!ok && options.retry) {
    const candidate = new Date(Date.now() + retryDelayMs(config, attempt));
    if (candidate.getTime() <= claim.firstAttemptAt.getTime() + config.retryWindowMs) nextAt = candidate;
  }
  const status = ok ? 'delivered' : nextAt ? 'pending' : 'failed';
  deps.log.info(
    {
      delivery: deliveryId,
      webhook: claim.webhook.id,
      attempt,
      status,
      code: outcome.statusCode,
      ms: outcome.latencyMs,
    },
    'webhook attempt',
  );
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('webhook_delivery_attempts')
      .values({
        delivery_id: deliveryId,
        attempt,
        started_at: startedAt,
        status_code: outcome.statusCode,
        latency_ms: outcome.latencyMs,
        error: outcome.error,
      })
      .onConflict((oc) => oc.doNothing())
      .execute();
    await trx
      .updateTable('webhook_deliveries')
      .set({
        status,
        attempts: attempt,
        locked_until: null,
        next_attempt_at: nextAt,
        last_attempt_at: startedAt,
        last_status_code: outcome.statusCode,
        last_latency_ms: outcome.latencyMs,
        last_error: outcome.error?.slice(0, 500) ?? null,
        ...(ok && { delivered_at: sql<Date>`now()` }),
      })
      .where('id', '=', deliveryId)
      .execute();
    if (nextAt) await enqueueAttempt(deps.queue, trx, deliveryId, nextAt);
    else await wakeLane(deps, trx, claim.webhook.id, null, deliveryId);
    await trackHealth(deps, trx, claim.webhook.id, ok);
  });
}

/** The next pending delivery of a subscription's ticket lane, now that the one before is settled. */
async function wakeLane(
  deps: DeliveryDeps,
  trx: Db,
  webhookId: string,
  ticketId: string | null,
  settled?: string,
) {
  let ticket = ticketId;
  if (settled) {
    const row = await trx
      .selectFrom('webhook_deliveries')
      .select('ticket_id')
      .where('id', '=', settled)
      .executeTakeFirst();
    ticket = row?.ticket_id ?? null;
  }
  if (ticket === null) return;
  const next = await trx
    .selectFrom('webhook_deliveries')
    .select('id')
    .where('webhook_id', '=', webhookId)
    .where('ticket_id', '=', ticket)
    .where('status', '=', 'pending')
    .orderBy('seq')
    .limit(1)
    .executeTakeFirst();
  if (next) await enqueueAttempt(deps.queue, trx, next.id);
}

/**
 * A subscription is disabled when its attempts have failed `disableAfterFailures` times in a
 * row and for at least `disableAfterMs` (20 and 24 h by default): one flaky hour does not
 * disable it, a receiver gone for a day does. Any 2xx resets both.
 */
async function trackHealth(deps: DeliveryDeps, trx: Transaction<Database>, webhookId: string, ok: boolean) {
  if (ok) {
    await trx
      .updateTable('webhooks')
      .set({ consecutive_failures: 0, failing_since: null })
      .where('id', '=', webhookId)
      .where('consecutive_failures', '>', 0)
      .execute();
    return;
  }
  const row = await trx
    .updateTable('webhooks')
    .set({
      consecutive_failures: sql<number>`consecutive_failures + 1`,
      failing_since: sql<Date>`coalesce(failing_since, now())`,
    })
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

/** The minimal shape of a feed row that dispatch reads (the events domain's FeedRow). */
export interface DispatchRow {
  event: { id: string; type: string; department_id: string | null; ticket_id: string | null };
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
  const hooks = await trx
    .selectFrom('webhooks')
    .select(['id', 'event_types', 'department_id'])
    .where('active', '=', true)
    .execute();
  let created = 0;
  for (const { event, visibility } of rows) {
    for (const hook of hooks) {
      if (hook.event_types.length > 0 && !hook.event_types.includes(event.type)) continue;
      if (hook.department_id !== null) {
        if (visibility === null || event.department_id !== hook.department_id) continue;
      }
      const delivery = await trx
        .insertInto('webhook_deliveries')
        .values({
          id: randomUUID(),
          webhook_id: hook.id,
          event_id: event.id,
          event_type: event.type,
          ticket_id: event.ticket_id,
          body: JSON.stringify(event),
          next_attempt_at: sql<Date>`now()`,
        })
        .onConflict((oc) => oc.columns(['webhook_id', 'event_id']).doNothing())
        .returning('id')
        .executeTakeFirst();
      if (delivery) {
        created++;
        await enqueueAttempt(deps.queue, trx, delivery.id);
      }
    }
  }
  return created;
}
