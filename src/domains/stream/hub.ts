import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { Principal } from '../../access/policy.ts';
import type { TicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { outsideRequest } from '../../db/deadline.ts';
import { describe, isDatabaseUnreachable } from '../../db/outage.ts';
import { unavailable } from '../../errors.ts';
import { canSeeEvent } from '../events/access.ts';
import { decodeCursor, type FeedRow, feedHead, readFeed } from '../events/repository.ts';
import { type InboxPosition, inboxHead, readInboxAfter } from '../notifications/repository.ts';
import { notificationView } from '../notifications/schemas.ts';
import { feedHorizon, readSubscriberStanding } from './repository.ts';

/**
 * The live stream's engine, one per process: a single tailer reads the event feed (and the
 * notification inbox) every few milliseconds while anyone listens, and fans each row out to this
 * process's subscribers, filtered by what each may see. Every process tails the same feed, so an
 * event written through any process reaches every subscriber of every process, in feed order.
 *
 * No connection is held while waiting: each read is one short query, and writing to clients never
 * awaits them (a subscriber whose socket stays full is cut instead, and resumes with
 * Last-Event-ID).
 */

export interface StreamOptions {
  pollMs: number;
  heartbeatMs: number;
  maxSubscribers: number;
  slowReaderMs: number;
  maxBufferBytes: number;
}

export interface StreamFilter {
  types: ReadonlySet<string> | null;
  departmentId: string | null;
}

type Position = NonNullable<ReturnType<typeof decodeCursor>>;

function compare(a: Position, b: Position): number {
  if (a.tx !== b.tx) return a.tx < b.tx ? -1 : 1;
  if (a.source !== b.source) return a.source - b.source;
  return a.id === b.id ? 0 : a.id < b.id ? -1 : 1;
}

const positionOf = (cursor: string): Position => {
  const position = decodeCursor(cursor);
  if (!position) throw new Error(`the feed handed out a cursor it cannot read: ${cursor}`);
  return position;
};

/** A feed row changes what open streams may see: their agents' roles, memberships or tokens. */
const CHANGES_ACCESS = /^(member|agent|token)\.|^department\.deleted$/;

const PAGE = 500;
/** Pages of history one catching-up subscriber gets per turn, so live delivery is not held up. */
const CATCH_UP_PAGES_PER_SUBSCRIBER = 4;
/** Replay pages read per turn for all subscribers together. */
const CATCH_UP_PAGES_PER_TURN = 8;

export class Subscriber {
  readonly principal: Principal;
  access: TicketAccess;
  readonly filter: StreamFilter;
  readonly res: ServerResponse;
  /** The last feed position this subscriber has been given (or skipped past). */
  position: Position;
  cursor: string;
  /** False while history after Last-Event-ID is still being replayed. */
  live: boolean;
  /** When the socket buffer filled up (write returned false) and has not drained since. */
  fullSince: number | null = null;
  ended = false;
  /** When the credentials expire (ms since epoch): the stream ends then, the client signs in again. */
  endsAt: number | null = null;
  /** A session's password_changed_at (ms) when it was issued; null for an API token. */
  sessionPwd: number | null = null;
  /** A backlog check is scheduled (see StreamHub.#checkBacklogSoon). */
  backlogCheck = false;
  /** Its access was read before the hub reloaded everyone's: read again before it gets a row. */
  accessStale = false;

  constructor(
    principal: Principal,
    access: TicketAccess,
    filter: StreamFilter,
    res: ServerResponse,
    cursor: string,
    live: boolean,
  ) {
    this.principal = principal;
    this.access = access;
    this.filter = filter;
    this.res = res;
    this.cursor = cursor;
    this.position = positionOf(cursor);
    this.live = live;
  }

  wants(type: string): boolean {
    return this.filter.types === null || this.filter.types.has(type);
  }
}

export class StreamHub {
  readonly #db: Db;
  readonly #log: FastifyBaseLogger;
  readonly #options: StreamOptions;
  readonly #subscribers = new Set<Subscriber>();
  /** Where the tailer has read the feed to; null while nobody listens (then it reads nothing). */
  #cursor: string | null = null;
  #position: Position | null = null;
  #inbox: InboxPosition | null = null;
  /** The horizon before the last full read: while it stays, there is nothing new to read. */
  #readBelow: string | null = null;
  #starting: Promise<void> | null = null;
  #running: Promise<void> | null = null;
  #catchUpTurn = 0;
  #poll: NodeJS.Timeout | null = null;
  /** When the last turn started (performance.now()): nudged turns keep half a poll from it. */
  #lastTurn = Number.NEGATIVE_INFINITY;
  /** A nudged turn waiting for half a poll to pass since the last turn. */
  #nudged: NodeJS.Timeout | null = null;
  /** Nudged while a turn ran: one more turn once it ends (it may have read before the write). */
  #again = false;
  #heartbeat: NodeJS.Timeout | null = null;
  #closed = false;
  /** How many access-changing events this hub has acted on (see add). */
  #accessEpoch = 0;

  constructor(db: Db, log: FastifyBaseLogger, options: StreamOptions) {
    this.#db = db;
    this.#log = log;
    this.#options = options;
  }

  get size(): number {
    return this.#subscribers.size;
  }

  /** Refuses beyond the cap before anything is sent, so the client gets a proper 503. */
  assertRoom(): void {
    if (this.#closed || this.#subscribers.size >= this.#options.maxSubscribers) {
      throw unavailable(
        'stream_busy',
        'This server has as many live streams open as it serves; retry shortly (another instance may have room).',
        5,
      );
    }
  }

  /**
   * Starts the tailer if it is idle, and answers where a subscriber without Last-Event-ID joins:
   * the tailer's own position, so it gets exactly what the tailer reads from now on.
   */
  async livePosition(): Promise<string> {
    if (this.#cursor === null) {
      this.#starting ??= (async () => {
        const [cursor, inbox] = await Promise.all([feedHead(this.#db), inboxHead(this.#db)]);
        this.#cursor = cursor;
        this.#position = positionOf(cursor);
        this.#inbox = inbox;
      })().finally(() => {
        this.#starting = null;
      });
      await this.#starting;
    }
    return this.#cursor as string;
  }

  /**
   * Read before a subscriber's access is: an access-changing event acted on after that (an agent
   * disabled, a membership removed) found the subscriber not yet added, so `add` has its access
   * read again before it gets any row.
   */
  get accessEpoch(): number {
    return this.#accessEpoch;
  }

  /** Adds a subscriber whose response headers are sent; it replays from `from` when behind. */
  add(subscriber: Subscriber, accessEpoch: number): void {
    if (accessEpoch !== this.#accessEpoch) subscriber.accessStale = true;
    this.#subscribers.add(subscriber);
    subscriber.res.on('drain', () => {
      subscriber.fullSince = null;
    });
    subscriber.res.once('close', () => this.#remove(subscriber));
    // The first subscriber's request starts the tailer, which then serves everyone for as long as
    // anyone listens: background work, not that request's (db/deadline.ts).
    outsideRequest(() => {
      this.#poll ??= setInterval(() => this.#tick(), this.#options.pollMs).unref();
      this.#heartbeat ??= setInterval(() => this.#beat(), this.#options.heartbeatMs).unref();
    });
  }

  #remove(subscriber: Subscriber) {
    subscriber.ended = true;
    this.#subscribers.delete(subscriber);
    if (this.#subscribers.size === 0) this.#idle();
  }

  /**
   * A write of this process has committed (the app calls this after each write request it
   * answered with success): read now instead of at the next poll, so that this process's own
   * events reach its subscribers up to STREAM_POLL_INTERVAL_MS sooner. Events written by other
   * processes come with the poll, as before. Does nothing while nobody listens.
   */
  nudge(): void {
    if (this.#poll === null || this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#nudgeSoon();
  }

  #nudgeSoon() {
    if (this.#nudged !== null) return;
    // Half a poll at least between turns: under a stream of writes, a turn every few
    // milliseconds would cost more reads than it saves waiting, and an operator who sets a long
    // poll to spare the database gets at most twice its reads from nudges.
    const wait = this.#lastTurn + this.#options.pollMs / 2 - performance.now();
    // The tailer's reads are background work, not the bounded statements of the request that
    // nudged (db/deadline.ts).
    outsideRequest(() => {
      if (wait <= 0) return this.#tick();
      this.#nudged = setTimeout(() => {
        this.#nudged = null;
        this.#tick();
      }, wait).unref();
    });
  }

  /** Nobody listens: stop reading; the next subscriber starts from the head again. */
  #idle() {
    if (this.#nudged) clearTimeout(this.#nudged);
    this.#nudged = null;
    this.#again = false;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#poll = null;
    this.#heartbeat = null;
    this.#cursor = null;
    this.#position = null;
    this.#inbox = null;
    this.#readBelow = null;
  }

  /** Ends every stream (clients reconnect elsewhere with Last-Event-ID) and stops reading. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#subscribers) this.#end(s);
    this.#idle();
    await this.#running;
  }

  #end(subscriber: Subscriber, cut = false) {
    if (subscriber.ended) return;
    subscriber.ended = true;
    this.#subscribers.delete(subscriber);
    // A reader that does not read gets a reset: ending politely would wait for its buffer.
    if (cut) subscriber.res.destroy();
    else subscriber.res.end();
    if (this.#subscribers.size === 0) this.#idle();
  }

  #write(subscriber: Subscriber, text: string) {
    if (subscriber.ended) return;
    if (!subscriber.res.write(text)) subscriber.fullSince ??= Date.now();
    this.#checkBacklogSoon(subscriber);
  }

  /**
   * Cuts the subscriber if more than STREAM_MAX_BUFFER_BYTES still wait for its client once what
   * was just written has reached the socket. Measured right after a write, writableLength would
   * also count everything written before it in the same turn, however fast the client reads:
   * Node corks a response's socket while it is written to and uncorks it on the next tick. After
   * that (setImmediate runs later still), what is left is what the kernel would not take.
   */
  #checkBacklogSoon(subscriber: Subscriber) {
    if (subscriber.backlogCheck) return;
    subscriber.backlogCheck = true;
    setImmediate(() => {
      subscriber.backlogCheck = false;
      const buffered = subscriber.res.writableLength;
      if (subscriber.ended || buffered <= this.#options.maxBufferBytes) return;
      this.#log.warn(
        { agentId: subscriber.principal.agentId, buffered },
        'live stream cut: its client does not keep up',
      );
      this.#end(subscriber, true);
    });
  }

  #beat() {
    const now = Date.now();
    for (const s of this.#subscribers) {
      if (s.endsAt !== null && now >= s.endsAt) {
        this.#end(s);
        continue;
      }
      if (s.fullSince !== null) {
        if (now - s.fullSince > this.#options.slowReaderMs) {
          this.#log.warn({ agentId: s.principal.agentId }, 'live stream cut: its client stopped reading');
          this.#end(s, true);
        }
        continue;
      }
      this.#write(s, ': heartbeat\n\n');
    }
  }

  #tick() {
    if (this.#running || this.#closed) return;
    this.#lastTurn = performance.now();
    this.#running = this.#turn()
      .catch((err: unknown) => {
        if (isDatabaseUnreachable(err))
          this.#log.warn({ reason: describe(err) }, 'live stream: database unavailable');
        else this.#log.error({ err }, 'live stream: reading the feed failed');
      })
      .finally(() => {
        this.#running = null;
        if (this.#again) {
          this.#again = false;
          if (this.#poll !== null && !this.#closed) this.#nudgeSoon();
        }
      });
  }

  async #turn() {
    if (this.#cursor === null) {
      if (this.#subscribers.size === 0) return;
      await this.livePosition();
    }
    // Slow readers are also checked here, so a cut never waits for the next heartbeat.
    const now = Date.now();
    for (const s of this.#subscribers) {
      if (s.fullSince !== null && now - s.fullSince > this.#options.slowReaderMs) this.#end(s, true);
      else if (s.endsAt !== null && now >= s.endsAt) this.#end(s);
    }
    // A subscriber added with access read before an access change: its stream may have to end.
    await this.#reloadStale([...this.#subscribers]);
    const catchingUp = [...this.#subscribers].some((s) => !s.live);
    const horizon = await feedHorizon(this.#db);
    if (horizon === this.#readBelow && !catchingUp) return;
    for (;;) {
      const cursor = this.#cursor;
      if (cursor === null) return;
      const page = await readFeed(this.#db, { after: cursor, limit: PAGE });
      if (this.#cursor !== cursor) return; // went idle meanwhile
      await this.#deliver(
        page.rows,
        [...this.#subscribers].filter((s) => s.live),
      );
      if (this.#cursor !== cursor) return;
      this.#cursor = page.next;
      this.#position = positionOf(page.next);
      if (page.rows.length < PAGE) break;
    }
    // Catch-up reads start after the tailer's read ended, so their horizon is at least as far:
    // a page that comes back empty means nothing lies between the subscriber and the tailer.
    // Catch-up shares one budget of pages per turn, oldest waiter first and round robin, so a
    // crowd replaying from far back slows its own replay, not the live stream of everyone else.
    let budget = CATCH_UP_PAGES_PER_TURN;
    const waiting = [...this.#subscribers].filter((s) => !s.live);
    const start = waiting.length > 0 ? this.#catchUpTurn++ % waiting.length : 0;
    for (let i = 0; i < waiting.length && budget > 0; i++) {
      budget -= await this.#catchUp(waiting[(start + i) % waiting.length] as Subscriber, budget);
    }
    await this.#tailInbox();
    // Everything below `horizon` has now been read (the reads above saw at least that much).
    this.#readBelow = horizon;
  }

  /**
   * Replays up to `pages` pages to a subscriber behind the tailer, as fast as its client takes
   * them: at most half of STREAM_MAX_BUFFER_BYTES waits for the client at a time (the rest of a
   * page is read again on a later turn), so a client that reads is never cut for being far
   * behind. Answers how many pages it read.
   */
  async #catchUp(subscriber: Subscriber, pages: number): Promise<number> {
    const waitingBytes = this.#options.maxBufferBytes / 2;
    let read = 0;
    for (let i = 0; i < Math.min(pages, CATCH_UP_PAGES_PER_SUBSCRIBER); i++) {
      if (subscriber.ended || subscriber.fullSince !== null || this.#position === null) return read;
      const page = await readFeed(this.#db, { after: subscriber.cursor, limit: PAGE });
      read++;
      if (subscriber.ended || this.#position === null) return read;
      const paused = await this.#deliver(page.rows, [subscriber], waitingBytes);
      // Stopped part-way: it resumes from the last row it was given, not from the page's end.
      if (paused.has(subscriber)) return read;
      // `next` may lie past the last row (the horizon, when the page was not full): everything up
      // to it has been looked at, so the tailer must not send any of it again.
      const next = positionOf(page.next);
      if (compare(next, subscriber.position) > 0) {
        subscriber.position = next;
        subscriber.cursor = page.next;
      }
      if (page.rows.length < PAGE || compare(subscriber.position, this.#position) >= 0) {
        subscriber.live = true;
        return read;
      }
    }
    return read;
  }

  /**
   * Sends each row to the subscribers that want it and may see it, in order, never twice. With a
   * `budget`, a subscriber with that many bytes waiting for its client gets no further row of
   * this call (its position stays at the last row it was given); answers those it stopped.
   */
  async #deliver(
    page: readonly FeedRow[],
    subscribers: readonly Subscriber[],
    budget: number | null = null,
  ): Promise<ReadonlySet<Subscriber>> {
    // Imported history is not news: the stream passes it by (the feed keeps it).
    const rows = page.filter((row) => !row.imported);
    await this.#reloadStale(subscribers);
    let batch = subscribers;
    const paused = new Set<Subscriber>();
    for (const row of rows) {
      const position = positionOf(row.cursor);
      const type = row.event.type;
      let message: string | null = null;
      for (const s of batch) {
        if (s.ended || paused.has(s) || compare(position, s.position) <= 0) continue;
        if (budget !== null && s.res.writableLength >= budget) {
          paused.add(s);
          continue;
        }
        s.position = position;
        s.cursor = row.cursor;
        if (!s.wants(type)) continue;
        if (s.filter.departmentId !== null && row.event.department_id !== s.filter.departmentId) continue;
        if (!canSeeEvent(s.access, row)) continue;
        message ??= `id: ${row.cursor}\nevent: ${type}\ndata: ${JSON.stringify(row.event)}\n\n`;
        this.#write(s, message);
      }
      if (CHANGES_ACCESS.test(type)) {
        // Later rows are judged with what the agents may see now: a removed member gets nothing
        // of the department from the removal on, a disabled or deleted agent's stream ends.
        this.#accessEpoch++;
        await this.#reloadAccess();
        batch = batch.filter((s) => !s.ended);
      }
    }
    return paused;
  }

  async #reloadStale(subscribers: readonly Subscriber[]) {
    const stale = subscribers.filter((s) => s.accessStale);
    if (stale.length === 0) return;
    await this.#reloadAccess();
    for (const s of stale) s.accessStale = false;
  }

  async #reloadAccess() {
    const subscribers = [...this.#subscribers];
    if (subscribers.length === 0) return;
    const agentIds = [...new Set(subscribers.map((s) => s.principal.agentId))];
    const tokenIds = [
      ...new Set(subscribers.flatMap((s) => (s.principal.tokenId === null ? [] : [s.principal.tokenId]))),
    ];
    const standing = await readSubscriberStanding(this.#db, agentIds, tokenIds);
    for (const s of subscribers) {
      const agent = standing.agents.get(s.principal.agentId);
      const tokenGone = s.principal.tokenId !== null && !standing.usableTokens.has(s.principal.tokenId);
      const sessionGone = s.sessionPwd !== null && (agent?.passwordChangedAt ?? 0) !== s.sessionPwd;
      if (agent?.status !== 'active' || tokenGone || sessionGone) {
        this.#end(s);
        continue;
      }
      const principal = { ...s.principal, role: agent.role, departments: agent.departments };
      s.access = { principal, memberships: agent.departments };
    }
  }

  async #tailInbox() {
    for (;;) {
      const inbox = this.#inbox;
      if (inbox === null) return;
      const rows = await readInboxAfter(this.#db, inbox, PAGE);
      if (this.#inbox !== inbox) return;
      const last = rows.at(-1);
      if (!last) return;
      this.#inbox = { tx: last.tx, seq: Number(last.seq) };
      for (const row of rows) {
        let message: string | null = null;
        for (const s of this.#subscribers) {
          if (s.principal.agentId !== row.agent_id || !s.wants('notification')) continue;
          // No id: line, so the client's Last-Event-ID stays a feed cursor. Missed notifications
          // are in the inbox (GET /v1/me/notifications).
          message ??= `event: notification\ndata: ${JSON.stringify(notificationView(row))}\n\n`;
          this.#write(s, message);
        }
      }
      if (rows.length < PAGE) return;
    }
  }
}
