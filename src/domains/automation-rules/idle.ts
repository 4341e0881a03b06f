import { sql, type Transaction } from 'kysely';
import { type BusinessCalendar, HORIZON_DAYS } from '../../business-time/index.ts';
import type { Db } from '../../db/database.ts';
import type { Database } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { departmentSchedules } from '../departments/repository.ts';
import { departmentCalendar, departmentCalendars } from '../schedules/calendar.ts';
import { writeTicket } from '../tickets/write.ts';
import * as repo from './repository.ts';
import { currentRuleSet, type RuleSet } from './runner.ts';

// The ticket.idle sweeper (docs/rules.md, "Idle tickets"). Every instance runs it periodically
// (src/scheduler.ts). A turn works in batches, each one transaction: it reads the rule set and the
// database's time, turns each active ticket.idle rule into cutoffs (a ticket quiet since the
// cutoff has been idle long enough: calendar minutes back from now, or business minutes in the
// calendar of each department), locks the live tickets past some cutoff whose rule has not run
// for their current quiet spell (FOR UPDATE SKIP LOCKED: sweepers on other instances take other
// tickets), claims each (rule, ticket, spell) in idle_rule_firings, and runs the claimed rules
// through the one write path with the trigger ticket.idle. The claim commits with what the rules
// did, so a rule runs once per quiet spell, also across processes, and a turn after downtime
// catches up with every ticket that went quiet meanwhile, the longest quiet first.

type Trx = Transaction<Database>;

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/**
 * The latest instant from which `minutes` business minutes have passed by `now` in `calendar`:
 * a ticket whose last activity is at or before it has been idle that long. Null when the
 * calendar does not open that long within its horizon (about two years) before `now`.
 */
export function businessCutoff(calendar: BusinessCalendar, now: number, minutes: number): number | null {
  let lo = now - HORIZON_DAYS * DAY_MS;
  // Fractional minutes come from millisecond spans: compare with a margin below a millisecond.
  const enough = (from: number) => calendar.businessMinutesBetween(from, now) >= minutes - 1e-9;
  if (!enough(lo)) return null;
  let hi = now;
  // businessMinutesBetween(·, now) only grows as the start moves back: bisect to the millisecond.
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (enough(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The cutoffs of every active ticket.idle rule at `now`. */
async function dueRules(db: Db, set: RuleSet, now: Date): Promise<repo.IdleDue[]> {
  const rules = set.rules
    .map((r) => r.rule)
    .filter((r) => r.active && r.triggers.includes('ticket.idle') && r.idle);
  if (rules.length === 0) return [];
  const due: repo.IdleDue[] = [];
  // Business rules need each department's calendar; calendar rules need none.
  let calendars: Map<string | null, BusinessCalendar> | null = null;
  if (rules.some((r) => r.idle!.business)) {
    const departments = await departmentSchedules(db);
    const byDepartment = await departmentCalendars(db, departments);
    calendars = new Map<string | null, BusinessCalendar>([
      [null, (await departmentCalendar(db, null)).calendar],
      ...[...byDepartment].map(([id, c]) => [id, c.calendar] as const),
    ]);
  }
  const cutoffs = new Map<BusinessCalendar, Map<number, number | null>>();
  const cutoffIn = (calendar: BusinessCalendar, minutes: number) => {
    let known = cutoffs.get(calendar);
    if (!known) {
      known = new Map();
      cutoffs.set(calendar, known);
    }
    if (!known.has(minutes)) known.set(minutes, businessCutoff(calendar, now.getTime(), minutes));
    return known.get(minutes)!;
  };
  for (const rule of rules) {
    const { minutes, business } = rule.idle!;
    const owner = rule.department_id ?? null;
    if (!business) {
      due.push({
        rule_id: rule.id,
        department_id: owner,
        any_department: owner === null,
        cutoff: new Date(now.getTime() - minutes * MINUTE_MS),
      });
      continue;
    }
    for (const [departmentId, calendar] of calendars!) {
      if (owner !== null && departmentId !== owner) continue;
      const cutoff = cutoffIn(calendar, minutes);
      if (cutoff !== null) {
        due.push({
          rule_id: rule.id,
          department_id: departmentId,
          any_department: false,
          cutoff: new Date(cutoff),
        });
      }
    }
  }
  return due;
}

/** A claimed run that failed (a rule action that cannot apply): it is not retried. */
export interface IdleFailure {
  ticket_id: string;
  rule_ids: string[];
  code: string;
  message: string;
}

export interface IdleSweep {
  /** Rule runs claimed, one per (rule, ticket) whose quiet spell came. */
  runs: number;
  failures: IdleFailure[];
}

/** One batch in one transaction: what ran, and how many tickets it locked. */
async function sweepBatch(trx: Trx, limit: number): Promise<IdleSweep & { locked: number }> {
  const sweep = { runs: 0, failures: [] as IdleFailure[], locked: 0 };
  const set = await currentRuleSet(trx);
  if (!set.activeTriggers.has('ticket.idle')) return sweep;
  const now = await repo.databaseNow(trx);
  const due = await dueRules(trx, set, now);
  const locked = await repo.lockIdleTickets(trx, due, limit);
  sweep.locked = locked.length;
  for (const { ticket, sla } of locked) {
    const quietSince = ticket.last_activity_at;
    const reached = due
      .filter(
        (d) =>
          (d.any_department || d.department_id === ticket.department_id) &&
          quietSince.getTime() <= d.cutoff.getTime(),
      )
      .map((d) => d.rule_id);
    const claimed = await repo.claimIdleRuns(trx, ticket.id, quietSince, [...new Set(reached)]);
    if (claimed.length === 0) continue;
    sweep.runs += claimed.length;
    // A rule whose action cannot apply (an agent disabled since) fails its run alone: the claim
    // stays, so the rule does not fail again every turn until the ticket's next activity.
    await sql`savepoint idle_run`.execute(trx);
    try {
      await writeTicket(trx, {
        kind: 'change',
        target: { locked: ticket, sla },
        access: null,
        decide: () => ({ steps: [], triggers: ['ticket.idle' as const], idleRules: claimed, result: null }),
      });
      await sql`release savepoint idle_run`.execute(trx);
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      await sql`rollback to savepoint idle_run`.execute(trx);
      sweep.failures.push({
        ticket_id: ticket.id,
        rule_ids: claimed,
        code: error.code,
        message: error.message,
      });
    }
  }
  return sweep;
}

/**
 * Runs the ticket.idle rules whose time has come, in batches of `batch` tickets (each batch one
 * transaction), until a batch comes back short or `maxBatches` ran. Safe to run on every
 * instance at once. Costs one small query per turn when no active rule listens to ticket.idle.
 */
export async function sweepIdleTickets(
  db: Db,
  options: { batch?: number; maxBatches?: number } = {},
): Promise<IdleSweep> {
  const batch = options.batch ?? 100;
  const maxBatches = options.maxBatches ?? 50;
  const sweep: IdleSweep = { runs: 0, failures: [] };
  for (let i = 0; i < maxBatches; i++) {
    const { runs, failures, locked } = await db.transaction().execute((trx) => sweepBatch(trx, batch));
    sweep.runs += runs;
    sweep.failures.push(...failures);
    if (locked < batch) break;
  }
  return sweep;
}
