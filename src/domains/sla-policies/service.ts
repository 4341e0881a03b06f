import { type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { DomainError, type FieldError, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import type { ValidationError } from '../../rule-engine/index.ts';
import { checkPolicy } from '../../sla/index.ts';
import { loadCatalog } from '../automation-rules/repository.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import { replanLiveTickets } from '../tickets/repository.ts';
import * as repo from './repository.ts';
import {
  type CreateSlaPolicyInput,
  type EscalationInput,
  MAX_POLICIES,
  type SlaPolicyView,
  type UpdateSlaPolicyInput,
} from './schemas.ts';

const MAX_LISTED_ERRORS = 20;

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

function invalidPolicy(errors: ValidationError[]) {
  const first = errors[0]!;
  const more = errors.length - 1;
  return unprocessable(
    'invalid_sla_policy',
    `The SLA policy is not valid: body${first.pointer} ${first.message}${more > 0 ? ` (and ${more} more)` : ''}.`,
    errors.slice(0, MAX_LISTED_ERRORS).map((e) => ({ field: `body${e.pointer}`, message: e.message })),
  );
}

/** src/sla's checkPolicy on the values as they will be stored; the catalog names departments and fields. */
async function assertValid(db: Db, values: repo.PolicyValues, id: string, version: number) {
  const errors = checkPolicy({ id, version, ...values }, await loadCatalog(db));
  if (errors.length > 0) throw invalidPolicy(errors);
}

/**
 * The end of every policy write: a fresh key makes each process reload the list, and every live
 * ticket is planned again under it by the SLA timer (an edit, a new policy, a new order, a
 * deletion reach running tickets within seconds, not at their next write).
 */
async function policiesChanged(trx: Parameters<typeof repo.renewPoliciesKey>[0]) {
  await repo.renewPoliciesKey(trx);
  await replanLiveTickets(trx);
}

export async function listPolicies(db: Db) {
  return { data: await repo.listPolicies(db) };
}

export async function getPolicy(db: Db, id: string): Promise<SlaPolicyView> {
  const policy = await repo.findPolicy(db, id);
  if (!policy) throw notFound('sla_policy');
  return policy;
}

const valuesOf = (p: SlaPolicyView): repo.PolicyValues => ({
  name: p.name,
  position: p.position,
  active: p.active,
  conditions: p.conditions,
  targets: p.targets,
  pause_when_answered: p.pause_when_answered,
  on_transfer: p.on_transfer,
  warn_before_minutes: p.warn_before_minutes,
  escalations: p.escalations,
});

/** The escalations as stored: kinds and notify_supervisors filled in where the body left them out. */
const escalationsOf = (input: EscalationInput[]) =>
  input.map((e) => ({
    on: e.on,
    kinds: e.kinds ?? [],
    action: e.action,
    notify_supervisors: e.notify_supervisors ?? false,
  })) as repo.PolicyValues['escalations'];

// Checked with a placeholder id: checkPolicy wants one, the database gives the real one.
const NEW_ID = '00000000-0000-0000-0000-000000000000';

export async function createPolicy(db: Db, principal: Principal, input: CreateSlaPolicyInput) {
  requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    await repo.lockPoliciesState(trx);
    const { count, last } = await repo.countPolicies(trx);
    if (count >= MAX_POLICIES) {
      throw unprocessable('too_many_sla_policies', `A help desk has at most ${MAX_POLICIES} SLA policies.`, [
        { field: 'body', message: `at most ${MAX_POLICIES} policies` },
      ]);
    }
    const values: repo.PolicyValues = {
      name: input.name.trim(),
      position: input.position ?? (last ?? 0) + 1,
      active: input.active ?? true,
      conditions: input.conditions,
      targets: input.targets as repo.PolicyValues['targets'],
      pause_when_answered: input.pause_when_answered ?? false,
      on_transfer: input.on_transfer ?? 'continue',
      warn_before_minutes: input.warn_before_minutes ?? null,
      escalations: escalationsOf(input.escalations ?? []),
    };
    await assertValid(trx, values, NEW_ID, 1);
    const policy = await repo.insertPolicy(trx, values);
    await policiesChanged(trx);
    await recordSettingsChange(
      trx,
      principal,
      'sla_policy.created',
      { subjectId: policy.id },
      { sla_policy: policy },
    );
    return policy;
  });
}

