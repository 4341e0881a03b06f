import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';
import { normaliseAddress } from '../departments/addresses.ts';
import type { TemplateKind, TemplateParts } from './templates.ts';

type Executor = Kysely<Database>;

export function readMailSettings(db: Executor) {
  return db.selectFrom('mail_settings').selectAll().executeTakeFirstOrThrow();
}

export function lockMailSettings(db: Executor) {
  return db.selectFrom('mail_settings').selectAll().forUpdate().executeTakeFirstOrThrow();
}

export async function updateMailSettings(
  db: Executor,
  values: {
    help_desk_name: string;
    sender_name: string | null;
    signature_text: string | null;
    signature_html: string | null;
    from_address: string | null;
  },
) {
  await db
    .updateTable('mail_settings')
    .set({ ...values, updated_at: new Date() })
    .execute();
}

export function readDepartmentIdentity(db: Executor, departmentId: string) {
  return db
    .selectFrom('department_mail_identities')
    .selectAll()
    .where('department_id', '=', departmentId)
    .executeTakeFirst();
}

export async function upsertDepartmentIdentity(
  db: Executor,
  departmentId: string,
  values: { sender_name: string | null; signature_text: string | null; signature_html: string | null },
) {
  await db
    .insertInto('department_mail_identities')
    .values({ department_id: departmentId, ...values })
    .onConflict((oc) => oc.column('department_id').doUpdateSet({ ...values, updated_at: new Date() }))
    .execute();
}

/**
 * Another department's support addresses among these (lower-cased) addresses: what a department
 * may not claim, and what a mailbox may not receive at (its mail would go there first).
 */
export function addressesTakenElsewhere(db: Executor, departmentId: string, addresses: string[]) {
  if (addresses.length === 0) return Promise.resolve([]);
  return db
    .selectFrom('department_addresses')
    .select('address')
    .where('address', 'in', addresses)
    .where('department_id', '<>', departmentId)
    .execute();
}

/**
 * Another department's mailbox that receives mail at one of these addresses (normalised): its
 * IMAP login or the address it states (migrations/0048). Support addresses route before
 * mailboxes, so listing it would take that department's mail. Compared here, not in SQL: a login
 * is free text and may name its domain in Unicode, which mail in routes by its ASCII form
 * (normaliseAddress). A help desk has a handful of mailboxes.
 */
export async function mailboxAddressesElsewhere(
  db: Executor,
  departmentId: string,
  addresses: string[],
): Promise<{ address: string }[]> {
  if (addresses.length === 0) return [];
  const wanted = new Set(addresses);
  const mailboxes = await db
    .selectFrom('mailboxes')
    .select(['address', 'imap_username'])
    .where('department_id', '<>', departmentId)
    .execute();
  return mailboxes.flatMap((m) => {
    const login = m.imap_username === null ? null : normaliseAddress(m.imap_username);
    const receives = (m.address !== null && wanted.has(m.address)) || (login !== null && wanted.has(login));
    return receives ? [{ address: m.address ?? login! }] : [];
  });
}

export async function replaceDepartmentAddresses(
  db: Executor,
  departmentId: string,
  addresses: { address: string; is_reply_from: boolean }[],
) {
  await db.deleteFrom('department_addresses').where('department_id', '=', departmentId).execute();
  if (addresses.length > 0) {
    await db
      .insertInto('department_addresses')
      .values(addresses.map((a) => ({ department_id: departmentId, ...a })))
      .execute();
  }
}

export function findTemplate(db: Executor, departmentId: string | null, kind: TemplateKind) {
  return db
    .selectFrom('mail_templates')
    .select(['subject', 'text', 'html', 'department_id', 'updated_at'])
    .where('kind', '=', kind)
    .where((eb) =>
      departmentId === null ? eb('department_id', 'is', null) : eb('department_id', '=', departmentId),
    )
    .executeTakeFirst();
}

/** The templates of one level (the help desk's, or a department's and the help desk's). */
export function templatesFor(db: Executor, departmentId: string | null) {
  return db
    .selectFrom('mail_templates')
    .select(['kind', 'subject', 'text', 'html', 'department_id', 'updated_at'])
    .where((eb) =>
      departmentId === null
        ? eb('department_id', 'is', null)
        : eb.or([eb('department_id', 'is', null), eb('department_id', '=', departmentId)]),
    )
    .execute();
}

export async function upsertTemplate(
  db: Executor,
  departmentId: string | null,
  kind: TemplateKind,
  parts: TemplateParts,
) {
  const updated = await db
    .updateTable('mail_templates')
    .set({ ...parts, updated_at: new Date() })
    .where('kind', '=', kind)
    .where((eb) =>
      departmentId === null ? eb('department_id', 'is', null) : eb('department_id', '=', departmentId),
    )
    .executeTakeFirst();
  if (updated.numUpdatedRows === 0n) {
    await db
      .insertInto('mail_templates')
      .values({ department_id: departmentId, kind, ...parts })
      .execute();
  }
}

export async function deleteTemplate(db: Executor, departmentId: string | null, kind: TemplateKind) {
  const result = await db
    .deleteFrom('mail_templates')
    .where('kind', '=', kind)
    .where((eb) =>
      departmentId === null ? eb('department_id', 'is', null) : eb('department_id', '=', departmentId),
    )
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** What a mail of a ticket needs to know about it, its contact and its department. */
export function ticketForMail(db: Executor, ticketId: string) {
  return db
    .selectFrom('tickets as t')
    .innerJoin('contacts as c', 'c.id', 't.contact_id')
    .leftJoin('departments as d', 'd.id', 't.department_id')
    .select([
      't.id',
      't.number',
      't.subject',
      't.status',
      't.priority',
      't.channel',
      't.created_at',
      't.department_id',
      'c.name as contact_name',
      'd.name as department_name',
    ])
    .select((eb) =>
      eb
        .selectFrom('contact_emails as e')
        .select('e.email')
        .whereRef('e.contact_id', '=', 't.contact_id')
        .orderBy('e.position')
        .limit(1)
        .as('contact_email'),
    )
    .where('t.id', '=', ticketId)
    .executeTakeFirst();
}

export async function agentName(db: Executor, agentId: string): Promise<string | null> {
  const row = await db.selectFrom('agents').select('name').where('id', '=', agentId).executeTakeFirst();
  return row?.name ?? null;
}

export async function departmentName(db: Executor, departmentId: string): Promise<string | null> {
  const row = await db
    .selectFrom('departments')
    .select('name')
    .where('id', '=', departmentId)
    .executeTakeFirst();
  return row?.name ?? null;
}
