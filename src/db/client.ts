import pg from 'pg';
import { StatementDeadlineExceeded, statementDeadline } from './deadline.ts';
import { isDatabaseUnreachable } from './outage.ts';
import {
  AUTH_NEUTRAL_MARK,
  FINAL_MARK,
  nameToRunAs,
  PREPARED_MARK,
  PREPARED_WHILE_RECENT_MARK,
  RECENT_TEXTS,
  readsArrayRows,
  WITH_NEXT_MARK,
} from './prepared.ts';

// The pg client the app's pool makes. On this stack a round trip to PostgreSQL costs more than
// most statements it carries (each socket write wakes the other side; measured, the writes were
// over half of the app's CPU time while it created tickets), so the client saves the two round
// trips a transaction adds to its statements:
//
// - BEGIN is not sent on its own: it is answered here and goes out with the transaction's first
//   statement, in the same socket write (pg's pipeline mode sends a query without waiting for the
//   one before; each keeps its own Sync, so an error stays with its query).
// - A statement marked final() takes COMMIT along in the same write; the caller's own COMMIT (or
//   ROLLBACK, when the final statement failed) is then answered here.
//
// Statements marked prepared() (and preparedWhileFew(), while their texts are few) run as named
// prepared statements (see prepared.ts). Everything else passes through unchanged: Kysely
// awaits each statement, so nothing else is pipelined.

type Result = pg.QueryResult;

const answered = (command: string): Result => ({ command, rowCount: null, oid: 0, rows: [], fields: [] });

// Round trips this process's clients made, for the benches (scripts/bench/http.ts) to count.
let roundTripsMade = 0;
export const roundTrips = () => roundTripsMade;

/**
 * Who credentials belong to (agents, their tokens and memberships; a department's deletion takes
 * its memberships along) is cached per process (src/plugins/auth-cache.ts). Other processes hear
 * of a change by NOTIFY (migration 0046), a moment after it commits; this process must not wait
 * for that: a statement of its own that writes these tables empties its caches as soon as it has
 * committed, before the caller answers anyone. Statements marked AUTH_NEUTRAL (a token's use
 * recorded) write no column a cache holds.
 */
const WRITES_AUTH = new RegExp(
  [
    // The verb; TRUNCATE may list other tables first.
    String.raw`\b(?:insert\s+into|update|delete\s+from|merge\s+into|copy|truncate(?:\s+table)?(?:\s+only)?(?:\s+[\w".]+\s*,)*)`,
    // ONLY, and a schema before the name ("public".agents, public."agents").
    String.raw`\s+(?:only\s+)?(?:"?\w+"?\s*\.\s*)?`,
    String.raw`"?(?:api_tokens|agents|department_members|departments)"?(?![\w"])`,
  ].join(''),
  'i',
);
const NAMES_AUTH = /agents|api_tokens|department_members|departments/i;
const authWriteListeners = new Set<() => void>();

/** Calls `listener` whenever this process has committed a write to the credential tables. */
export function onAuthWrite(listener: () => void): () => void {
  authWriteListeners.add(listener);
  return () => authWriteListeners.delete(listener);
}

function authWritten() {
  for (const listener of authWriteListeners) listener();
}

const judged = new Map<string, boolean>();
export function writesAuth(text: string): boolean {
  if (!NAMES_AUTH.test(text)) return false;
  // Prepared texts are few and run often: each is judged once.
  const prepared = text.startsWith(PREPARED_MARK);
  const known = prepared ? judged.get(text) : undefined;
  if (known !== undefined) return known;
  const writes = !text.includes(AUTH_NEUTRAL_MARK) && WRITES_AUTH.test(text);
  if (prepared && judged.size < 1000) judged.set(text, writes);
  return writes;
}

/**
 * PostgreSQL's refusal to run a prepared statement whose result's columns changed type ("cached
 * plan must not change result type"): told by the routine that raises it, whose name is never
 * translated (the message is, with lc_messages).
 */
