import pino from 'pino';

/** What one process may hold in memory for a log reader that has stopped reading. */
const MAX_BUFFERED_LOG_BYTES = 8 * 1024 * 1024;

/**
 * The server's log destination: JSON lines to stdout that can never stop the process.
 *
 * pino's default destination (sonic-boom on fd 1) buffers without bound while stdout is a full
 * pipe, and at exit flushes synchronously, retrying EAGAIN every 100 ms for as long as the
 * reader does not read: a stopped server whose output nobody reads (a parent that went away,
 * a stuck log shipper) then never exits, and a second SIGTERM cannot help because the main
 * thread is asleep in that loop. Here the buffer is capped (lines beyond it are dropped), and
 * at exit one synchronous attempt writes what the pipe takes; the rest is dropped.
 */
export function createLogDestination(fd = 1) {
  let exiting = false;
  const destination = pino.destination({
    dest: fd,
    sync: false,
    maxLength: MAX_BUFFERED_LOG_BYTES,
    // While running, a full pipe is retried later without blocking; at exit, never.
    retryEAGAIN: () => !exiting,
  });
  // Prepended so it runs before pino's own exit hook, which finds the stream destroyed and
  // skips its retrying flush.
  process.prependListener('exit', () => {
    exiting = true;
    try {
      destination.flushSync();
    } catch {
      // EAGAIN: nobody is reading; what the pipe could not take is lost, the exit is not.
    }
    destination.destroy();
  });
  return destination;
}
