import { type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import type { ContactFieldType } from '../../db/types.ts';
import { type Blocker, DomainError, invalid } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { foldText } from '../../rule-engine/index.ts';
import { contactFieldRuleBlocker } from '../automation-rules/service.ts';
import {
  countContactsOutsideOptions,
  countContactsWithValue,
  removeFieldValues,
} from '../contacts/repository.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import * as repo from './repository.ts';
import { type ContactField, MAX_OPTIONS } from './schemas.ts';

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

/** The 409 of a change that contacts' values or active automation rules stand in the way of. */
function inUse(code: string, message: string, blockers: Blocker[]) {
  const error = new DomainError('conflict', code, message);
  error.blockers = blockers;
  return error;
}

/** Contacts' values (counted) and active rules that a change of the field would strand. */
function blockersOfChange(count: number, what: string, rules: Blocker | null): Blocker[] {
  const blockers: Blocker[] = [];
  if (count > 0) {
    blockers.push({
      kind: 'contacts',
      count,
      detail: `${count} contact${count === 1 ? ' has' : 's have'} ${what}`,
    });
  }
  if (rules) blockers.push(rules);
  return blockers;
}

export async function createContactField(
  db: Db,
  principal: Principal,
  input: { key: string; label: string; type: ContactFieldType; options?: string[] | undefined },
): Promise<ContactField> {
  requireAdmin(principal);
  const options = checkOptions(input.type, input.options);
  return transact(db, async (trx) => {
    const id = await repo.insertContactField(trx, {
      key: input.key,
      label: input.label.trim(),
      type: input.type,
      options,
    });
    const field = (await repo.findContactField(trx, id))!;
    await recordSettingsChange(
      trx,
      principal,
      'contact_field.created',
      { subjectId: id },
      { contact_field: field },
    );
    return field;
  });
}

/**
 * Label changes always apply. Key and type change only while no contact has a value for the
 * field (values are never converted), and a choice field may drop an option only while no
 * contact has chosen it.
 */
export async function updateContactField(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: {
    key?: string | undefined;
    label?: string | undefined;
    type?: ContactFieldType | undefined;
    options?: string[] | undefined;
  },
): Promise<ContactField> {
  requireAdmin(principal);
  return transact(db, async (trx) => {
    const current = await repo.lockContactField(trx, id);
    if (!current) throw notFoundField();
    assertIfMatch(preconditions.ifMatch, current);
    const type = patch.type ?? current.type;
    const options = checkOptions(
      type,
      patch.options ?? (type === 'choice' && current.type === 'choice' ? current.options : undefined),
    );
    const keyChanges = patch.key !== undefined && patch.key !== current.key;
    const typeChanges = type !== current.type;
    if (keyChanges || typeChanges) {
      const blockers = blockersOfChange(
        await countContactsWithValue(trx, current.key),
        'a value for the field',
        await contactFieldRuleBlocker(trx, current.key),
      );
      if (blockers.length > 0) {
        throw inUse(
          'contact_field_in_use',
          `Contacts have values for this field, or active automation rules read it, so its ${keyChanges ? 'key' : 'type'} cannot change. Remove the values and change the rules first (see blockers).`,
          blockers,
        );
      }
    } else if (type === 'choice' && patch.options !== undefined) {
      // An option whose new spelling folds equal (a change of case) is kept, for rules: they
      // compare choices folded.
      const kept = new Set(options.map(foldText));
      const dropped = current.type === 'choice' ? current.options.filter((o) => !kept.has(foldText(o))) : [];
      const blockers = blockersOfChange(
        await countContactsOutsideOptions(trx, current.key, options),
        'a value that is not among the new options',
        dropped.length > 0 ? await contactFieldRuleBlocker(trx, current.key, dropped) : null,
      );
      if (blockers.length > 0) {
        throw inUse(
          'contact_field_option_in_use',
          'Contacts have chosen an option this change removes, or active automation rules compare the field with one. Change them first (see blockers).',
          blockers,
        );
      }
    }
    await repo.updateContactField(trx, id, {
      ...(patch.key !== undefined && { key: patch.key }),
      ...(patch.label !== undefined && { label: patch.label.trim() }),
      type,
      options,
    });
    const field = (await repo.findContactField(trx, id))!;
    const changes = changesBetween(current, field);
    if (Object.keys(changes).length > 0) {
      await recordSettingsChange(
        trx,
        principal,
        'contact_field.updated',
        { subjectId: id },
        { contact_field: field, changes },
      );
    }
    return field;
  });
}

/**
 * A field an import uses (imports/apply.ts: a contact_field record under a key that is here
 * already): it must be of the record's type, else 409 contact_field_type_differs (the contacts'
 * values would not fit it). A choice field gains the record's options it lacks, worked out and
 * written under the field's lock, so an edit committed meanwhile is kept; its label and its own
 * options stay. `gone`: the field was deleted here.
 */
export async function adoptContactField(
  db: Db,
  principal: Principal,
  id: string,
  wanted: { type: ContactFieldType; options?: string[] | undefined },
): Promise<'added' | 'same' | 'gone'> {
  requireAdmin(principal);
  return transact(db, async (trx) => {
    const current = await repo.lockContactField(trx, id);
    if (!current) return 'gone';
    if (current.type !== wanted.type) {
      throw new DomainError(
        'conflict',
        'contact_field_type_differs',
        `Contact field ${current.key} is a ${current.type} field here; this record's is ${wanted.type}. Change one of them, or import the field under another key.`,
      );
    }
    if (current.type !== 'choice') return 'same';
    const missing = (wanted.options ?? []).filter((o) => !current.options.includes(o));
    if (missing.length === 0) return 'same';
    const options = [...current.options, ...missing];
    if (options.length > MAX_OPTIONS) {
      throw invalid(
        'too_many_options',
        `Contact field ${current.key} would have ${options.length} options with this record's; a choice field has at most ${MAX_OPTIONS}.`,
      );
    }
    await repo.updateContactField(trx, id, { options });
    const field = (await repo.findContactField(trx, id))!;
    await recordSettingsChange(
      trx,
      principal,
      'contact_field.updated',
      { subjectId: id },
      { contact_field: field, changes: changesBetween(current, field) },
    );
    return 'added';
  });
}

/**
 * Deletes the definition and every contact's value for it, in one transaction; refused (409)
 * while active automation rules read the field.
 */
export async function deleteContactField(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
) {
  requireAdmin(principal);
  await db.transaction().execute(async (trx) => {
    const current = await repo.lockContactField(trx, id);
    if (!current) throw notFoundField();
    assertIfMatch(preconditions.ifMatch, current);
    const rules = await contactFieldRuleBlocker(trx, current.key);
    if (rules) {
      throw inUse(
        'contact_field_in_use',
        'Active automation rules read this field. Change or deactivate them first (see blockers).',
        [rules],
      );
    }
    await removeFieldValues(trx, current.key);
    await repo.deleteContactFieldRow(trx, id);
    await recordSettingsChange(
      trx,
      principal,
      'contact_field.deleted',
      { subjectId: id },
      { contact_field: current },
    );
  });
}
