import { PassThrough, Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorCodes, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { requireAdmin } from '../../access/policy.ts';
import { IdParams, ref } from '../../contract.ts';
import { DomainError } from '../../errors.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageQuery } from '../../plugins/pagination.ts';
import { getImportFile, putImportFile } from './files.ts';
import { IMPORT_RECORDS } from './records.ts';
import {
  CreateImportQuery,
  ImportErrorPage,
  ImportErrorSchema,
  ImportFileParams,
  ImportFileQuery,
  ImportFileSchema,
  ImportPage,
  ImportRecordSchema,
  ImportSchema,
  PutImportFileQuery,
} from './schemas.ts';
import * as service from './service.ts';

export const importSchemas = [
  ...IMPORT_RECORDS,
  ImportRecordSchema,
  ImportSchema,
  ImportErrorSchema,
  ImportPage,
  ImportErrorPage,
  ImportFileSchema,
];

/** What POST /v1/imports takes: records (NDJSON) or contacts (CSV). */
const IMPORT_RECORD_TYPES = ['application/x-ndjson', 'application/jsonl', 'text/csv'];
/** What PUT /v1/imports/files/{external_id} takes: the file's bytes, its type read from them. */
const IMPORT_FILE_TYPE = 'application/octet-stream';
/** Bodies these routes read as streams (the app's validator leaves them to the importer). */
export const STREAMED_IMPORT_TYPES = [...IMPORT_RECORD_TYPES, IMPORT_FILE_TYPE];

const mediaType = (request: FastifyRequest) =>
  String(request.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();

/** A route's streamed body, or 415 when it came in another type (JSON would pass unchecked). */
const streamedAs = (types: readonly string[]) => async (request: FastifyRequest) => {
  if (!(request.body instanceof Readable) || !types.includes(mediaType(request))) {
    throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(request.headers['content-type'] ?? '(none)');
  }
};

const tags = ['imports'];
const Import = ref(ImportSchema);
const ImportFileRef = ref(ImportFileSchema);

const EXAMPLE = [
  '{"type":"department","external_id":"g1","name":"Returns"}',
  '{"type":"contact","external_id":"u7","name":"Jane Doe","emails":["jane@example.com"]}',
  '{"type":"ticket","external_id":"t1","created_at":"2025-03-01T09:00:00Z","subject":"Broken zip","contact":"u7","department":"g1","message":{"body":"The zip broke."}}',
  '{"type":"message","external_id":"c2","ticket":"t1","at":"2025-03-01T10:30:00Z","kind":"reply","body":"Sorry! A new one is on its way."}',
  '{"type":"status","external_id":"s3","ticket":"t1","at":"2025-03-02T08:00:00Z","status":"resolved"}',
].join('\n');

/**
 * The body through a stream of its own: when the store stops reading (past its limit) it
 * destroys that one, and the rest of the request is read and dropped, so the client gets its
 * 413 instead of a reset connection.
 */
function detached(request: FastifyRequest): PassThrough {
  const body = new PassThrough();
  const source = request.body as unknown as Readable;
  source.pipe(body);
  body.on('close', () => {
    source.unpipe(body);
    source.resume();
  });
  // A client gone mid-body: pipe() would leave the store waiting for the rest for ever (and its
  // partial file on disk); failing the copy makes the store remove it.
  // Our own error, not Node's ECONNRESET: that one reads as the database being away.
  const cut = () => {
    if (!source.readableEnded) {
      body.destroy(new DomainError('invalid', 'body_incomplete', 'The request ended before its body did.'));
    }
  };
  source.once('error', cut);
  source.once('close', cut);
  return body;
}

/**
 * 413 at once for a body that says it is larger than allowed, and the connection closed after
 * it: reading (and dropping) gigabytes first would be for nothing.
 */
function refuseDeclaredOver(
  request: FastifyRequest,
  reply: FastifyReply,
  maxBytes: number,
  code: string,
  message: string,
) {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    reply.header('connection', 'close');
    throw new DomainError('too_large', code, message);
  }
}

export const importRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, blobs, config } = app;

  // Import files are read here as streams, straight into the blob store (encapsulated: every
  // other route still answers 415 to these types). No body limit: IMPORT_MAX_BYTES caps the file.
  app.removeContentTypeParser(['text/plain']);
  app.addContentTypeParser(STREAMED_IMPORT_TYPES, (_request, payload, done) => done(null, payload));

  app.post(
    '/v1/imports',
    {
      // A file of gigabytes: it may take UPLOAD_TIMEOUT_MS to arrive while it keeps coming.
      config: { upload: true },
      preValidation: streamedAs(IMPORT_RECORD_TYPES),
      schema: {
        operationId: 'createImport',
        tags,
        summary: 'Import a help desk’s history (NDJSON) or contacts (CSV)',
        description: `Owners and admins. The file is kept and imported in the background: poll the import (\`Location\`) until \`state\` is finished. NDJSON: one record per line, each an \`ImportRecord\` (agents, departments, memberships, contact fields, contacts, tickets and their timeline: messages, status changes, transfers, assignments, tags, priority and subject changes, calls, chats, ratings), each with its \`external_id\`. Timeline records are replayed through the same write path as live changes, at their own time, so reports count them as if they had happened here; they are marked with the import's id in ticket history, run no automation rule unless \`run_rules=true\`, and send no mail, webhook or notification. Re-importing a record (same source, type and external_id) changes nothing and counts as skipped, with two exceptions counted as updated: a contact whose record changed takes the record's name, emails, phones and custom fields, and a choice contact field gains the record's options it lacks. Later imports may add to an imported ticket's timeline. A bad line is reported (GET /v1/imports/{id}/errors) and skipped; the others go on. CSV (text/csv): contacts, with a header row: external_id, name, email or emails, phone or phones (several separated by ;), and contact field keys. At most IMPORT_MAX_BYTES (default 4 GiB), else 413. docs/import.md has the whole format.`,
        querystring: CreateImportQuery,
        body: {
          content: {
            'application/x-ndjson': {
              schema: {
                type: 'string',
                description: 'One ImportRecord (components/schemas/ImportRecord) per line.',
                'x-ndjson-items': { $ref: '#/components/schemas/ImportRecord' },
                examples: [EXAMPLE],
              },
            },
            'application/jsonl': {
              schema: { type: 'string', description: 'The same as application/x-ndjson.' },
            },
            'text/csv': {
              schema: {
                type: 'string',
                description: 'Contacts, with a header row.',
                examples: [
                  'external_id,name,email,phone,plan\nu7,Jane Doe,jane@example.com,+420601234567,pro\n',
                ],
              },
            },
          },
        },
        response: {
          202: {
            ...Import,
            description: 'Queued: the file is kept; the import runs in the background.',
            headers: responseHeaders.location('import'),
          },
          ...problems(413, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      requireAdmin(principal);
      refuseDeclaredOver(
        request,
        reply,
        config.importMaxBytes,
        'import_too_large',
        `The file is larger than ${config.importMaxBytes} bytes (IMPORT_MAX_BYTES); nothing was imported. Split it: imports may follow each other.`,
      );
      const created = await service.startImport(db, blobs, principal, {
        body: detached(request),
        format: mediaType(request) === 'text/csv' ? 'csv' : 'ndjson',
        source: request.query.source,
        runRules: request.query.run_rules,
        maxBytes: config.importMaxBytes,
      });
      return reply.code(202).header('location', `/v1/imports/${created.id}`).send(created);
    },
  );

  app.get(
    '/v1/imports',
    {
      schema: {
        operationId: 'listImports',
        tags,
        summary: 'List imports',
        description: 'Owners and admins; newest first.',
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: { 200: ref(ImportPage) },
      },
    },
    async (request) => service.listImports(db, principalOf(request), request.query),
  );

  app.get(
    '/v1/imports/:id',
    {
      schema: {
        operationId: 'getImport',
        tags,
        summary: 'Get an import and its progress',
        description: 'Owners and admins. Counts move as batches of records commit.',
        params: IdParams,
        response: { 200: Import, ...problems(404) },
      },
    },
    async (request) => service.getImport(db, principalOf(request), request.params.id),
  );

  app.get(
    '/v1/imports/:id/errors',
    {
      schema: {
        operationId: 'listImportErrors',
        tags,
        summary: 'List the lines an import refused, and the messages it took without a file',
        description:
          'Owners and admins; in line order, with the reason for each. Every row is a refused line (counted in counts.failed) except those with code file_missing: a message imported without the files of its `attachments` that were not uploaded (counted as created).',
        params: IdParams,
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: { 200: ref(ImportErrorPage), ...problems(404) },
      },
    },
    async (request) => service.listImportErrors(db, principalOf(request), request.params.id, request.query),
  );

  app.put(
    '/v1/imports/files/:external_id',
    {
      config: { upload: true },
      preValidation: streamedAs([IMPORT_FILE_TYPE]),
      schema: {
        operationId: 'putImportFile',
        tags,
        summary: 'Upload a file for imported messages',
        description:
          'Owners and admins. The body is the file’s bytes (application/octet-stream; its type is read from them). Upload every file before the import whose message records name it in `attachments` (docs/import.md, “Attachments”). The same bytes again answer 200 with the file as it is, so a failed upload may simply be retried; other bytes under the same source and external id are refused (409): what an import linked never changes. At most ATTACHMENT_MAX_BYTES (default 25 MiB), else 413.',
        params: ImportFileParams,
        querystring: PutImportFileQuery,
        body: {
          content: {
            [IMPORT_FILE_TYPE]: {
              schema: {
                type: 'string',
                format: 'binary',
                description: 'The file’s bytes.',
                examples: ['%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n'],
              },
            },
          },
        },
        response: {
          200: { ...ImportFileRef, description: 'Uploaded before with the same bytes: nothing changed.' },
          201: { ...ImportFileRef, description: 'Kept.', headers: responseHeaders.location('import file') },
          ...problems(409, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      requireAdmin(principal);
      refuseDeclaredOver(
        request,
        reply,
        config.attachments.maxBytes,
        'attachment_too_large',
        `The file is larger than ${config.attachments.maxBytes} bytes (ATTACHMENT_MAX_BYTES); nothing was stored.`,
      );
      const { file, created } = await putImportFile(db, blobs, principal, {
        source: request.query.source,
        externalId: request.params.external_id,
        filename: request.query.filename,
        body: detached(request),
        maxBytes: config.attachments.maxBytes,
      });
      if (!created) return reply.code(200).send(file);
      return reply
        .code(201)
        .header(
          'location',
          `/v1/imports/files/${encodeURIComponent(file.external_id)}?source=${encodeURIComponent(file.source)}`,
        )
        .send(file);
    },
  );

  app.get(
    '/v1/imports/files/:external_id',
    {
      schema: {
        operationId: 'getImportFile',
        tags,
        summary: 'Get a file uploaded for an import',
        description: 'Owners and admins: whether it is here already (an upload script skips those).',
        params: ImportFileParams,
        querystring: ImportFileQuery,
        response: { 200: ImportFileRef, ...problems(404) },
      },
    },
    async (request) =>
      getImportFile(db, principalOf(request), request.query.source, request.params.external_id),
  );
};