export function isStalePreparedStatement(error: unknown): boolean {
  const e = error as { code?: unknown; routine?: unknown; message?: unknown } | null;
  if (e?.code !== '0A000') return false;
  return (
    e.routine === 'RevalidateCachedQuery' ||
    (typeof e.message === 'string' && e.message.includes('must not change result type'))
  );
}

/** pg's Connection, as its cancel uses it (not in pg's types). */
interface CancelConnection {
  stream: { destroy(): void; unref(): void; once(event: 'close', listener: () => void): void };
  on(event: 'error', listener: () => void): void;
  once(event: 'connect', listener: () => void): void;
  connect(port: number | string, host?: string): void;
  cancel(processID: number, secretKey: number): void;
}

/** How long a cancel request (a statement past its deadline) may take to reach PostgreSQL. */
const CANCEL_GIVE_UP_MS = 10_000;
/**
 * How long the pool's end() waits for cancels still on their way. A live server takes them in
 * milliseconds; a frozen one would not take them in 10 s either, and a shutdown that waited for
 * the give-up would overrun its grace (SHUTDOWN_GRACE_MS, default 10 s) and exit 1.
 */
const CANCEL_AT_END_MS = 2_000;

// The whole text, as Kysely sends it: a script that merely starts with BEGIN is sent as it is.
const TRANSACTION_START = /^(begin|start transaction( isolation level [a-z ]+?)?( read (only|write))?)$/;
const PLAIN_BEGIN = /^(begin|start transaction)$/;

export class PipeliningClient extends pg.Client {
  /** The BEGIN to send with the next statement. */
  #begin: string | null = null;
  /** Between BEGIN and the end of the transaction, as the caller sees it. */
  #inTransaction = false;
  /** The transaction already ended with its final statement: the caller's end is answered here. */
  #ended = false;
  /** Statements marked withNext(), answered here, to leave with the next statement. */
  #held: { text: string; values: unknown[] | undefined }[] = [];
  /** The transaction wrote the credential tables: its commit empties the auth caches. */
  #authDirty = false;
  /**
   * Set when a statement passed its deadline: settles once the cancel request has gone (or was
   * given up) and the connection is closed. Until then the socket stays open (#abandon).
   */
  #abandoned: Promise<void> | null = null;
  /**
   * Named statements this connection prepares again under a new name: their result's columns
   * changed type (a migration by a newer release, while this one still runs; a varchar's length
   * counts), and PostgreSQL refuses to run the old one ever again. The statement that met it
   * fails; the next run of its text on this connection parses it afresh. The old one is left
   * prepared until the connection closes (one per such migration) rather than closed from the
   * transaction that failed.
   */
  #renamed = new Map<string, string>();
  #renames = 0;
  /** Names of statements marked preparedWhileRecent this connection keeps, the latest run last. */
  #recent = new Set<string>();
  /**
   * Such names pushed out of #recent, still prepared: closed (DEALLOCATE) ahead of the
   * connection's next BEGIN (in the same write) or next statement outside a transaction, never
   * within one (in a failed transaction the DEALLOCATE would fail and leave the statement
   * prepared while pg believes it gone). Run again before that, a name is simply kept again.
   */
  #toClose: string[] = [];

  constructor(config?: pg.ClientConfig) {
    super(config);
    // pg emits 'error' on a client whose connection dies (a terminated backend, a PostgreSQL
    // restart). pg-pool listens only while the client is idle; Kysely never listens, so the
    // same event on a checked-out client would be an uncaught exception that ends the process.
    // The queries in flight are rejected by pg itself (and answer 503), the pool drops the
    // client on release because it is no longer queryable: nothing is left to do here.
    this.on('error', () => {});
  }

  // pg's query() has a dozen overloads: the ones Kysely uses (text and values, a promise back)
  // are handled here, the rest go to pg as they are.
  override query(config: any, values?: any, callback?: any): any {
    if (typeof config !== 'string' || typeof values === 'function' || callback !== undefined) {
      if (this.#begin !== null || this.#ended || this.#held.length > 0) {
        throw new Error('PipeliningClient: only text queries may run inside a pipelined transaction');
      }
      roundTripsMade++;
      return super.query(config, values, callback);
    }
    return this.#text(config, values as unknown[] | undefined);
  }