export async function updatePolicy(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: UpdateSlaPolicyInput,
) {
  requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    await repo.lockPoliciesState(trx);
    const current = await repo.lockPolicy(trx, id);
    if (!current) throw notFound('sla_policy');
    assertIfMatch(preconditions.ifMatch, current);
    const values: repo.PolicyValues = {
      ...valuesOf(current),
      ...(patch.name !== undefined && { name: patch.name.trim() }),
      ...(patch.position !== undefined && { position: patch.position }),
      ...(patch.active !== undefined && { active: patch.active }),
      ...(patch.conditions !== undefined && { conditions: patch.conditions }),
      ...(patch.targets !== undefined && { targets: patch.targets as repo.PolicyValues['targets'] }),
      ...(patch.pause_when_answered !== undefined && { pause_when_answered: patch.pause_when_answered }),
      ...(patch.on_transfer !== undefined && { on_transfer: patch.on_transfer }),
      ...(patch.warn_before_minutes !== undefined && { warn_before_minutes: patch.warn_before_minutes }),
      ...(patch.escalations !== undefined && { escalations: escalationsOf(patch.escalations) }),
    };
    await assertValid(trx, values, id, current.version);
    const changes = changesBetween(valuesOf(current), values);
    if (Object.keys(changes).length === 0) return current;
    const policy = await repo.updatePolicy(trx, id, values);
    await policiesChanged(trx);
    await recordSettingsChange(
      trx,
      principal,
      'sla_policy.updated',
      { subjectId: id },
      { sla_policy: policy, changes },
    );
    return policy;
  });
}

export async function deletePolicy(db: Db, principal: Principal, preconditions: Preconditions, id: string) {
  requireAdmin(principal);
  await db.transaction().execute(async (trx) => {
    await repo.lockPoliciesState(trx);
    const current = await repo.lockPolicy(trx, id);
    if (!current) throw notFound('sla_policy');
    assertIfMatch(preconditions.ifMatch, current);
    await repo.deletePolicy(trx, id);
    await policiesChanged(trx);
    await recordSettingsChange(
      trx,
      principal,
      'sla_policy.deleted',
      { subjectId: id },
      { sla_policy: current },
    );
  });
}

/** Positions become 1, 2, 3... in the order given; each policy that moves gets a new version. */
export async function reorderPolicies(db: Db, principal: Principal, policyIds: string[]) {
  requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    await repo.lockPoliciesState(trx);
    const rows = await repo.lockAllPolicies(trx);
    const known = new Map(rows.map((r) => [r.id, r]));
    const seen = new Set<string>();
    const errors: FieldError[] = [];
    policyIds.forEach((id, i) => {
      if (!known.has(id)) errors.push({ field: `body/policy_ids/${i}`, message: 'no such SLA policy' });
      else if (seen.has(id))
        errors.push({ field: `body/policy_ids/${i}`, message: 'appears more than once' });
      seen.add(id);
    });
    const missing = rows.filter((r) => !seen.has(r.id));
    if (missing.length > 0) {
      errors.push({
        field: 'body/policy_ids',
        message: `must list every SLA policy; missing: ${missing.map((r) => r.id).join(', ')}`,
      });
    }
    if (errors.length > 0) {
      throw unprocessable(
        'invalid_sla_policy_order',
        'List every SLA policy exactly once, in the order they are tried.',
        errors,
      );
    }
    const byId = new Map(known);
    let moved = false;
    for (const [i, id] of policyIds.entries()) {
      const before = known.get(id)!;
      if (before.position === i + 1) continue;
      moved = true;
      const after = await repo.setPosition(trx, id, i + 1);
      byId.set(id, after);
      await recordSettingsChange(
        trx,
        principal,
        'sla_policy.updated',
        { subjectId: id },
        { sla_policy: after, changes: { position: { from: before.position, to: after.position } } },
      );
    }
    if (moved) await policiesChanged(trx);
    return { data: policyIds.map((id) => byId.get(id)!) };
  });
}
