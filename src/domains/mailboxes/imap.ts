import { ImapFlow } from 'imapflow';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { MailInConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import { isDatabaseUnreachable } from '../../db/outage.ts';
import type { MailboxRow } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { asLookup, connectAddresses } from '../../net/resolve-host.ts';
import type { BlobStore } from '../../storage/blobs.ts';
import { receiveMail } from '../mail-in/receive.ts';
import * as repo from './repository.ts';

// The IMAP watcher: every process runs one; each due mailbox is claimed by one process at a time
// (a short transaction locks its row with SKIP LOCKED and leases it by moving next_poll_at past
// the read), read from the last UID it imported, each message fed to receiveMail, marked \Seen and
// kept. Progress is written after every message, so a crash re-reads at most one message, which
// its Message-ID then recognises. A server that is down or refuses the login gets last_error and
// backoff; every connection, greeting and command is bounded by IMAP_TIMEOUT_MS.
// Polling only: IDLE would hold a connection (and a lease) per mailbox per process.

type Log = Pick<Logger, 'info' | 'warn'>;

export interface ImapWatcherDeps {
  db: Db;
  blobs: BlobStore;
  log: Log;
  config: MailInConfig;
  /** MAIL_FROM, recognised as our own sender. */
  mailFrom?: string | undefined;
  /** How often due mailboxes are looked for (tests: a fraction of a second). */
  tickMs?: number;
  /** How a message is taken in (tests pass one that fails). */
  receive?: typeof receiveMail;
  /** Failed attempts per message (mailbox, UIDVALIDITY, UID), kept by the watcher. */
  attempts?: Map<string, number>;
  /** Open connections, closed by stop() so a shutdown waits for no slow server. */
  open?: Set<ImapFlow>;
  /** Aborted by stop(): a DNS look-up under way ends at once. */
  signal?: AbortSignal;
}

/** A message that fails this often for a reason other than the database being away is skipped. */
export const MESSAGE_ATTEMPTS = 3;

/** Backoff after the n-th failure in a row: 30 s doubling, at most an hour. */
export const backoffSeconds = (failures: number) => Math.min(3600, 30 * 2 ** Math.min(failures - 1, 7));

/** Claims the next due IMAP mailbox, leased for `leaseSeconds`, or undefined when none is due. */
async function claimNext(db: Db, leaseSeconds: number): Promise<MailboxRow | undefined> {
  const result = await sql<MailboxRow>`
    update mailboxes set next_poll_at = now() + ${leaseSeconds} * interval '1 second'
    where id = (
      select id from mailboxes
      where kind = 'imap' and active and (next_poll_at is null or next_poll_at <= now())
      order by next_poll_at nulls first, id
      limit 1
      for update skip locked
    )
    returning *`.execute(db);
  return result.rows[0];
}

/** What last_error says: the server's words, never a password. */
function describe(error: unknown, row: MailboxRow): string {
  const e = error as {
    responseText?: string;
    code?: string;
    message?: string;
    authenticationFailed?: boolean;
  };
  // Every address tried and failed: Node's AggregateError has no message of its own.
  const message =
    error instanceof AggregateError && !e.message
      ? error.errors.map((x: Error) => x.message).join('; ')
      : e.message;
  let text = e.authenticationFailed
    ? `login refused: ${e.responseText ?? 'authentication failed'}`
    : [e.code, e.responseText ?? message].filter(Boolean).join(': ') || 'unknown error';
  if (row.imap_password) text = text.split(row.imap_password).join('[redacted]');
  return text.slice(0, 500);
}

/** Reads one mailbox once: every message after the last imported UID. Returns how many were fed. */
export async function readMailbox(
  deps: ImapWatcherDeps,
  row: MailboxRow,
  stopped: () => boolean,
): Promise<number> {
  const { config } = deps;
  const client = new ImapFlow({
    host: row.imap_host!,
    // The host is asked of DNS by our lookup (within half of IMAP_TIMEOUT_MS, ended by a stop),
    // not by net.connect's getaddrinfo: a host whose DNS never answers would hold one of libuv's
    // four worker threads (password hashing's, file reads') for each read. imapflow hands `tls`
    // to net.connect and tls.connect alike; the socket keeps the name for TLS and tries every
    // address, each for a quarter of the limit (Node's default, 250 ms, would cut off a slow
    // server's handshake and move on).
    tls: {
      lookup: asLookup((name) => connectAddresses(name, config.dns, deps.signal)),
      // A net.connect option that tls.connect passes on (its type does not list it).
      ...({ autoSelectFamilyAttemptTimeout: Math.max(250, Math.floor(config.imapTimeoutMs / 4)) } as object),
    },
    port: row.imap_port!,
    secure: row.imap_tls,
    auth: { user: row.imap_username!, pass: row.imap_password ?? '' },
    logger: false,
    connectionTimeout: config.imapTimeoutMs,
    greetingTimeout: config.imapTimeoutMs,
    socketTimeout: config.imapTimeoutMs * 2,
    disableAutoIdle: true,
  });
  // A dropped connection is reported through the command that was running; this keeps the
  // 'error' event from becoming an uncaught exception.
  client.on('error', () => {});
  deps.open?.add(client);
  let fed = 0;
  try {
    await client.connect();
    const lock = await client.getMailboxLock(row.imap_folder);
    try {
      const box = client.mailbox;
      if (!box) throw new Error(`folder ${row.imap_folder} could not be opened`);
      const uidValidity = Number(box.uidValidity);
      let lastUid = Number(row.imap_uidvalidity) === uidValidity ? Number(row.imap_last_uid ?? 0) : 0;
      const found = await client.search({ uid: `${lastUid + 1}:*` }, { uid: true });
      const uids = (found || []).filter((uid) => uid > lastUid).sort((a, b) => a - b);
      for (const uid of uids) {
        if (stopped()) break;
        const message = await client.fetchOne(
          String(uid),
          { uid: true, size: true, source: true },
          { uid: true },
        );
        if (message && message.source?.length !== undefined && message.source.length <= config.maxBytes) {
          try {
            await (deps.receive ?? receiveMail)(
              {
                db: deps.db,
                blobs: deps.blobs,
                log: deps.log,
                maxAttachmentBytes: config.maxBytes,
                mailFrom: deps.mailFrom,
              },
              { id: row.id, department_id: row.department_id },
              message.source,
            );
          } catch (error) {
            // A message that can never become a ticket must not stop the ones after it. A database
            // away is no fault of the message: the read stops and the message is retried, however
            // often. Anything else (a bug this message triggers) is retried a few times, then the
            // message is left unread in the folder and the next one imported.
            if (!(error instanceof DomainError)) {
              if (isDatabaseUnreachable(error)) throw error;
              const key = `${row.id}:${uidValidity}:${uid}`;
              const failed = (deps.attempts?.get(key) ?? 0) + 1;
              deps.attempts?.set(key, failed);
              if (deps.attempts && failed < MESSAGE_ATTEMPTS) throw error;
              deps.attempts?.delete(key);
              deps.log.warn(
                { mailboxId: row.id, uid, attempts: failed, reason: describe(error, row) },
                'IMAP message failed repeatedly; skipped and left unread',
              );
              lastUid = uid;
              fed++;
              await repo.recordImapProgress(deps.db, row.id, uidValidity, lastUid);
              continue;
            }
            deps.log.warn({ mailboxId: row.id, uid, code: error.code }, 'IMAP message skipped');
          }
        } else if (message) {
          deps.log.warn({ mailboxId: row.id, uid, size: message.size }, 'IMAP message too large; skipped');
        }
        await client.messageFlagsAdd(String(uid), ['\\Seen'], { uid: true });
        lastUid = uid;
        fed++;
        await repo.recordImapProgress(deps.db, row.id, uidValidity, lastUid);
      }
      if (uids.length === 0) await repo.recordImapProgress(deps.db, row.id, uidValidity, lastUid);
    } finally {
      lock.release();
    }
    await client.logout();
  } finally {
    deps.open?.delete(client);
    client.close();
  }
  return fed;
}

/** Starts this process's watcher; stop() waits for the read under way (bounded by the timeouts). */
export function startImapWatcher(deps: ImapWatcherDeps): { stop(): Promise<void> } {
  const { db, log, config } = deps;
  const tickMs = deps.tickMs ?? Math.min(5_000, config.imapPollSeconds * 1000);
  // Longer than a read may take, so no other process reads the mailbox meanwhile; progress after
  // each message keeps a re-read small if this process dies.
  const leaseSeconds = Math.max(60, Math.ceil((config.imapTimeoutMs * 10) / 1000));
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const open = new Set<ImapFlow>();
  const stopping = new AbortController();
  const attempts = new Map<string, number>();
  const turn = async () => {
    try {
      for (let i = 0; i < 100 && !stopped; i++) {
        const row = await claimNext(db, leaseSeconds);
        if (!row) break;
        try {
          const fed = await readMailbox(
            { ...deps, open, attempts, signal: stopping.signal },
            row,
            () => stopped,
          );
          await repo.recordPollSuccess(db, row.id, row.poll_seconds ?? config.imapPollSeconds);
          if (fed > 0) log.info({ mailboxId: row.id, messages: fed }, 'IMAP mailbox read');
        } catch (error) {
          const reason = describe(error, row);
          await repo.recordPollFailure(db, row.id, reason, backoffSeconds);
          log.warn({ mailboxId: row.id, reason }, 'IMAP mailbox could not be read; backing off');
        }
      }
    } catch (error) {
      log.warn({ reason: (error as Error).message }, 'IMAP watcher turn failed; next turn retries');
    }
    if (!stopped) timer = setTimeout(() => (running = turn()), tickMs);
  };
  running = turn();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      stopping.abort();
      // A read cut short here is recorded as a failure and read again, from its last message, later.
      for (const client of open) client.close();
      await running;
    },
  };
}
