import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type Static, Type } from 'typebox';
import { isStalePreparedStatement } from '../db/client.ts';
import { DATABASE_RETRY_AFTER_SECONDS, describe, isDatabaseUnreachable } from '../db/outage.ts';
import { DomainError, type ErrorKind, invalid } from '../errors.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'Always about:blank; branch on `code` instead.' }),
    title: Type.String({ description: 'The HTTP status phrase.' }),
    status: Type.Integer(),
    code: Type.String({
      description: 'Stable machine-readable error code.',
      examples: ['validation_failed'],
    }),
    detail: Type.String({ description: 'What went wrong, for a human.' }),
    instance: Type.String({ description: 'The request path.' }),
    request_id: Type.String(),
    errors: Type.Optional(
      Type.Array(
        Type.Object(
          {
            field: Type.String({ description: 'Where: body/name, querystring/limit, params/id, ...' }),
            message: Type.String(),
          },
          { additionalProperties: false },
        ),
        { description: 'Validation failures, one per offending field.' },
      ),
    ),
    blockers: Type.Optional(
      Type.Array(
        Type.Object(
          { kind: Type.String(), count: Type.Integer(), detail: Type.String() },
          { additionalProperties: false },
        ),
        { description: 'What still depends on a resource that cannot be deleted.' },
      ),
    ),
  },
  { $id: 'Problem', additionalProperties: false, title: 'RFC 9457 problem details' },
);
export type Problem = Static<typeof ProblemSchema>;

const STATUS_BY_KIND: Record<ErrorKind, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  gone: 410,
  precondition_failed: 412,
  unprocessable: 422,
  throttled: 429,
  too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
};

const FASTIFY_CODES: Record<string, { status: number; code: string; detail?: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid_content_length' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'payload_too_large' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'malformed_json', detail: 'The JSON body is empty.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'malformed_json' },
  FST_ERR_CTP_EMPTY_TYPE: { status: 400, code: 'malformed_request' },
  FST_ERR_CTP_INVALID_TYPE: { status: 400, code: 'malformed_request' },
  FST_ERR_CTP_INVALID_HEADER: { status: 400, code: 'malformed_request' },
  FST_ERR_BAD_URL: {
    status: 400,
    code: 'malformed_url',
    detail: 'The path is not valid percent-encoded UTF-8.',
  },
  // Path parameters are ids: one this long names nothing, like any other malformed id (400).
  FST_ERR_MAX_PARAM_LENGTH: {
    status: 400,
    code: 'malformed_url',
    detail: 'A path parameter is longer than 200 characters.',
  },
  FST_ERR_ASYNC_CONSTRAINT: { status: 400, code: 'malformed_request' },
};

// PostgreSQL SQLSTATEs that mean the client asked for something impossible, not that we broke.
const PG_CODES: Record<string, { status: number; code: string; detail: string; when?: RegExp }> = {
  '23505': { status: 409, code: 'conflict', detail: 'A resource with the same unique value already exists.' },
  '23503': {
    status: 409,
    code: 'reference_conflict',
    detail: 'A referenced resource does not exist or is in use.',
  },
  '22P02': { status: 400, code: 'invalid_value', detail: 'A value has the wrong format.' },
  '22001': { status: 400, code: 'value_too_long', detail: 'A value is too long.' },
  '22003': { status: 400, code: 'value_out_of_range', detail: 'A number is out of range.' },
  '22007': { status: 400, code: 'invalid_value', detail: 'A date or time has the wrong format.' },
  '22008': { status: 400, code: 'value_out_of_range', detail: 'A date or time is out of range.' },
  // A timestamp with an impossible offset, or (22023, below) a time zone PostgreSQL does not
  // know: what a hand-edited cursor carries into a time column.
  '22009': { status: 400, code: 'invalid_value', detail: 'A date or time has an invalid offset.' },
  '22023': {
    status: 400,
    code: 'invalid_value',
    detail: 'A date or time names a time zone PostgreSQL does not know.',
    // Functions raise 22023 on bad arguments too (ours only get what the code builds): those
    // stay 500s, so a bug of ours is not passed off as the client's.
    when: /^time zone .* not recognized$/,
  },
  // U+0000 (and other text PostgreSQL cannot store) in a text or jsonb value.
  '22021': {
    status: 400,
    code: 'invalid_text',
    detail: 'A text value contains a character that cannot be stored (U+0000).',
  },
  '22P05': {
    status: 400,
    code: 'invalid_text',
    detail: 'A text value contains a character that cannot be stored (U+0000).',
  },
  '40001': { status: 409, code: 'concurrent_update', detail: 'A concurrent change won; retry the request.' },
  '40P01': { status: 409, code: 'concurrent_update', detail: 'A concurrent change won; retry the request.' },
};

