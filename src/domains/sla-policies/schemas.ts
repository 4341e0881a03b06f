import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { LIMITS } from '../../rule-engine/index.ts';
import {
  ESCALATION_ACTIONS,
  ESCALATION_MOMENTS,
  MAX_ESCALATIONS,
  MAX_TARGET_MINUTES,
  SLA_KINDS,
  TRANSFER_MODES,
} from '../../sla/index.ts';
import { ConditionSchema } from '../automation-rules/schemas.ts';

// Shapes only (400 on unknown fields and wrong types): what a policy means (known priorities and
// kinds, minutes in range, conditions that read the ticket as it stands) is src/sla's checkPolicy,
// refused with 422 and JSON pointers like rules are.

/** Policies are evaluated in order on every ticket write: a bound keeps that cheap. */
export const MAX_POLICIES = 200;

const Name = Type.String({ minLength: 1, maxLength: LIMITS.maxNameLength, pattern: '\\S' });
const Position = Type.Integer({
  minimum: -1_000_000_000,
  maximum: 1_000_000_000,
  description: 'The first active policy in ascending position (ties by id) whose conditions hold applies.',
});
const Minutes = Type.Integer({ minimum: 1, maximum: MAX_TARGET_MINUTES });

export const SlaTargetSchema = Type.Object(
  {
    minutes: Minutes,
    business: Type.Boolean({
      description: "true: minutes count only while the department's schedule is open.",
    }),
  },
  { $id: 'SlaTarget', additionalProperties: false },
);

const KindTargets = Type.Object(
  Object.fromEntries(SLA_KINDS.map((k) => [k, Type.Optional(ref(SlaTargetSchema))])),
  { additionalProperties: false },
);

// The priorities and kinds are listed for the contract; checkPolicy refuses the unknown ones with
// a pointer, so the shape lets any key through and the 422 names it.
const Targets = Type.Record(
  Type.String({ maxLength: 20 }),
  Type.Record(Type.String({ maxLength: 40 }), Type.Unknown(), { maxProperties: 8 }),
  {
    description: `Per ticket priority (low, normal, high, urgent), per kind (${SLA_KINDS.join(', ')}): {minutes, business}. A kind missing for a priority has no target.`,
    maxProperties: 4,
  },
);

const ESCALATION_DOC = {
  on: 'warning: when a target warns (the policy needs warn_before_minutes); breach: when it breaches.',
  kinds: `The target kinds it answers (${SLA_KINDS.join(', ')}); empty: every kind.`,
  action:
    "next_level: to the least busy available member (online, under capacity) of the tier above the assignee's (tier 2 when unassigned or the assignee has no tier there), else the tiers above that; supervisors: to the least busy available supervisor or manager. When nobody is available the ticket stays and the department's supervisors and managers are told.",
  notify_supervisors:
    "Also tell the department's supervisors and managers when the ticket was handed on (whoever gets it is always told).",
};

export const SlaEscalationSchema = Type.Object(
  {
    on: Type.Enum(ESCALATION_MOMENTS, { description: ESCALATION_DOC.on }),
    kinds: Type.Array(Type.Enum(SLA_KINDS), { description: ESCALATION_DOC.kinds }),
    action: Type.Enum(ESCALATION_ACTIONS, { description: ESCALATION_DOC.action }),
    notify_supervisors: Type.Boolean({ description: ESCALATION_DOC.notify_supervisors }),
  },
  {
    $id: 'SlaEscalation',
    additionalProperties: false,
    description:
      'What a warning or breach does. For each warning or breach of a write, the first escalation whose on and kinds match applies (breaches first; one escalation per write).',
  },
);

// The values are listed in the descriptions; checkPolicy refuses unknown ones with a pointer (422).
const EscalationBody = Type.Object(
  {
    on: Type.String({
      maxLength: 20,
      description: `${ESCALATION_MOMENTS.join(' or ')}. ${ESCALATION_DOC.on}`,
    }),
    kinds: Type.Optional(
      Type.Array(Type.String({ maxLength: 40 }), {
        maxItems: SLA_KINDS.length * 2,
        default: [],
        description: ESCALATION_DOC.kinds,
      }),
    ),
    action: Type.String({
      maxLength: 20,
      description: `${ESCALATION_ACTIONS.join(' or ')}. ${ESCALATION_DOC.action}`,
    }),
    notify_supervisors: Type.Optional(
      Type.Boolean({ default: false, description: ESCALATION_DOC.notify_supervisors }),
    ),
  },
  { additionalProperties: false },
);
export type EscalationInput = Static<typeof EscalationBody>;

