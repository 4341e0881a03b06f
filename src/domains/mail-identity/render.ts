import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';
import { notFound } from '../../errors.ts';
import { listDepartmentAddresses } from '../departments/addresses.ts';
import { sanitiseOutgoingHtml, textToHtml } from './html.ts';
import * as repo from './repository.ts';
import {
  BUILT_IN_TEMPLATES,
  renderTemplate,
  type TemplateKind,
  type TemplateParts,
  type TemplateVariables,
  ticketReference,
} from './templates.ts';

export type { TemplateKind } from './templates.ts';

export interface RenderedMail {
  from: { name: string; address: string | null }; // address null: no sender configured
  subject: string;
  text: string;
  html: string;
}

type Executor = Kysely<Database>;

/** A department's identity with the help desk's defaults filled in (department null: the help desk's). */
export interface EffectiveIdentity {
  departmentName: string;
  senderName: string;
  fromAddress: string | null;
  signatureText: string;
  signatureHtml: string;
  helpDeskName: string;
}

export async function effectiveIdentity(
  db: Executor,
  departmentId: string | null,
): Promise<EffectiveIdentity> {
  const settings = await repo.readMailSettings(db);
  const own = departmentId === null ? undefined : await repo.readDepartmentIdentity(db, departmentId);
  const addresses = departmentId === null ? [] : await listDepartmentAddresses(db, departmentId);
  const name = departmentId === null ? null : await repo.departmentName(db, departmentId);
  const defaultSender = settings.sender_name ?? settings.help_desk_name;
  const defaultHtml = settings.signature_html ?? textToHtml(settings.signature_text ?? '');
  // A department that writes its own text signature and no HTML one gets its text as HTML, not
  // the help desk's HTML signature under its own text one.
  const ownText = own?.signature_text ?? null;
  const ownHtml = own?.signature_html ?? (ownText !== null ? textToHtml(ownText) : null);
  return {
    departmentName: name ?? settings.help_desk_name,
    senderName: own?.sender_name ?? defaultSender,
    fromAddress: addresses.find((a) => a.is_reply_from)?.address ?? settings.from_address,
    signatureText: ownText ?? settings.signature_text ?? '',
    signatureHtml: ownHtml ?? defaultHtml,
    helpDeskName: settings.help_desk_name,
  };
}

export function identityVariables(identity: EffectiveIdentity) {
  return {
    department: {
      name: identity.departmentName,
      sender_name: identity.senderName,
      signature_text: identity.signatureText,
      signature_html: identity.signatureHtml,
    },
    help_desk: { name: identity.helpDeskName },
  };
}

/** The variables of a real ticket; the department's ones come from `identity`. */
export async function ticketVariables(
  db: Executor,
  ticketId: string,
  options: {
    identity?: EffectiveIdentity;
    agentId?: string | null | undefined;
    message?: { text: string; html?: string | null | undefined } | null | undefined;
    survey?: { url: string; expiresAt: Date } | null | undefined;
  } = {},
): Promise<{ variables: TemplateVariables; identity: EffectiveIdentity; departmentId: string | null }> {
  const ticket = await repo.ticketForMail(db, ticketId);
  if (!ticket) throw notFound('ticket');
  const identity = options.identity ?? (await effectiveIdentity(db, ticket.department_id));
  const message = options.message ?? null;
  return {
    identity,
    departmentId: ticket.department_id,
    variables: {
      ticket: {
        id: ticket.id,
        number: ticket.number,
        reference: ticketReference(ticket.number),
        subject: ticket.subject,
        status: ticket.status,
        priority: ticket.priority,
        channel: ticket.channel,
        created_at: ticket.created_at.toISOString(),
      },
      contact: { name: ticket.contact_name, email: ticket.contact_email ?? null },
      ...identityVariables(identity),
      agent: { name: options.agentId ? await repo.agentName(db, options.agentId) : null },
      message: {
        text: message?.text ?? null,
        html: message ? (message.html ? sanitiseOutgoingHtml(message.html) : textToHtml(message.text)) : null,
      },
      survey: {
        url: options.survey?.url ?? null,
        expires_at: options.survey?.expiresAt.toISOString() ?? null,
      },
    },
  };
}

/** The templates in effect for a department, most specific first (the built-in one last). */
export async function templateChain(
  db: Executor,
  departmentId: string | null,
  kind: TemplateKind,
): Promise<TemplateParts[]> {
  const chain: TemplateParts[] = [];
  if (departmentId !== null) {
    const own = await repo.findTemplate(db, departmentId, kind);
    if (own) chain.push(own);
  }
  const helpDesk = await repo.findTemplate(db, null, kind);
  if (helpDesk) chain.push(helpDesk);
  chain.push(BUILT_IN_TEMPLATES[kind]);
  return chain;
}

/** Appends the ticket's reference when the subject leaves it out: replies thread by it. */
export function withReference(subject: string, reference: string): string {
  if (subject.includes(reference)) return subject;
  return subject === '' ? reference : `${subject} ${reference}`;
}

/**
 * The mail of `kind` for a ticket, as it goes out: from the ticket's department's sender name and
 * reply-from address (else the help desk's defaults), rendered with the department's template
 * (else the help desk's, else the built-in one). A saved template that fails to render for this
 * ticket (its time or memory bound) gives way to the next one, so the mail still goes out.
 */
export async function renderMail(
  db: Kysely<Database>,
  input: {
    kind: TemplateKind;
    ticketId: string;
    agentId?: string | null;
    message?: { text: string; html?: string | null } | null;
    survey?: { url: string; expiresAt: Date } | null;
  },
): Promise<RenderedMail> {
  const { variables, identity, departmentId } = await ticketVariables(db, input.ticketId, input);
  const chain = await templateChain(db, departmentId, input.kind);
  let rendered: TemplateParts | undefined;
  let failure: unknown;
  for (const parts of chain) {
    try {
      rendered = await renderTemplate(input.kind, parts, variables);
      break;
    } catch (error) {
      failure ??= error;
    }
  }
  if (!rendered) throw failure;
  return {
    from: { name: identity.senderName, address: identity.fromAddress },
    subject: withReference(rendered.subject, variables.ticket.reference),
    text: rendered.text,
    html: rendered.html,
  };
}
