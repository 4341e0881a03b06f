import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import cors from '@fastify/cors';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import rateLimit from '@fastify/rate-limit';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Config } from './config.ts';
import type { Db } from './db/database.ts';
import { withStatementDeadline } from './db/deadline.ts';
import { agentRoutes, agentSchemas } from './domains/agents/routes.ts';
import { apiTokenRoutes, apiTokenSchemas } from './domains/api-tokens/routes.ts';
import { attachmentRoutes, attachmentSchemas } from './domains/attachments/routes.ts';
import { authRoutes, authSchemas } from './domains/auth/routes.ts';
import { automationRuleRoutes, automationRuleSchemas } from './domains/automation-rules/routes.ts';
import { RULE_STAND_INS } from './domains/automation-rules/schemas.ts';
import { callAndChatRoutes, callSchemas } from './domains/calls/routes.ts';
import { cannedResponseRoutes, cannedResponseSchemas } from './domains/canned-responses/routes.ts';
import { contactFieldRoutes, contactFieldSchemas } from './domains/contact-fields/routes.ts';
import { contactRoutes, contactSchemas } from './domains/contacts/routes.ts';
import { departmentRoutes, departmentSchemas } from './domains/departments/routes.ts';
import { eventRouteSchemas, eventRoutes } from './domains/events/routes.ts';
import { exportRoutes } from './domains/exports/routes.ts';
import { importRoutes, importSchemas, STREAMED_IMPORT_TYPES } from './domains/imports/routes.ts';
import { mailIdentityRoutes, mailIdentitySchemas } from './domains/mail-identity/routes.ts';
import { mailInRoutes, mailInSchemas } from './domains/mail-in/routes.ts';
import { mailOutRoutes, mailOutSchemas } from './domains/mail-out/routes.ts';
import { mailboxRoutes, mailboxSchemas } from './domains/mailboxes/routes.ts';
import { notificationRoutes, notificationSchemas } from './domains/notifications/routes.ts';
import { publicRoutes, publicSchemas } from './domains/public/routes.ts';
import { queueRoutes } from './domains/queue/routes.ts';
import { ExportSlots } from './domains/reports/csv.ts';
import { reportRoutes, reportSchemas } from './domains/reports/routes.ts';
import { ReportKeeper } from './domains/reports/service.ts';
import { scheduleRoutes, scheduleSchemas } from './domains/schedules/routes.ts';
import { slaPolicyRoutes, slaPolicySchemas } from './domains/sla-policies/routes.ts';
import { StreamHub } from './domains/stream/hub.ts';
import { streamRoutes } from './domains/stream/routes.ts';
import { surveyRoutes, surveySchemas } from './domains/surveys/routes.ts';
import { systemRoutes } from './domains/system/routes.ts';
import { tagRoutes, tagSchemas } from './domains/tags/routes.ts';
import { ticketRoutes, ticketSchemas } from './domains/tickets/routes.ts';
import { viewRoutes, viewSchemas } from './domains/views/routes.ts';
import { webhookRoutes, webhookSchemas } from './domains/webhooks/routes.ts';
import { DomainError, invalid, unavailable } from './errors.ts';
import type { JobQueue } from './jobs/queue.ts';
import { RequestLoad } from './jobs/yield.ts';
import { createAjv } from './plugins/ajv.ts';
import { arrivalPlugin } from './plugins/arrival.ts';
import { authPlugin } from './plugins/auth.ts';
import { AuthCache } from './plugins/auth-cache.ts';
import { openapiPlugin } from './plugins/openapi.ts';
import {
  clientErrorProblem,
  expectationFailedProblem,
  frameworkProblem,
  problemPlugin,
  writeRawProblem,
} from './plugins/problem.ts';
import { type BlobStore, blobStoreFor } from './storage/blobs.ts';

