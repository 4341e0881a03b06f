// SLA policies and the SLA clock: pure (no fastify, kysely, pino, no clock read, no I/O). The
// write path, the timer job and the reports call it; see docs/sla.md.

export { checkPolicy, MAX_ESCALATIONS, MAX_TARGET_MINUTES } from './check.ts';
export { compilePolicies, fireDue, initialSlaState, planSla, selectPolicy, summaryOf } from './clock.ts';
export { type EscalationChoice, escalationFor } from './escalation.ts';
export * from './types.ts';
