import { Type } from 'typebox';
import { Timestamp } from '../../contract.ts';
import { ContactListQuery } from '../contacts/schemas.ts';
import { TicketFilterFields } from '../tickets/schemas.ts';

export const EXPORT_FORMATS = ['ndjson', 'csv', 'import'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

const ExportParams = {
  format: Type.Optional(
    Type.Enum(EXPORT_FORMATS, {
      default: 'ndjson',
      description:
        'ndjson: one object per line as GET returns it; csv: flat columns (formulas neutralised); import: NDJSON records of the import format (POST /v1/imports).',
    }),
  ),
  cursor: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 1000,
      description:
        'The Export-Next-Cursor of the previous export with the same filters: only what changed since. Keep it only once the whole body has arrived.',
    }),
  ),
};

export const TicketExportQuery = Type.Object(
  { ...ExportParams, ...TicketFilterFields },
  { additionalProperties: false },
);

export const ContactExportQuery = Type.Object(
  {
    ...ExportParams,
    ...ContactListQuery,
    updated_from: Type.Optional(Timestamp('Contacts changed at or after this instant.')),
  },
  { additionalProperties: false },
);
