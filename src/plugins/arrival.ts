import { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { REQUEST_TIMEOUT_PROBLEM, writeRawProblem } from './problem.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A route that takes large bodies (an import file, attachments): its body may
     * take up to UPLOAD_TIMEOUT_MS while it keeps coming, instead of REQUEST_TIMEOUT_MS in all.
     */
    upload?: boolean;
  }
}

// Bytes an upload must bring in each REQUEST_TIMEOUT_MS to count as still coming: a client
// dribbling a byte now and then is cut as if it had stopped.
const UPLOAD_MIN_BYTES = 1024;

/**
 * When a request must have arrived (issue 16: a big import file could not arrive within the 30 s
 * every request had). Node's own requestTimeout is the uploads' limit (UPLOAD_TIMEOUT_MS, set in
 * server.ts); here every other request must arrive whole within `requestTimeoutMs` of reaching its
 * route, so a client dribbling a body holds a connection no longer than before, and an upload
 * (config.upload) is cut when fewer than UPLOAD_MIN_BYTES came in the last `requestTimeoutMs`
 * (data our side has not read yet counts as come: the pause is ours). Both answer 408
 * problem+json on the raw socket and close it, as Node does for its own limit. (app.inject has no
 * socket: nothing is timed there.)
 */
export const arrivalPlugin = fp(
  async (app: FastifyInstance, options: { requestTimeoutMs: number }) => {
    const ms = options.requestTimeoutMs;
    app.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw;
      const socket = raw.socket;
      if (raw.complete || !(socket instanceof Socket)) return done();
      const upload = request.routeOptions.config?.upload === true;
      let seen = socket.bytesRead;
      const check = () => {
        if (raw.complete || socket.destroyed) return clearInterval(timer);
        if (upload && (socket.bytesRead - seen >= UPLOAD_MIN_BYTES || raw.readableLength > 0)) {
          seen = socket.bytesRead;
          return;
        }
        clearInterval(timer);
        request.log.info({ upload, requestTimeoutMs: ms }, 'request cut: it did not arrive in time');
        writeRawProblem(
          socket,
          REQUEST_TIMEOUT_PROBLEM,
          request.url.split('?')[0] ?? request.url,
          request.id,
        );
        socket.destroy();
      };
      const timer = upload ? setInterval(check, ms) : setTimeout(check, ms);
      timer.unref();
      reply.raw.once('close', () => clearInterval(timer));
      done();
    });
  },
  { name: 'deskroute-arrival' },
);
