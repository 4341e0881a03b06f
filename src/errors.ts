/**
 * Typed domain errors. Services and repositories throw these; one error handler
 * (plugins/problem.ts) turns them into problem+json. Nothing below the routes knows HTTP.
 */
export type ErrorKind =
  | 'invalid'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'unprocessable'
  | 'throttled'
  /** A request body past a limit (an attachment too large, too many files): 413. */
  | 'too_large'
  /** A request body in a form the API does not read (a content coding such as gzip): 415. */
  | 'unsupported_media_type'
  /** It existed but is no longer usable (an expired link): 410. */
  | 'gone'
  /** A dependency (the database, an export slot) is away or full for now: 503 with Retry-After. */
  | 'unavailable';

export interface Blocker {
  /** What still depends on the resource, e.g. "tickets" or "automation_rules". */
  kind: string;
  count: number;
  detail: string;
}

export interface FieldError {
  field: string;
  message: string;
}

export class DomainError extends Error {
  override name = 'DomainError';
  readonly kind: ErrorKind;
  /** Stable, machine-readable code that clients may branch on. */
  readonly code: string;
  errors?: FieldError[];
  blockers?: Blocker[];
  retryAfterSeconds?: number;

  constructor(kind: ErrorKind, code: string, message: string) {
    super(message);
    this.kind = kind;
    this.code = code;
  }
}

export const notFound = (what: string) =>
  new DomainError('not_found', `${what}_not_found`, `No such ${what}.`);

export const forbidden = (message: string, code = 'forbidden') => new DomainError('forbidden', code, message);

export const unavailable = (code: string, message: string, retryAfterSeconds: number) => {
  const error = new DomainError('unavailable', code, message);
  error.retryAfterSeconds = retryAfterSeconds;
  return error;
};

export const invalid = (code: string, message: string, errors?: FieldError[]) => {
  const error = new DomainError('invalid', code, message);
  if (errors) error.errors = errors;
  return error;
};
