import type { Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import { insertNotifications, type NewNotification } from './repository.ts';

/**
 * Where a notification goes once the consumer has decided who gets it. Each channel runs inside
 * the consumer's transaction, the one that also advances its feed cursor, so what it writes
 * commits exactly once per event or not at all.
 *
 * The in-app inbox is the only channel today (live streams pick its rows up as
 * `event: notification`). Agents get no notification by email yet, although outbound email
 * (src/domains/mail-out) exists: it would plug in here as an `emailChannel` whose deliver()
 * enqueues one job per notification on the PostgreSQL job queue (src/jobs/) in this same
 * transaction (never sending from inside it), with a `channel` column added to
 * notification_preferences so agents choose inbox and email separately.
 */
export interface NotificationChannel {
  readonly name: string;
  deliver(trx: Transaction<Database>, notifications: readonly NewNotification[]): Promise<void>;
}

export const inboxChannel: NotificationChannel = {
  name: 'inbox',
  deliver: (trx, notifications) => insertNotifications(trx, [...notifications]),
};

export const CHANNELS: readonly NotificationChannel[] = [inboxChannel];
