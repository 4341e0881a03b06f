import { createHash, randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import { type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import type { Database, MailboxesTable, MailboxRow } from '../../db/types.ts';
import { DomainError, type FieldError, notFound } from '../../errors.ts';
import { lockMailAddresses, normaliseAddress } from '../departments/addresses.ts';
import { recordSettingsEvent, settingsActor } from '../events/repository.ts';
import { addressesTakenElsewhere } from '../mail-identity/repository.ts';
import { isValidAddress } from '../mail-identity/service.ts';
import * as repo from './repository.ts';
import type { CreateMailboxInput, Mailbox, UpdateMailboxInput } from './schemas.ts';

// Mailboxes hold credentials for outside servers, so only owners and admins manage them (a
// department's managers do not: an IMAP or SMTP password reaches beyond the help desk).

export const INBOUND_SECRET_PREFIX = 'drm_';

export function hashInboundSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

const newSecret = () => `${INBOUND_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

function summary(row: MailboxRow) {
  return { id: row.id, name: row.name, department_id: row.department_id, kind: row.kind, active: row.active };
}

async function requireDepartment(db: Db, id: string) {
  const row = await db.selectFrom('departments').select('id').where('id', '=', id).executeTakeFirst();
  if (!row) {
    throw unprocessable('department_not_found', 'The department does not exist.', [
      { field: 'body/department_id', message: 'no such department' },
    ]);
  }
}

async function requireFreeName(db: Db, name: string, except?: string) {
  const row = await db
    .selectFrom('mailboxes')
    .select('id')
    // lower() on both sides, as the unique index mailboxes_name_key has it: JavaScript's
    // toLowerCase() folds some letters otherwise ('İ' to 'i' and a combining dot, PostgreSQL to 'i'),
    // and a name the check let through then broke the index (a bare 409 conflict).
    .where((eb) => eb(eb.fn('lower', ['name']), '=', eb.fn('lower', [eb.val(name)])))
    .$if(except !== undefined, (qb) => qb.where('id', '<>', except!))
    .executeTakeFirst();
  if (row) throw new DomainError('conflict', 'mailbox_name_taken', 'Another mailbox has this name.');
}

/** The stated address, lower-cased; 422 invalid_address when it is not one. */
function addressOf(input: string | null | undefined): string | null | undefined {
  if (input === undefined || input === null) return input;
  const address = normaliseAddress(input);
  if (!isValidAddress(address)) {
    throw unprocessable('invalid_address', 'Not a valid email address: body/address.', [
      { field: 'body/address', message: 'is not a valid email address' },
    ]);
  }
  return address;
}

/**
 * A mailbox may not receive at another department's support address: support addresses route
 * before mailboxes, so its mail would go there (the converse of address_of_mailbox). The IMAP
 * username counts when it is an address. Locked per address against a department listing it.
 */
async function requireAddressesOwnDepartment(
  trx: Transaction<Database>,
  departmentId: string,
  receivesAt: (string | null)[],
) {
  const addresses = [...new Set(receivesAt.flatMap((a) => (a === null ? [] : [normaliseAddress(a)])))];
  if (addresses.length === 0) return;
  // The department's row first, as its foreign key would take it when the mailbox is written:
  // a support-address PUT locks that row (FOR UPDATE) before the addresses, so taking the
  // addresses first and the row after would deadlock with it (one of the two then 409).
  await trx.selectFrom('departments').select('id').where('id', '=', departmentId).forKeyShare().execute();
  await lockMailAddresses(trx, addresses);
  const taken = await addressesTakenElsewhere(trx, departmentId, addresses);
  if (taken.length > 0) {
    throw new DomainError(
      'conflict',
      'address_of_department',
      `${taken.map((t) => t.address).join(', ')} is a support address of another department; its mail goes there before any mailbox's.`,
    );
  }
}

