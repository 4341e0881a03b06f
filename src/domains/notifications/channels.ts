import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Logger as PinoLogger } from 'pino';
import type { MailConfig } from '../../config.ts';
import type { Database, NotificationKind } from '../../db/types.ts';
import type { JobQueue } from '../../jobs/queue.ts';
import { ourAddresses } from '../departments/addresses.ts';
import { textToHtml } from '../mail-identity/html.ts';
import { effectiveIdentity } from '../mail-identity/render.ts';
import { enqueueMails } from '../mail-out/delivery.ts';
import { smtpSettingsOfDepartment } from '../mailboxes/repository.ts';
import { insertNotifications, type NewNotification } from './repository.ts';

/** Rows per insert: well below the 65,535 parameters of one statement. */
const INSERT_CHUNK = 1000;

/** One notification as decided, and the channels its agent has on for it. */
export interface Delivery {
  notification: NewNotification;
  /** Into the agent's in-app inbox (and so onto their live streams). */
  inbox: boolean;
  /** The agent's address when email is on for it, else null. */
  email: string | null;
}

/**
 * Where a notification goes once the consumer has decided who gets it. Each channel runs inside
 * the consumer's transaction, the one that also advances its feed cursor, so what it writes
 * commits exactly once per event or not at all.
 */
export interface NotificationChannel {
  readonly name: string;
  deliver(trx: Transaction<Database>, deliveries: readonly Delivery[]): Promise<void>;
}

/** The in-app inbox; live streams pick its rows up as `event: notification`. */
export const inboxChannel: NotificationChannel = {
  name: 'inbox',
  deliver: (trx, deliveries) =>
    insertNotifications(
      trx,
      deliveries.filter((d) => d.inbox).map((d) => d.notification),
    ),
};

export interface EmailChannelDeps {
  config: MailConfig;
  /** Where each mail's job goes (without one the rows wait, queued, for attemptMails). */
  queue: JobQueue | undefined;
  log?: Pick<PinoLogger, 'warn'> | undefined;
}

const HEADLINES: Record<NotificationKind, (department: string) => string> = {
  ticket_created: (d) => `New ticket in ${d}`,
  customer_replied: () => 'The customer replied',
  ticket_assigned: () => 'A ticket was assigned to you',
  ticket_transferred: (d) => `A ticket was transferred to ${d}`,
  mentioned: () => 'You were mentioned in a note',
  sla_escalated: () => 'SLA escalation',
};

/**
 * Email: one mail per notification to the agent's address, written to the outbox in this
 * transaction with its job (never sent from inside it), then sent, retried and dead-lettered by
 * mail out as every mail is (src/domains/mail-out/delivery.ts). From the department's sender and
 * reply-from address (else the help desk's); sent only where an SMTP server is known for the
 * department, as customer mail is. The text is ours, not a template: the ticket's subject is the
 * customer's and goes in as text (escaped in the HTML part). It carries Auto-Submitted, so a copy
 * that comes back through a support mailbox never opens a ticket, no threading headers, and mail
 * in ignores replies to it. Never to one of our own addresses (a mail loop).
 */
export function emailChannel(deps: EmailChannelDeps): NotificationChannel {
  return {
    name: 'email',
    async deliver(trx, deliveries) {
      const wanted = deliveries.filter((d) => d.email !== null);
      if (wanted.length === 0) return;
      const numbers = new Map(
        (
          await trx
            .selectFrom('tickets')
            .select(['id', 'number'])
            .where('id', 'in', [...new Set(wanted.map((d) => d.notification.ticket_id))])
            .execute()
        ).map((t) => [t.id, t.number]),
      );
      // An event keeps the department the ticket had then, which may have been deleted since
      // (its tickets moved on): mail_outbox.department_id references departments, so such a mail
      // is the help desk's, or the insert would fail the consumer's batch on every retry.
      const eventDepartments = [
        ...new Set(
          wanted.flatMap((d) => (d.notification.department_id ? [d.notification.department_id] : [])),
        ),
      ];
      const existing = new Set(
        eventDepartments.length === 0
          ? []
          : (
              await trx.selectFrom('departments').select('id').where('id', 'in', eventDepartments).execute()
            ).map((d) => d.id),
      );
      // Per department, once per batch: whether it can send, and as whom.
      const senders = new Map<
        string,
        Promise<{ name: string; department: string; address: string } | null>
      >();
      const senderOf = (departmentId: string | null) => {
        const key = departmentId ?? '';
        let sender = senders.get(key);
        if (!sender) {
          sender = (async () => {
            const smtp =
              deps.config.smtpUrl !== undefined ||
              (departmentId !== null && (await smtpSettingsOfDepartment(trx, departmentId)) !== undefined);
            if (!smtp) return null;
            const identity = await effectiveIdentity(trx, departmentId);
            const address = identity.fromAddress ?? deps.config.from ?? null;
            if (address === null) {
              deps.log?.warn(
                { department: departmentId },
                'notifications: no sender address for email; give the department a reply-from address or set MAIL_FROM',
              );
              return null;
            }
            return { name: identity.senderName, department: identity.departmentName, address };
          })();
          senders.set(key, sender);
        }
        return sender;
      };
      const ours = await ourAddresses(
        trx,
        wanted.flatMap((d) => (d.email === null ? [] : [d.email])),
        deps.config.from,
      );
      const rows = [];
      for (const { notification: n, email } of wanted) {
        const number = numbers.get(n.ticket_id);
        const departmentId =
          n.department_id !== null && existing.has(n.department_id) ? n.department_id : null;
        const sender = await senderOf(departmentId);
        if (number === undefined || sender === null || email === null) continue;
        if (ours.has(email)) {
          deps.log?.warn(
            { agent: n.agent_id },
            'notifications: an agent’s address is one of ours; not mailed',
          );
          continue;
        }
        const headline = HEADLINES[n.kind](sender.department);
        const text = [
          `${headline}.`,
          '',
          `Ticket #${number}: ${n.subject}`,
          `Department: ${sender.department}`,
          `Ticket id: ${n.ticket_id}`,
          '',
          `You get this mail because email notifications of this kind (${n.kind}) are on for you in ${sender.department}; PUT /v1/me/notification-preferences turns them off. Replies to this mail are not read.`,
        ].join('\n');
        rows.push({
          kind: 'notification' as const,
          ticket_id: n.ticket_id,
          message_id: null,
          department_id: departmentId,
          to_address: email,
          from_name: sender.name,
          from_address: sender.address,
          subject: `[${sender.department}] ${headline}: #${number} ${n.subject}`,
          text_body: text,
          html_body: `<p>${textToHtml(text)}</p>`,
          headers: JSON.stringify({ 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All' }),
          mail_message_id: `${randomUUID()}@${sender.address.split('@').pop()?.toLowerCase() ?? 'deskroute.invalid'}`,
          state: 'queued' as const,
        });
      }
      if (rows.length === 0) return;
      // A statement takes at most 65,535 parameters (13 a row here): a batch of 200 events to a
      // department of 30 would pass it and fail the consumer's batch on every retry.
      const inserted: { id: string }[] = [];
      for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
        inserted.push(
          ...(await trx
            .insertInto('mail_outbox')
            .values(rows.slice(i, i + INSERT_CHUNK))
            .returning('id')
            .execute()),
        );
      }
      await enqueueMails(deps.queue, trx, inserted);
    },
  };
}

/** The channels the consumer delivers to: the inbox, and email when mail is configured here. */
export function notificationChannels(mail: EmailChannelDeps | undefined): readonly NotificationChannel[] {
  return mail ? [inboxChannel, emailChannel(mail)] : [inboxChannel];
}
