import type { FastifyBaseLogger } from 'fastify';
import pg from 'pg';
import { onAuthWrite } from '../db/client.ts';
import { describe } from '../db/outage.ts';

// Who a credential belongs to, cached per process: an API token's row with its agent's role,
// status and memberships, or a session's agent. Looking it up was one of a ticket creation's
// three round trips to PostgreSQL (scripts/bench/creation-profile.ts), and every request pays
// it. Cached, a change must still take effect at once, so the cache is emptied:
//
// - by this process's own writes to the credential tables, once they commit and before the
//   request that made them answers (src/db/client.ts onAuthWrite);
// - by every other process's, through NOTIFY deskroute_auth (migration 0046's triggers), which
//   arrives a moment after the commit;
// - and it holds nothing while it cannot hear those notifications: before its LISTEN is in
//   place, after its connection is lost (until a new one listens again), and on embedded PGlite.
//
// An entry also lives at most AUTH_CACHE_SECONDS, so a token's use (last_used_at, recorded by
// the look-up at most once a minute) is still recorded while the token is in use. A look-up
// that started before the cache was emptied is not kept (it may have read the old rows).
// Only credentials that exist are kept, so unknown tokens cannot fill the cache.

const CHANNEL = 'deskroute_auth';
const MAX_ENTRIES = 10_000;
/**
 * The listening connection is checked every PING_MS. A connection that dies without a word (no
 * reset reaches us: a partition, a frozen server) delivers no notification and no error, so a hit
 * is served only while the connection has answered within FRESH_MS: an answer on it comes after
 * every notification sent before it. A check that takes DEAD_MS ends the connection.
 */
const PING_MS = 1_000;
const FRESH_MS = 2_500;
const DEAD_MS = 10_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export class AuthCache {
  readonly #ttlMs: number;
  readonly #log: FastifyBaseLogger;
  readonly #entries = new Map<string, { until: number; value: unknown }>();
  #generation = 0;
  #listening = false;
  /** When the listening connection last answered (a check or a notification). */
  #aliveAt = 0;
  #client: pg.Client | null = null;
  #closed = false;
  #retryMs = RETRY_MIN_MS;
  #retry: NodeJS.Timeout | null = null;
  #ping: NodeJS.Timeout | null = null;
  #unsubscribe: (() => void) | null = null;
  readonly #url: string | null;

  /** With no URL (embedded PGlite) or a TTL of 0, nothing is ever cached. */
  constructor(options: { url: string | null; ttlSeconds: number; log: FastifyBaseLogger }) {
    this.#ttlMs = options.ttlSeconds * 1000;
    this.#log = options.log;
    this.#url = options.ttlSeconds > 0 ? options.url : null;
  }

  /** Whether entries are being kept now (tests and the bench read it). */
  get listening(): boolean {
    return this.#listening;
  }

  /** Starts listening (in the background: until it listens, nothing is cached). */
  start(): void {
    if (this.#url === null || this.#closed) return;
    this.#unsubscribe = onAuthWrite(() => this.clear());
    void this.#connect();
  }

  /** The cached value under `key`, else what `load` finds (kept when it found something). */
  async get<T>(key: string, load: () => Promise<T | undefined>): Promise<T | undefined> {
    if (this.#listening && Date.now() - this.#aliveAt <= FRESH_MS) {
      const hit = this.#entries.get(key);
      if (hit !== undefined && hit.until > Date.now()) return hit.value as T;
    }
    const generation = this.#generation;
    const value = await load();
    if (value !== undefined && this.#listening && generation === this.#generation) {
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.clear();
      this.#entries.set(key, { until: Date.now() + this.#ttlMs, value });
    }
    return value;
  }

  /** Forgets everything, including what look-ups under way would have kept. */
  clear(): void {
    this.#generation++;
    this.#entries.clear();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#stopListening();
    if (this.#retry) clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => {});
  }

  #stopListening() {
    this.#listening = false;
    this.clear();
    if (this.#ping) clearInterval(this.#ping);
    this.#ping = null;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.#url!,
      keepAlive: true,
      connectionTimeoutMillis: DEAD_MS,
      query_timeout: DEAD_MS,
      application_name: 'deskroute auth cache',
    });
    this.#client = client;
    let lost = false;
    const onLost = (error?: unknown) => {
      if (lost) return;
      lost = true;
      if (this.#client === client) this.#client = null;
      this.#stopListening();
      client.end().catch(() => {});
      if (this.#closed) return;
      this.#log.warn(
        { reason: error ? describe(error) : 'connection ended', retryMs: this.#retryMs },
        'auth cache: not listening for credential changes; credentials are looked up on every request until it is back',
      );
      this.#retry = setTimeout(() => void this.#connect(), this.#retryMs);
      this.#retry.unref();
      this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (message) => {
      this.#aliveAt = Date.now();
      if (message.channel === CHANNEL) this.clear();
    });
    try {
      await client.connect();
      await client.query(`listen ${CHANNEL}`);
    } catch (error) {
      onLost(error);
      return;
    }
    if (lost || this.#closed) {
      client.end().catch(() => {});
      return;
    }
    // Whatever changed before the LISTEN was in place went unheard: start empty.
    this.clear();
    this.#aliveAt = Date.now();
    this.#listening = true;
    this.#retryMs = RETRY_MIN_MS;
    let checking = false;
    this.#ping = setInterval(() => {
      if (checking) return;
      checking = true;
      client.query('select 1').then(
        () => {
          checking = false;
          this.#aliveAt = Date.now();
        },
        (error: unknown) => onLost(error),
      );
    }, PING_MS);
    this.#ping.unref();
  }
}
