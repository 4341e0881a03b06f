import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Principal } from '../../access/policy.ts';
import { loadTicketAccess } from '../../access/tickets.ts';
import { Uuid } from '../../contract.ts';
import type { Db } from '../../db/database.ts';
import { invalid } from '../../errors.ts';
import { principalOf } from '../../plugins/auth.ts';
import { sendHeadersOnly } from '../../plugins/head.ts';
import { problems } from '../../plugins/openapi.ts';
import { EVENT_TYPES } from '../events/catalogue.ts';
import { decodeCursor, feedHorizon } from '../events/repository.ts';
import { type StreamHub, Subscriber } from './hub.ts';

const STREAM_TYPES: ReadonlySet<string> = new Set([...EVENT_TYPES, 'notification']);

const StreamQuery = Type.Object(
  {
    types: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 2000,
        description:
          'Comma-separated event types to receive (see GET /v1/events), and `notification` for your own notifications; all when absent.',
      }),
    ),
    department_id: Type.Optional(
      Uuid('Only events of this department (notifications are not filtered by it).'),
    ),
  },
  { additionalProperties: false },
);

const StreamHeaders = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description:
        'The `id` of the last message received (a feed cursor, as `next_cursor` of GET /v1/events): the stream first replays what came after it, then goes live, with no gap and no repeat. Browsers send it by themselves when they reconnect.',
    }),
  ),
});

const DESCRIPTION = `Server-Sent Events: the events of GET /v1/events you may see, as they happen, across every server process. Each message is \`id: <feed cursor>\`, \`event: <type>\`, \`data: <Event JSON>\`; your own notifications arrive as \`event: notification\` with a Notification as data and no id (the inbox has any you miss while disconnected). A comment line (\`: heartbeat\`) comes every STREAM_HEARTBEAT_MS (15 s) so proxies keep the connection open. Send credentials in the Authorization header (never in the URL: URLs end up in logs); an EventSource that cannot set headers needs a fetch-based client. When your role or memberships change the stream follows at once; when your agent is disabled or deleted, the API token revoked, or the password changed (for a session), the stream ends; it also ends when the credentials expire (reconnect with fresh ones and Last-Event-ID). A client whose socket stays full for STREAM_SLOW_READER_MS is cut and may resume with Last-Event-ID; so does every client when the server shuts down. Each process serves at most STREAM_MAX_SUBSCRIBERS streams: one more answers 503 stream_busy with Retry-After.`;

const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  // nginx buffers responses unless told not to; a buffered stream is no stream.
  'x-accel-buffering': 'no',
};

/**
 * A stream outlives no credentials: a session ends at its token's expiry, an API token at its
 * own (revocation is followed as it happens, through token.deleted). A session also ends when
 * the password changes (agent.updated), as it does for every other request: `pwd` is the
 * password_changed_at it was issued under.
 */
async function credentials(
  app: FastifyInstance,
  db: Db,
  principal: Principal,
  authorization: string | undefined,
): Promise<{ endsAt: number | null; pwd: number | null }> {
  if (principal.tokenId !== null) {
    const row = await db
      .selectFrom('api_tokens')
      .select('expires_at')
      .where('id', '=', principal.tokenId)
      .executeTakeFirst();
    return { endsAt: row?.expires_at?.getTime() ?? null, pwd: null };
  }
  const token = authorization?.replace(/^Bearer +/i, '') ?? '';
  const claims = app.jwt.decode<{ exp?: number; pwd?: number }>(token);
  return {
    endsAt: typeof claims?.exp === 'number' ? claims.exp * 1000 : null,
    // The auth plugin has just checked it against the agent's password_changed_at.
    pwd: typeof claims?.pwd === 'number' ? claims.pwd : 0,
  };
}

export const streamRoutes: FastifyPluginAsyncTypebox<{ hub: StreamHub }> = async (app, { hub }) => {
  const { db } = app;
  // Open streams end before the server waits for its connections, so close() cannot hang.
  app.addHook('preClose', async () => {
    await hub.close();
  });

  app.get(
    '/v1/events/stream',
    {
      schema: {
        operationId: 'streamEvents',
        tags: ['events'],
        summary: 'Live stream of events (Server-Sent Events)',
        description: DESCRIPTION,
        querystring: StreamQuery,
        headers: StreamHeaders,
        response: {
          200: {
            description: 'An endless text/event-stream; it ends on shutdown or when your access ends.',
            headers: {
              'Cache-Control': { type: 'string', description: 'no-cache: never stored by a proxy.' },
            },
            content: {
              'text/event-stream': {
                schema: {
                  type: 'string',
                  description:
                    'Messages separated by a blank line: `id: <cursor>\\nevent: <type>\\ndata: <Event JSON>`, `event: notification\\ndata: <Notification JSON>`, or a `: heartbeat` comment.',
                },
              },
            },
          },
          ...problems(400, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      let types: Set<string> | null = null;
      if (request.query.types !== undefined) {
        types = new Set(
          request.query.types
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean),
        );
        const unknown = [...types].filter((t) => !STREAM_TYPES.has(t));
        if (unknown.length > 0 || types.size === 0) {
          throw invalid(
            'unknown_event_type',
            `Unknown event types: ${unknown.join(', ') || '(none given)'}.`,
            [{ field: 'querystring/types', message: 'lists an event type that does not exist' }],
          );
        }
      }
      const lastEventId = request.headers['last-event-id'];
      if (lastEventId !== undefined) {
        const position = decodeCursor(lastEventId);
        // Ahead of the horizon is no cursor the feed handed out (see readFeed's cursorField): the
        // stream would stay silent until transaction ids caught up with it.
        if (position === null || position.tx > BigInt(await feedHorizon(db))) {
          throw invalid('invalid_cursor', 'Last-Event-ID is not a cursor of this feed.', [
            { field: 'headers/last-event-id', message: 'not a cursor of this feed' },
          ]);
        }
      }
      hub.assertRoom();
      if (request.method === 'HEAD') {
        // What the stream would start with, and no stream: no subscriber, no connection held.
        return sendHeadersOnly(reply.headers(STREAM_HEADERS));
      }
      const accessEpoch = hub.accessEpoch;
      const access = await loadTicketAccess(db, principal);
      const cursor = lastEventId ?? (await hub.livePosition());
      const { endsAt, pwd } = await credentials(app, db, principal, request.headers.authorization);
      hub.assertRoom();
      // Its client may have gone while the stream was being set up: its 'close' has been and gone
      // then, and a subscriber added now would hold a place until the slow-reader cut.
      if (reply.raw.destroyed) return reply;

      reply.hijack();
      request.leaveLoad();
      const res = reply.raw;
      // Headers set by earlier hooks (CORS, rate limits) go out too: hijack skips onSend.
      res.writeHead(200, {
        ...(reply.getHeaders() as OutgoingHttpHeaders),
        ...STREAM_HEADERS,
        'x-request-id': request.id,
      });
      res.flushHeaders();
      // An idle TCP connection would otherwise be closed by Node after the keep-alive timeout.
      res.socket?.setKeepAlive(true, 30_000);
      res.socket?.setNoDelay(true);
      const subscriber = new Subscriber(
        principal,
        access,
        { types, departmentId: request.query.department_id ?? null },
        res,
        cursor,
        lastEventId === undefined,
      );
      subscriber.endsAt = endsAt;
      subscriber.sessionPwd = pwd;
      hub.add(subscriber, accessEpoch);
    },
  );
};