// Unique constraints whose violation has a more useful code than plain "conflict".
const CONSTRAINT_CODES: Record<string, { code: string; detail: string; status?: number; field?: string }> = {
  // The ticket's department is checked by its foreign key rather than by a look-up first.
  tickets_department_id_fkey: {
    status: 422,
    code: 'department_not_found',
    detail: 'The department does not exist.',
    field: 'body/department_id',
  },
  // A department names a schedule by its foreign key; a schedule deleted meanwhile fails it too.
  departments_schedule_id_fkey: {
    status: 422,
    code: 'schedule_not_found',
    detail: 'The schedule does not exist.',
    field: 'body/schedule_id',
  },
  schedules_name_key: {
    code: 'schedule_name_taken',
    detail: 'A schedule with this name already exists (names ignore case).',
  },
  departments_name_key: {
    code: 'department_name_taken',
    detail: 'A department with this name already exists (names ignore case).',
  },
  calls_external_id_key: {
    code: 'call_already_recorded',
    detail: 'A call with this external_id was already recorded.',
  },
  chats_external_id_key: {
    code: 'chat_already_recorded',
    detail: 'A chat with this external_id was already recorded.',
  },
  agents_email_key: {
    code: 'email_taken',
    detail: 'An agent with this email already exists (emails ignore case).',
  },
};

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

function fieldErrors(context: string | undefined, errors: AjvError[]) {
  const part = context ?? 'body';
  const seen = new Set<string>();
  const out: { field: string; message: string }[] = [];
  for (const e of errors) {
    let path = e.instancePath.replace(/^\//, '');
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'required') {
      path = [path, String(e.params.missingProperty)].filter(Boolean).join('/');
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      path = [path, String(e.params.additionalProperty)].filter(Boolean).join('/');
      message = 'is not a known field';
    }
    const field = path ? `${part}/${path}` : part;
    const key = `${field}:${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field, message });
  }
  return out;
}

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  code: string,
  detail: string,
  extra: Pick<Problem, 'errors' | 'blockers'> = {},
) {
  const body: Problem = {
    type: 'about:blank',
    title: STATUS_CODES[status] ?? 'Error',
    status,
    code,
    detail,
    instance: request.url.split('?')[0] ?? request.url,
    request_id: String(request.id),
    ...extra,
  };
  return reply.code(status).type(PROBLEM_CONTENT_TYPE).send(body);
}

/** fastify's `frameworkErrors`: what its router refuses before a route runs, as problem+json. */
export function frameworkProblem(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const known = FASTIFY_CODES[error.code];
  // No route, so no onSend hook: the request id the body names goes in the header here.
  reply.header('x-request-id', request.id);
  return sendProblem(
    request,
    reply,
    known?.status ?? 400,
    known?.code ?? 'malformed_request',
    known?.detail ?? error.message,
  );
}

// What Node's HTTP parser refuses before any request object exists (the same statuses Node
// itself would send, https://nodejs.org/api/http.html#event-clienterror).
const CLIENT_ERRORS: Record<string, { status: number; code: string; detail: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'request_header_fields_too_large',
    detail: 'The request line and headers together exceed 16 KiB; send long filters in fewer bytes.',
  },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    status: 413,
    code: 'payload_too_large',
    detail: 'The chunk extensions of the request body are too large.',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'request_timeout',
    detail: 'The request did not arrive in time.',
  },
};

/** 408: a request, or an upload that stopped sending, did not arrive in time. */
export const REQUEST_TIMEOUT_PROBLEM = CLIENT_ERRORS.ERR_HTTP_REQUEST_TIMEOUT!;

/** The path of the request line in what the parser saw, or null (it may be cut or garbled). */
function requestPath(rawPacket: unknown): string | null {
  if (!Buffer.isBuffer(rawPacket)) return null;
  const line = /^[A-Z]{3,10} (\/[!-~]*)/.exec(rawPacket.subarray(0, 4096).toString('latin1'));
  const path = line?.[1]?.split('?')[0];
  return path && path.length <= 2048 ? path : null;
}

/**
 * fastify's `clientErrorHandler`: a request Node's parser refuses (headers over 16 KiB, malformed
 * HTTP, a request timeout) is answered as problem+json on the raw socket, then the connection is
 * closed. There is no request object yet, so the request id is minted here.
 */
export function clientErrorProblem(
  this: FastifyInstance,
  error: Error & { code?: string; rawPacket?: unknown },
  socket: Socket,
) {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const known = (error.code && CLIENT_ERRORS[error.code]) || {
    status: 400,
    code: 'malformed_request',
    detail: 'The request is not valid HTTP/1.1.',
  };
  const requestId = randomUUID();
  this.log.info(
    { reqId: requestId, err: { code: error.code, message: error.message }, status: known.status },
    'refused by the HTTP parser',
  );
  writeRawProblem(socket, known, requestPath(error.rawPacket) ?? `urn:uuid:${requestId}`, requestId);
  socket.destroy(error);
}

/**
 * Answers a problem on the raw socket, for a request that has no response under way (Node's
 * parser refused it, or it did not arrive in time); the caller closes the connection.
 */
export function writeRawProblem(
  socket: Socket,
  known: { status: number; code: string; detail: string; retryAfterSeconds?: number },
  instance: string,
  requestId: string,
) {
  // Like Node: never write into the middle of a response already under way on this socket.
  const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !current?.headersSent) {
    const body = JSON.stringify({
      type: 'about:blank',
      title: STATUS_CODES[known.status] ?? 'Error',
      status: known.status,
      code: known.code,
      detail: known.detail,
      instance,
      request_id: requestId,
    } satisfies Problem);
    socket.write(
      [
        `HTTP/1.1 ${known.status} ${STATUS_CODES[known.status]}`,
        `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
        `Content-Length: ${Buffer.byteLength(body)}`,
        `X-Request-Id: ${requestId}`,
        'Cache-Control: no-store',
        ...(known.retryAfterSeconds === undefined ? [] : [`Retry-After: ${known.retryAfterSeconds}`]),
        'Connection: close',
        '',
        body,
      ].join('\r\n'),
    );
  }
}

