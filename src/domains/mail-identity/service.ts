import type { Transaction } from 'kysely';
import { canManageDepartment, isAdmin, type Principal, requireAdmin } from '../../access/policy.ts';
import { loadTicketAccess, requireTicket } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import type { Database } from '../../db/types.ts';
import { DomainError, type FieldError, forbidden, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { listDepartmentAddresses, lockMailAddresses, normaliseAddress } from '../departments/addresses.ts';
import { findDepartment, lockDepartment, roleInDepartment } from '../departments/repository.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import { findTicketRecord } from '../tickets/repository.ts';
import { sanitiseOutgoingHtml } from './html.ts';
import {
  effectiveIdentity,
  identityVariables,
  type RenderedMail,
  templateChain,
  ticketVariables,
  withReference,
} from './render.ts';
import * as repo from './repository.ts';
import type {
  DepartmentMailIdentity,
  MailSettings,
  MailTemplate,
  PreviewMailTemplateInput,
  PutMailTemplateInput,
  UpdateDepartmentMailIdentityInput,
  UpdateMailSettingsInput,
} from './schemas.ts';
import {
  BUILT_IN_TEMPLATES,
  renderTemplate,
  sampleVariables,
  TEMPLATE_KINDS,
  TemplateError,
  type TemplateKind,
  type TemplateVariables,
  templateProblems,
} from './templates.ts';

type Trx = Transaction<Database>;

// Addresses as mail servers take them: a dot-atom local part and a domain of DNS labels.
const LOCAL_PART = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Whether a (normalised) address is one mail can be sent from and to. */
export function isValidAddress(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (at < 1 || address.length > 254) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  return local.length <= 64 && LOCAL_PART.test(local) && DOMAIN.test(domain);
}

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

function invalidAddresses(errors: FieldError[]) {
  return unprocessable(
    'invalid_address',
    `Not a valid email address: ${errors.map((e) => e.field).join(', ')}.`,
    errors.map((e) => ({ ...e, message: 'is not a valid email address' })),
  );
}

async function requireDepartment(db: Db, departmentId: string) {
  const department = await findDepartment(db, departmentId);
  if (!department) throw notFound('department');
  return department;
}

export async function requireDepartmentManager(db: Db, principal: Principal, departmentId: string) {
  const role = await roleInDepartment(db, principal.agentId, departmentId);
  if (!canManageDepartment(principal, role)) {
    throw forbidden(
      "Only owners, admins and the department's managers may do this.",
      'department_manager_required',
    );
  }
}

// Help-desk defaults

function toMailSettings(row: Awaited<ReturnType<typeof repo.readMailSettings>>): MailSettings {
  return {
    help_desk_name: row.help_desk_name,
    sender_name: row.sender_name,
    signature_text: row.signature_text,
    signature_html: row.signature_html,
    from_address: row.from_address,
    updated_at: row.updated_at.toISOString(),
  };
}

export async function getMailSettings(db: Db): Promise<MailSettings> {
  return toMailSettings(await repo.readMailSettings(db));
}

export async function updateMailSettings(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  input: UpdateMailSettingsInput,
): Promise<MailSettings> {
  requireAdmin(principal);
  const from = input.from_address == null ? input.from_address : normaliseAddress(input.from_address);
  if (from != null && !isValidAddress(from)) {
    throw invalidAddresses([{ field: 'body/from_address', message: '' }]);
  }
  return db.transaction().execute(async (trx) => {
    const before = toMailSettings(await repo.lockMailSettings(trx));
    assertIfMatch(preconditions.ifMatch, before);
    await repo.updateMailSettings(trx, {
      help_desk_name: input.help_desk_name?.trim() ?? before.help_desk_name,
      sender_name: input.sender_name === undefined ? before.sender_name : (input.sender_name?.trim() ?? null),
      signature_text: input.signature_text === undefined ? before.signature_text : input.signature_text,
      signature_html:
        input.signature_html === undefined
          ? before.signature_html
          : input.signature_html === null
            ? null
            : sanitiseOutgoingHtml(input.signature_html),
      from_address: from === undefined ? before.from_address : from,
    });
    const after = toMailSettings(await repo.readMailSettings(trx));
    const changes = changesBetween(before, after);
    if (Object.keys(changes).length === 0) return before;
    await recordSettingsChange(
      trx,
      principal,
      'mail_settings.updated',
      { subjectId: '00000000-0000-0000-0000-000000000000' },
      { mail_settings: after, changes },
    );
    return after;
  });
}

// Department identity

export async function getDepartmentIdentity(db: Db, departmentId: string): Promise<DepartmentMailIdentity> {
  await requireDepartment(db, departmentId);
  return readIdentity(db, departmentId);
}

async function readIdentity(db: Db, departmentId: string): Promise<DepartmentMailIdentity> {
  const own = await repo.readDepartmentIdentity(db, departmentId);
  const addresses = await listDepartmentAddresses(db, departmentId);
  const effective = await effectiveIdentity(db, departmentId);
  return {
    department_id: departmentId,
    sender_name: own?.sender_name ?? null,
    signature_text: own?.signature_text ?? null,
    signature_html: own?.signature_html ?? null,
    addresses: addresses.map((a) => ({ address: a.address, reply_from: a.is_reply_from })),
    effective: {
      sender_name: effective.senderName,
      from_address: effective.fromAddress,
      signature_text: effective.signatureText,
      signature_html: effective.signatureHtml,
    },
    updated_at: own?.updated_at.toISOString() ?? null,
  };
}

function checkAddresses(input: NonNullable<UpdateDepartmentMailIdentityInput['addresses']>) {
  const addresses = input.map((a) => ({ address: normaliseAddress(a.address), reply_from: a.reply_from }));
  const bad = addresses.flatMap((a, i) =>
    isValidAddress(a.address) ? [] : [{ field: `body/addresses/${i}/address`, message: '' }],
  );
  if (bad.length > 0) throw invalidAddresses(bad);
  const seen = new Set<string>();
  const duplicates = addresses.flatMap((a, i) => {
    const dup = seen.has(a.address);
    seen.add(a.address);
    return dup ? [{ field: `body/addresses/${i}/address`, message: 'appears more than once' }] : [];
  });
  if (duplicates.length > 0) {
    throw unprocessable('duplicate_address', 'An address is listed more than once.', duplicates);
  }
  const replyFrom = addresses.flatMap((a, i) => (a.reply_from ? [i] : []));
  if (replyFrom.length > 1) {
    throw unprocessable(
      'several_reply_from',
      'Only one address of a department is its reply-from address.',
      replyFrom
        .slice(1)
        .map((i) => ({ field: `body/addresses/${i}/reply_from`, message: 'a second reply-from' })),
    );
  }
  const first = replyFrom[0] ?? 0;
  return addresses.map((a, i) => ({ address: a.address, is_reply_from: i === first }));
}

/** The same support addresses, whatever their order, case or reply-from. */
function sameAddresses(stored: { address: string }[], wanted: { address: string }[]) {
  const before = new Set(stored.map((a) => normaliseAddress(a.address)));
  const after = new Set(wanted.map((a) => normaliseAddress(a.address)));
  return before.size === after.size && [...after].every((a) => before.has(a));
}

const addressTaken = (addresses: string[]) =>
  new DomainError(
    'conflict',
    'address_taken',
    `Another department already receives mail at ${addresses.join(', ')}; an address belongs to one department.`,
  );

export async function updateDepartmentIdentity(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  departmentId: string,
  input: UpdateDepartmentMailIdentityInput,
): Promise<DepartmentMailIdentity> {
  await requireDepartment(db, departmentId);
  await requireDepartmentManager(db, principal, departmentId);
  const addresses = input.addresses === undefined ? undefined : checkAddresses(input.addresses);
  try {
    return await db.transaction().execute(async (trx) => {
      if (!(await lockDepartment(trx, departmentId))) throw notFound('department');
      const before = await readIdentity(trx, departmentId);
      assertIfMatch(preconditions.ifMatch, before);
      if (addresses !== undefined) {
        // Support addresses route mail (before any mailbox) and mark mail as our own (ignored,
        // never answered): a manager listing another department's or a customer's address would
        // take that mail or silence that customer. Routing is the help desk's, not a department's.
        if (!isAdmin(principal) && !sameAddresses(before.addresses, addresses)) {
          throw forbidden(
            'Only owners and admins may change the support addresses; send them unchanged, or leave `addresses` out.',
            'addresses_admin_required',
          );
        }
        // A mailbox taking one of them at the same time waits for us, or we for it.
        await lockMailAddresses(
          trx,
          addresses.map((a) => a.address),
        );
        const taken = await repo.addressesTakenElsewhere(
          trx,
          departmentId,
          addresses.map((a) => a.address),
        );
        if (taken.length > 0) throw addressTaken(taken.map((t) => t.address));
        const mailboxes = await repo.mailboxAddressesElsewhere(
          trx,
          departmentId,
          addresses.map((a) => a.address),
        );
        if (mailboxes.length > 0) {
          throw new DomainError(
            'conflict',
            'address_of_mailbox',
            `A mailbox of another department receives mail at ${[...new Set(mailboxes.map((m) => m.address))].join(', ')}.`,
          );
        }
      }
      const values = {
        sender_name:
          input.sender_name === undefined ? before.sender_name : (input.sender_name?.trim() ?? null),
        signature_text: input.signature_text === undefined ? before.signature_text : input.signature_text,
        signature_html:
          input.signature_html === undefined
            ? before.signature_html
            : input.signature_html === null
              ? null
              : sanitiseOutgoingHtml(input.signature_html),
      };
      await repo.upsertDepartmentIdentity(trx, departmentId, values);
      if (addresses !== undefined) await repo.replaceDepartmentAddresses(trx, departmentId, addresses);
      const after = await readIdentity(trx, departmentId);
      const changes = changesBetween(
        { ...before, updated_at: null, effective: null },
        { ...after, updated_at: null, effective: null },
      );
      if (Object.keys(changes).length > 0) {
        await recordSettingsChange(
          trx,
          principal,
          'mail_identity.updated',
          { departmentId, subjectId: departmentId },
          { mail_identity: after, changes },
        );
      }
      return after;
    });
  } catch (error) {
    // Two departments claiming one address at once: the second insert meets the first's row.
    if ((error as { code?: string }).code === '23505' && addresses !== undefined) {
      throw addressTaken(addresses.map((a) => a.address));
    }
    throw error;
  }
}

// Templates

const sourceOf = (departmentId: string | null, owner: string | null): MailTemplate['source'] =>
  owner === null ? 'help_desk' : owner === departmentId ? 'department' : 'help_desk';

/** The template in effect at a level: its own, else the help desk's (for a department), else built in. */
async function effectiveTemplates(db: Db, departmentId: string | null): Promise<MailTemplate[]> {
  const rows = await repo.templatesFor(db, departmentId);
  return TEMPLATE_KINDS.map((kind) => {
    const candidates = rows.filter((r) => r.kind === kind);
    const row =
      candidates.find((r) => r.department_id !== null && r.department_id === departmentId) ??
      candidates.find((r) => r.department_id === null);
    const parts = row ?? BUILT_IN_TEMPLATES[kind];
    return {
      kind,
      department_id: departmentId,
      source: row ? sourceOf(departmentId, row.department_id) : 'built_in',
      subject: parts.subject,
      text: parts.text,
      html: parts.html,
      updated_at: row ? row.updated_at.toISOString() : null,
    };
  });
}

export async function listTemplates(db: Db, departmentId: string | null): Promise<{ data: MailTemplate[] }> {
  if (departmentId !== null) await requireDepartment(db, departmentId);
  return { data: await effectiveTemplates(db, departmentId) };
}

export async function getTemplate(db: Db, departmentId: string | null, kind: TemplateKind) {
  if (departmentId !== null) await requireDepartment(db, departmentId);
  return (await effectiveTemplates(db, departmentId)).find((t) => t.kind === kind)!;
}

async function requireLevelAdmin(db: Db, principal: Principal, departmentId: string | null) {
  if (departmentId === null) requireAdmin(principal);
  else {
    await requireDepartment(db, departmentId);
    await requireDepartmentManager(db, principal, departmentId);
  }
}

/** Serialises writes to one level's templates (the upsert's insert would race otherwise). */
async function lockLevel(trx: Trx, departmentId: string | null) {
  if (departmentId === null) await repo.lockMailSettings(trx);
  else if (!(await lockDepartment(trx, departmentId))) throw notFound('department');
}

/** Sample variables with the level's own department and help-desk names and signature. */
async function sampleFor(db: Db, departmentId: string | null): Promise<TemplateVariables> {
  return sampleVariables(identityVariables(await effectiveIdentity(db, departmentId)));
}

async function assertUsableTemplate(
  db: Db,
  departmentId: string | null,
  kind: TemplateKind,
  parts: Partial<PutMailTemplateInput>,
) {
  const errors = await templateProblems(kind, parts, await sampleFor(db, departmentId));
  if (errors.length > 0) {
    throw unprocessable(
      'invalid_template',
      `The template cannot be used: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}.`,
      errors,
    );
  }
}

export async function putTemplate(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  departmentId: string | null,
  kind: TemplateKind,
  input: PutMailTemplateInput,
): Promise<MailTemplate> {
  await requireLevelAdmin(db, principal, departmentId);
  await assertUsableTemplate(db, departmentId, kind, input);
  return db.transaction().execute(async (trx) => {
    await lockLevel(trx, departmentId);
    const before = await getTemplate(trx, departmentId, kind);
    assertIfMatch(preconditions.ifMatch, before);
    await repo.upsertTemplate(trx, departmentId, kind, {
      subject: input.subject,
      text: input.text,
      html: input.html,
    });
    const after = await getTemplate(trx, departmentId, kind);
    await recordSettingsChange(
      trx,
      principal,
      'mail_template.updated',
      { departmentId, subjectId: departmentId ?? '00000000-0000-0000-0000-000000000000' },
      { mail_template: after, changes: changesBetween(before, after) },
    );
    return after;
  });
}

export async function deleteTemplate(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  departmentId: string | null,
  kind: TemplateKind,
): Promise<void> {
  await requireLevelAdmin(db, principal, departmentId);
  await db.transaction().execute(async (trx) => {
    await lockLevel(trx, departmentId);
    const before = await getTemplate(trx, departmentId, kind);
    if (before.source !== (departmentId === null ? 'help_desk' : 'department')) {
      throw new DomainError(
        'not_found',
        'mail_template_not_found',
        'This level has no template of its own for this kind; the one in effect is inherited.',
      );
    }
    assertIfMatch(preconditions.ifMatch, before);
    await repo.deleteTemplate(trx, departmentId, kind);
    await recordSettingsChange(
      trx,
      principal,
      'mail_template.deleted',
      { departmentId, subjectId: departmentId ?? '00000000-0000-0000-0000-000000000000' },
      { mail_template: before },
    );
  });
}

/**
 * Renders a draft (each part left out: the one in effect at this level) against a ticket the
 * caller may see, or the built-in sample. The department's identity is this level's; a
 * help-desk preview of a ticket takes the ticket's department's.
 */
export async function previewTemplate(
  db: Db,
  principal: Principal,
  departmentId: string | null,
  kind: TemplateKind,
  input: PreviewMailTemplateInput,
): Promise<RenderedMail> {
  if (departmentId !== null) await requireDepartment(db, departmentId);
  let variables: TemplateVariables;
  let identity = await effectiveIdentity(db, departmentId);
  if (input.ticket_id !== undefined) {
    const access = await loadTicketAccess(db, principal);
    requireTicket(access, await findTicketRecord(db, input.ticket_id), 'read');
    const sample = sampleVariables();
    const filled = await ticketVariables(db, input.ticket_id, {
      ...(departmentId !== null && { identity }),
      agentId: principal.agentId,
      message: { text: sample.message.text!, html: sample.message.html },
      survey: { url: sample.survey.url!, expiresAt: new Date(sample.survey.expires_at!) },
    });
    variables = filled.variables;
    identity = filled.identity;
  } else {
    variables = sampleVariables(identityVariables(identity));
  }
  const draft = { subject: input.subject, text: input.text, html: input.html };
  const given = Object.fromEntries(Object.entries(draft).filter(([, v]) => v !== undefined));
  await assertUsableTemplate(db, departmentId, kind, given);
  const [effective] = await templateChain(db, departmentId, kind);
  const parts = { ...effective!, ...given };
  let rendered: Awaited<ReturnType<typeof renderTemplate>>;
  try {
    rendered = await renderTemplate(kind, parts, variables);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    throw unprocessable('invalid_template', `The template cannot be rendered: ${error.message}.`, [
      { field: `body/${error.part}`, message: error.message },
    ]);
  }
  return {
    from: { name: identity.senderName, address: identity.fromAddress },
    subject: withReference(rendered.subject, variables.ticket.reference),
    text: rendered.text,
    html: rendered.html,
  };
}
