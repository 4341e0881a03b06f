import { type Static, Type } from 'typebox';
import { DisplayName, Timestamp, Uuid } from '../../contract.ts';

export const AgentRoleSchema = Type.Union(
  [Type.Literal('owner'), Type.Literal('admin'), Type.Literal('agent')],
  {
    description: 'owner and admin manage everything (only owners manage owners); agent works tickets.',
  },
);
export const AgentStatusSchema = Type.Union([Type.Literal('active'), Type.Literal('disabled')], {
  description: 'A disabled agent cannot sign in and their tokens stop working.',
});
export const DepartmentRoleSchema = Type.Union(
  [Type.Literal('reader'), Type.Literal('solver'), Type.Literal('supervisor'), Type.Literal('manager')],
  {
    description:
      "reader sees the department's tickets; solver also answers and works them; supervisor also reassigns, transfers and changes status for others; manager also manages the department's members and settings.",
  },
);

export const PresenceSchema = Type.Union(
  [Type.Literal('online'), Type.Literal('away'), Type.Literal('offline')],
  {
    description:
      'online takes tickets from automatic assignment limited to available agents; away is signed in but not taking them; offline is gone.',
  },
);
export const MemberLevelSchema = Type.Integer({
  minimum: 1,
  maximum: 3,
  description: 'Tier within the department: 1 first line (the default), 2 and 3 more senior.',
});
export const CapacitySchema = Type.Union([Type.Integer({ minimum: 0, maximum: 10000 }), Type.Null()], {
  description:
    'Most new, open and answered tickets automatic assignment limited to available agents gives this agent (all departments together); null: no limit. Assignment by hand ignores it.',
});

export const Email = Type.String({
  format: 'email',
  maxLength: 254,
  description: 'Unique, case-insensitive.',
});
export const Password = Type.String({ minLength: 12, maxLength: 200, description: '12 to 200 characters.' });

export const AgentDepartmentSchema = Type.Object(
  {
    department_id: Uuid(),
    department_name: Type.String(),
    role: DepartmentRoleSchema,
    level: MemberLevelSchema,
  },
  { additionalProperties: false },
);

export const AgentSchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String(),
    email: Type.String(),
    role: AgentRoleSchema,
    status: AgentStatusSchema,
    departments: Type.Array(AgentDepartmentSchema, {
      description: "The agent's departments and role in each.",
    }),
    has_password: Type.Boolean({
      description: 'False until a password is set; such an agent cannot sign in.',
    }),
    last_sign_in_at: Type.Union([Timestamp(), Type.Null()]),
    presence: {
      ...PresenceSchema,
      description:
        'Effective presence, as of the read: what the agent last set, or offline once their last confirmation is older than the presence timeout.',
    },
    presence_changed_at: Type.Union([Timestamp(), Type.Null()], {
      description:
        'When the effective presence last changed (a timeout changes it when the confirmation ran out); null if it never has.',
    }),
    capacity: CapacitySchema,
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'Agent', additionalProperties: false },
);
export type Agent = Static<typeof AgentSchema>;

export const MembershipInput = Type.Object(
  {
    department_id: Uuid(),
    role: Type.Optional(DepartmentRoleSchema),
    level: Type.Optional({ ...MemberLevelSchema, default: 1 }),
  },
  { additionalProperties: false },
);

export const CreateAgentBody = Type.Object(
  {
    name: DisplayName('Full name.'),
    email: Email,
    role: Type.Optional(AgentRoleSchema),
    password: Type.Optional(Password),
    departments: Type.Optional(
      Type.Array(MembershipInput, {
        maxItems: 500,
        description: 'Departments to join; role defaults to solver.',
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: 'Dana Reyes',
        email: 'dana@example.com',
        role: 'agent',
        password: 'a long passphrase',
        departments: [{ department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11', role: 'solver' }],
      },
    ],
  },
);

export const UpdateAgentBody = Type.Object(
  {
    name: Type.Optional(DisplayName('Full name.')),
    email: Type.Optional(Email),
    role: Type.Optional(AgentRoleSchema),
    status: Type.Optional(AgentStatusSchema),
    password: Type.Optional(Password),
    capacity: Type.Optional(CapacitySchema),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ status: 'disabled' }, { role: 'admin', name: 'Dana Reyes-Kim' }],
  },
);

export const UpdateProfileBody = Type.Object(
  { name: Type.Optional(DisplayName('Full name.')), email: Type.Optional(Email) },
  { additionalProperties: false, minProperties: 1, examples: [{ name: 'Dana Reyes' }] },
);

export const ChangePasswordBody = Type.Object(
  { current_password: Type.String({ minLength: 1, maxLength: 200 }), new_password: Password },
  {
    additionalProperties: false,
    examples: [{ current_password: 'the old passphrase', new_password: 'a brand new passphrase' }],
  },
);

export const AgentListQuery = {
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Matches name or email.' })),
  role: Type.Optional(AgentRoleSchema),
  status: Type.Optional(AgentStatusSchema),
  department_id: Type.Optional(Uuid('Only members of this department.')),
};

export const PresenceState = Type.Object(
  {
    status: {
      ...PresenceSchema,
      description: 'Effective presence now: the stated one, or offline once the confirmation has run out.',
    },
    stated_status: { ...PresenceSchema, description: 'What was last set, whether or not it has run out.' },
    changed_at: Type.Union([Timestamp(), Type.Null()], {
      description: 'When the effective presence last changed; null if it never has.',
    }),
    confirmed_at: Type.Union([Timestamp(), Type.Null()], {
      description: 'The last PUT of a presence; null if none.',
    }),
    expires_at: Type.Union([Timestamp(), Type.Null()], {
      description:
        'When online or away runs out unless confirmed again (null while offline): send the same status again before then as a heartbeat.',
    }),
  },
  { $id: 'AgentPresence', additionalProperties: false },
);
export type PresenceState = Static<typeof PresenceState>;

export const SetPresenceBody = Type.Object(
  { status: PresenceSchema },
  { additionalProperties: false, examples: [{ status: 'online' }] },
);

export const SetOtherPresenceBody = Type.Object(
  {
    status: Type.Union([Type.Literal('away'), Type.Literal('offline')], {
      description: 'Only the agent themselves can go online.',
    }),
  },
  { additionalProperties: false, examples: [{ status: 'offline' }] },
);
