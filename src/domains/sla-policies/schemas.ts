import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { LIMITS } from '../../rule-engine/index.ts';
import { MAX_TARGET_MINUTES, SLA_KINDS, TRANSFER_MODES } from '../../sla/index.ts';
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
    version: Type.Integer({ minimum: 1, description: 'Grows by one with every change.' }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'SlaPolicy', additionalProperties: false },
);
export type SlaPolicyView = Static<typeof SlaPolicySchema>;

const example = {
  name: 'Business hours support',
  conditions: { all: [{ field: 'priority', operator: 'in', value: ['high', 'urgent'] }] },
  targets: {
    high: { first_answer: { minutes: 60, business: true }, resolution: { minutes: 480, business: true } },
    urgent: { first_answer: { minutes: 15, business: false } },
  },
  on_transfer: 'continue',
  warn_before_minutes: 10,
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
