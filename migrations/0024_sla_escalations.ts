import { type Kysely, sql } from 'kysely';

// SLA escalations (issue 14): what a warning or breach under a policy does besides being
// recorded (hand the ticket to the next tier or to a supervisor, tell the supervisors), as jsonb
// on the policy like its targets; [] for policies written before. Notifications gain the kind
// `sla_escalated`, which tells the agents an escalation reached. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table sla_policies add column escalations jsonb not null default '[]'`.execute(db);
  await sql`
    alter table notifications
      drop constraint notifications_kind_check,
      add constraint notifications_kind_check check (kind in ('ticket_created', 'customer_replied',
        'ticket_assigned', 'ticket_transferred', 'mentioned', 'sla_escalated'))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`delete from notifications where kind = 'sla_escalated'`.execute(db);
  await sql`
    alter table notifications
      drop constraint notifications_kind_check,
      add constraint notifications_kind_check check (kind in ('ticket_created', 'customer_replied',
        'ticket_assigned', 'ticket_transferred', 'mentioned'))`.execute(db);
  await sql`alter table sla_policies drop column escalations`.execute(db);
}
