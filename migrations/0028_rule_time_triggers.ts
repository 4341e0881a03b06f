import { type Kysely, sql } from 'kysely';

// Time-based rule triggers (issue 14): sla.warning and sla.breached need nothing stored, but
// ticket.idle does. Frozen once run.
// - automation_rules.idle: the ticket.idle rule's parameter ({minutes, business}), null otherwise.
//   Versions keep it inside their definition jsonb.
// - tickets.last_activity_at: the last write of the ticket that counts as activity (a message, a
//   change by an agent, a contact or an integration, a postponed ticket waking up; not what rules
//   or the SLA clock do). Existing tickets start from their updated_at, the nearest thing known.
//   The partial index serves the idle sweeper: live tickets by how long they have been quiet.
// - idle_rule_firings: for each (rule, ticket), the activity instant the rule last ran for. The
//   sweeper claims a firing with an upsert that only moves this instant forward, so a rule runs
//   once per idle period whatever the number of sweeping processes; new activity moves the
//   ticket's instant past it, which makes the rule due again.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table automation_rules add column idle jsonb`.execute(db);

  await sql`alter table tickets add column last_activity_at timestamptz(3)`.execute(db);
  await sql`update tickets set last_activity_at = updated_at`.execute(db);
  await sql`alter table tickets
    alter column last_activity_at set default deskroute_now(),
    alter column last_activity_at set not null`.execute(db);
  await sql`create index tickets_idle_idx on tickets (last_activity_at, id)
    where status in ('new', 'open', 'answered')`.execute(db);

  await sql`
    create table idle_rule_firings (
      rule_id uuid not null references automation_rules (id) on delete cascade,
      ticket_id uuid not null references tickets (id) on delete cascade,
      activity_at timestamptz(3) not null,
      fired_at timestamptz(3) not null default deskroute_now(),
      primary key (rule_id, ticket_id)
    )`.execute(db);
  await sql`create index idle_rule_firings_ticket_idx on idle_rule_firings (ticket_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table idle_rule_firings`.execute(db);
  await sql`drop index tickets_idle_idx`.execute(db);
  await sql`alter table tickets drop column last_activity_at`.execute(db);
  await sql`alter table automation_rules drop column idle`.execute(db);
}
