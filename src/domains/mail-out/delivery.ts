import { sql } from 'kysely';
import type { Logger as PinoLogger } from 'pino';

type Logger = Pick<PinoLogger, 'info' | 'warn'>;

import type { MailConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import type { MailOutboxTable } from '../../db/types.ts';
import type { JobQueue, NewJob } from '../../jobs/queue.ts';
import { BlobMissing, type BlobStore } from '../../storage/blobs.ts';
import { smtpSettingsOfDepartment } from '../mailboxes/repository.ts';
import { type OutgoingMail, sendOnce, smtpSettingsOfUrl } from './transport.ts';

export const MAIL_QUEUE = 'mail-send';
export const MAIL_DEAD_QUEUE = 'mail-send-dead';

/** A mail job's data: the outbox rows to attempt. */
export interface MailJob {
  outboxIds: string[];
}

export interface MailDeps {
  db: Db;
  log: Logger;
  config: MailConfig;
  queue: JobQueue | undefined;
  /** Where a reply's attachments are read from (the app's store). */
  blobs: BlobStore;
}

/** Jobs for outbox rows, in the caller's transaction; rows due at the same moment share a job. */
export async function enqueueMails(
  queue: JobQueue | undefined,
  executor: Db,
  mails: { id: string; at?: Date | null }[],
): Promise<void> {
  if (!queue || mails.length === 0) return;
  const byTime = new Map<number, string[]>();
  for (const m of mails) {
    const at = m.at ? m.at.getTime() : 0;
    byTime.set(at, [...(byTime.get(at) ?? []), m.id]);
  }
  const jobs: NewJob[] = [];
  for (const [at, ids] of byTime) {
    for (let i = 0; i < ids.length; i += 20) {
      jobs.push({
        data: { outboxIds: ids.slice(i, i + 20) } satisfies MailJob,
        ...(at > 0 && { startAt: new Date(at) }),
      });
    }
  }
  await queue.enqueueMany(executor, MAIL_QUEUE, jobs);
}

/**
 * Exponential backoff with jitter: attempt n waits between half and all of
 * min(max, base * 2^(n-1)), so a server back from an outage is not hit by every mail at once.
 */
export function mailRetryDelayMs(config: MailConfig, failedAttempts: number, random = Math.random): number {
  const ceiling = Math.min(
    config.retryMaxDelayMs,
    config.retryBaseMs * 2 ** Math.min(30, failedAttempts - 1),
  );
  return Math.max(1, Math.floor(ceiling / 2 + (random() * ceiling) / 2));
}

type Claimed = Pick<
  MailOutboxTable,
  'kind' | 'from_name' | 'subject' | 'text_body' | 'html_body' | 'mail_message_id' | 'last_error'
> & {
  id: string;
  message_id: string | null;
  department_id: string | null;
  to_address: string;
  from_address: string;
  headers: Record<string, string>;
  attempts: number;
};

/**
 * Attempts the due, queued, unleased outbox rows among `ids`; each is sent once across
 * processes: the claim takes a lease (locked_until) and counts the attempt in one short
 * transaction, the SMTP conversation runs with no transaction and no connection held, and the
 * outcome is written after. A process that dies between the server's "250" and that write leaves
 * the lease to expire, and the job's retry sends the mail again, with the same Message-ID (the
 * receiving side sees a duplicate it can recognise; nothing is lost). Rows early or leased by
 * another process get a job for when they are due; settled rows end here.
 */
export async function attemptMails(deps: MailDeps, ids: string[]): Promise<void> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return;
  const claimed = await claim(deps, unique);
  await Promise.all(claimed.map((c) => attemptOne(deps, c)));
}

async function claim(deps: MailDeps, ids: string[]): Promise<Claimed[]> {
  const leaseMs = deps.config.sendTimeoutMs + 10_000;
  return deps.db.transaction().execute(async (trx) => {
    // A survey whose ticket is no longer resolved (reopened before the delay ran out) is not sent.
    await sql`
      update mail_outbox o
         set state = 'cancelled', locked_until = null, next_attempt_at = null, updated_at = now(),
             last_error = 'the ticket is no longer resolved'
        from tickets t
       where o.id = any(${ids}::uuid[]) and o.kind = 'csat_survey' and o.state = 'queued'
         and t.id = o.ticket_id and t.status <> 'resolved'`.execute(trx);
    // A notification goes only to an agent still active at that address who may still read the
    // ticket: one disabled, whose address changed, who left the department or whose ticket moved
    // to a department not theirs while the mail waited (an SMTP server away, retries) is not told
    // of it. Who may read is the ticket visibility policy (access/tickets.ts), per row here.
    await sql`
      update mail_outbox o
         set state = 'cancelled', locked_until = null, next_attempt_at = null, updated_at = now(),
             last_error = 'no active agent at this address may read the ticket any more'
       where o.id = any(${ids}::uuid[]) and o.kind = 'notification' and o.state = 'queued'
         and not exists (
           select 1 from agents a
            where a.status = 'active' and lower(a.email) = lower(o.to_address)
              and exists (
                select 1 from tickets t
                 where t.id = o.ticket_id
                   and (a.role in ('owner', 'admin') or t.department_id is null or t.assignee_id = a.id
                        or exists (select 1 from department_members m
                                    where m.agent_id = a.id and m.department_id = t.department_id))))`.execute(
      trx,
    );
    const { rows } = await sql<Claimed>`
      update mail_outbox
         set locked_until = now() + ${leaseMs} * interval '1 millisecond',
             attempts = attempts + 1, updated_at = now()
       where id = any(${ids}::uuid[]) and state = 'queued'
         and coalesce(next_attempt_at, now()) <= now()
         and (locked_until is null or locked_until <= now())
         and to_address is not null and from_address is not null
      returning id, kind, message_id, department_id, to_address, from_name, from_address, subject,
                text_body, html_body, headers, mail_message_id, attempts, last_error`.execute(trx);
    if (rows.length < ids.length) {
      const taken = new Set(rows.map((r) => r.id));
      const { rows: later } = await sql<{ id: string; at: Date }>`
        select id, greatest(coalesce(locked_until, now()) + interval '100 milliseconds',
                            coalesce(next_attempt_at, now())) as at
          from mail_outbox
         where id = any(${ids.filter((id) => !taken.has(id))}::uuid[]) and state = 'queued'`.execute(trx);
      await enqueueMails(deps.queue, trx, later);
    }
    return rows;
  });
}

