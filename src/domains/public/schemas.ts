import { type Static, Type } from 'typebox';
import { Uuid } from '../../contract.ts';

/** At most this many departments are offered on the form; a longer select list helps nobody. */
export const FORM_DEPARTMENTS_MAX = 500;

export const FormDepartmentListSchema = Type.Object(
  {
    data: Type.Array(
      Type.Object(
        {
          id: Uuid(),
          name: Type.String(),
          open: Type.Boolean({ description: 'Open now by its working hours (always, without a schedule).' }),
          next_change: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
            description: 'When open next flips; null when it never does within about two years.',
          }),
          available: Type.Object(
            { chat: Type.Boolean(), phone: Type.Boolean(), messaging: Type.Boolean() },
            {
              additionalProperties: false,
              description:
                'Each channel now: forced on or off by the department, else available while it is open.',
            },
          ),
        },
        { additionalProperties: false },
      ),
      {
        maxItems: FORM_DEPARTMENTS_MAX,
        description: 'Sorted by name.',
      },
    ),
  },
  { $id: 'ContactFormDepartmentList', additionalProperties: false },
);
export type FormDepartmentList = Static<typeof FormDepartmentListSchema>;

const Text = (maxLength: number, description: string) =>
  Type.String({ minLength: 1, maxLength, pattern: '\\S', description });

export const ContactFormBody = Type.Object(
  {
    name: Text(200, 'The sender’s name. A returning sender (same email) keeps the name on file.'),
    email: Type.String({ format: 'email', maxLength: 254, description: 'Where replies go.' }),
    subject: Text(500, 'Becomes the ticket’s subject.'),
    message: Text(20_000, 'Becomes the ticket’s first message.'),
    department_id: Type.Optional(
      Uuid('One of GET /v1/public/departments; without it the ticket is in no department.'),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: 'Jane Doe',
        email: 'jane@example.com',
        subject: 'Parcel arrived broken',
        message: 'Hello, my order 5521 arrived broken. Can I get a refund?',
        department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11',
      },
    ],
  },
);
export type ContactFormInput = Static<typeof ContactFormBody>;

export const ContactFormReceiptSchema = Type.Object(
  {
    reference: Type.String({
      description: 'The new ticket’s reference, to quote in later correspondence.',
      examples: ['T-1042'],
    }),
    message: Type.Literal('received'),
  },
  { $id: 'ContactFormReceipt', additionalProperties: false },
);
export type ContactFormReceipt = Static<typeof ContactFormReceiptSchema>;