/**
 * The server's `checkExpectation` listener: a request whose `Expect` is not `100-continue` gets
 * 417 as problem+json (Node's own answer is a bare 417), and nothing else runs for it.
 */
export function expectationFailedProblem(request: IncomingMessage, response: ServerResponse) {
  const requestId = randomUUID();
  const body = JSON.stringify({
    type: 'about:blank',
    title: STATUS_CODES[417] ?? 'Expectation Failed',
    status: 417,
    code: 'expectation_failed',
    detail: 'The only expectation this server meets is Expect: 100-continue.',
    instance: (request.url ?? '/').split('?')[0] ?? '/',
    request_id: requestId,
  } satisfies Problem);
  response.writeHead(417, {
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
    connection: 'close',
  });
  response.end(body);
}

/** A JSON escape of a UTF-16 surrogate: how a body brings one that has no pair. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Stands, in the walk below, for a key that is not well-formed (its field, not its value). */
const LONE_KEY = Symbol('a key with a lone surrogate');

/**
 * Where a parsed body holds a string (or key) with a lone surrogate, or null: the first one in
 * document order. PostgreSQL stores UTF-8, and pg would write such a string with U+FFFD in its
 * place: a change nobody asked for. A loop with a stack of its own, not recursion: JSON.parse
 * takes nesting of any depth, and a RangeError here, inside fastify's parser, would answer
 * "Body is not valid JSON" for a body that is.
 */
export function loneSurrogateAt(value: unknown, path: string): string | null {
  const pending: [unknown, string][] = [[value, path]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, at] = next;
    if (item === LONE_KEY) return at;
    if (typeof item === 'string') {
      if (!item.isWellFormed()) return at;
    } else if (Array.isArray(item)) {
      for (let i = item.length - 1; i >= 0; i--) pending.push([item[i], `${at}/${i}`]);
    } else if (item !== null && typeof item === 'object') {
      const entries = Object.entries(item);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i] as [string, unknown];
        // A key that is not well-formed is named as its own field, in place of what it holds.
        if (key.isWellFormed()) pending.push([child, `${at}/${key}`]);
        else pending.push([LONE_KEY, `${at}/${key.toWellFormed()}`]);
      }
    }
  }
  return null;
}

