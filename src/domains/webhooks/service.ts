import { randomUUID } from 'node:crypto';

import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import type { Transaction } from 'kysely';
import { atLeast, isAdmin, type Principal } from '../../access/policy.ts';
import { can, loadTicketAccess } from '../../access/tickets.ts';
import type { WebhookConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import type { Database, DepartmentRole, WebhookDeliveryStatus, WebhookRow } from '../../db/types.ts';
import { DomainError, forbidden, notFound, unavailable } from '../../errors.ts';
import type { JobQueue } from '../../jobs/queue.ts';
import { roleInDepartment } from '../departments/repository.ts';
import { recordSettingsEvent, settingsActor } from '../events/repository.ts';
import { checkWebhookUrl } from './address-guard.ts';
import { attemptDelivery, enqueueAttempt, newSecret } from './delivery.ts';
import * as repo from './repository.ts';

export interface WebhookDeps {
  db: Db;
  log: Logger;
  config: WebhookConfig;
  queue: JobQueue | undefined;
}

/** What settings events say about a webhook: never its secret. */
export function webhookSummary(row: WebhookRow) {
  return {
    id: row.id,
    url: row.url,
    event_types: row.event_types,
    department_id: row.department_id,
    active: row.active,
    description: row.description,
  };
}

function changesBetween(before: Record<string, unknown>, after: Record<string, unknown>) {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const key of Object.keys(after)) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key]))
      changes[key] = { from: before[key], to: after[key] };
  }
  return changes;
}

/** webhook.disabled, by the system, when deliveries kept failing. */
export async function recordDisabled(trx: Transaction<Database>, row: WebhookRow) {
  await recordSettingsEvent(trx, {
    type: 'webhook.disabled',
    actor: { type: 'system' },
    departmentId: row.department_id,
    subjectId: row.id,
    payload: { webhook: webhookSummary(row), reason: row.disabled_reason ?? 'deliveries kept failing' },
  });
}

async function departmentRole(
  db: Db,
  principal: Principal,
  departmentId: string,
): Promise<DepartmentRole | null> {
  if (principal.departments) return principal.departments.get(departmentId) ?? null;
  return roleInDepartment(db, principal.agentId, departmentId);
}

/**
 * Admins manage every webhook; a department's managers manage that department's. A webhook the
 * caller may not see (help-desk wide, or of a department they are not in) answers 404; one of
 * their department they may not manage, 403.
 */
async function manageable(db: Db, principal: Principal, row: WebhookRow | undefined): Promise<WebhookRow> {
  if (!row) throw notFound('webhook');
  if (isAdmin(principal)) return row;
  if (row.department_id === null) throw notFound('webhook');
  const role = await departmentRole(db, principal, row.department_id);
  if (role === null) throw notFound('webhook');
  if (!atLeast(role, 'manager'))
    throw forbidden("Only the department's managers and admins manage its webhooks.");
  return row;
}

async function mayScope(db: Db, principal: Principal, departmentId: string | null) {
  if (isAdmin(principal)) {
    if (departmentId !== null) {
      const exists = await db
        .selectFrom('departments')
        .select('id')
        .where('id', '=', departmentId)
        .executeTakeFirst();
      if (!exists) {
        const error = new DomainError('unprocessable', 'unknown_department', 'No such department.');
        error.errors = [{ field: 'body/department_id', message: 'no such department' }];
        throw error;
      }
    }
    return;
  }
  if (departmentId === null) {
    throw forbidden(
      'Only owners and admins manage help-desk-wide webhooks; give a department_id.',
      'admin_required',
    );
  }
  if (!atLeast(await departmentRole(db, principal, departmentId), 'manager')) {
    throw forbidden("Only the department's managers and admins manage its webhooks.");
  }
}

export async function createWebhook(
  deps: WebhookDeps,
  principal: Principal,
  input: {
    url: string;
    event_types?: string[];
    department_id?: string | null;
    active?: boolean;
    description?: string;
  },
) {
  const departmentId = input.department_id ?? null;
  await mayScope(deps.db, principal, departmentId);
  const url = await checkWebhookUrl(input.url, deps.config.allowPrivate, deps.config.dns);
  const secret = newSecret();
  const row = await deps.db.transaction().execute(async (trx) => {
    const created = await repo.insertWebhook(trx, {
      url,
      event_types: input.event_types ?? [],
      department_id: departmentId,
      active: input.active ?? true,
      description: input.description ?? '',
      secret,
      created_by: principal.agentId,
    });
    await recordSettingsEvent(trx, {
      type: 'webhook.created',
      actor: settingsActor(principal),
      departmentId: created.department_id,
      subjectId: created.id,
      payload: { webhook: webhookSummary(created) },
    });
    return created;
  });
  return { ...repo.toWebhook(row), secret };
}

