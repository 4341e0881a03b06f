// Which escalation a write's warnings and breaches call for. Pure, like the clock: the write path
// (tickets/escalation.ts) finds the agents and writes the reassignment (docs/sla.md, "Escalation").

import type { CompiledPolicies, EscalationMoment, SlaEscalation, SlaEvent, SlaPolicy } from './types.ts';

export interface EscalationChoice {
  /** The policy as it stands now (its version is the one the escalation event records). */
  policy: SlaPolicy;
  escalation: SlaEscalation;
  /** The warning or breach it answers. */
  event: SlaEvent;
  on: EscalationMoment;
}

/**
 * The one escalation a write applies, or null. Breaches come before warnings (the stronger
 * signal), then the events' order; for each, the first escalation of its policy (the current
 * version; a policy no longer active escalates nothing) whose moment and kinds match. One per
 * write: several targets breaching at once hand the ticket up one level, not several.
 */
export function escalationFor(
  policies: CompiledPolicies,
  fired: readonly SlaEvent[],
): EscalationChoice | null {
  const breaches = fired.filter((e) => e.type === 'sla.breached');
  const warnings = fired.filter((e) => e.type === 'sla.warning');
  for (const event of [...breaches, ...warnings]) {
    const policy = event.policy_id === null ? undefined : policies.byId.get(event.policy_id);
    if (!policy?.active || event.kind === null) continue;
    const on: EscalationMoment = event.type === 'sla.breached' ? 'breach' : 'warning';
    const kind = event.kind;
    const escalation = policy.escalations.find(
      (e) => e.on === on && (e.kinds.length === 0 || e.kinds.includes(kind)),
    );
    if (escalation) return { policy, escalation, event, on };
  }
  return null;
}
