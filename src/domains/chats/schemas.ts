import { Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';
import { NewTicketFields } from '../calls/schemas.ts';

export const ChatSchema = Type.Object(
  {
    id: Uuid(),
    ticket_id: Uuid(),
    external_id: Type.Union([Type.String(), Type.Null()]),
    agent_id: Type.Union([Uuid(), Type.Null()]),
    started_at: Timestamp(),
    picked_up_at: Type.Union([Timestamp(), Type.Null()]),
    missed: Type.Boolean({ description: 'No agent picked the chat up.' }),
    ended_at: Type.Union([Timestamp(), Type.Null()]),
    message_count: Type.Integer({ minimum: 0 }),
    created_at: Timestamp(),
  },
  { $id: 'Chat', additionalProperties: false },
);

export const RecordChatBody = Type.Object(
  {
    ...NewTicketFields,
    external_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: 'The chat system’s id; recorded once.' }),
    ),
    agent_id: Type.Optional(Uuid('The agent who picked the chat up.')),
    started_at: Timestamp('When the customer started the chat.'),
    picked_up_at: Type.Optional(Timestamp('When an agent picked it up; omit for a missed chat.')),
    missed: Type.Boolean(),
    ended_at: Type.Optional(Timestamp()),
    messages: Type.Array(
      Type.Object(
        {
          from: Type.Union([Type.Literal('customer'), Type.Literal('agent')]),
          body: Type.String({ minLength: 1, maxLength: 20_000 }),
          sent_at: Timestamp(),
        },
        { additionalProperties: false },
      ),
      { maxItems: 2000, description: 'Agent messages are by agent_id.' },
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        external_id: 'chat-7781',
        contact: { email: 'jane@example.com', name: 'Jane Doe' },
        department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11',
        agent_id: '0b6f8a52-4d0e-4a53-9c1a-33d4f1e2a7b9',
        started_at: '2026-11-20T10:00:00Z',
        picked_up_at: '2026-11-20T10:00:20Z',
        missed: false,
        ended_at: '2026-11-20T10:06:00Z',
        messages: [
          { from: 'customer', body: 'Hi, where is my order?', sent_at: '2026-11-20T10:00:05Z' },
          { from: 'agent', body: 'It ships today!', sent_at: '2026-11-20T10:00:40Z' },
        ],
      },
    ],
  },
);