function smtpColumns(smtp: CreateMailboxInput['smtp'], before?: MailboxRow) {
  if (smtp === undefined) return {};
  if (smtp === null) {
    return { smtp_host: null, smtp_port: null, smtp_secure: false, smtp_username: null, smtp_password: null };
  }
  // A password left out is kept while the server stays the same (so a form can send the rest).
  const keep = before && before.smtp_host === smtp.host && smtp.password === undefined;
  return {
    smtp_host: smtp.host,
    smtp_port: smtp.port,
    smtp_secure: smtp.secure ?? false,
    smtp_username: smtp.username ?? null,
    smtp_password: keep ? before.smtp_password : (smtp.password ?? null),
  };
}

export async function createMailbox(
  db: Db,
  principal: Principal,
  input: CreateMailboxInput,
): Promise<Mailbox & { inbound_secret: string }> {
  requireAdmin(principal);
  if (input.kind === 'imap' && !input.imap) {
    throw unprocessable('imap_required', 'An IMAP mailbox needs its IMAP settings.', [
      { field: 'body/imap', message: 'is required for kind imap' },
    ]);
  }
  if (input.kind === 'inbound' && input.imap) {
    throw unprocessable('imap_not_allowed', 'An inbound mailbox takes no IMAP settings.', [
      { field: 'body/imap', message: 'only for kind imap' },
    ]);
  }
  const address = addressOf(input.address) ?? null;
  await requireDepartment(db, input.department_id);
  const name = input.name.trim();
  await requireFreeName(db, name);
  const secret = newSecret();
  const row = await db.transaction().execute(async (trx) => {
    await requireAddressesOwnDepartment(trx, input.department_id, [address, input.imap?.username ?? null]);
    const created = await repo.insertMailbox(trx, {
      name,
      department_id: input.department_id,
      kind: input.kind,
      address,
      active: input.active ?? true,
      imap_host: input.imap?.host ?? null,
      imap_port: input.imap?.port ?? null,
      imap_tls: input.imap?.tls ?? true,
      imap_username: input.imap?.username ?? null,
      imap_password: input.imap?.password ?? null,
      imap_folder: input.imap?.folder ?? 'INBOX',
      poll_seconds: input.imap?.poll_seconds ?? null,
      smtp_host: null,
      smtp_port: null,
      smtp_secure: false,
      smtp_username: null,
      smtp_password: null,
      ...smtpColumns(input.smtp),
      inbound_secret_hash: hashInboundSecret(secret),
    });
    await recordSettingsEvent(trx, {
      type: 'mailbox.created',
      actor: settingsActor(principal),
      departmentId: created.department_id,
      subjectId: created.id,
      payload: { mailbox: summary(created) },
    });
    return created;
  });
  return { ...repo.toMailbox(row), inbound_secret: secret };
}

export async function listMailboxes(db: Db, principal: Principal, page: { limit: number; cursor?: string }) {
  requireAdmin(principal);
  return repo.listMailboxes(db, page);
}

export async function getMailbox(db: Db, principal: Principal, id: string): Promise<Mailbox> {
  requireAdmin(principal);
  const row = await repo.findMailbox(db, id);
  if (!row) throw notFound('mailbox');
  return repo.toMailbox(row);
}

