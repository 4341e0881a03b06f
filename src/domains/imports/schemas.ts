import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { PageOf } from '../../plugins/pagination.ts';
import { IMPORT_RECORDS } from './records.ts';

const Count = (description: string) => Type.Integer({ minimum: 0, description });

export const ImportSchema = Type.Object(
  {
    id: Uuid(),
    source: Type.String({ description: 'External ids are unique per source and record type.' }),
    format: Type.Union([Type.Literal('ndjson'), Type.Literal('csv')]),
    run_rules: Type.Boolean({ description: 'Whether automation rules ran on the replayed history.' }),
    state: Type.Union(
      [Type.Literal('queued'), Type.Literal('running'), Type.Literal('finished'), Type.Literal('failed')],
      {
        description: 'failed: the file as a whole could not be read (see failure); bad lines do not fail it.',
      },
    ),
    counts: Type.Object(
      {
        read: Count('Records (non-empty lines, or CSV rows) read so far.'),
        created: Count('Records that created something.'),
        updated: Count('Contacts imported before whose fields changed.'),
        skipped: Count('Records imported before (same source, type and external_id): nothing changed.'),
        failed: Count('Records refused; see GET /v1/imports/{id}/errors.'),
      },
      { additionalProperties: false },
    ),
    line: Type.Integer({
      minimum: 0,
      description: 'The last line handled: a resumed import goes on after it.',
    }),
    size_bytes: Type.Integer({ minimum: 0 }),
    failure: Type.Union([Type.String(), Type.Null()]),
    created_by: Type.Union([Uuid(), Type.Null()]),
    created_at: Timestamp(),
    started_at: Type.Union([Timestamp(), Type.Null()]),
    finished_at: Type.Union([Timestamp(), Type.Null()]),
  },
  { $id: 'Import', additionalProperties: false },
);
export type Import = Static<typeof ImportSchema>;

export const ImportErrorSchema = Type.Object(
  {
    line: Type.Integer({
      minimum: 1,
      description: 'The line of the file (CSV: the row, the header being line 1).',
    }),
    type: Type.Union([Type.String(), Type.Null()]),
    external_id: Type.Union([Type.String(), Type.Null()]),
    code: Type.String({
      description:
        'Why the line was refused: invalid_json, invalid_record, unknown_type, line_too_long, unknown_column, unknown_reference, or the code the API gives the same mistake (e.g. email_taken, agent_not_assignable). One code is not a refusal: file_missing, a message imported without the files of its `attachments` that were not uploaded (the message counts as created).',
    }),
    message: Type.String(),
  },
  { $id: 'ImportError', additionalProperties: false },
);

export const ImportPage = PageOf(ref(ImportSchema), 'ImportPage');
export const ImportErrorPage = PageOf(ref(ImportErrorSchema), 'ImportErrorPage');

export const ImportRecordSchema = Type.Union(
  IMPORT_RECORDS.map((r) => ref(r)),
  { $id: 'ImportRecord', description: 'One line of an NDJSON import file (docs/import.md).' },
);

const SourceQuery = Type.String({
  pattern: '^[a-z0-9][a-z0-9._-]{0,63}$',
  default: 'default',
  description:
    'Names the system the records come from (e.g. zendesk): external ids are unique per source, so two sources never collide.',
});

export const CreateImportQuery = Type.Object(
  {
    source: SourceQuery,
    run_rules: Type.Boolean({
      default: false,
      description:
        'Run the automation rules on the replayed history, as if it happened now (off by default).',
    }),
  },
  { additionalProperties: false },
);

export const ImportFileSchema = Type.Object(
  {
    source: Type.String(),
    external_id: Type.String({ description: 'How message records name it (`attachments`).' }),
    filename: Type.String({
      description: 'The name given at upload, cleaned (no path, no control characters).',
    }),
    content_type: Type.String({ description: 'Read from the bytes, not taken from the uploader.' }),
    size_bytes: Type.Integer({ minimum: 0 }),
    sha256: Type.String({ description: 'Hex digest of the bytes.' }),
    created_at: Timestamp(),
  },
  {
    $id: 'ImportFile',
    additionalProperties: false,
    description:
      'A file uploaded for an import; message records attach it by external_id (docs/import.md, "Attachments").',
  },
);
export type ImportFile = Static<typeof ImportFileSchema>;

export const ImportFileParams = Type.Object(
  {
    external_id: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'The id the file has in the source (unique per source).',
    }),
  },
  { additionalProperties: false },
);

export const ImportFileQuery = Type.Object({ source: SourceQuery }, { additionalProperties: false });

export const PutImportFileQuery = Type.Object(
  {
    source: SourceQuery,
    filename: Type.String({
      minLength: 1,
      maxLength: 1000,
      description: 'The file name attachments show (cleaned: no path, at most 200 characters).',
    }),
  },
  { additionalProperties: false },
);
