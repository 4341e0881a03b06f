import type { FastifyRequest } from 'fastify';
import { type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import type { ContactFieldType } from '../../db/types.ts';
import { DomainError, invalid } from '../../errors.ts';
import { assertIfMatch } from '../../plugins/etag.ts';
import {
  countContactsOutsideOptions,
  countContactsWithValue,
  removeFieldValues,
} from '../contacts/repository.ts';
import * as repo from './repository.ts';
import type { ContactField } from './schemas.ts';

const notFoundField = () => new DomainError('not_found', 'contact_field_not_found', 'No such contact field.');

export async function getContactField(db: Db, id: string): Promise<ContactField> {
  const field = await repo.findContactField(db, id);
  if (!field) throw notFoundField();
  return field;
}

/** Choice fields need options; the other types take none. */
function checkOptions(type: ContactFieldType, options: string[] | undefined): string[] {
  if (type === 'choice') {
    if (options === undefined) {
      throw invalid('options_required', 'A choice field needs options.', [
        { field: 'body/options', message: 'is required for a choice field' },
      ]);
    }
    return options;
  }
  if (options !== undefined) {
    throw invalid('options_not_allowed', 'Only choice fields have options.', [
      { field: 'body/options', message: `is not allowed for a ${type} field` },
    ]);
  }
  return [];
}

function inUse(code: string, message: string, count: number, what: string) {
  const error = new DomainError('conflict', code, message);
  error.blockers = [
    { kind: 'contacts', count, detail: `${count} contact${count === 1 ? ' has' : 's have'} ${what}` },
  ];
  return error;
}

export async function createContactField(
  db: Db,
  principal: Principal,
  input: { key: string; label: string; type: ContactFieldType; options?: string[] | undefined },
): Promise<ContactField> {
  requireAdmin(principal);
  const options = checkOptions(input.type, input.options);
  const id = await repo.insertContactField(db, {
    key: input.key,
    label: input.label.trim(),
    type: input.type,
    options,
  });
  return getContactField(db, id);
}

/**
 * Label changes always apply. Key and type change only while no contact has a value for the
 * field (values are never converted), and a choice field may drop an option only while no
 * contact has chosen it.
 */
export async function updateContactField(
  db: Db,
  principal: Principal,
  request: FastifyRequest,
  id: string,
  patch: {
    key?: string | undefined;
    label?: string | undefined;
    type?: ContactFieldType | undefined;
    options?: string[] | undefined;
  },
): Promise<ContactField> {
  requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    const current = await repo.lockContactField(trx, id);
    if (!current) throw notFoundField();
    assertIfMatch(request, current);
    const type = patch.type ?? current.type;
    const options = checkOptions(
      type,
      patch.options ?? (type === 'choice' && current.type === 'choice' ? current.options : undefined),
    );
    const keyChanges = patch.key !== undefined && patch.key !== current.key;
    const typeChanges = type !== current.type;
    if (keyChanges || typeChanges) {
      const count = await countContactsWithValue(trx, current.key);
      if (count > 0) {
        throw inUse(
          'contact_field_in_use',
          `Contacts have values for this field, so its ${keyChanges ? 'key' : 'type'} cannot change. Remove the values (or the field) first.`,
          count,
          'a value for the field',
        );
      }
    } else if (type === 'choice' && patch.options !== undefined) {
      const count = await countContactsOutsideOptions(trx, current.key, options);
      if (count > 0) {
        throw inUse(
          'contact_field_option_in_use',
          'Contacts have chosen an option this change removes. Change their values first.',
          count,
          'a value that is not among the new options',
        );
      }
    }
    await repo.updateContactField(trx, id, {
      ...(patch.key !== undefined && { key: patch.key }),
      ...(patch.label !== undefined && { label: patch.label.trim() }),
      type,
      options,
    });
    return (await repo.findContactField(trx, id))!;
  });
}

/** Deletes the definition and every contact's value for it, in one transaction. */
export async function deleteContactField(db: Db, principal: Principal, request: FastifyRequest, id: string) {
  requireAdmin(principal);
  await db.transaction().execute(async (trx) => {
    const current = await repo.lockContactField(trx, id);
    if (!current) throw notFoundField();
    assertIfMatch(request, current);
    await removeFieldValues(trx, current.key);
    await repo.deleteContactFieldRow(trx, id);
  });
}
