import { type Kysely, sql } from 'kysely';
import type { Database, WebhookDeliveryRow, WebhookDeliveryStatus, WebhookRow } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import { FEED_HORIZON } from '../events/repository.ts';
import { insertDeliveries, type NewDelivery } from './delivery.ts';
import type { Webhook, WebhookDelivery } from './schemas.ts';

type Executor = Kysely<Database>;

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function toWebhook(row: WebhookRow): Webhook {
  return {
    id: row.id,
    url: row.url,
    event_types: row.event_types,
    department_id: row.department_id,
    active: row.active,
    description: row.description,
    disabled_reason: row.disabled_reason,
    disabled_at: iso(row.disabled_at),
    previous_secret_expires_at: iso(row.previous_secret_expires_at),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export function toDelivery(row: WebhookDeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    webhook_id: row.webhook_id,
    event_id: row.event_id,
    event_type: row.event_type,
    ticket_id: row.ticket_id,
    status: row.status,
    attempts: row.attempts,
    last_status_code: row.last_status_code,
    last_latency_ms: row.last_latency_ms,
    last_error: row.last_error,
    last_attempt_at: iso(row.last_attempt_at),
    next_attempt_at: row.status === 'pending' ? iso(row.next_attempt_at) : null,
    delivered_at: iso(row.delivered_at),
    created_at: row.created_at.toISOString(),
  };
}

export function insertWebhook(
  db: Executor,
  values: {
    url: string;
    event_types: string[];
    department_id: string | null;
    active: boolean;
    description: string;
    secret: string;
    created_by: string;
  },
) {
  return db
    .insertInto('webhooks')
    .values({
      ...values,
      event_types: sql<string[]>`${values.event_types}::text[]`,
      // Events committed from now on are its own (migration 0045).
      active_since_tx: FEED_HORIZON,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Whether any subscription is on: with none, dispatch only moves its cursor along. */
export async function anyActiveWebhook(db: Executor): Promise<boolean> {
  const row = await db
    .selectFrom('webhooks')
    .select('id')
    .where('active', '=', true)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

export function findWebhook(db: Executor, id: string) {
  return db.selectFrom('webhooks').selectAll().where('id', '=', id).executeTakeFirst();
}

export function lockWebhook(trx: Executor, id: string) {
  return trx.selectFrom('webhooks').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export function webhooksOfDepartment(db: Executor, departmentId: string) {
  return db
    .selectFrom('webhooks')
    .selectAll()
    .where('department_id', '=', departmentId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

export function updateWebhook(
  trx: Executor,
  id: string,
  values: Partial<{
    url: string;
    event_types: string[];
    department_id: string | null;
    active: boolean;
    description: string;
    secret: string;
    previous_secret: string | null;
    previous_secret_expires_at: Date | null;
    disabled_reason: string | null;
    disabled_at: Date | null;
    consecutive_failures: number;
    failing_since: Date | null;
  }>,
  options: { turnedOn?: boolean } = {},
) {
  const { event_types, ...rest } = values;
  return trx
    .updateTable('webhooks')
    .set({
      ...rest,
      ...(event_types && { event_types: sql<string[]>`${event_types}::text[]` }),
      // Turned on now: events committed from now on are its own (migration 0045), this
      // transaction's own too (its webhook.updated): it already has an id (the row's lock), and a
      // snapshot leaves its own transaction out of those running.
      ...(options.turnedOn && {
        active_since_tx: sql<string>`least(${FEED_HORIZON}, coalesce(pg_current_xact_id_if_assigned(), ${FEED_HORIZON}))`,
      }),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteWebhook(trx: Executor, id: string) {
  await trx.deleteFrom('webhooks').where('id', '=', id).execute();
}

const webhookKeyset = (scope: string): Keyset<WebhookRow> => ({
  list: `webhooks:${scope}`,
  columns: [sql`created_at`, sql`id`],
  key: (row) => [row.created_at.toISOString(), row.id],
  direction: 'desc',
});

/** Admins: every webhook (departmentIds undefined); others: those of the departments given. */
export async function listWebhooks(
  db: Executor,
  departmentIds: string[] | undefined,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset = webhookKeyset(departmentIds ? departmentIds.join(',') : 'all');
  const after = afterCursor(keyset, page.cursor);
  if (departmentIds && departmentIds.length === 0) return { data: [], next_cursor: null };
  const rows = await db
    .selectFrom('webhooks')
    .selectAll()
    .$if(departmentIds !== undefined, (q) => q.where('department_id', 'in', departmentIds ?? []))
    .$if(after !== null, (q) => q.where(after as never))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toWebhook);
}

// Deliveries

/** Every delivery of a subscription, pending ones included (their jobs then find nothing). */
export async function deleteDeliveries(trx: Executor, webhookId: string) {
  await trx.deleteFrom('webhook_deliveries').where('webhook_id', '=', webhookId).execute();
}

export async function insertDelivery(db: Executor, values: NewDelivery) {
  await insertDeliveries(db, [values]);
}

export function findDelivery(db: Executor, webhookId: string, id: string, options: { lock?: boolean } = {}) {
  return db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('id', '=', id)
    .where('webhook_id', '=', webhookId)
    .$if(options.lock === true, (q) => q.forUpdate())
    .executeTakeFirst();
}

/** What the ticket visibility policy reads of a ticket, as it is now. */
export function ticketVisibility(db: Executor, ticketId: string) {
  return db
    .selectFrom('tickets')
    .select(['department_id', 'assignee_id'])
    .where('id', '=', ticketId)
    .executeTakeFirst();
}

/** A delivery's attempts, oldest first, and the body its event was sent with. */
export async function deliveryDetail(db: Executor, delivery: WebhookDeliveryRow) {
  const [attempts, body] = await Promise.all([
    db
      .selectFrom('webhook_delivery_attempts')
      .select(['attempt', 'started_at', 'status_code', 'latency_ms', 'error'])
      .where('delivery_id', '=', delivery.id)
      .orderBy('attempt')
      .execute(),
    db
      .selectFrom('webhook_bodies')
      .select('body')
      .where('event_id', '=', delivery.event_id)
      .executeTakeFirst(),
  ]);
  return {
    ...toDelivery(delivery),
    event: body ? JSON.parse(body.body) : null,
    attempt_log: attempts.map((a) => ({ ...a, started_at: a.started_at.toISOString() })),
  };
}

export async function listDeliveries(
  db: Executor,
  webhookId: string,
  status: WebhookDeliveryStatus | undefined,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<WebhookDeliveryRow> = {
    list: `webhook-deliveries:${webhookId}:${status ?? ''}`,
    columns: [sql`seq`],
    key: (row) => [row.seq],
    direction: 'desc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('webhook_id', '=', webhookId)
    .$if(status !== undefined, (q) => q.where('status', '=', status as WebhookDeliveryStatus))
    .$if(after !== null, (q) => q.where(after as never))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toDelivery);
}

/** A failed delivery back to pending, now, with a fresh retry window; its attempts stay. */
export function requeueDelivery(trx: Executor, id: string) {
  return trx
    .updateTable('webhook_deliveries')
    .set({
      status: 'pending',
      settled_at: null,
      next_attempt_at: sql<Date>`now()`,
      first_attempt_at: null,
      locked_until: null,
    })
    .where('id', '=', id)
    .where('status', '=', 'failed')
    .returningAll()
    .executeTakeFirst();
}
