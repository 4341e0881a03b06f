import { Type } from 'typebox';
import { Uuid } from '../../contract.ts';

export const InboundReceiptSchema = Type.Object(
  {
    outcome: Type.Union(
      [
        Type.Literal('created'),
        Type.Literal('threaded'),
        Type.Literal('duplicate'),
        Type.Literal('auto_submitted'),
        Type.Literal('bounce'),
        Type.Literal('ignored'),
      ],
      {
        description:
          'created: a new ticket; threaded: a message on an existing ticket (an auto-reply there is recorded, changing nothing); duplicate: this Message-ID arrived before, nothing new; auto_submitted: an auto-reply that would have opened a ticket, dropped; bounce: a delivery failure of one of our messages, which is now marked bounced (and its address on the contact); ignored: nothing to do (no sender, our own mail, a bounce of nothing of ours).',
      },
    ),
    ticket_id: Type.Union([Uuid(), Type.Null()]),
    message_id: Type.Union([Uuid(), Type.Null()], {
      description: 'The message made (duplicate: the first delivery’s; bounce: the message that bounced).',
    }),
    mail_message_id: Type.String({
      description:
        'The Message-ID without <>; a mail without one gets sha256-<hex of the raw bytes>@deskroute.invalid.',
    }),
    reason: Type.Union([Type.String(), Type.Null()], {
      description: 'Why: the auto-reply header seen, the bounce’s diagnostic, or why it was ignored.',
    }),
  },
  { $id: 'InboundReceipt', additionalProperties: false },
);

export const RawMessageParams = Type.Object(
  { id: Uuid(), message_id: Uuid() },
  { additionalProperties: false },
);