  #text(text: string, values: unknown[] | undefined): Promise<Result> {
    if (this.#inTransaction || !writesAuth(text)) return this.#textIn(text, values);
    // Outside a transaction the statement commits by itself (or may have, its answer lost).
    return this.#textIn(text, values).finally(authWritten);
  }

  #textIn(text: string, values: unknown[] | undefined): Promise<Result> {
    const command = text.trim().toLowerCase();
    if (this.#inTransaction && writesAuth(text)) this.#authDirty = true;
    if (TRANSACTION_START.test(command) && !this.#inTransaction) {
      this.#begin = text;
      this.#inTransaction = true;
      return Promise.resolve(answered('BEGIN'));
    }
    // Whatever is held came after the latest savepoint (a SAVEPOINT takes held statements
    // along): rolling back to it would undo them anyway, so they are dropped unsent, and the
    // rollback cannot fail for them.
    if (/^rollback\s+to\b/.test(command)) this.#held = [];
    if (command === 'commit' || command === 'rollback') {
      // A COMMIT (even one whose answer is lost), or a ROLLBACK after the final statement has
      // already committed, may leave the transaction's writes standing.
      const dirty = this.#authDirty && (command === 'commit' || this.#ended);
      this.#authDirty = false;
      const ended = this.#end(text, values, command);
      return dirty ? ended.finally(authWritten) : ended;
    }
    if (this.#ended) {
      // A statement after the final one would run outside the transaction: a bug in the caller.
      return Promise.reject(
        new Error('PipeliningClient: a statement after the final statement of a transaction'),
      );
    }
    if (this.#inTransaction && text.includes(WITH_NEXT_MARK)) {
      this.#held.push({ text, values });
      return Promise.resolve(answered('SELECT'));
    }
    const final = this.#inTransaction && text.includes(FINAL_MARK);
    if (this.#begin === null && !final && this.#held.length === 0) {
      if (!this.#inTransaction) this.#closeOld();
      return this.#send(text, values);
    }
    return this.#withHeld(text, values, final);
  }

  /** The caller's COMMIT or ROLLBACK. */
  #end(text: string, values: unknown[] | undefined, command: 'commit' | 'rollback'): Promise<Result> {
    // Held statements go with a COMMIT (they are part of the transaction); a ROLLBACK drops them.
    if (command === 'commit' && this.#held.length > 0 && !this.#ended)
      return this.#withHeld(text, values, false);
    this.#held = [];
    const ended = this.#ended;
    const unsent = this.#begin !== null;
    this.#begin = null;
    this.#ended = false;
    this.#inTransaction = false;
    // Ended by its final statement, or never started on the server: nothing to send.
    if (ended || unsent) return Promise.resolve(answered(command === 'commit' ? 'COMMIT' : 'ROLLBACK'));
    // The connection is lost (a statement past its deadline, a terminated backend): the server
    // rolls the transaction back by itself. Sent, the ROLLBACK could only fail ("not queryable"),
    // and Kysely would throw that instead of the error that ended the transaction.
    if (command === 'rollback' && !(this as unknown as { _queryable: boolean })._queryable)
      return Promise.resolve(answered('ROLLBACK'));
    return this.#send(text, values);
  }

  /**
   * BEGIN (not sent yet), the held statements, this one and, for a final one, COMMIT leave in
   * one write: one round trip, counted by #send. A COMMIT given here ends the transaction.
   */
  #withHeld(text: string, values: unknown[] | undefined, final: boolean): Promise<Result> {
    // A transaction that is this one statement: alone, in the implicit transaction PostgreSQL
    // gives it, it is as atomic and sees one snapshot, and BEGIN and COMMIT would only add two
    // messages each way (a creation's opening, tickets/one-statement.ts). Only at the default
    // isolation: an explicit level or access mode keeps its BEGIN.
    if (
      final &&
      this.#held.length === 0 &&
      this.#begin !== null &&
      PLAIN_BEGIN.test(this.#begin.trim().toLowerCase()) &&
      !this.#authDirty
    ) {
      this.#begin = null;
      this.#ended = true;
      return this.#send(text, values);
    }
    const ending = text.trim().toLowerCase() === 'commit';
    const stream = this.connection.stream;
    stream.cork();
    const before: Promise<Result>[] = [];
    let result: Promise<Result>;
    let committed: Promise<Result> | null = null;
    try {
      if (this.#begin !== null) {
        this.#closeOld();
        before.push(super.query(this.#begin));
      }
      this.#begin = null;
      for (const held of this.#held) before.push(super.query(held.text, held.values));
      this.#held = [];
      result = this.#send(text, values);
      if (final) {
        committed = this.#bounded(super.query('commit'));
        this.#ended = true;
      }
      if (ending) this.#inTransaction = false;
    } finally {
      stream.uncork();
    }
    return settle(before, result, committed);
  }

  #send(text: string, values: unknown[] | undefined): Promise<Result> {
    roundTripsMade++;
    const named = nameToRunAs(text);
    const name = named === undefined ? undefined : (this.#renamed.get(named) ?? named);
    if (name !== undefined && text.startsWith(PREPARED_WHILE_RECENT_MARK)) this.#keepRecent(name);
    const sent: Promise<Result> = readsArrayRows(text)
      ? super.query({ name, text, values, rowMode: 'array' })
      : name !== undefined
        ? super.query({ name, text, values })
        : super.query(text, values);
    return this.#bounded(sent).catch((error: unknown) => {
      if (named !== undefined && isStalePreparedStatement(error))
        this.#renamed.set(named, `${named}_${++this.#renames}`);
      return this.#lost(error);
    });
  }

  /** Keeps `name` among the connection's RECENT_TEXTS latest; the one run longest ago goes. */
  #keepRecent(name: string) {
    if (this.#recent.delete(name)) {
      this.#recent.add(name);
      return;
    }
    const waiting = this.#toClose.indexOf(name);
    if (waiting >= 0) this.#toClose.splice(waiting, 1);
    this.#recent.add(name);
    if (this.#recent.size <= RECENT_TEXTS) return;
    const oldest = this.#recent.values().next().value!;
    this.#recent.delete(oldest);
    this.#toClose.push(oldest);
  }

  /**
   * Queues a DEALLOCATE for each name pushed out of #recent, ahead of what is sent next (outside
   * a transaction). pg forgets it at once, so a later run of its text parses it again, after the
   * DEALLOCATE. A name whose Parse is still on its way waits for a later call: closed now, pg
   * would note it parsed when the answer came, and the next run would bind a statement the
   * server no longer has. One whose Parse failed is only forgotten.
   */
  #closeOld() {
    if (this.#toClose.length === 0) return;
    const connection = this.connection as unknown as {
      parsedStatements: Record<string, string>;
      submittedNamedStatements: Record<string, string>;
    };
    const waiting: string[] = [];
    for (const name of this.#toClose) {
      if (connection.submittedNamedStatements[name] !== undefined) waiting.push(name);
      else if (connection.parsedStatements[name] !== undefined) {
        delete connection.parsedStatements[name];
        super.query(`deallocate "${name}"`).catch(() => {});
      }
    }
    this.#toClose = waiting;
  }

  /**
   * For a request's statement (db/deadline.ts): no answer within its bound abandons the
   * connection (#abandon), which fails every statement waiting on it with
   * StatementDeadlineExceeded (an outage: 503) and keeps it from going back to the pool.
   */
  #bounded(sent: Promise<Result>): Promise<Result> {
    const ms = statementDeadline();
    if (ms === undefined) return sent;
    const timer = setTimeout(() => this.#abandon(ms), ms);
    return sent.finally(() => clearTimeout(timer));
  }

  /**
   * Gives the connection up: every statement waiting on it fails at once, and a cancel request
   * stops the one PostgreSQL is running (#cancelOnServer). The socket is closed only after the
   * cancel request has gone: a pooler in between (PgBouncer) forwards a cancel only for a client
   * still connected, and closes the server's connection, without stopping its statement, when
   * the client goes. Nor does the socket keep the process alive meanwhile.
   */
  #abandon(ms: number) {
    if (this.#abandoned !== null) return;
    const exceeded = new StatementDeadlineExceeded(ms);
    const client = this as unknown as {
      _queryable: boolean;
      _ending: boolean;
      _errorAllQueries(error: Error): void;
    };
    client._queryable = false;
    client._errorAllQueries(exceeded);
    // The request releases the client at once, and pg-pool, which drops it only when its socket
    // has closed, listens for its errors meanwhile: each would be reported as an idle connection
    // lost (createPool's onIdleError). So what PostgreSQL still sends (the cancel's 57014, a late
    // result), answers for statements that have all failed, is read and dropped unparsed (pg
    // would report each as an error), and the socket is closed as pg closes one it ends: its
    // reset or end is no loss, and its destroy carries no error.
    const stream = this.connection.stream as unknown as {
      removeAllListeners(event: 'data'): void;
      resume?: () => void;
      unref?: () => void;
      destroy(): void;
    };
    stream.removeAllListeners('data');
    stream.resume?.();
    client._ending = true;
    (this.connection as unknown as { _ending: boolean })._ending = true;
    stream.unref?.();
    this.#abandoned = this.#cancelOnServer().then(() => stream.destroy());
  }

  /**
   * Settles once a connection given up at its deadline is closed, its cancel gone; null while it
   * is not given up. pg-pool no longer counts such a client (PipeliningPool waits for it).
   */
  get closing(): Promise<void> | null {
    return this.#abandoned;
  }

  // pg-pool ends a client it will not reuse; an abandoned one ends once its cancel has gone.
  override end(callback?: any): any {
    const abandoned = this.#abandoned;
    if (abandoned === null) return super.end(callback);
    const ended = abandoned.then(() => super.end());
    if (typeof callback !== 'function') return ended;
    ended.then(() => callback(), callback);
  }

  /**
   * Dropping the connection does not stop its backend: PostgreSQL notices a closed socket only
   * when it next reads or writes, so the abandoned statement would run on (a lock wait: for as
   * long as the lock is held), its transaction keeping every lock it took, on a connection the
   * pool no longer counts. A cancel request (on a connection of its own, as pg's cancel sends it)
   * stops the statement; the backend then finds its client gone, rolls back and ends. A server
   * that answers nothing gets the same request in vain: the attempt is given up after a while.
   * Settles when the request's connection has closed: the server (or pooler) read it by then.
   */
  #cancelOnServer(): Promise<void> {
    const { processID, secretKey, connectionParameters } = this as unknown as {
      processID: number | null;
      secretKey: number | null;
      connectionParameters: pg.ClientConfig & { host: string; port: number };
    };
    if (processID === null || secretKey === null) return Promise.resolve();
    const con = (new pg.Client(connectionParameters) as unknown as { connection: CancelConnection })
      .connection;
    const { promise, resolve } = Promise.withResolvers<void>();
    const giveUp = setTimeout(() => con.stream.destroy(), CANCEL_GIVE_UP_MS);
    giveUp.unref();
    con.on('error', () => {});
    con.stream.once('close', () => {
      clearTimeout(giveUp);
      resolve();
    });
    // Nor does it keep the process alive (a shutdown while PostgreSQL is frozen).
    con.stream.unref();
    con.once('connect', () => con.cancel(processID, secretKey));
    const { host, port } = connectionParameters;
    if (host?.startsWith('/')) con.connect(`${host}/.s.PGSQL.${port}`);
    else con.connect(port, host);
    return promise;
  }

  /**
   * A statement failed because the connection is dying (FATAL from a terminated backend, or a
   * lost socket). pg notices only when the socket's end arrives, a moment later: until then it
   * still calls the client queryable, and a client released in that moment would go back to the
   * pool and hand its dead socket to the next request. Marked here, before the caller sees the
   * error, so the pool drops it on release whatever the timing.
   */
  #lost(error: unknown): never {
    const severity = (error as { severity?: unknown } | null)?.severity;
    if (severity === 'FATAL' || severity === 'PANIC' || isDatabaseUnreachable(error)) {
      // pg-pool itself reads this field to decide whether a released client may be reused.
      (this as unknown as { _queryable: boolean })._queryable = false;
      // An abandoned connection closes once its cancel has gone (#abandon).
      if (this.#abandoned === null) this.connection.stream.destroy();
    }
    throw error;
  }
}

/**
 * The statement's result once what was sent before it (BEGIN, held statements), it and COMMIT
 * have all answered. The first failure is the one thrown: what follows it failed for it.
 */
async function settle(before: Promise<Result>[], result: Promise<Result>, committed: Promise<Result> | null) {
  // Every promise is awaited, so none is left to reject unhandled.
  const [r, c, ...b] = await Promise.allSettled([result, committed, ...before]);
  const failed = b.find((x) => x.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  if (r!.status === 'rejected') throw r!.reason;
  if (c!.status === 'rejected') throw c!.reason;
  if (c!.value !== null && c!.value.command !== 'COMMIT')
    throw new Error(`COMMIT answered ${c!.value.command}`);
  return r!.value;
}

export interface PoolOptions {
  max?: number;
  /**
   * How long a request may wait for a connection, new or from the pool, before it fails
   * (and answers 503). pg's default is forever: with PostgreSQL away or the pool exhausted,
   * requests would hang until the client gave up.
   */
  connectionTimeoutMillis?: number;
  /** Told about connections lost while idle in the pool; the pool has already dropped them. */
  onIdleError?: (error: Error) => void;
}

/**
 * pg's pool, whose end() also waits for the clients given up at their deadline. pg-pool drops
 * such a client from its count when it is released, at the deadline, but its socket stays open
 * until its cancel has gone (PipeliningClient#abandon): a pool.end() that did not wait would let
 * the process exit (server.ts, at shutdown) with the cancel still on its way, and close the
 * socket a pooler needs open to forward it, so the statement would run on. The wait is bounded
 * (CANCEL_AT_END_MS): against a frozen server it is given up.
 */
class PipeliningPool extends pg.Pool {
  readonly #closing = new Set<Promise<void>>();

  constructor(config: pg.PoolConfig) {
    super(config);
    this.on('release', (_error: Error | undefined, client: pg.PoolClient) => {
      const closing = (client as unknown as PipeliningClient).closing;
      if (closing === null || this.#closing.has(closing)) return;
      this.#closing.add(closing);
      void closing.finally(() => this.#closing.delete(closing));
    });
  }

  override end(callback?: any): any {
    const ended = (super.end() as Promise<void>).then(async () => {
      if (this.#closing.size === 0) return;
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(this.#closing),
        new Promise<void>((resolve) => {
          bound = setTimeout(resolve, CANCEL_AT_END_MS);
          bound.unref();
        }),
      ]);
      clearTimeout(bound);
    });
    if (typeof callback !== 'function') return ended;
    ended.then(() => callback(), callback);
  }
}

/** The pool the app reaches PostgreSQL through (tests use it too, to run the same client). */
export function createPool(connectionString: string, options: PoolOptions = {}): pg.Pool {
  const pool = new PipeliningPool({
    connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5_000,
    Client: PipeliningClient,
    pipeline: true,
  } as pg.PoolConfig);
  // Without a listener, an idle client's lost connection (a PostgreSQL restart,
  // pg_terminate_backend) is re-emitted by the pool as an uncaught exception.
  const onIdleError = options.onIdleError ?? (() => {});
  pool.on('error', (error) => onIdleError(error));
  return pool;
}