declare module 'fastify' {
  interface FastifyInstance {
    db: Db;
    config: Config;
    /** The job queue, when this process runs one (the server does; most tests do not). */
    jobs: JobQueue | undefined;
    /** Attachments and received messages (src/storage/blobs.ts). */
    blobs: BlobStore;
    /**
     * Exports reading the database at once (EXPORT_MAX_CONCURRENT): a report CSV's query, or a
     * batch of a ticket or contact export. Shared, so together they keep to half the pool.
     */
    exportReads: ExportSlots;
    /** Keeps the percentiles of the reports served, after the response (reports/service.ts). */
    reportKeeper: ReportKeeper;
    /** The requests this app is answering, which webhook work yields to (jobs/yield.ts). */
    requestLoad: RequestLoad;
    /** Who credentials belong to, per process (plugins/auth-cache.ts). */
    authCache: AuthCache;
  }
  interface FastifyRequest {
    /** Stops counting this request in the app's load (any number of calls). */
    leaveLoad: () => void;
    /** Answered, or gone: the request never counts again. */
    loadEnded: boolean;
  }
}

export interface AppDeps {
  db: Db;
  jwtSecret: string;
  /** pino options or false; the server passes its logger settings, tests pass false. */
  logger?: FastifyServerOptions['logger'];
  jobs?: JobQueue;
  /** Counts the requests in flight; the server shares it with its jobs (jobs/yield.ts). */
  load?: RequestLoad;
  /** Default: local disk under DATA_DIR/blobs. */
  blobs?: BlobStore;
  /**
   * The PostgreSQL the db reaches, for a connection of its own that hears credential changes
   * (plugins/auth-cache.ts). Without it (embedded PGlite) credentials are not cached.
   */
  databaseUrl?: string;
}

// Secrets never reach the log: fastify's request serializer leaves headers and bodies out, and
// these paths catch anything logged by hand.
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'password',
  'secret',
  'access_token',
  '*.password',
  '*.new_password',
  '*.current_password',
  '*.secret',
  '*.access_token',
];

