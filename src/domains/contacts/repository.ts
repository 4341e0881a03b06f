import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import { dbNowMs } from '../../db/clock.ts';
import { prepared, preparedQuery } from '../../db/prepared.ts';
import type { Database, QualifiedColumn } from '../../db/types.ts';
import { DomainError, invalid } from '../../errors.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import { scheduleKeySql } from '../schedules/repository.ts';
import type { Contact } from './schemas.ts';

type Executor = Kysely<Database>;

const PHONE_PUNCTUATION = /[\s\-.()]/g;
const PHONE = /^\+?[0-9]{4,20}$/;

/** The stored form of a phone number: spaces, dashes, dots and parentheses removed; null when invalid. */
export function normalisePhone(raw: string): string | null {
  const stripped = raw.replace(PHONE_PUNCTUATION, '');
  return PHONE.test(stripped) ? stripped : null;
}

const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

function selectContacts(db: Executor) {
  return db
    .selectFrom('contacts')
    .select([
      'contacts.id',
      'contacts.name',
      'contacts.custom_fields',
      'contacts.created_at',
      'contacts.updated_at',
      sql<
        string[]
      >`array(select e.email from contact_emails e where e.contact_id = contacts.id order by e.position)`.as(
        'emails',
      ),
      sql<
        string[]
      >`array(select p.phone from contact_phones p where p.contact_id = contacts.id order by p.position)`.as(
        'phones',
      ),
    ]);
}

type ContactRowWithLists = Awaited<ReturnType<ReturnType<typeof selectContacts>['executeTakeFirstOrThrow']>>;

