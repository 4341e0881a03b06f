import { type Static, Type } from 'typebox';
import { DisplayName, Timestamp, Uuid } from '../../contract.ts';
import { DepartmentRoleSchema, MemberLevelSchema } from '../agents/schemas.ts';

const ChannelMode = (channel: string) =>
  Type.Union([Type.Literal('schedule'), Type.Literal('on'), Type.Literal('off')], {
    description: `${channel}: schedule follows the department's schedule (available while open); on and off override it.`,
  });

export const ChannelAvailabilitySchema = Type.Object(
  { chat: ChannelMode('Chat'), phone: ChannelMode('Phone'), messaging: ChannelMode('Messaging') },
  { additionalProperties: false },
);

const AvailabilityInput = Type.Object(
  {
    chat: Type.Optional(ChannelMode('Chat')),
    phone: Type.Optional(ChannelMode('Phone')),
    messaging: Type.Optional(ChannelMode('Messaging')),
  },
  {
    additionalProperties: false,
    description: 'Channels not given keep their mode (schedule for a new department).',
  },
);

const ScheduleRef = Type.Union([Uuid(), Type.Null()], {
  description: "The schedule the department follows; null: the help desk's default (none: always open).",
});

export const DepartmentSchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String({ description: 'Unique, case-insensitive.' }),
    description: Type.String(),
    to_solve_enabled: Type.Boolean({
      description:
        "The department's waiting tickets are handed to its agents one by one through the to-solve queue.",
    }),
    selectable_on_contact_form: Type.Boolean({
      description: 'Offered in the public contact form department picker.',
    }),
    schedule_id: ScheduleRef,
    availability: ChannelAvailabilitySchema,
    member_count: Type.Integer({ minimum: 0 }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'Department', additionalProperties: false },
);
export type Department = Static<typeof DepartmentSchema>;

const Description = Type.String({ maxLength: 2000 });

export const CreateDepartmentBody = Type.Object(
  {
    name: DisplayName('Department name, unique regardless of case; stored trimmed.'),
    description: Type.Optional(Description),
    to_solve_enabled: Type.Optional(Type.Boolean({ default: true })),
    selectable_on_contact_form: Type.Optional(Type.Boolean({ default: false })),
    schedule_id: Type.Optional(ScheduleRef),
    availability: Type.Optional(AvailabilityInput),
  },
  {
    additionalProperties: false,
    examples: [
      { name: 'Returns', description: 'Refunds, exchanges and RMAs', selectable_on_contact_form: true },
    ],
  },
);

export const UpdateDepartmentBody = Type.Object(
  {
    name: Type.Optional(DisplayName('Department name, unique regardless of case; stored trimmed.')),
    description: Type.Optional(Description),
    to_solve_enabled: Type.Optional(Type.Boolean()),
    selectable_on_contact_form: Type.Optional(Type.Boolean()),
    schedule_id: Type.Optional(ScheduleRef),
    availability: Type.Optional(AvailabilityInput),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ to_solve_enabled: false }] },
);

export const DepartmentListQuery = {
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Matches part of the name.' })),
  selectable_on_contact_form: Type.Optional(Type.Boolean()),
};

export const MemberSchema = Type.Object(
  {
    agent_id: Uuid(),
    name: Type.String(),
    email: Type.String(),
    agent_status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
    role: DepartmentRoleSchema,
    level: MemberLevelSchema,
    added_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'DepartmentMember', additionalProperties: false },
);
export type Member = Static<typeof MemberSchema>;

export const SetMemberBody = Type.Object(
  {
    role: Type.Optional(DepartmentRoleSchema),
    level: Type.Optional({
      ...MemberLevelSchema,
      description: 'Tier within the department (1 to 3); defaults to the current one, or 1 for a new member.',
    }),
  },
  { additionalProperties: false, examples: [{ role: 'supervisor' }, { level: 2 }] },
);

export const ReplaceMembersBody = Type.Object(
  {
    members: Type.Array(
      Type.Object(
        {
          agent_id: Uuid(),
          role: Type.Optional(DepartmentRoleSchema),
          level: Type.Optional({ ...MemberLevelSchema, default: 1 }),
        },
        { additionalProperties: false },
      ),
      {
        maxItems: 5000,
        description: 'The complete new set of members; role defaults to solver, level to 1.',
      },
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        members: [
          { agent_id: '0b6f8a52-4d0e-4a53-9c1a-33d4f1e2a7b9', role: 'manager' },
          { agent_id: '9a1e4c3d-7f2b-4e8a-b5c6-1d2e3f4a5b6c', level: 2 },
        ],
      },
    ],
  },
);

export const AddAllMembersBody = Type.Object(
  {
    role: Type.Optional(DepartmentRoleSchema),
    include_disabled: Type.Optional(
      Type.Boolean({ default: false, description: 'Also add disabled agents.' }),
    ),
  },
  { additionalProperties: false, examples: [{ role: 'reader' }] },
);

export const AddAllMembersResult = Type.Object(
  {
    added: Type.Integer({
      minimum: 0,
      description: 'How many agents joined; existing members keep their role.',
    }),
  },
  { additionalProperties: false },
);

export const DeleteDepartmentQuery = {
  move_to_department_id: Type.Optional(
    Uuid(
      'Where tickets and rules owned by this department go, so it can be deleted while it still owns them.',
    ),
  ),
};

export const AvailabilityQuery = {
  at: Type.Optional(
    Type.String({ format: 'date-time', description: 'The instant to answer for (default: now).' }),
  ),
};

const ChannelState = (channel: string) =>
  Type.Object(
    {
      mode: ChannelMode(channel),
      available: Type.Boolean({ description: 'on, or schedule while the department is open.' }),
    },
    { additionalProperties: false },
  );

export const DepartmentAvailabilitySchema = Type.Object(
  {
    at: Timestamp('The instant answered for.'),
    department_id: Uuid(),
    schedule_id: Type.Union([Uuid(), Type.Null()], {
      description: "The schedule in force: the department's own, else the default; null: always open.",
    }),
    time_zone: Type.Union([Type.String(), Type.Null()], {
      description: "The schedule's zone; null without one.",
    }),
    open: Type.Boolean(),
    next_change: Type.Union([Timestamp(), Type.Null()], {
      description: 'When open next flips; null when it never does within about two years.',
    }),
    channels: Type.Object(
      { chat: ChannelState('Chat'), phone: ChannelState('Phone'), messaging: ChannelState('Messaging') },
      { additionalProperties: false },
    ),
  },
  { $id: 'DepartmentAvailability', additionalProperties: false },
);
export type DepartmentAvailability = Static<typeof DepartmentAvailabilitySchema>;
