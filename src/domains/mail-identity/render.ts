// STAND-IN: replaced at merge
// The identity engineer's templates render these; until then, plain built-in texts and the
// department's reply-from address (null when it has none: the caller falls back to MAIL_FROM).
import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';

export type TemplateKind =
  | 'acknowledgement'
  | 'agent_reply'
  | 'outside_hours'
  | 'transfer_notice'
  | 'resolved_notice'
  | 'csat_survey';

export interface RenderedMail {
  from: { name: string; address: string | null }; // null: no sender configured -> failed, clear error
  subject: string;
  text: string;
  html: string;
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

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
  const ticket = await db
    .selectFrom('tickets as t')
    .leftJoin('departments as d', 'd.id', 't.department_id')
    .select(['t.number', 't.subject', 't.department_id', 'd.name as department_name'])
    .where('t.id', '=', input.ticketId)
    .executeTakeFirstOrThrow();
  const replyFrom = ticket.department_id
    ? await db
        .selectFrom('department_addresses')
        .select('address')
        .where('department_id', '=', ticket.department_id)
        .where('is_reply_from', '=', true)
        .executeTakeFirst()
    : undefined;
  const ref = `[Ticket#${ticket.number}]`;
  const texts: Record<TemplateKind, { subject: string; text: string }> = {
    acknowledgement: {
      subject: `${ref} ${ticket.subject}`,
      text: 'We received your message and will answer as soon as we can.',
    },
    outside_hours: {
      subject: `${ref} ${ticket.subject}`,
      text: 'We received your message outside our working hours and will answer when we are back.',
    },
    agent_reply: { subject: `Re: ${ref} ${ticket.subject}`, text: input.message?.text ?? '' },
    transfer_notice: {
      subject: `${ref} ${ticket.subject}`,
      text: `Your request was handed to ${ticket.department_name ?? 'another team'}.`,
    },
    resolved_notice: {
      subject: `${ref} ${ticket.subject}`,
      text: 'Your request was resolved. Reply to this mail if you need anything else.',
    },
    csat_survey: {
      subject: `${ref} How did we do?`,
      text: `Please rate our answer: ${input.survey?.url ?? ''}`,
    },
  };
  const { subject, text } = texts[input.kind];
  const html =
    input.kind === 'agent_reply' && input.message?.html
      ? input.message.html
      : `<p>${escapeHtml(text)}</p>${
          input.survey ? `<p><a href="${escapeHtml(input.survey.url)}">Rate us</a></p>` : ''
        }`;
  return {
    from: { name: ticket.department_name ?? 'Deskroute', address: replyFrom?.address ?? null },
    subject,
    text,
    html,
  };
}
