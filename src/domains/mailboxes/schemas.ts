import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';

// Passwords and the inbound secret are write-only: a response says password_set, never the value.

const Host = Type.String({ minLength: 1, maxLength: 253, pattern: '^[^\\s/@]+$' });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const Username = Type.String({ minLength: 1, maxLength: 320 });
const Password = Type.String({ minLength: 1, maxLength: 1000, description: 'Write-only.' });
const Folder = Type.String({ minLength: 1, maxLength: 200 });
const PollSeconds = Type.Integer({
  minimum: 1,
  maximum: 86_400,
  description: 'Read the folder this often (default IMAP_POLL_SECONDS); IDLE wakes the watcher sooner.',
});

const ImapView = Type.Object(
  {
    host: Type.String(),
    port: Type.Integer(),
    tls: Type.Boolean({ description: 'Implicit TLS (port 993); false: plain or STARTTLS when offered.' }),
    username: Type.String(),
    password_set: Type.Boolean(),
    folder: Type.String(),
    poll_seconds: Type.Union([Type.Integer(), Type.Null()]),
  },
  { additionalProperties: false },
);

const SmtpView = Type.Object(
  {
    host: Type.String(),
    port: Type.Integer(),
    secure: Type.Boolean({ description: 'Implicit TLS (port 465); false: STARTTLS when offered.' }),
    username: Type.Union([Type.String(), Type.Null()]),
    password_set: Type.Boolean(),
  },
  { additionalProperties: false },
);

const mailboxFields = {
  id: Uuid(),
  name: Type.String(),
  department_id: Uuid(
    'Where its mail goes when it was not written to a support address of another department.',
  ),
  kind: Type.Union([Type.Literal('imap'), Type.Literal('inbound')], {
    description:
      'imap: the server reads an IMAP folder; inbound: mail arrives only by POST /v1/inbound/email.',
  }),
  address: Type.Union([Type.String(), Type.Null()], {
    description:
      'The address mail to this mailbox is sent to, lower-cased, when its IMAP username is not that address; an inbound mailbox should state it. No other department may make it (or the IMAP username) a support address (409 address_of_mailbox there).',
  }),
  active: Type.Boolean(),
  imap: Type.Union([ImapView, Type.Null()]),
  smtp: Type.Union([SmtpView, Type.Null()], {
    description:
      'Outgoing mail of its department goes through this server (the first active mailbox with one).',
  }),
  last_polled_at: Type.Union([Timestamp(), Type.Null()], { description: 'The last successful IMAP read.' }),
  last_error: Type.Union([Type.String(), Type.Null()], {
    description: 'Why the last IMAP read failed (cleared by the next success).',
  }),
  created_at: Timestamp(),
  updated_at: Timestamp(),
};

export const MailboxSchema = Type.Object(mailboxFields, { $id: 'Mailbox', additionalProperties: false });
export type Mailbox = Static<typeof MailboxSchema>;

export const MailboxWithSecretSchema = Type.Object(
  {
    ...mailboxFields,
    inbound_secret: Type.String({
      description:
        'The secret of POST /v1/inbound/email (drm_...): Authorization: Bearer <secret>, or HTTP Basic with it as the password. Shown on create and rotate only; only its hash is kept.',
    }),
  },
  { $id: 'MailboxWithSecret', additionalProperties: false },
);

const ImapInput = Type.Object(
  {
    host: Host,
    port: Port,
    tls: Type.Optional(Type.Boolean({ default: true })),
    username: Username,
    password: Password,
    folder: Type.Optional(Folder),
    poll_seconds: Type.Optional(Type.Union([PollSeconds, Type.Null()])),
  },
  { additionalProperties: false },
);

const ImapPatch = Type.Object(
  {
    host: Type.Optional(Host),
    port: Type.Optional(Port),
    tls: Type.Optional(Type.Boolean()),
    username: Type.Optional(Username),
    password: Type.Optional(Password),
    folder: Type.Optional(Folder),
    poll_seconds: Type.Optional(Type.Union([PollSeconds, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);

const SmtpInput = Type.Object(
  {
    host: Host,
    port: Port,
    secure: Type.Optional(Type.Boolean({ default: false })),
    username: Type.Optional(Type.Union([Username, Type.Null()])),
    password: Type.Optional(Type.Union([Password, Type.Null()])),
  },
  { additionalProperties: false },
);

const Name = Type.String({ minLength: 1, maxLength: 200 });
const Address = Type.Union([Type.String({ minLength: 3, maxLength: 254 }), Type.Null()], {
  description:
    'The address mail to this mailbox is sent to (lower-cased); null: none besides the IMAP username. 409 address_of_department when it, or the IMAP username, is a support address of another department.',
});

export const CreateMailboxBody = Type.Object(
  {
    name: Name,
    department_id: Uuid(),
    kind: Type.Union([Type.Literal('imap'), Type.Literal('inbound')]),
    address: Type.Optional(Address),
    active: Type.Optional(Type.Boolean()),
    imap: Type.Optional(ImapInput),
    smtp: Type.Optional(Type.Union([SmtpInput, Type.Null()])),
  },
  {
    additionalProperties: false,
    description: 'kind imap needs imap; kind inbound takes none.',
    examples: [
      {
        name: 'Sales',
        department_id: '0d4b7c8e-7a52-4a44-9a8c-3f3c1f6d2b11',
        kind: 'imap',
        imap: {
          host: 'imap.example.com',
          port: 993,
          username: 'sales@example.com',
          password: 'app-password',
        },
      },
    ],
  },
);
export type CreateMailboxInput = Static<typeof CreateMailboxBody>;

export const UpdateMailboxBody = Type.Object(
  {
    name: Type.Optional(Name),
    department_id: Type.Optional(Uuid()),
    address: Type.Optional(Address),
    active: Type.Optional(Type.Boolean()),
    imap: Type.Optional(ImapPatch),
    smtp: Type.Optional(
      Type.Union([SmtpInput, Type.Null()], {
        description:
          'Replaces the SMTP settings (a password left out is kept when the host stays); null removes them.',
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ active: false }] },
);
export type UpdateMailboxInput = Static<typeof UpdateMailboxBody>;
