import { Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';

export const CsatSettingSchema = Type.Object(
  {
    department_id: Uuid(),
    enabled: Type.Boolean({ description: 'Whether a resolved ticket’s contact gets the survey mail.' }),
    delay_minutes: Type.Integer({ description: 'How long after the resolve the survey goes out.' }),
    source: Type.Union([Type.Literal('department'), Type.Literal('default')], {
      description:
        'department: set on the department; default: the help desk’s (CSAT_ENABLED, CSAT_DELAY_MINUTES).',
    }),
  },
  { $id: 'CsatSetting', additionalProperties: false },
);

export const PutCsatSettingBody = Type.Object(
  {
    enabled: Type.Boolean(),
    delay_minutes: Type.Integer({ minimum: 0, maximum: 43_200, description: '0 to 30 days, in minutes.' }),
  },
  { additionalProperties: false, examples: [{ enabled: true, delay_minutes: 60 }] },
);

export const SurveyTokenParams = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 200, description: 'The token of the survey link.' }) },
  { additionalProperties: false },
);

export const PublicSurveySchema = Type.Object(
  {
    reference: Type.String({ description: 'The ticket reference, e.g. [Ticket#42].' }),
    subject: Type.String(),
    department: Type.Union([Type.String(), Type.Null()], { description: 'The department’s name.' }),
    expires_at: Timestamp(),
    rated: Type.Boolean({ description: 'The link was used already: a second rating answers 409.' }),
  },
  { $id: 'PublicSurvey', additionalProperties: false },
);

export const PublicRatingBody = Type.Object(
  {
    rating: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
    comment: Type.Optional(Type.String({ maxLength: 5000 })),
  },
  { additionalProperties: false, examples: [{ rating: 'positive', comment: 'Quick and kind, thanks!' }] },
);

export const PublicRatingReceiptSchema = Type.Object(
  {
    reference: Type.String(),
    rating: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
    comment: Type.Union([Type.String(), Type.Null()]),
    created_at: Timestamp(),
  },
  { $id: 'PublicRatingReceipt', additionalProperties: false },
);
