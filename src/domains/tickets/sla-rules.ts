import { sql, type Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { SLA_TRIGGERS, type SlaTrigger } from '../../rule-engine/index.ts';
import { ruleRunInsert } from '../automation-rules/repository.ts';
import {
  type Evaluation,
  evaluateRules,
  planRules,
  ruleFailure,
  runRecord,
} from '../automation-rules/runner.ts';
import { type ScheduleKeys, withBusinessTimes } from './business-times.ts';
import type { ActorEvent, TicketRecord } from './repository.ts';
import * as repo from './repository.ts';
import { planTicketSla, type SlaSetting, SYSTEM } from './sla.ts';

// The rule triggers sla.warning and sla.breached, part of the one write path (write.ts): a write
// whose SLA plan warns or breaches a target runs the rules listening to that, in its transaction,
// after the change and the change's own rules. Each SLA event is a pass of its own, since each
// has its own facts (sla.kind, sla.policy_id): a write that breaches first_answer and resolution
// at once runs a sla.breached rule once for each. What these rules change moves the clock like
// any rule's change, and raises no event of its own (rules never trigger rules), so a breach the
// rules' own plan writes runs no rule. A pass whose action cannot apply (an agent disabled since)
// is undone alone and recorded as failed in the ticket's rule trace: the write that carries it
// did not cause it, and the SLA timer's batch must not stall on it.

type Trx = Transaction<Database>;

const RULED: ReadonlySet<string> = new Set(SLA_TRIGGERS);

const isSlaTrigger = (event: ActorEvent): event is ActorEvent & { type: SlaTrigger } => RULED.has(event.type);

/** Whether an SLA plan's events raise rule triggers (warnings and breaches). */
export function raisesSlaRules(events: readonly ActorEvent[]): boolean {
  return events.some(isSlaTrigger);
}

/**
 * Runs the sla.warning / sla.breached rules for each such event of a write's SLA plan, in order,
 * writing each pass's plan in a statement of its own. Returns the ticket as it then stands. A
 * help desk whose rules listen to neither pays one small query per warning or breach.
 */
export async function runSlaRules(
  trx: Trx,
  ticket: TicketRecord,
  events: readonly ActorEvent[],
  setting: SlaSetting | null,
  keys: ScheduleKeys,
): Promise<TicketRecord> {
  for (const event of events) {
    if (!isSlaTrigger(event)) continue;
    const data = event.data ?? {};
    const evaluation = await evaluateRules(trx, ticket, [event.type], {
      sla: {
        kind: String(data.kind),
        policy_id: typeof data.policy_id === 'string' ? data.policy_id : null,
      },
      ...(setting && { at: setting.now }),
    });
    if (!evaluation) continue;
    await sql`savepoint sla_rules`.execute(trx);
    try {
      ticket = await applyPass(trx, ticket, evaluation, setting, keys);
      await sql`release savepoint sla_rules`.execute(trx);
    } catch (error) {
      if (!(error instanceof DomainError && error.code === 'rule_action_failed')) throw error;
      await sql`rollback to savepoint sla_rules`.execute(trx);
      const failure = { code: error.code, message: error.message };
      const run = runRecord(ticket.id, { ...evaluation, input: { ...evaluation.input, failure } }, []);
      await ruleRunInsert(run).execute(trx);
    }
  }
  return ticket;
}

/** Plans one pass's effects and writes them, with the clock's answer to them, in one statement. */
async function applyPass(
  trx: Trx,
  ticket: TicketRecord,
  evaluation: Evaluation,
  setting: SlaSetting | null,
  keys: ScheduleKeys,
): Promise<TicketRecord> {
  const plan = await planRules(trx, ticket, evaluation);
  const changed = Object.keys(plan.patch).length > 0;
  const ruled = { ...ticket, ...plan.patch };
  const clock =
    setting && changed
      ? await planTicketSla(
          trx,
          setting,
          ticket.sla_state,
          ticket,
          ruled,
          { agent: false, customer: false },
          plan.events[0]?.actor ?? SYSTEM,
        )
      : null;
  try {
    const written = await repo.writeTicketChanges(trx, ticket, {
      patch: { ...plan.patch, ...clock?.patch },
      touch: changed || plan.notes.length > 0,
      search: plan.notes.length > 0 ? plan.notes.map((n) => n.body).join('\n') : undefined,
      events: await withBusinessTimes(trx, [...plan.events, ...(clock?.events ?? [])], keys),
      messages: plan.notes,
      alongside: { statement: ruleRunInsert(plan.run) },
    });
    return written.ticket;
  } catch (error) {
    throw ruleFailure(plan, error) ?? error;
  }
}
