import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { PageOf } from '../../plugins/pagination.ts';
import { TEMPLATE_KINDS } from '../mail-identity/templates.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T, description?: string) =>
  Type.Union([schema, Type.Null()], description ? { description } : {});

export const OutgoingMailSchema = Type.Object(
  {
    id: Uuid(),
    kind: Type.Enum(TEMPLATE_KINDS, {
      description: 'Which mail: an agent reply, or one Deskroute sends by itself (Auto-Submitted).',
    }),
    message_id: Nullable(Uuid(), 'The ticket message it carries (agent replies).'),
    to: Nullable(Type.String(), 'The address it goes to (null: the contact has none).'),
    from: Type.Object(
      { name: Type.String(), address: Nullable(Type.String()) },
      { additionalProperties: false, description: "The department's sender name and reply-from address." },
    ),
    subject: Type.String(),
    mail_message_id: Type.String({ description: 'Its Message-ID, without angle brackets.' }),
    in_reply_to: Nullable(Type.String(), 'The In-Reply-To header it carries, if any.'),
    auto_submitted: Type.Boolean({
      description: 'Sent with Auto-Submitted: auto-replied (all but agent replies).',
    }),
    state: Type.Enum(['queued', 'sent', 'failed', 'suppressed', 'cancelled'], {
      description:
        'queued: to be sent (after a failed attempt, last_error says why and next_attempt_at when it is tried again); sent: the SMTP server took it; failed: a permanent refusal or every attempt failed; suppressed: nobody to send it to (no address, a bounced address, one of our own, or the acknowledgement loop guard); cancelled: a survey whose ticket was reopened before it went out.',
    }),
    attempts: Type.Integer({ minimum: 0 }),
    last_error: Nullable(Type.String(), "The last attempt's error, or why it was not sent."),
    next_attempt_at: Nullable(Timestamp()),
    sent_at: Nullable(Timestamp()),
    created_at: Timestamp(),
  },
  { $id: 'OutgoingMail', additionalProperties: false },
);
export type OutgoingMailView = Static<typeof OutgoingMailSchema>;

export const OutgoingMailPage = PageOf(ref(OutgoingMailSchema), 'OutgoingMailPage');