export function toContact(row: ContactRowWithLists): Contact {
  return {
    id: row.id,
    name: row.name,
    emails: row.emails,
    phones: row.phones,
    custom_fields: row.custom_fields as Contact['custom_fields'],
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export async function findContact(db: Executor, id: string): Promise<Contact | undefined> {
  const row = await selectContacts(db).where('contacts.id', '=', id).executeTakeFirst();
  return row ? toContact(row) : undefined;
}

/**
 * Locks the contact for the rest of the transaction and returns its representation. Updates take
 * FOR NO KEY UPDATE, which does not wait for tickets being created for the contact (their foreign
 * key takes FOR KEY SHARE); deletion takes FOR UPDATE, which does.
 */
export async function lockContact(
  trx: Transaction<Database>,
  id: string,
  mode: 'update' | 'delete',
): Promise<Contact | undefined> {
  const locked = await trx
    .selectFrom('contacts')
    .select('id')
    .where('id', '=', id)
    .$call((qb) => (mode === 'delete' ? qb.forUpdate() : qb.forNoKeyUpdate()))
    .executeTakeFirst();
  return locked ? findContact(trx, id) : undefined;
}

export interface ContactFilter {
  q?: string | undefined;
}

/**
 * The contacts matching the list's filter, selected as the API shows them (map with toContact).
 * Shared by the list and the export, so the two filter alike.
 */
export function contactsMatching(db: Executor, filter: ContactFilter) {
  const q = filter.q;
  const like = q !== undefined ? `%${escapeLike(q)}%` : undefined;
  // Phones are stored without punctuation, so "555-01" must find "+15550100".
  const phoneDigits = q?.replace(PHONE_PUNCTUATION, '');
  const phoneLike = phoneDigits && /^\+?[0-9]+$/.test(phoneDigits) ? `%${phoneDigits}%` : undefined;
  return selectContacts(db)
    .select(sql<string>`lower(contacts.name)`.as('sort_key'))
    .$if(like !== undefined, (qb) =>
      qb.where((eb) =>
        eb.or([
          eb('contacts.name', 'ilike', like!),
          eb.exists(
            eb
              .selectFrom('contact_emails as e')
              .select('e.contact_id')
              .whereRef('e.contact_id', '=', 'contacts.id')
              .where('e.email', 'ilike', like!),
          ),
          ...(phoneLike
            ? [
                eb.exists(
                  eb
                    .selectFrom('contact_phones as p')
                    .select('p.contact_id')
                    .whereRef('p.contact_id', '=', 'contacts.id')
                    .where('p.phone', 'like', phoneLike),
                ),
              ]
            : []),
        ]),
      ),
    );
}

type ContactListRow = ContactRowWithLists & { sort_key: string };

export async function listContacts(
  db: Executor,
  filter: ContactFilter,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<ContactListRow> = {
    list: `contacts:${JSON.stringify(filter)}`,
    columns: [sql`lower(contacts.name)`, sql`contacts.id`],
    key: (row) => [row.sort_key, row.id],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await contactsMatching(db, filter)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toContact);
}

export async function insertContact(
  trx: Executor,
  values: { name: string; custom_fields?: Record<string, unknown> },
): Promise<string> {
  const row = await trx
    .insertInto('contacts')
    .values({
      name: values.name,
      ...(values.custom_fields && { custom_fields: JSON.stringify(values.custom_fields) }),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function updateContactRow(
  trx: Executor,
  id: string,
  patch: { name?: string; custom_fields?: Record<string, unknown> },
) {
  await trx
    .updateTable('contacts')
    .set({
      ...(patch.name !== undefined && { name: patch.name }),
      ...(patch.custom_fields !== undefined && { custom_fields: JSON.stringify(patch.custom_fields) }),
      // The database's clock, as the row's default: the export's horizon relies on it.
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .execute();
}

export async function deleteContactRow(trx: Executor, id: string) {
  await trx.deleteFrom('contacts').where('id', '=', id).execute();
}

export async function deleteEmails(trx: Executor, contactId: string) {
  await trx.deleteFrom('contact_emails').where('contact_id', '=', contactId).execute();
}

export async function deletePhones(trx: Executor, contactId: string) {
  await trx.deleteFrom('contact_phones').where('contact_id', '=', contactId).execute();
}

/**
 * Adds the emails in order and returns those another contact already has (ignoring case). ON
 * CONFLICT DO NOTHING instead of catching the unique violation: a failed statement would abort
 * the caller's whole transaction, and a concurrent claim on the same email is waited for.
 */
export async function insertEmails(trx: Executor, contactId: string, emails: string[]): Promise<string[]> {
  if (emails.length === 0) return [];
  const inserted = await trx
    .insertInto('contact_emails')
    .values(emails.map((email, position) => ({ contact_id: contactId, email, position })))
    .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
    .returning('email')
    .execute();
  const added = new Set(inserted.map((r) => r.email.toLowerCase()));
  return emails.filter((e) => !added.has(e.toLowerCase()));
}

/** Adds the (normalised) phones in order and returns those another contact already has. */
export async function insertPhones(trx: Executor, contactId: string, phones: string[]): Promise<string[]> {
  if (phones.length === 0) return [];
  const inserted = await trx
    .insertInto('contact_phones')
    .values(phones.map((phone, position) => ({ contact_id: contactId, phone, position })))
    .onConflict((oc) => oc.column('phone').doNothing())
    .returning('phone')
    .execute();
  const added = new Set(inserted.map((r) => r.phone));
  return phones.filter((p) => !added.has(p));
}

export async function countContactTickets(db: Executor, contactId: string): Promise<number> {
  const row = await db
    .selectFrom('tickets')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('contact_id', '=', contactId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Where the contact's live tickets are, one row per department and assignee: what the ticket
 * policy needs to say whether an agent may work every one of them. Deleted tickets are left out.
 */
export function contactTicketPlaces(db: Executor, contactId: string) {
  return db
    .selectFrom('tickets')
    .select(['department_id', 'assignee_id'])
    .distinct()
    .where('contact_id', '=', contactId)
    .where('status', '!=', 'deleted')
    .execute();
}

// Custom field values, for changes to the field definitions.

export async function countContactsWithValue(db: Executor, key: string): Promise<number> {
  const row = await db
    .selectFrom('contacts')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where(sql<boolean>`custom_fields ? ${key}`)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Contacts whose value of a choice field is not among `options`. */
export async function countContactsOutsideOptions(
  db: Executor,
  key: string,
  options: string[],
): Promise<number> {
  const row = await db
    .selectFrom('contacts')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where(sql<boolean>`custom_fields ? ${key}`)
    .where(sql<boolean>`not (custom_fields ->> ${key} = any(${options}::text[]))`)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function removeFieldValues(trx: Executor, key: string): Promise<number> {
  const result = await trx
    .updateTable('contacts')
    .set({ custom_fields: sql`custom_fields - ${key}::text`, updated_at: sql<Date>`now()` })
    .where(sql<boolean>`custom_fields ? ${key}`)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export interface ContactSummary {
  id: string;
  name: string;
  /** The first email, or null. */
  email: string | null;
  /** The first phone, or null. */
  phone: string | null;
}

// The first email and phone of a contact (by position), as SQL over a contact id column. The
// column must name its table (`c.id`): a bare name could bind to a column of the subquery itself
// and match every row (and the inner aliases are ones no caller uses).
export function firstEmailOf(contactIdColumn: QualifiedColumn) {
  return sql<string | null>`(select first_e.email from contact_emails first_e
    where first_e.contact_id = ${sql.ref(contactIdColumn)} order by first_e.position limit 1)`;
}

export function firstPhoneOf(contactIdColumn: QualifiedColumn) {
  return sql<string | null>`(select first_p.phone from contact_phones first_p
    where first_p.contact_id = ${sql.ref(contactIdColumn)} order by first_p.position limit 1)`;
}

export async function contactSummaries(db: Executor, ids: string[]): Promise<Map<string, ContactSummary>> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return new Map();
  // Two texts whatever the number of ids, so each is prepared once: every ticket a write returns
  // reads its contact here, alone. With an array PostgreSQL cannot know its length, finds the
  // generic plan dearer than one for a single id and plans every run afresh: one id gets `=`.
  const query = db
    .selectFrom('contacts')
    .select([
      'contacts.id',
      'contacts.name',
      firstEmailOf('contacts.id').as('email'),
      firstPhoneOf('contacts.id').as('phone'),
    ])
    .where(
      unique.length === 1
        ? sql<boolean>`contacts.id = ${unique[0]}::uuid`
        : sql<boolean>`contacts.id = any(${unique}::uuid[])`,
    );
  const { rows } = await preparedQuery(query).execute(db);
  return new Map(rows.map((r) => [r.id, { id: r.id, name: r.name, email: r.email, phone: r.phone }]));
}

/**
 * Key-share-locks the contact, so it cannot be deleted before the caller's ticket refers to it;
 * reads the SLA policies' key and the transaction's time along (see SeenByRules.sla).
 */
async function holdContact(
  trx: Executor,
  id: string,
): Promise<{ id: string; sla: NonNullable<SeenByRules['sla']> } | undefined> {
  const query = trx
    .selectFrom('contacts')
    .select([
      'id',
      sql<string | null>`(select policies_key from sla_policies_state)`.as('sla_key'),
      dbNowMs.as('tx_now'),
    ])
    .where('id', '=', id)
    .forKeyShare();
  // One text, run by every ticket opened for a contact named by id (each imported ticket).
  const [row] = (await preparedQuery(query).execute(trx)).rows;
  return row && { id: row.id, sla: { key: row.sla_key, now: row.tx_now } };
}

/**
 * One round trip for the common case of resolveContact: the contact that has this email (else
 * this phone), key-share-locked; or, when none has, a new contact holding them. `claimLost`
 * tells that a concurrent transaction took the email or phone between our look and our insert.
 * The same statement reads what the ticket's automation rules need next (the rules' cache key
 * and the contact as they see it), which saves the ticket's opening a round trip.
 */
async function findOrInsertByIdentity(
  trx: Executor,
  name: string,
  email: string | undefined,
  phone: string | undefined,
  departmentId: string | null,
) {
  const e = email ?? null;
  const p = phone ?? null;
  const { rows } = await prepared(sql<{
    found_id: string | null;
    new_id: string | null;
    emails_added: number;
    phones_added: number;
    rules_key: string;
    found_name: string | null;
    found_email: string | null;
    found_custom_fields: Record<string, unknown> | null;
    schedule_key: string | null;
    sla_key: string | null;
    tx_now: Date;
  }>`
    with by_email as (
      select c.id from contact_emails ce join contacts c on c.id = ce.contact_id
      where ${e}::text is not null and lower(ce.email) = lower(${e}::text)
      limit 1 for key share of c
    ), by_phone as (
      select c.id from contact_phones cp join contacts c on c.id = cp.contact_id
      where ${p}::text is not null and cp.phone = ${p}::text and not exists (select 1 from by_email)
      limit 1 for key share of c
    ), found as (
      select id from by_email union all select id from by_phone
    ), new_contact as (
      insert into contacts (name) select ${name} where not exists (select 1 from found) returning id
    ), new_email as (
      insert into contact_emails (contact_id, email, position)
      select id, ${e}::text, 0 from new_contact where ${e}::text is not null
      on conflict (lower(email)) do nothing returning contact_id
    ), new_phone as (
      insert into contact_phones (contact_id, phone, position)
      select id, ${p}::text, 0 from new_contact where ${p}::text is not null
      on conflict (phone) do nothing returning contact_id
    ), found_contact as (
      select c.name, c.custom_fields, ${firstEmailOf('c.id')} as email
      from contacts c where c.id = (select id from found limit 1)
    )
    -- Scalar subqueries only: joined instead, this measured 10x slower.
    select (select id from found limit 1) as found_id, (select id from new_contact) as new_id,
      (select count(*) from new_email)::int as emails_added, (select count(*) from new_phone)::int as phones_added,
      (select rules_key from automation_rules_state) as rules_key, (select name from found_contact) as found_name,
      (select email from found_contact) as found_email,
      (select custom_fields from found_contact) as found_custom_fields,
      ${scheduleKeySql(departmentId)} as schedule_key,
      (select policies_key from sla_policies_state) as sla_key, deskroute_now()::timestamptz(3) as tx_now
  `).execute(trx);
  const row = rows[0]!;
  const claimLost =
    (email !== undefined && row.emails_added === 0) || (phone !== undefined && row.phones_added === 0);
  const seen = (contact: RulesContact): SeenByRules => ({
    rulesKey: String(row.rules_key),
    contact,
    scheduleKey: row.schedule_key,
    sla: { key: row.sla_key, now: row.tx_now },
  });
  return {
    foundId: row.found_id,
    newId: row.new_id,
    claimLost,
    found:
      row.found_id === null
        ? null
        : seen({ name: row.found_name ?? '', email: row.found_email, custom: row.found_custom_fields ?? {} }),
    // A new contact holds exactly what was given (its first email is this one).
    created: seen({ name, email: e, custom: {} }),
  };
}

/**
 * findOrInsertByIdentity for an email alone, as common table expressions of the caller's
 * statement (the ticket's opening, tickets/one-statement.ts): `found_contact` is the contact that
 * has the email, key-share-locked, with the name, email and phone a ticket shows of it;
 * `resolved_contact` is its id, else `newId`, a new contact holding the name and the email. When
 * a concurrent transaction claimed the email between our look and our insert (ON CONFLICT waited
 * for it), `resolved_contact` raises DR001 (migrations/0050), and the whole statement with it, as
 * it does when `expect` (the caller's stakes) does not hold: the caller then resolves the contact
 * the long way. So it does when the contact changed after the statement's snapshot (its lock
 * waited for the change, or found it committed): the lock then yields the row as changed
 * (name), while its emails and phones, read in the snapshot, are as they were; the long way's
 * opening reads them all after the change, as its response must show them.
 */
export function contactByEmailCtes(name: string, email: string, newId: string, expect: RawBuilder<boolean>) {
  return sql`found_contact as (
      select c.id, c.name, ${firstEmailOf('c.id')} as email, ${firstPhoneOf('c.id')} as phone,
        c.xmin::text as version
      from contact_emails ce join contacts c on c.id = ce.contact_id
      where lower(ce.email) = lower(${email}::text)
      limit 1 for key share of c
    ), claimed_email as (
      insert into contact_emails (contact_id, email, position)
      select ${newId}::uuid, ${email}::text, 0 where not exists (select 1 from found_contact)
      on conflict (lower(email)) do nothing returning contact_id
    ), new_contact as (
      insert into contacts (id, name) select contact_id, ${name} from claimed_email
    ), resolved_contact as (
      select r.id from (select coalesce((select id from found_contact), (select contact_id from claimed_email)) as id) r
      where deskroute_expect(r.id is not null and ${expect} and not exists (select 1 from found_contact f
          join contacts x on x.id = f.id where x.xmin::text <> f.version), 'a stake no longer holds')
    )`;
}

/** A contact as automation rules see it. */
export interface RulesContact {
  name: string;
  email: string | null;
  custom: Record<string, unknown>;
}

/** What rules need before they run: their cache key and the contact (read together). */
export interface SeenByRules {
  rulesKey: string;
  contact: RulesContact;
  /**
   * The key of the schedule a new ticket's department follows (schedules/calendar.ts), null for
   * none; undefined when the statement did not read it.
   */
  scheduleKey?: string | null;
  /** The SLA policies' key (null: none active) and the transaction's time, when the statement read them. */
  sla?: { key: string | null; now: Date };
}

/**
 * What a new ticket's contact is recognised by, checked: the name trimmed, the email (trimmed)
 * and the phone (normalised), each undefined when not given.
 */
export function contactIdentity(input: { name?: string; email?: string; phone?: string }): {
  name: string;
  email: string | undefined;
  phone: string | undefined;
} {
  const name = input.name?.trim() ?? '';
  const email = input.email?.trim() || undefined;
  if (email !== undefined && (email.length > 254 || !/^[^@\s]+@[^@\s]+$/.test(email))) {
    throw invalid('invalid_email', 'The email address is not valid.', [
      { field: 'body/contact/email', message: 'must be an email address' },
    ]);
  }
  let phone: string | undefined;
  if (input.phone !== undefined && input.phone.trim() !== '') {
    const normalised = normalisePhone(input.phone);
    if (normalised === null) {
      throw invalid('invalid_phone', 'The phone number is not valid.', [
        { field: 'body/contact/phone', message: 'must be 4-20 digits with an optional leading +' },
      ]);
    }
    phone = normalised;
  }
  return { name, email, phone };
}

/**
 * The contact a new ticket belongs to: the one named by `id`, else the one that has the email
 * (ignoring case) or else the phone (normalised), else a new contact with the name, email and
 * phone given. Run it in the transaction that creates the ticket: the contact found is
 * key-share-locked until then, so it cannot be deleted in between.
 *
 * Safe under concurrency: when two transactions create a contact for the same new email or
 * phone, the second one's insert waits for the first (ON CONFLICT DO NOTHING on the unique
 * index), finds it claimed, drops its own new contact and takes the first one's.
 */
export async function resolveContact(
  trx: Kysely<Database>,
  input: { id?: string; name?: string; email?: string; phone?: string },
  departmentId: string | null = null,
): Promise<{ id: string; seen: SeenByRules | null; sla?: SeenByRules['sla'] }> {
  if (input.id !== undefined) {
    const held = await holdContact(trx, input.id);
    if (!held) {
      const error = new DomainError('unprocessable', 'contact_not_found', 'No such contact.');
      error.errors = [{ field: 'body/contact/id', message: 'no such contact' }];
      throw error;
    }
    return { id: held.id, seen: null, sla: held.sla };
  }
  const { name, email, phone } = contactIdentity(input);
  if (email === undefined && phone === undefined) {
    if (name === '') {
      throw invalid('contact_identity_required', 'Name the contact, or give its email or phone.', [
        { field: 'body/contact', message: 'needs an id, a name, an email or a phone' },
      ]);
    }
    // Nothing to recognise a returning customer by: every such ticket gets a contact of its own.
    return { id: await insertContact(trx, { name }), seen: null };
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const outcome = await findOrInsertByIdentity(trx, name, email, phone, departmentId);
    if (outcome.foundId) return { id: outcome.foundId, seen: outcome.found };
    if (outcome.newId && !outcome.claimLost) return { id: outcome.newId, seen: outcome.created };
    // Another transaction claimed the email or phone first and has committed (ON CONFLICT waited
    // for it): drop ours and look again, which now finds theirs.
    if (outcome.newId) await deleteContactRow(trx, outcome.newId);
  }
  throw new DomainError(
    'conflict',
    'concurrent_update',
    'The contact changed concurrently while the ticket was created; retry the request.',
  );
}
