import { type Kysely, sql } from 'kysely';

// Department notifications by email (issue 13): agents choose the inbox and email separately,
// per department and kind, so preferences and department defaults gain a channel (existing rows
// are the inbox's). A notification mailed is a mail_outbox row of kind 'notification', sent,
// retried and dead-lettered as every other mail. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  for (const [table, key] of [
    ['notification_preferences', 'agent_id, department_id, kind'],
    ['notification_defaults', 'department_id, kind'],
  ] as const) {
    await sql`alter table ${sql.table(table)}
      add column channel text not null default 'inbox' check (channel in ('inbox', 'email'))`.execute(db);
    await sql`alter table ${sql.table(table)} drop constraint ${sql.id(`${table}_pkey`)}`.execute(db);
    await sql`alter table ${sql.table(table)} add primary key (${sql.raw(key)}, channel)`.execute(db);
  }
  await sql`alter table mail_outbox drop constraint mail_outbox_kind_check`.execute(db);
  await sql`alter table mail_outbox add constraint mail_outbox_kind_check
    check (kind in ('acknowledgement', 'agent_reply', 'outside_hours', 'transfer_notice',
      'resolved_notice', 'csat_survey', 'notification'))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`delete from mail_outbox where kind = 'notification'`.execute(db);
  await sql`alter table mail_outbox drop constraint mail_outbox_kind_check`.execute(db);
  await sql`alter table mail_outbox add constraint mail_outbox_kind_check
    check (kind in ('acknowledgement', 'agent_reply', 'outside_hours', 'transfer_notice',
      'resolved_notice', 'csat_survey'))`.execute(db);
  for (const [table, key] of [
    ['notification_preferences', 'agent_id, department_id, kind'],
    ['notification_defaults', 'department_id, kind'],
  ] as const) {
    await sql`delete from ${sql.table(table)} where channel <> 'inbox'`.execute(db);
    await sql`alter table ${sql.table(table)} drop constraint ${sql.id(`${table}_pkey`)}`.execute(db);
    await sql`alter table ${sql.table(table)} add primary key (${sql.raw(key)})`.execute(db);
    await sql`alter table ${sql.table(table)} drop column channel`.execute(db);
  }
}
