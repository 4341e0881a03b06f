import { AsyncLocalStorage } from 'node:async_hooks';

// A request must not wait on PostgreSQL for ever. A database that goes away is noticed (a reset,
// a refused connection: 503), but one that stops answering on an open connection (a frozen
// server, a partition no reset crosses) sends nothing at all, and a request holding a
// connection would wait as long as the client does. So every statement sent for a request's
// work (its handler, hooks and the stream it answers with) waits at most
// DATABASE_STATEMENT_TIMEOUT_MS for its answer; then its connection is dropped (its state is
// unknown) and the request answers 503 (src/db/client.ts). Background work (jobs, imports, the
// scheduler, what a request leaves to be done after it) has no such bound: a rebuild after a
// large import may rightly take minutes.

const scope = new AsyncLocalStorage<number>();

/** Runs `fn` (and everything it starts) with statements bounded to `ms`. */
export function withStatementDeadline<T>(ms: number, fn: () => T): T {
  return scope.run(ms, fn);
}

/** Runs `fn` (and everything it starts) free of the request's bound: work that outlives it. */
export function outsideRequest<T>(fn: () => T): T {
  return scope.exit(fn);
}

/** The bound on the current statement, if it is sent for a request. */
export function statementDeadline(): number | undefined {
  return scope.getStore();
}

/** Thrown to the statement (and its transaction) whose answer did not come in time. */
export class StatementDeadlineExceeded extends Error {
  readonly code = 'ETIMEDOUT';

  constructor(ms: number) {
    super(`PostgreSQL did not answer within ${ms} ms (DATABASE_STATEMENT_TIMEOUT_MS)`);
  }
}
