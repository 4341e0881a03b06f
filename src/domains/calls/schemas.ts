import { Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';
import { ContactInput, PrioritySchema } from '../tickets/schemas.ts';

/** A new ticket for a call or chat that does not belong to an existing one. */
export const NewTicketFields = {
  ticket_id: Type.Optional(Uuid('Add to this existing ticket instead of opening a new one.')),
  contact: Type.Optional(ContactInput),
  subject: Type.Optional(Type.String({ minLength: 1, maxLength: 500, pattern: '\\S' })),
  department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
  priority: Type.Optional(PrioritySchema),
};

export const CallSchema = Type.Object(
  {
    id: Uuid(),
    ticket_id: Uuid(),
    external_id: Type.Union([Type.String(), Type.Null()]),
    direction: Type.Union([Type.Literal('inbound'), Type.Literal('outbound')]),
    outcome: Type.Union([Type.Literal('answered'), Type.Literal('missed')]),
    agent_id: Type.Union([Uuid(), Type.Null()]),
    from_number: Type.Union([Type.String(), Type.Null()]),
    to_number: Type.Union([Type.String(), Type.Null()]),
    started_at: Timestamp(),
    answered_at: Type.Union([Timestamp(), Type.Null()]),
    ended_at: Type.Union([Timestamp(), Type.Null()]),
    duration_seconds: Type.Integer({
      minimum: 0,
      description: 'Talk time: from answer to end; 0 for a missed call.',
    }),
    created_at: Timestamp(),
  },
  { $id: 'Call', additionalProperties: false },
);

const Phone = Type.String({ minLength: 3, maxLength: 40 });

export const RecordCallBody = Type.Object(
  {
    ...NewTicketFields,
    external_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: 'The telephony system’s id; recorded once.' }),
    ),
    direction: Type.Union([Type.Literal('inbound'), Type.Literal('outbound')]),
    outcome: Type.Union([Type.Literal('answered'), Type.Literal('missed')]),
    agent_id: Type.Optional(Uuid('The agent who took or made the call.')),
    from_number: Type.Optional(Phone),
    to_number: Type.Optional(Phone),
    started_at: Timestamp('When it began to ring.'),
    answered_at: Type.Optional(Timestamp('Required for an answered call.')),
    ended_at: Type.Optional(Timestamp()),
  },
  {
    additionalProperties: false,
    examples: [
      {
        external_id: 'pbx-88213',
        direction: 'inbound',
        outcome: 'answered',
        from_number: '+420601234567',
        to_number: '+420222000111',
        agent_id: '0b6f8a52-4d0e-4a53-9c1a-33d4f1e2a7b9',
        department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11',
        started_at: '2026-11-20T09:00:00Z',
        answered_at: '2026-11-20T09:00:12Z',
        ended_at: '2026-11-20T09:04:40Z',
      },
    ],
  },
);