/** A survey link's token in a path (`/v1/public/ratings/<token>`): a credential, never logged. */
const SURVEY_TOKEN_IN_PATH = /^(\/v1\/public\/ratings\/)[^/?#]+/i;

/**
 * fastify's request serializer (method, url, host, client address), with a survey link's token
 * left out of the url: the token rates the ticket as its contact, and only its hash is stored.
 */
export function requestForLog(request: FastifyRequest) {
  return {
    method: request.method,
    url: request.url.replace(SURVEY_TOKEN_IN_PATH, '$1[redacted]'),
    version: request.headers?.['accept-version'],
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}

/** The methods whose body fastify reads and whose 415 the spec documents (plugins/openapi.ts). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Content-Encoding identity (or none listed): the body is the bytes sent. */
const isIdentity = (coding: string) =>
  coding.split(',').every((c) => ['', 'identity'].includes(c.trim().toLowerCase()));

/** Whether a request carries a body: a non-zero Content-Length, or a chunked one. */
const hasBody = (raw: IncomingMessage) =>
  raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) !== 0;

/** The logger options with requests logged through requestForLog. */
function withRequestSerializer(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (typeof logger !== 'object' || logger === null) return logger ?? false;
  return { ...logger, serializers: { ...logger.serializers, req: requestForLog as never } };
}

/**
 * Response headers clients read: exposed to browsers through CORS, and each one declared in the
 * spec wherever it is sent (test/helpers/contract.ts checks every response of the suite). Every
 * header the spec declares is here but the CORS-safelisted ones (Cache-Control...), which
 * browsers show anyway (test/contract-headers.test.ts).
 */
export const CLIENT_HEADERS = [
  'ETag',
  'Location',
  'Retry-After',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'X-Request-Id',
  'Content-Disposition',
  'Idempotent-Replayed',
  'Export-Next-Cursor',
  'X-Content-Type-Options',
  'Content-Security-Policy',
  'Accept-Encoding',
] as const;

/** Retry-After of the 503 a draining server answers: about the time a restart takes. */
export const DRAINING_RETRY_AFTER_SECONDS = 5;
/** How long a request whose head is still arriving when the server stops has to arrive whole. */
const HEAD_AT_SHUTDOWN_MS = 2_000;
const HEAD_STALLED_AT_SHUTDOWN = {
  status: 503,
  code: 'server_draining',
  detail:
    'This server is shutting down and the request did not arrive in time; retry, another instance will answer.',
  retryAfterSeconds: DRAINING_RETRY_AFTER_SECONDS,
};

const buildSerializer = SerializerSelector();

/**
 * Responses carry stored rules as they are: validateRule() checked them when they were written,
 * and matching each condition node against the contract's unions on every read cost about
 * 40 µs a rule (and a 500 for the whole list if one ever did not fit).
 */
function serializerWithRuleStandIns(
  externalSchemas: unknown,
  options?: Parameters<typeof buildSerializer>[1],
) {
  const schemas: Record<string, unknown> = { ...(externalSchemas as Record<string, unknown>) };
  for (const standIn of RULE_STAND_INS) schemas[standIn.$id] = standIn;
  // fast-json-stringify checks and indexes every shared schema it is given, again for each
  // response it compiles: given all of them, the API's few hundred responses took ~14 s of CPU at
  // start-up (the event loop blocked, the background loops' connection attempts timing out). So
  // each response gets only the shared schemas it reaches through $ref.
  const reached = new Map<string, string[]>();
  const refsOf = (schema: unknown, into: Set<string>) => {
    if (Array.isArray(schema)) for (const item of schema) refsOf(item, into);
    else if (schema && typeof schema === 'object') {
      for (const [key, value] of Object.entries(schema)) {
        if (key === '$ref' && typeof value === 'string') {
          const id = value.split('#')[0];
          if (id) into.add(id);
        } else refsOf(value, into);
      }
    }
  };
  const directRefs = (id: string) => {
    let refs = reached.get(id);
    if (!refs) {
      const found = new Set<string>();
      refsOf(schemas[id], found);
      refs = [...found];
      reached.set(id, refs);
    }
    return refs;
  };
  return (route: Parameters<ReturnType<typeof buildSerializer>>[0]) => {
    const pending = new Set<string>();
    refsOf(route.schema, pending);
    const needed: Record<string, unknown> = {};
    for (const id of pending) {
      if (id in needed || !(id in schemas)) continue;
      needed[id] = schemas[id];
      for (const next of directRefs(id)) pending.add(next);
    }
    return buildSerializer(needed, options)(route);
  };
}

/** Builds the whole API as one fastify instance. It never listens; server.ts does. */
export async function buildApp(config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: withRequestSerializer(deps.logger),
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // fastify's own drain answer is a plain JSON body; ours (below) is problem+json.
    return503OnClosing: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    // A path fastify cannot decode, or an over-long path id, is answered before any route or
    // error handler runs: routed here so it leaves as problem+json like every other 4xx.
    frameworkErrors: frameworkProblem,
    // What Node's HTTP parser refuses (431, 408, malformed HTTP) also leaves as problem+json.
    clientErrorHandler: clientErrorProblem,
    http: {
      // How often Node checks its time-outs (30 s by default): headers due within 10 s
      // (server.ts) were cut only after 30-40 s.
      connectionsCheckingInterval: 1_000,
      // Node answers an HTTP/1.1 request without Host with a bare 400; ours is problem+json
      // (the hook below).
      requireHostHeader: false,
    },
    schemaController: { compilersFactory: { buildSerializer: serializerWithRuleStandIns } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const bodyAjv = createAjv('body');
  // Rule conditions and actions are checked by the rule engine (precise 422s), not by Ajv.
  for (const standIn of RULE_STAND_INS) bodyAjv.addSchema(standIn);
  const otherAjv = createAjv('other');
  app.setValidatorCompiler(({ schema, httpPart, contentType }) =>
    // A multipart body is a stream its handler reads (attachments/multipart.ts) and checks itself.
    // So are import files (imports/run.ts checks each record against its schema).
    httpPart === 'body' &&
    (contentType === 'multipart/form-data' || STREAMED_IMPORT_TYPES.includes(contentType ?? ''))
      ? () => true
      : (httpPart === 'body' ? bodyAjv : otherAjv).compile(schema),
  );

  // Node's own answer to an Expect other than 100-continue is a bare 417.
  app.server.on('checkExpectation', expectationFailedProblem);
  app.decorate('db', deps.db);
  app.decorate('jobs', deps.jobs);
  app.decorate('blobs', deps.blobs ?? blobStoreFor(config.dataDir));
  app.decorate('config', config);
  app.decorate('exportReads', new ExportSlots(config.exports.maxConcurrent));
  app.decorate('reportKeeper', new ReportKeeper(deps.db, app.log));
  app.decorate('requestLoad', deps.load ?? new RequestLoad());
  // Everything a request does runs under its statements' bound (db/deadline.ts): the first hook,
  // so the hooks, the handler and the stream it answers with all do.
  const statementMs = config.databaseStatementTimeoutMs;
  if (statementMs > 0) {
    app.addHook('onRequest', (_request, _reply, done) => withStatementDeadline(statementMs, done));
  }
  // A request counts while the process works on it: from its arrival to its answer's start,
  // but not while its body is still arriving (a slow client is no work, and no one, an anonymous
  // client least of all, may make webhooks yield by sending slowly), nor while a slow reader
  // takes the answer. A body the handler reads itself (an upload, an import file) counts from
  // when its last byte has arrived. A live stream stops counting once it starts
  // (stream/routes.ts): a subscriber, not work.
  app.decorateRequest('leaveLoad', () => {});
  app.decorateRequest('loadEnded', false);
  const working = (request: FastifyRequest) => {
    if (!request.loadEnded) request.leaveLoad = app.requestLoad.enter();
  };
  const answered = (request: FastifyRequest) => {
    request.loadEnded = true;
    request.leaveLoad();
  };
  app.addHook('onRequest', async (request, reply) => {
    working(request);
    reply.raw.once('close', () => answered(request));
  });
  app.addHook('preParsing', async (request) => request.leaveLoad());
  app.addHook('preValidation', async (request) => {
    const streamed =
      request.body instanceof Readable || /^multipart\//i.test(request.headers['content-type'] ?? '');
    if (streamed && !request.raw.readableEnded) request.raw.once('end', () => working(request));
    else working(request);
  });
  app.addHook('onSend', async (request) => answered(request));
  app.addHook('onResponse', async (request) => answered(request));
  // The live stream's tailer belongs to the app, not to a background loop of the server: it
  // reads only while this app has subscribers, and its streams must end when the app closes. A
  // write answered with success has committed its events: the tailer reads them now rather than
  // at its next poll (a callback hook: every request passes here).
  const hub = new StreamHub(deps.db, app.log, config.stream);
  app.addHook('onResponse', (request, reply, done) => {
    if (reply.statusCode < 400 && request.method !== 'GET' && request.method !== 'HEAD') hub.nudge();
    done();
  });
  app.addHook('onRequestAbort', async (request) => answered(request));
  app.addHook('onClose', () => app.reportKeeper.settled());
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  await app.register(problemPlugin);
  // HTTP/1.1 requires Host (RFC 9112, 3.2); Node's check, turned off above, answered a bare 400.
  // Not async: every request passes here, and a callback hook costs no promise.
  app.addHook('onRequest', (request, reply, done) => {
    const raw = request.raw;
    if (raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1 && raw.headers.host === undefined) {
      reply.header('connection', 'close');
      return done(invalid('malformed_request', 'An HTTP/1.1 request must send a Host header.'));
    }
    done();
  });
  // Nothing decodes a content coding (RFC 9110, 8.4): a gzip body was read as its compressed
  // bytes (a JSON body answered 400 "not valid UTF-8", an attachment or import was stored
  // compressed) and a plain body labelled gzip was taken as it was. 415, as RFC 9110, 15.5.16
  // has it, naming the one coding we read. Only where fastify reads a body (the writes, whose 415
  // the spec documents): a GET's body is ignored, so is its coding.
  app.addHook('preParsing', (request, reply, payload, done) => {
    const coding = request.headers['content-encoding'];
    if (
      coding !== undefined &&
      BODY_METHODS.has(request.method) &&
      !isIdentity(coding) &&
      hasBody(request.raw)
    ) {
      reply.header('accept-encoding', 'identity');
      return done(
        new DomainError(
          'unsupported_media_type',
          'unsupported_content_encoding',
          `Content-Encoding ${coding} is not supported; send the body as it is (identity).`,
        ),
      );
    }
    done(null, payload);
  });
  await app.register(arrivalPlugin, { requestTimeoutMs: config.arrival.requestTimeoutMs });
  for (const schema of [
    ...agentSchemas,
    ...departmentSchemas,
    ...scheduleSchemas,
    ...apiTokenSchemas,
    ...authSchemas,
    ...contactFieldSchemas,
    ...contactSchemas,
    ...attachmentSchemas,
    ...ticketSchemas,
    ...callSchemas,
    ...publicSchemas,
    ...automationRuleSchemas,
    ...slaPolicySchemas,
    ...reportSchemas,
    ...tagSchemas,
    ...notificationSchemas,
    ...mailIdentitySchemas,
    ...cannedResponseSchemas,
    ...eventRouteSchemas,
    ...webhookSchemas,
    ...mailboxSchemas,
    ...mailInSchemas,
    ...mailOutSchemas,
    ...surveySchemas,
    ...importSchemas,
    ...viewSchemas,
  ]) {
    app.addSchema(schema);
  }
  await app.register(cors, {
    origin: config.corsOrigins === '*' ? true : config.corsOrigins.length > 0 ? config.corsOrigins : false,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: [...CLIENT_HEADERS],
    maxAge: 600,
  });
  // Once close() begins, requests still arriving on kept-alive connections are refused before
  // any other work, so a load balancer sends them to another instance. fastify already adds
  // Connection: close to them. After CORS's own hook, so a browser can read the refusal.
  let draining = false;
  app.addHook('preClose', async () => {
    draining = true;
  });
  app.addHook('onRequest', async () => {
    if (draining) {
      throw unavailable(
        'server_draining',
        'This server is shutting down; retry, another instance will answer.',
        DRAINING_RETRY_AFTER_SECONDS,
      );
    }
  });

  // Two budgets: every request counts against its client address before anything else runs
  // (so made-up credentials buy no extra allowance), and authenticated requests also against
  // their token (plugins/auth.ts), so one integration cannot starve the others behind a NAT.
  await app.register(rateLimit, {
    global: true,
    max: config.rateLimit.perAddressMax,
    timeWindow: config.rateLimit.windowSeconds * 1000,
    enableDraftSpec: true,
    keyGenerator: (request) => `ip:${request.ip}`,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      code: 'rate_limited',
      message: `Rate limit of ${context.max} requests per ${context.after} exceeded; retry after ${Math.ceil(context.ttl / 1000)} s.`,
    }),
  });

  await app.register(openapiPlugin);
  const authCache = new AuthCache({
    url: deps.databaseUrl ?? null,
    ttlSeconds: config.authCacheSeconds,
    log: app.log,
  });
  app.decorate('authCache', authCache);
  // Listening starts once the app is built: a build that fails leaves no connection behind.
  app.addHook('onReady', async () => authCache.start());
  app.addHook('onClose', () => authCache.close());
  await app.register(authPlugin, {
    db: deps.db,
    cache: authCache,
    secret: deps.jwtSecret,
    ttlSeconds: config.jwtTtlSeconds,
    rateLimit: { max: config.rateLimit.max, windowSeconds: config.rateLimit.windowSeconds },
  });

  await app.register(systemRoutes);
  await app.register(authRoutes);
  await app.register(apiTokenRoutes);
  await app.register(departmentRoutes);
  await app.register(scheduleRoutes);
  await app.register(slaPolicyRoutes);
  await app.register(agentRoutes);
  await app.register(contactFieldRoutes);
  await app.register(contactRoutes);
  await app.register(ticketRoutes);
  await app.register(attachmentRoutes);
  await app.register(callAndChatRoutes);
  await app.register(queueRoutes);
  await app.register(publicRoutes);
  await app.register(automationRuleRoutes);
  await app.register(reportRoutes);
  await app.register(exportRoutes);
  await app.register(tagRoutes);
  await app.register(eventRoutes);
  await app.register(webhookRoutes);
  await app.register(notificationRoutes);
  await app.register(mailIdentityRoutes);
  await app.register(cannedResponseRoutes);
  await app.register(mailboxRoutes);
  await app.register(mailInRoutes);
  await app.register(mailOutRoutes);
  await app.register(surveyRoutes);
  await app.register(importRoutes);
  await app.register(viewRoutes);
  await app.register(streamRoutes, { hub });
  // A connection that has not sent a byte yet (a browser's preconnect, a balancer's spare) is a
  // request under way to Node, not an idle one: close() waited for it until the headers time-out
  // (10 s, checked every 30 s), past SHUTDOWN_GRACE_MS, and the process exited 1. Such connections
  // are closed when the server stops, right before close() waits, as Node closes kept-alive ones.
  // One with part of a request's head on it gets HEAD_AT_SHUTDOWN_MS more for the rest, and so its
  // answer (503 server_draining); a client that stalls there is answered so and closed, not waited
  // for until the headers time-out.
  // Each connection's bytes read when it last had no request under way: more since means a head.
  const readWhenIdle = new Map<Socket, number>();
  // Requests under way on each connection: a count, as Node hands a pipelined request to the app
  // while the one before it is still answered, and that answer's end leaves the second under way.
  const handling = new Map<Socket, number>();
  app.server.on('connection', (socket: Socket) => {
    readWhenIdle.set(socket, 0);
    socket.once('close', () => readWhenIdle.delete(socket));
  });
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    handling.set(socket, (handling.get(socket) ?? 0) + 1);
    response.once('close', () => {
      const left = (handling.get(socket) ?? 1) - 1;
      if (left > 0) return void handling.set(socket, left);
      handling.delete(socket);
      // Answered while the server stops: Node keeps the connection for the keep-alive time-out
      // (72 s), and close() waited for it past SHUTDOWN_GRACE_MS. Closed once the answer is out.
      if (draining) return void socket.destroySoon();
      if (readWhenIdle.has(socket)) readWhenIdle.set(socket, socket.bytesRead);
    });
  });
  app.addHook('preClose', async () => {
    for (const socket of readWhenIdle.keys()) {
      if (socket.bytesRead === 0) {
        socket.destroy();
        continue;
      }
      setTimeout(() => {
        if (socket.destroyed || handling.has(socket)) return;
        // A kept-alive connection with nothing new on it is closed without a word.
        if (socket.bytesRead > (readWhenIdle.get(socket) ?? 0)) {
          const requestId = randomUUID();
          writeRawProblem(socket, HEAD_STALLED_AT_SHUTDOWN, `urn:uuid:${requestId}`, requestId);
        }
        socket.destroy();
      }, HEAD_AT_SHUTDOWN_MS).unref();
    }
  });
  return app;
}