const Escalations = Type.Array(EscalationBody, {
  maxItems: MAX_ESCALATIONS,
  description: `At most ${MAX_ESCALATIONS}; tried in order. Empty (the default): warnings and breaches are only recorded.`,
});

export const SlaPolicySchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String(),
    position: Position,
    active: Type.Boolean(),
    conditions: ref(ConditionSchema),
    targets: Type.Record(Type.String(), KindTargets, {
      description: 'Per ticket priority, per kind: the target.',
    }),
    pause_when_answered: Type.Boolean({
      description:
        'Postponed tickets always pause; answered ones (waiting on the customer) when this is true.',
    }),
    on_transfer: Type.Enum(TRANSFER_MODES, {
      description:
        "restart: new targets from the transfer; continue: the new department's policy and calendar, time used kept; keep: this policy and the original department's calendar stay.",
    }),
    warn_before_minutes: Type.Union([Minutes, Type.Null()], {
      description: "Warn this many minutes (of the target's own kind of time) before the due; null: never.",
    }),
    escalations: Type.Array(ref(SlaEscalationSchema), {
      description: 'Tried in order for each warning and breach; empty: they are only recorded.',
    }),
    version: Type.Integer({ minimum: 1, description: 'Grows by one with every change.' }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'SlaPolicy', additionalProperties: false },
);
export type SlaPolicyView = Static<typeof SlaPolicySchema>;

const example = {
  name: 'Business hours support',
  conditions: { all: [{ field: 'priority', operator: 'is_one_of', value: ['high', 'urgent'] }] },
  targets: {
    high: { first_answer: { minutes: 60, business: true }, resolution: { minutes: 480, business: true } },
    urgent: { first_answer: { minutes: 15, business: false } },
  },
  on_transfer: 'continue',
  warn_before_minutes: 10,
  escalations: [
    { on: 'warning', action: 'next_level' },
    { on: 'breach', kinds: ['first_answer'], action: 'supervisors', notify_supervisors: true },
  ],
};

export const CreateSlaPolicyBody = Type.Object(
  {
    name: Name,
    position: Type.Optional(Position),
    active: Type.Optional(Type.Boolean({ default: true })),
    conditions: ref(ConditionSchema),
    targets: Targets,
    pause_when_answered: Type.Optional(Type.Boolean({ default: false })),
    on_transfer: Type.Optional(Type.Enum(TRANSFER_MODES, { default: 'continue' })),
    warn_before_minutes: Type.Optional(Type.Union([Type.Integer(), Type.Null()], { default: null })),
    escalations: Type.Optional(Escalations),
  },
  { additionalProperties: false, examples: [example] },
);
export type CreateSlaPolicyInput = Static<typeof CreateSlaPolicyBody>;

export const UpdateSlaPolicyBody = Type.Object(
  {
    name: Type.Optional(Name),
    position: Type.Optional(Position),
    active: Type.Optional(Type.Boolean()),
    conditions: Type.Optional(ref(ConditionSchema)),
    targets: Type.Optional(Targets),
    pause_when_answered: Type.Optional(Type.Boolean()),
    on_transfer: Type.Optional(Type.Enum(TRANSFER_MODES)),
    warn_before_minutes: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    escalations: Type.Optional(Escalations),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ warn_before_minutes: 15 }] },
);
export type UpdateSlaPolicyInput = Static<typeof UpdateSlaPolicyBody>;

export const SlaPolicyList = Type.Object(
  { data: Type.Array(ref(SlaPolicySchema), { description: 'Every policy, in selection order.' }) },
  { $id: 'SlaPolicyList', additionalProperties: false },
);

export const SlaPolicyOrderBody = Type.Object(
  {
    policy_ids: Type.Array(Uuid(), {
      maxItems: MAX_POLICIES,
      description: 'Every policy, each once, in the order they are tried.',
    }),
  },
  {
    additionalProperties: false,
    examples: [
      { policy_ids: ['0b6f8a52-4d0e-4a53-9c1a-33d4f1e2a7b9', '9a1e4c3d-7f2b-4e8a-b5c6-1d2e3f4a5b6c'] },
    ],
  },
);