/** One error handler for the whole API: every failure leaves as RFC 9457 problem+json. */
export const problemPlugin = fp(
  async (app: FastifyInstance) => {
    app.addSchema(ProblemSchema);

    // Only JSON bodies: without this, fastify would parse text/plain and answer 400 instead of 415.
    app.removeContentTypeParser('text/plain');
    // Many HTTP clients send content-type: application/json on every request, a body-less
    // DELETE included; an empty body is no body, not malformed JSON.
    const parseJson = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
      const bytes = body as Buffer;
      if (bytes.length === 0) return done(null, undefined);
      // Decoded as it came, bytes that are no UTF-8 would become U+FFFD without a word.
      if (!isUtf8(bytes)) {
        return done(
          invalid('invalid_text', 'The body is not valid UTF-8.', [
            { field: 'body', message: 'is not valid UTF-8' },
          ]),
        );
      }
      const text = bytes.toString('utf8');
      return parseJson(request, text, (error, parsed) => {
        if (error || !SURROGATE_ESCAPE.test(text)) return done(error, parsed);
        const at = loneSurrogateAt(parsed, 'body');
        if (at === null) return done(null, parsed);
        return done(
          invalid(
            'invalid_text',
            `${at} holds half of a UTF-16 surrogate pair (\\uD800-\\uDFFF alone), no character.`,
            [{ field: at, message: 'holds a lone UTF-16 surrogate' }],
          ),
        );
      });
    });

    app.setNotFoundHandler((request, reply) =>
      sendProblem(
        request,
        reply,
        404,
        'route_not_found',
        `No route ${request.method} ${request.url.split('?')[0]}.`,
      ),
    );

    app.setErrorHandler((error: FastifyError & { validation?: AjvError[] }, request, reply) => {
      if (error instanceof DomainError) {
        const status = STATUS_BY_KIND[error.kind];
        if (status === 401)
          reply.header('www-authenticate', `Bearer realm="deskroute", error="invalid_token"`);
        if (error.retryAfterSeconds !== undefined)
          reply.header('retry-after', String(error.retryAfterSeconds));
        const extra: Pick<Problem, 'errors' | 'blockers'> = {};
        if (error.errors) extra.errors = error.errors;
        if (error.blockers) extra.blockers = error.blockers;
        return sendProblem(request, reply, status, error.code, error.message, extra);
      }
      if (error.validation) {
        const errors = fieldErrors(error.validationContext, error.validation);
        const first = errors[0];
        const detail = first ? `${first.field} ${first.message}` : 'The request is invalid.';
        return sendProblem(request, reply, 400, 'validation_failed', detail, { errors });
      }
      if (isDatabaseUnreachable(error)) {
        // PostgreSQL is away (restarting, failing over, full): the client may retry the request
        // later. A change whose COMMIT was under way when the connection dropped may have been
        // saved: the Idempotency-Key of ticket creation makes such a retry safe.
        request.log.warn({ reason: describe(error) }, 'database unavailable');
        reply.header('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
        return sendProblem(
          request,
          reply,
          503,
          'database_unavailable',
          'The database is unavailable for now; retry later.',
        );
      }
      if (isStalePreparedStatement(error)) {
        // A newer release's migration retyped what one of our prepared statements returns: the
        // client prepares it again for the next run on this connection (db/client.ts), so a
        // retry works. Worth an operator's eye: two releases disagree on the schema.
        request.log.warn({ reason: error.message }, 'prepared statement stale after a schema change');
        reply.header('retry-after', '1');
        return sendProblem(
          request,
          reply,
          503,
          'schema_changed',
          "The database's schema changed under this request (a newer release migrated it); retry the request.",
        );
      }
      const known = error.code ? FASTIFY_CODES[error.code] : undefined;
      if (known) return sendProblem(request, reply, known.status, known.code, known.detail ?? error.message);

      const pgCode = (error as { code?: unknown }).code;
      const pgKnown = typeof pgCode === 'string' ? PG_CODES[pgCode] : undefined;
      if (pgKnown && 'severity' in error && (!pgKnown.when || pgKnown.when.test(error.message))) {
        const constraint = (error as { constraint?: string }).constraint;
        const specific = constraint ? CONSTRAINT_CODES[constraint] : undefined;
        const mapped = specific ?? pgKnown;
        request.log.info({ pgCode, constraint }, 'database refused the change');
        const status = specific?.status ?? pgKnown.status;
        const extra = specific?.field
          ? { errors: [{ field: specific.field, message: specific.detail }] }
          : {};
        return sendProblem(request, reply, status, mapped.code, mapped.detail, extra);
      }
      if (error.statusCode === 429) {
        return sendProblem(request, reply, 429, 'rate_limited', error.message);
      }
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        return sendProblem(request, reply, error.statusCode, 'bad_request', error.message);
      }
      request.log.error({ err: error }, 'unhandled error');
      return sendProblem(request, reply, 500, 'internal_error', 'Something went wrong on our side.');
    });
  },
  { name: 'problem', fastify: '5.x' },
);
