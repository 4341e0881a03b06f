import { type Insertable, type Kysely, sql, type Transaction, type Updateable } from 'kysely';
import type { Database, MailboxesTable, MailboxRow } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { Mailbox } from './schemas.ts';

type Executor = Kysely<Database>;

const iso = (d: Date | null) => d?.toISOString() ?? null;

/** The one mapping of a mailbox row to the API: passwords and the secret's hash never leave. */
export function toMailbox(row: MailboxRow): Mailbox {
  return {
    id: row.id,
    name: row.name,
    department_id: row.department_id,
    kind: row.kind,
    address: row.address,
    active: row.active,
    imap:
      row.kind === 'imap' && row.imap_host !== null && row.imap_port !== null && row.imap_username !== null
        ? {
            host: row.imap_host,
            port: row.imap_port,
            tls: row.imap_tls,
            username: row.imap_username,
            password_set: row.imap_password !== null,
            folder: row.imap_folder,
            poll_seconds: row.poll_seconds,
          }
        : null,
    smtp:
      row.smtp_host !== null && row.smtp_port !== null
        ? {
            host: row.smtp_host,
            port: row.smtp_port,
            secure: row.smtp_secure,
            username: row.smtp_username,
            password_set: row.smtp_password !== null,
          }
        : null,
    last_polled_at: iso(row.last_polled_at),
    last_error: row.last_error,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export function insertMailbox(db: Executor, values: Insertable<MailboxesTable>) {
  return db.insertInto('mailboxes').values(values).returningAll().executeTakeFirstOrThrow();
}

export function findMailbox(db: Executor, id: string) {
  return db.selectFrom('mailboxes').selectAll().where('id', '=', id).executeTakeFirst();
}

export function lockMailbox(trx: Transaction<Database>, id: string) {
  return trx.selectFrom('mailboxes').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export function updateMailboxRow(trx: Executor, id: string, set: Updateable<MailboxesTable>) {
  return trx
    .updateTable('mailboxes')
    .set({ ...set, updated_at: sql`deskroute_now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteMailboxRow(trx: Executor, id: string) {
  await trx.deleteFrom('mailboxes').where('id', '=', id).execute();
}

export async function listMailboxes(db: Executor, page: { limit: number; cursor?: string | undefined }) {
  const keyset: Keyset<MailboxRow> = {
    list: 'mailboxes',
    columns: [sql`created_at`, sql`id`],
    key: (row) => [row.created_at.toISOString(), row.id],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('mailboxes')
    .selectAll()
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toMailbox);
}

/** The active mailbox whose inbound secret hashes to this (the secret itself is never kept). */
export function mailboxOfSecretHash(db: Executor, hash: string) {
  return db
    .selectFrom('mailboxes')
    .selectAll()
    .where('inbound_secret_hash', '=', hash)
    .where('active', '=', true)
    .executeTakeFirst();
}

export interface SmtpSettings {
  host: string;
  port: number;
  secure: boolean;
  user: string | null;
  password: string | null;
}

/** The SMTP settings of the first active mailbox of that department with SMTP set (oldest first). */
export async function smtpSettingsOfDepartment(
  db: Kysely<Database>,
  departmentId: string,
): Promise<SmtpSettings | undefined> {
  const row = await db
    .selectFrom('mailboxes')
    .select(['smtp_host', 'smtp_port', 'smtp_secure', 'smtp_username', 'smtp_password'])
    .where('department_id', '=', departmentId)
    .where('active', '=', true)
    .where('smtp_host', 'is not', null)
    .where('smtp_port', 'is not', null)
    .orderBy('created_at')
    .orderBy('id')
    .executeTakeFirst();
  if (!row || row.smtp_host === null || row.smtp_port === null) return undefined;
  return {
    host: row.smtp_host,
    port: row.smtp_port,
    secure: row.smtp_secure,
    user: row.smtp_username,
    password: row.smtp_password,
  };
}

export async function countMailboxesOfDepartment(db: Executor, departmentId: string): Promise<number> {
  const row = await db
    .selectFrom('mailboxes')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('department_id', '=', departmentId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function moveMailboxesOfDepartment(db: Executor, fromId: string, toId: string) {
  await db
    .updateTable('mailboxes')
    .set({ department_id: toId, updated_at: sql`deskroute_now()` })
    .where('department_id', '=', fromId)
    .execute();
}

// ---- The IMAP watcher's bookkeeping ----

/** Active IMAP mailboxes whose next read is due (or never planned). */
export function dueImapMailboxIds(db: Executor) {
  return db
    .selectFrom('mailboxes')
    .select('id')
    .where('kind', '=', 'imap')
    .where('active', '=', true)
    .where((eb) => eb.or([eb('next_poll_at', 'is', null), eb('next_poll_at', '<=', sql<Date>`now()`)]))
    .orderBy('next_poll_at')
    .execute();
}

/**
 * Claims one IMAP mailbox for reading: the row stays locked for the caller's transaction, and a
 * process that finds it locked passes it over (SKIP LOCKED), so two never read one mailbox at once.
 */
export function claimImapMailbox(trx: Transaction<Database>, id: string) {
  return trx
    .selectFrom('mailboxes')
    .selectAll()
    .where('id', '=', id)
    .where('kind', '=', 'imap')
    .where('active', '=', true)
    .forUpdate()
    .skipLocked()
    .executeTakeFirst();
}

export async function recordImapProgress(db: Executor, id: string, uidValidity: number, lastUid: number) {
  await db
    .updateTable('mailboxes')
    .set({ imap_uidvalidity: uidValidity, imap_last_uid: lastUid })
    .where('id', '=', id)
    .execute();
}

export async function recordPollSuccess(db: Executor, id: string, nextSeconds: number) {
  await db
    .updateTable('mailboxes')
    .set({
      last_polled_at: sql`now()`,
      last_error: null,
      failures: 0,
      next_poll_at: sql`now() + ${nextSeconds} * interval '1 second'`,
    })
    .where('id', '=', id)
    .execute();
}

export async function recordPollFailure(
  db: Executor,
  id: string,
  error: string,
  backoffSeconds: (failures: number) => number,
) {
  const row = await db.selectFrom('mailboxes').select('failures').where('id', '=', id).executeTakeFirst();
  const failures = (row?.failures ?? 0) + 1;
  await db
    .updateTable('mailboxes')
    .set({
      last_error: error,
      failures,
      next_poll_at: sql`now() + ${backoffSeconds(failures)} * interval '1 second'`,
    })
    .where('id', '=', id)
    .execute();
}
