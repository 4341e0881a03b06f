import { type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import { statementDeadline } from '../../db/deadline.ts';
import type { Database, SlaPoliciesTable } from '../../db/types.ts';
import { type CompiledPolicies, compilePolicies, type SlaPolicy } from '../../sla/index.ts';
import type { SlaPolicyView } from './schemas.ts';

type Executor = Kysely<Database>;
type Trx = Transaction<Database>;
type PolicyRow = Selectable<SlaPoliciesTable>;

export type PolicyValues = Omit<SlaPolicy, 'id' | 'version'>;

export function toPolicyView(row: PolicyRow): SlaPolicyView {
  return {
    id: row.id,
    name: row.name,
    position: row.position,
    active: row.active,
    conditions: row.conditions,
    targets: row.targets as SlaPolicyView['targets'],
    pause_when_answered: row.pause_when_answered,
    on_transfer: row.on_transfer,
    warn_before_minutes: row.warn_before_minutes,
    escalations: row.escalations,
    version: row.version,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

const toPolicy = (row: PolicyRow): SlaPolicy => ({
  id: row.id,
  version: row.version,
  name: row.name,
  position: row.position,
  active: row.active,
  conditions: row.conditions,
  targets: row.targets,
  pause_when_answered: row.pause_when_answered,
  on_transfer: row.on_transfer,
  warn_before_minutes: row.warn_before_minutes,
  escalations: row.escalations,
});

const inOrder = (db: Executor) =>
  db.selectFrom('sla_policies').selectAll().orderBy('position', 'asc').orderBy('id', 'asc');

export async function listPolicies(db: Executor): Promise<SlaPolicyView[]> {
  return (await inOrder(db).execute()).map(toPolicyView);
}

export async function findPolicy(db: Executor, id: string): Promise<SlaPolicyView | undefined> {
  const row = await db.selectFrom('sla_policies').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toPolicyView(row);
}

export async function lockPolicy(trx: Trx, id: string): Promise<SlaPolicyView | undefined> {
  const row = await trx
    .selectFrom('sla_policies')
    .selectAll()
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return row && toPolicyView(row);
}

export async function lockAllPolicies(trx: Trx): Promise<SlaPolicyView[]> {
  return (await inOrder(trx).forUpdate().execute()).map(toPolicyView);
}

/** Every policy write takes this first: policy writes take turns, so counts and positions hold. */
export async function lockPoliciesState(trx: Trx): Promise<void> {
  await trx.selectFrom('sla_policies_state').select('policies_key').forUpdate().execute();
}

/**
 * Every policy write ends with this, in its transaction: a fresh key makes each process reload
 * the list at its next ticket write; null while no policy is active lets the write path skip
 * the clock for help desks without policies. Keys grow (a sequence; policy writes take turns on
 * the state row), so the SLA timer finds tickets planned under an older one with a range scan
 * (migration 0027, docs/sla.md "Timers").
 */
export async function renewPoliciesKey(trx: Trx): Promise<void> {
  await trx
    .updateTable('sla_policies_state')
    .set({
      policies_key: sql`case when exists (select 1 from sla_policies where active)
        then ('00000000-0000-4000-8000-' || lpad(to_hex(nextval('sla_policies_key_seq')), 12, '0'))::uuid end`,
    })
    .execute();
}

/**
 * A change to the calendars business time runs on (a schedule's hours, zone or holidays, the
 * default schedule, a department following another schedule) moves the dues of running
 * business-time targets. A fresh policies key makes the SLA timer plan every live ticket again,
 * and each plan that finds its department's calendar at another version (SlaState.calendar_key)
 * computes the dues again (docs/sla.md "Timers"). Like a policy write: no ticket is locked here.
 */
export async function replanForCalendars(trx: Trx): Promise<void> {
  await lockPoliciesState(trx);
  await renewPoliciesKey(trx);
}

/** What a ticket's SLA clock planned while no policy was active is stamped with: below every key. */
export const NO_POLICIES_KEY = '00000000-0000-0000-0000-000000000000';

export async function countPolicies(trx: Executor): Promise<{ count: number; last: number | null }> {
  const row = await trx
    .selectFrom('sla_policies')
    .select([sql<number>`count(*)::int`.as('count'), sql<number | null>`max(position)`.as('last')])
    .executeTakeFirstOrThrow();
  return { count: row.count, last: row.last };
}

const jsonValues = (v: PolicyValues) => ({
  name: v.name,
  position: v.position,
  active: v.active,
  conditions: JSON.stringify(v.conditions),
  targets: JSON.stringify(v.targets),
  pause_when_answered: v.pause_when_answered,
  on_transfer: v.on_transfer,
  warn_before_minutes: v.warn_before_minutes,
  escalations: JSON.stringify(v.escalations),
});

export async function insertPolicy(trx: Trx, values: PolicyValues): Promise<SlaPolicyView> {
  const row = await trx
    .insertInto('sla_policies')
    .values(jsonValues(values))
    .returningAll()
    .executeTakeFirstOrThrow();
  return toPolicyView(row);
}

export async function updatePolicy(trx: Trx, id: string, values: PolicyValues): Promise<SlaPolicyView> {
  const row = await trx
    .updateTable('sla_policies')
    .set({ ...jsonValues(values), version: sql`version + 1`, updated_at: sql`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return toPolicyView(row);
}

export async function setPosition(trx: Trx, id: string, position: number): Promise<SlaPolicyView> {
  const row = await trx
    .updateTable('sla_policies')
    .set({ position, version: sql`version + 1`, updated_at: sql`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return toPolicyView(row);
}

export async function deletePolicy(trx: Trx, id: string): Promise<void> {
  await trx.deleteFrom('sla_policies').where('id', '=', id).execute();
}

/** The policies key as a scalar subquery, for statements the ticket write path runs anyway. */
export const policiesKeySql = sql<string | null>`(select policies_key from sla_policies_state)`;

// Each process keeps the compiled list of the key it last saw: policy changes are rare, ticket
// writes constant, so one entry is enough (concurrent writes that miss share one load). A load
// under way is shared only with callers under the same statement bound (db/deadline.ts): a
// request must not wait unbounded on background work's load, nor background work fail because
// a request's load met the request's deadline.
let cached: {
  key: string;
  policies: Promise<CompiledPolicies>;
  bound: number | undefined;
  loaded: boolean;
} | null = null;

/**
 * The active policies, compiled, for the key read in the caller's statement (null: none active).
 * Loads and compiles them only when the key moved since the last call: one query then, none
 * otherwise.
 */
export async function activePolicies(db: Executor, key: string | null): Promise<CompiledPolicies> {
  if (key === null) return compilePolicies([]);
  const bound = statementDeadline();
  if (cached?.key === key && (cached.loaded || cached.bound === bound)) return cached.policies;
  const loading = inOrder(db)
    .where('active', '=', true)
    .execute()
    .then((rows) => compilePolicies(rows.map(toPolicy)));
  const entry = { key, policies: loading, bound, loaded: false };
  // Another load of the same key, under another bound, stays the one others share.
  if (cached?.key !== key) cached = entry;
  loading.then(
    () => {
      entry.loaded = true;
      if (cached?.key === key && !cached.loaded) cached = entry;
    },
    () => {
      if (cached === entry) cached = null;
    },
  );
  return loading;
}