export async function getWebhook(deps: WebhookDeps, principal: Principal, id: string) {
  return repo.toWebhook(await manageable(deps.db, principal, await repo.findWebhook(deps.db, id)));
}

export async function listWebhooks(
  deps: WebhookDeps,
  principal: Principal,
  page: { limit: number; cursor?: string | undefined },
) {
  if (isAdmin(principal)) return repo.listWebhooks(deps.db, undefined, page);
  const managed = await deps.db
    .selectFrom('department_members')
    .select('department_id')
    .where('agent_id', '=', principal.agentId)
    .where('role', '=', 'manager')
    .orderBy('department_id')
    .execute();
  return repo.listWebhooks(
    deps.db,
    managed.map((m) => m.department_id),
    page,
  );
}

export async function updateWebhook(
  deps: WebhookDeps,
  principal: Principal,
  id: string,
  input: {
    url?: string;
    event_types?: string[];
    department_id?: string | null;
    active?: boolean;
    description?: string;
  },
) {
  await manageable(deps.db, principal, await repo.findWebhook(deps.db, id));
  if (input.department_id !== undefined) await mayScope(deps.db, principal, input.department_id);
  const url =
    input.url === undefined
      ? undefined
      : await checkWebhookUrl(input.url, deps.config.allowPrivate, deps.config.dns);
  const row = await deps.db.transaction().execute(async (trx) => {
    const before = await manageable(trx, principal, await repo.lockWebhook(trx, id));
    const after = await repo.updateWebhook(
      trx,
      id,
      {
        ...(url !== undefined && { url }),
        ...(input.event_types !== undefined && { event_types: input.event_types }),
        ...(input.department_id !== undefined && { department_id: input.department_id }),
        ...(input.description !== undefined && { description: input.description }),
        ...(input.active !== undefined && { active: input.active }),
        // Turning it back on forgets why it was turned off, and its failure streak.
        ...(input.active === true && {
          disabled_reason: null,
          disabled_at: null,
          consecutive_failures: 0,
          failing_since: null,
        }),
      },
      { turnedOn: input.active === true && !before.active },
    );
    if (after.department_id !== null && after.department_id !== before.department_id) {
      // Its deliveries so far were made for the former scope (another department's tickets, or
      // everything): the department's managers, who may now change the URL, must neither
      // receive the pending ones nor list or retry any of them.
      await repo.deleteDeliveries(trx, id);
    }
    const changes = changesBetween(webhookSummary(before), webhookSummary(after));
    if (Object.keys(changes).length > 0) {
      await recordSettingsEvent(trx, {
        type: 'webhook.updated',
        actor: settingsActor(principal),
        departmentId: after.department_id,
        subjectId: id,
        payload: { webhook: webhookSummary(after), changes },
      });
    }
    return after;
  });
  return repo.toWebhook(row);
}

export async function deleteWebhook(deps: WebhookDeps, principal: Principal, id: string) {
  await deps.db.transaction().execute(async (trx) => {
    const row = await manageable(trx, principal, await repo.lockWebhook(trx, id));
    await repo.deleteWebhook(trx, id);
    await recordSettingsEvent(trx, {
      type: 'webhook.deleted',
      actor: settingsActor(principal),
      departmentId: row.department_id,
      subjectId: id,
      payload: { webhook: webhookSummary(row) },
    });
  });
}

/**
 * webhook.deleted for each webhook of a department being deleted: they go with it (on delete
 * cascade). Call it in the deletion's transaction, with the department locked, before the row goes.
 */
export async function recordDepartmentWebhooksGone(
  trx: Transaction<Database>,
  principal: Principal,
  departmentId: string,
) {
  for (const row of await repo.webhooksOfDepartment(trx, departmentId)) {
    await recordSettingsEvent(trx, {
      type: 'webhook.deleted',
      actor: settingsActor(principal),
      departmentId,
      subjectId: row.id,
      payload: { webhook: webhookSummary(row), reason: 'department_deleted' },
    });
  }
}

/** A new secret; the old one keeps signing alongside it for the overlap window. */
export async function rotateSecret(deps: WebhookDeps, principal: Principal, id: string) {
  const secret = newSecret();
  const row = await deps.db.transaction().execute(async (trx) => {
    const current = await manageable(trx, principal, await repo.lockWebhook(trx, id));
    const rotated = await repo.updateWebhook(trx, id, {
      secret,
      previous_secret: current.secret,
      previous_secret_expires_at: new Date(Date.now() + deps.config.secretOverlapMs),
    });
    await recordSettingsEvent(trx, {
      type: 'webhook.secret_rotated',
      actor: settingsActor(principal),
      departmentId: rotated.department_id,
      subjectId: id,
      payload: {
        webhook: webhookSummary(rotated),
        previous_secret_expires_at: rotated.previous_secret_expires_at?.toISOString(),
      },
    });
    return rotated;
  });
  return { ...repo.toWebhook(row), secret };
}

