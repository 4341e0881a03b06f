import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';

/**
 * Ends the answer to a HEAD of a streamed GET: the status and the headers set on `reply`, no
 * body, nothing read. fastify answers HEAD through the GET's handler (exposeHeadRoutes) and
 * writes `Content-Length: 0` when it is sent nothing, which is false of a body streamed with no
 * length; an empty stream leaves the length out, or keeps the one the route set (an
 * attachment's size). RFC 9110 §9.3.2: the same header fields as GET, without the content.
 */
export function sendHeadersOnly(reply: FastifyReply): FastifyReply {
  return reply.send(Readable.from([]));
}