export async function updateMailbox(
  db: Db,
  principal: Principal,
  id: string,
  input: UpdateMailboxInput,
): Promise<Mailbox> {
  requireAdmin(principal);
  const address = addressOf(input.address);
  if (input.department_id !== undefined) await requireDepartment(db, input.department_id);
  if (input.name !== undefined) await requireFreeName(db, input.name.trim(), id);
  const row = await db.transaction().execute(async (trx) => {
    const before = await repo.lockMailbox(trx, id);
    if (!before) throw notFound('mailbox');
    if (input.imap && before.kind !== 'imap') {
      throw unprocessable('imap_not_allowed', 'An inbound mailbox takes no IMAP settings.', [
        { field: 'body/imap', message: 'only for kind imap' },
      ]);
    }
    // The stored password goes only to the server it was given for: a new host, port or username
    // must come with its password (else a PATCH could send it to a server of the caller's).
    const imap = input.imap;
    if (imap && imap.password === undefined && before.imap_password !== null) {
      const moved = (['host', 'port', 'username'] as const).filter((key) => {
        const value = imap[key];
        const stored = before[`imap_${key}`];
        return (
          value !== undefined &&
          (key === 'host' ? String(value).toLowerCase() !== String(stored).toLowerCase() : value !== stored)
        );
      });
      if (moved.length > 0) {
        throw unprocessable(
          'password_required',
          'A new IMAP host, port or username needs the password again: the stored one is not sent to another server.',
          [{ field: 'body/imap/password', message: `required with a new ${moved.join(', ')}` }],
        );
      }
    }
    if (input.department_id !== undefined || address !== undefined || input.imap?.username !== undefined) {
      await requireAddressesOwnDepartment(trx, input.department_id ?? before.department_id, [
        address === undefined ? before.address : address,
        input.imap?.username ?? before.imap_username,
      ]);
    }
    const set: Partial<Record<keyof MailboxesTable, unknown>> = {};
    const changes: string[] = [];
    if (address !== undefined) set.address = address;
    if (input.name !== undefined) set.name = input.name.trim();
    if (input.department_id !== undefined) set.department_id = input.department_id;
    if (input.active !== undefined) set.active = input.active;
    if (input.imap) {
      const map = {
        host: 'imap_host',
        port: 'imap_port',
        tls: 'imap_tls',
        username: 'imap_username',
        password: 'imap_password',
        folder: 'imap_folder',
        poll_seconds: 'poll_seconds',
      } as const;
      for (const [key, column] of Object.entries(map)) {
        const value = input.imap[key as keyof typeof map];
        if (value !== undefined) {
          set[column] = value;
          changes.push(`imap.${key}`);
        }
      }
      // A different server or folder is read from its start: the old position means nothing there.
      if (
        input.imap.host !== undefined ||
        input.imap.folder !== undefined ||
        input.imap.username !== undefined
      ) {
        set.imap_uidvalidity = null;
        set.imap_last_uid = null;
      }
    }
    if (input.smtp !== undefined) {
      Object.assign(set, smtpColumns(input.smtp, before));
      changes.push('smtp');
    }
    for (const key of ['name', 'department_id', 'address', 'active'] as const) {
      if (set[key] !== undefined && set[key] !== before[key]) changes.push(key);
    }
    // Settings changed: the watcher tries again at once, failures forgotten.
    if (changes.some((c) => c.startsWith('imap') || c === 'active')) {
      set.next_poll_at = null;
      set.failures = 0;
    }
    const after = await repo.updateMailboxRow(trx, id, set as Parameters<typeof repo.updateMailboxRow>[2]);
    if (changes.length > 0) {
      await recordSettingsEvent(trx, {
        type: 'mailbox.updated',
        actor: settingsActor(principal),
        departmentId: after.department_id,
        subjectId: after.id,
        payload: { mailbox: summary(after), changes },
      });
    }
    return after;
  });
  return repo.toMailbox(row);
}

export async function deleteMailbox(db: Db, principal: Principal, id: string): Promise<void> {
  requireAdmin(principal);
  await db.transaction().execute(async (trx) => {
    const before = await repo.lockMailbox(trx, id);
    if (!before) throw notFound('mailbox');
    await repo.deleteMailboxRow(trx, id);
    await recordSettingsEvent(trx, {
      type: 'mailbox.deleted',
      actor: settingsActor(principal),
      departmentId: before.department_id,
      subjectId: before.id,
      payload: { mailbox: summary(before) },
    });
  });
}

export async function rotateInboundSecret(
  db: Db,
  principal: Principal,
  id: string,
): Promise<Mailbox & { inbound_secret: string }> {
  requireAdmin(principal);
  const secret = newSecret();
  const row = await db.transaction().execute(async (trx) => {
    const before = await repo.lockMailbox(trx, id);
    if (!before) throw notFound('mailbox');
    const after = await repo.updateMailboxRow(trx, id, { inbound_secret_hash: hashInboundSecret(secret) });
    await recordSettingsEvent(trx, {
      type: 'mailbox.secret_rotated',
      actor: settingsActor(principal),
      departmentId: after.department_id,
      subjectId: after.id,
      payload: { mailbox: summary(after) },
    });
    return after;
  });
  return { ...repo.toMailbox(row), inbound_secret: secret };
}