export async function listDeliveries(
  deps: WebhookDeps,
  principal: Principal,
  id: string,
  status: WebhookDeliveryStatus | undefined,
  page: { limit: number; cursor?: string | undefined },
) {
  await manageable(deps.db, principal, await repo.findWebhook(deps.db, id));
  return repo.listDeliveries(deps.db, id, status, page);
}

/** One delivery with its attempts and the body it sends. */
export async function getDelivery(deps: WebhookDeps, principal: Principal, id: string, deliveryId: string) {
  await manageable(deps.db, principal, await repo.findWebhook(deps.db, id));
  const row = await repo.findDelivery(deps.db, id, deliveryId);
  if (!row) throw notFound('delivery');
  const detail = await repo.deliveryDetail(deps.db, row);
  if (!(await mayReadEvent(deps.db, principal, row))) detail.event = null;
  return detail;
}

/**
 * Whether the caller may read a delivery's event now, as the feed decides: a department's
 * manager does not read a ticket transferred out of the department since. The detail hides the
 * event then, and a retry is refused, or it would send the event to a URL the manager may point
 * anywhere.
 */
async function mayReadEvent(db: Db, principal: Principal, delivery: { ticket_id: string | null }) {
  if (delivery.ticket_id === null || isAdmin(principal)) return true;
  const ticket = await repo.ticketVisibility(db, delivery.ticket_id);
  return ticket !== undefined && can(await loadTicketAccess(db, principal), ticket, 'read');
}

function needQueue(deps: WebhookDeps): JobQueue {
  if (!deps.queue) throw unavailable('jobs_unavailable', 'Background jobs are not running here.', 5);
  return deps.queue;
}

export async function retryDelivery(deps: WebhookDeps, principal: Principal, id: string, deliveryId: string) {
  await manageable(deps.db, principal, await repo.findWebhook(deps.db, id));
  const row = await deps.db.transaction().execute(async (trx) => {
    // Locked: the retention (which skips locked rows) cannot delete it between this read and
    // the requeue, and a delivery it deleted first is not found (404, not "not failed").
    const found = await repo.findDelivery(trx, id, deliveryId, { lock: true });
    // An event the caller may no longer read answers as a delivery that is not theirs.
    if (!found || !(await mayReadEvent(trx, principal, found))) throw notFound('delivery');
    const queue = needQueue(deps);
    const requeued = await repo.requeueDelivery(trx, deliveryId);
    if (!requeued) {
      throw new DomainError(
        'conflict',
        'delivery_not_failed',
        `The delivery is ${found.status}; only failed ones are retried.`,
      );
    }
    await enqueueAttempt(queue, trx, deliveryId);
    return requeued;
  });
  return repo.toDelivery(row);
}

/** A webhook.ping delivery, attempted now (once, no retries); answers with its outcome. */
export async function ping(deps: WebhookDeps, principal: Principal, id: string) {
  const webhook = await manageable(deps.db, principal, await repo.findWebhook(deps.db, id));
  const deliveryId = randomUUID();
  const event = {
    id: `ping_${deliveryId}`,
    type: 'webhook.ping',
    occurred_at: new Date().toISOString(),
    actor: {
      type: 'system',
      agent_id: null,
      contact_id: null,
      rule_id: null,
      rule_version: null,
      token_id: null,
    },
    department_id: webhook.department_id,
    ticket_id: null,
    payload: { webhook_id: webhook.id },
  };
  try {
    await repo.insertDelivery(deps.db, {
      id: deliveryId,
      webhook_id: webhook.id,
      event_id: event.id,
      event_type: event.type,
      ticket_id: null,
      body: JSON.stringify(event),
    });
  } catch (error) {
    // Deleted since it was read: the same answer as had it been gone before.
    if ((error as { code?: string }).code === '23503') throw notFound('webhook');
    throw error;
  }
  await attemptDelivery({ ...deps, onDisabled: recordDisabled }, deliveryId, {
    retry: false,
    evenIfInactive: true,
  });
  const row = await repo.findDelivery(deps.db, id, deliveryId);
  // Gone with its webhook, deleted while the attempt ran.
  if (!row) throw notFound('webhook');
  return repo.toDelivery(row);
}