async function attemptOne(deps: MailDeps, mail: Claimed): Promise<void> {
  const settings =
    (mail.department_id ? await smtpSettingsOfDepartment(deps.db, mail.department_id) : undefined) ??
    (deps.config.smtpUrl ? smtpSettingsOfUrl(deps.config.smtpUrl) : undefined);
  const started = Date.now();
  // A reply's files go with it, read from the store at each attempt.
  const files = mail.message_id
    ? await deps.db
        .selectFrom('attachments')
        .select(['filename', 'content_type', 'blob_key'])
        .where('message_id', '=', mail.message_id)
        .orderBy('created_at')
        .orderBy('id')
        .execute()
    : [];
  const attachments: OutgoingMail['attachments'] = [];
  let missing: string | null = null;
  for (const file of files) {
    try {
      const content = await deps.blobs.get(file.blob_key);
      attachments.push({ filename: file.filename, contentType: file.content_type, content });
    } catch (err) {
      if (!(err instanceof BlobMissing)) throw err;
      missing = file.filename;
      break;
    }
  }
  if (missing !== null) for (const file of attachments) file.content.destroy();
  const result =
    missing !== null
      ? ({
          ok: false,
          permanent: true,
          error: `the attachment ${JSON.stringify(missing)} is missing from storage`,
        } as const)
      : settings
        ? await sendOnce(
            settings,
            {
              attachments,
              from: { name: mail.from_name, address: mail.from_address },
              to: mail.to_address,
              subject: mail.subject,
              text: mail.text_body,
              html: mail.html_body,
              messageId: mail.mail_message_id,
              headers: mail.headers,
            },
            deps.config.sendTimeoutMs,
          )
        : ({
            ok: false,
            permanent: true,
            error: 'no SMTP server: set SMTP_URL or give the department a mailbox',
          } as const);
  let state: 'sent' | 'queued' | 'failed' = 'sent';
  let nextAt: Date | null = null;
  if (!result.ok) {
    state = result.permanent || mail.attempts >= deps.config.maxAttempts ? 'failed' : 'queued';
    if (state === 'queued') nextAt = new Date(Date.now() + mailRetryDelayMs(deps.config, mail.attempts));
  }
  const error = result.ok ? null : result.error;
  deps.log.info(
    { outbox: mail.id, kind: mail.kind, attempt: mail.attempts, state, ms: Date.now() - started },
    'mail attempt',
  );
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('mail_outbox')
      .set({
        state,
        last_error: error,
        locked_until: null,
        next_attempt_at: nextAt,
        updated_at: sql<Date>`now()`,
        ...(state === 'sent' && { sent_at: sql<Date>`now()` }),
        // The survey link is a bearer secret: once the mail is settled, its text is not kept.
        ...(mail.kind === 'csat_survey' && state !== 'queued' && { text_body: '', html_body: '' }),
      })
      .where('id', '=', mail.id)
      .where('state', '=', 'queued')
      .execute();
    if (mail.message_id && mail.kind === 'agent_reply') {
      await trx
        .updateTable('ticket_messages')
        .set({
          delivery_state: state,
          delivery_error: error,
          ...(state === 'sent' && { delivered_at: sql<Date>`now()` }),
        })
        .where('id', '=', mail.message_id)
        .execute();
    }
    if (nextAt) await enqueueMails(deps.queue, trx, [{ id: mail.id, at: nextAt }]);
  });
}

/** Rows whose job spent its crash retries (a database away for long): a new job a minute on. */
export async function reviveMails(deps: MailDeps, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await deps.db.transaction().execute(async (trx) => {
    const rows = await trx
      .selectFrom('mail_outbox')
      .select('id')
      .where('id', 'in', ids)
      .where('state', '=', 'queued')
      .execute();
    const at = new Date(Date.now() + 60_000);
    await enqueueMails(
      deps.queue,
      trx,
      rows.map((r) => ({ id: r.id, at })),
    );
    if (rows.length > 0) deps.log.warn({ revived: rows.length }, 'mail jobs revived');
  });
}
