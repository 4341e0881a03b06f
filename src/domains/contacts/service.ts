import type { Transaction } from 'kysely';
import { isAdmin, type Principal, requireAdmin } from '../../access/policy.ts';
import { can, loadTicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import type { Database } from '../../db/types.ts';
import { DomainError, type FieldError, forbidden, invalid, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { type FieldDefinition, shareFieldDefinitions } from '../contact-fields/repository.ts';
import * as repo from './repository.ts';
import type { Contact } from './schemas.ts';

type CustomFieldsInput = Record<string, string | number | boolean | null>;

export async function getContact(db: Db, id: string): Promise<Contact> {
  const contact = await repo.findContact(db, id);
  if (!contact) throw notFound('contact');
  return contact;
}

/** JSON Pointer escaping, as in the `field` of every other validation error. */
const pointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

function checkEmails(emails: string[]): string[] {
  const seen = new Set<string>();
  const errors: FieldError[] = [];
  emails.forEach((email, i) => {
    const folded = email.toLowerCase();
    if (seen.has(folded)) errors.push({ field: `body/emails/${i}`, message: 'appears more than once' });
    seen.add(folded);
  });
  if (errors.length > 0) throw invalid('duplicate_email', 'An email is listed more than once.', errors);
  return emails;
}

function checkPhones(phones: string[]): string[] {
  const normalised = phones.map((p) => repo.normalisePhone(p));
  const malformed = normalised.flatMap((p, i) =>
    p === null
      ? [
          {
            field: `body/phones/${i}`,
            message: 'must be 4-20 digits with an optional leading + once punctuation is removed',
          },
        ]
      : [],
  );
  if (malformed.length > 0) throw invalid('invalid_phone', 'A phone number is not valid.', malformed);
  const seen = new Set<string>();
  const duplicates: FieldError[] = [];
  normalised.forEach((p, i) => {
    if (seen.has(p!)) duplicates.push({ field: `body/phones/${i}`, message: 'appears more than once' });
    seen.add(p!);
  });
  if (duplicates.length > 0)
    throw invalid('duplicate_phone', 'A phone number is listed more than once.', duplicates);
  return normalised as string[];
}

function requireIdentity(name: string, emails: string[], phones: string[]) {
  if (name === '' && emails.length === 0 && phones.length === 0) {
    throw invalid('contact_identity_required', 'A contact needs a name, an email or a phone.', [
      { field: 'body', message: 'needs a non-empty name, emails or phones' },
    ]);
  }
}

function isRealDate(value: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return false;
  const date = new Date(`${value}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === value;
}

const MAX_TEXT = 10_000;

/** Why `value` does not fit the field, or null when it does. */
function valueProblem(field: FieldDefinition, value: string | number | boolean): string | null {
  switch (field.type) {
    case 'text':
      return typeof value === 'string' && value.length <= MAX_TEXT
        ? null
        : `must be a string of at most ${MAX_TEXT} characters`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? null : 'must be a finite number';
    case 'date':
      return typeof value === 'string' && isRealDate(value) ? null : 'must be a date as YYYY-MM-DD';
    case 'boolean':
      return typeof value === 'boolean' ? null : 'must be true or false';
    case 'choice':
      return typeof value === 'string' && field.options.includes(value)
        ? null
        : `must be one of: ${field.options.join(', ')}`;
  }
}

/**
 * Applies `input` to `current`: keys set, null removes. Every key must name a defined field
 * (422 otherwise) and every value fit its type (400).
 */
function applyCustomFields(
  definitions: Map<string, FieldDefinition>,
  current: Record<string, unknown>,
  input: CustomFieldsInput,
): Record<string, unknown> {
  const unknown = Object.keys(input).filter((key) => !definitions.has(key));
  if (unknown.length > 0) {
    const error = new DomainError(
      'unprocessable',
      'unknown_custom_field',
      `No contact field is defined for ${unknown.map((k) => JSON.stringify(k)).join(', ')}.`,
    );
    error.errors = unknown.map((key) => ({
      field: `body/custom_fields/${pointer(key)}`,
      message: 'is not a defined contact field',
    }));
    throw error;
  }
  const errors: FieldError[] = [];
  const next = { ...current };
  for (const [key, value] of Object.entries(input)) {
    if (value === null) {
      delete next[key];
      continue;
    }
    const problem = valueProblem(definitions.get(key)!, value);
    if (problem) errors.push({ field: `body/custom_fields/${pointer(key)}`, message: problem });
    else next[key] = value;
  }
  if (errors.length > 0) {
    throw invalid('invalid_custom_field', 'A custom field value does not fit its field.', errors);
  }
  return next;
}

async function addEmails(trx: Db, contactId: string, emails: string[]) {
  const taken = new Set((await repo.insertEmails(trx, contactId, emails)).map((e) => e.toLowerCase()));
  if (taken.size === 0) return;
  const error = new DomainError('conflict', 'contact_email_taken', 'Another contact already has this email.');
  error.errors = emails.flatMap((e, i) =>
    taken.has(e.toLowerCase()) ? [{ field: `body/emails/${i}`, message: 'belongs to another contact' }] : [],
  );
  throw error;
}

async function addPhones(trx: Db, contactId: string, phones: string[]) {
  const taken = new Set(await repo.insertPhones(trx, contactId, phones));
  if (taken.size === 0) return;
  const error = new DomainError('conflict', 'contact_phone_taken', 'Another contact already has this phone.');
  error.errors = phones.flatMap((p, i) =>
    taken.has(p) ? [{ field: `body/phones/${i}`, message: 'belongs to another contact' }] : [],
  );
  throw error;
}

export async function createContact(
  db: Db,
  input: {
    name?: string | undefined;
    emails?: string[] | undefined;
    phones?: string[] | undefined;
    custom_fields?: CustomFieldsInput | undefined;
  },
): Promise<Contact> {
  const name = input.name?.trim() ?? '';
  const emails = checkEmails(input.emails ?? []);
  const phones = checkPhones(input.phones ?? []);
  requireIdentity(name, emails, phones);
  const customInput = input.custom_fields ?? {};
  const id = await transact(db, async (trx) => {
    const definitions = await shareFieldDefinitions(trx, Object.keys(customInput));
    const custom_fields = applyCustomFields(definitions, {}, customInput);
    const id = await repo.insertContact(trx, { name, custom_fields });
    await addEmails(trx, id, emails);
    await addPhones(trx, id, phones);
    return id;
  });
  return getContact(db, id);
}

/**
 * A contact's emails decide where its tickets' replies go and whose mail threads into them, so
 * changing it is changing every one of its tickets: an agent other than an owner or admin may,
 * only when they may work (as the ticket write routes require) each of its live tickets. Every
 * agent sees every contact, so a refusal is a 403, not a 404. Run it in the changing
 * transaction, after locking the contact FOR UPDATE: no ticket of the contact can be created
 * between this read and the commit.
 *
 * The tickets themselves are not locked. A transfer (or unassignment, or restore) committing
 * between this read and our commit leaves the same state as our change followed by that one, a
 * history where the check held when it ran: the contact was changed by someone who could work
 * every ticket it had then, and a ticket moved on afterwards, which is allowed. Racing a
 * transfer so gains nothing an agent could not have had by changing the contact a moment
 * earlier. Locking the live tickets FOR SHARE would make updates wait on every ticket of a busy
 * contact and take ticket locks after the contact's, the reverse of a customer's message on a
 * ticket (the ticket FOR UPDATE, then the contact's key, by messages.author_contact_id's foreign
 * key): a deadlock to buy nothing.
 */
async function requireContactWorkable(trx: Transaction<Database>, principal: Principal, id: string) {
  if (isAdmin(principal)) return;
  const access = await loadTicketAccess(trx, principal);
  const places = await repo.contactTicketPlaces(trx, id);
  if (places.every((ticket) => can(access, ticket, 'work'))) return;
  throw forbidden(
    'The contact has tickets you may not work; only owners, admins and agents who may work all of its tickets may change it.',
    'contact_shared_beyond_you',
  );
}

export async function updateContact(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: {
    name?: string | undefined;
    emails?: string[] | undefined;
    phones?: string[] | undefined;
    custom_fields?: CustomFieldsInput | undefined;
  },
): Promise<Contact> {
  const emails = patch.emails && checkEmails(patch.emails);
  const phones = patch.phones && checkPhones(patch.phones);
  return transact(db, async (trx) => {
    // Field definitions before the contact: a field's deletion locks the field, then the
    // contacts holding its values, so taking them in the same order cannot deadlock.
    const definitions = await shareFieldDefinitions(trx, Object.keys(patch.custom_fields ?? {}));
    // An admin's update does not wait for the contact's tickets being created (FOR NO KEY
    // UPDATE); anyone else's does (FOR UPDATE), so the tickets it checks are all there are.
    const current = await repo.lockContact(trx, id, isAdmin(principal) ? 'update' : 'delete');
    if (!current) throw notFound('contact');
    assertIfMatch(preconditions.ifMatch, current);
    await requireContactWorkable(trx, principal, id);
    const name = patch.name !== undefined ? patch.name.trim() : current.name;
    requireIdentity(name, emails ?? current.emails, phones ?? current.phones);
    const custom_fields =
      patch.custom_fields && applyCustomFields(definitions, current.custom_fields, patch.custom_fields);
    await repo.updateContactRow(trx, id, {
      ...(patch.name !== undefined && { name }),
      ...(custom_fields && { custom_fields }),
    });
    if (emails) {
      await repo.deleteEmails(trx, id);
      await addEmails(trx, id, emails);
    }
    if (phones) {
      await repo.deletePhones(trx, id);
      await addPhones(trx, id, phones);
    }
    return (await repo.findContact(trx, id))!;
  });
}

/** Owners and admins only; refused while tickets refer to the contact. */
export async function deleteContact(db: Db, principal: Principal, preconditions: Preconditions, id: string) {
  requireAdmin(principal);
  await db.transaction().execute(async (trx) => {
    const current = await repo.lockContact(trx, id, 'delete');
    if (!current) throw notFound('contact');
    assertIfMatch(preconditions.ifMatch, current);
    const tickets = await repo.countContactTickets(trx, id);
    if (tickets > 0) {
      const error = new DomainError(
        'conflict',
        'contact_has_tickets',
        `The contact still has ${tickets} ticket${tickets === 1 ? '' : 's'}; tickets keep their contact.`,
      );
      error.blockers = [
        {
          kind: 'tickets',
          count: tickets,
          detail: `${tickets} ticket${tickets === 1 ? '' : 's'} belong${tickets === 1 ? 's' : ''} to the contact`,
        },
      ];
      throw error;
    }
    await repo.deleteContactRow(trx, id);
  });
}
