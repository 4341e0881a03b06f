import { type Kysely, sql } from 'kysely';

// Which policy list each ticket's SLA clock was last planned under (docs/sla.md "Timers"): the
// policies key of the plan, written with it. A live ticket planned under an older key is planned
// again by the SLA timer, so a policy change reaches running tickets without its own transaction
// locking them (which emptied the to-solve queue while it ran, and missed tickets created while
// it committed).
//
// To find them with one range scan, keys now grow: each is made from a sequence (policy writes
// take turns on sla_policies_state, so keys grow in commit order), and "planned while no policy
// was active" is the nil uuid, below every key. The current key is renewed here into that form.
// Every live ticket starts out below it and is planned once. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create sequence sla_policies_key_seq`.execute(db);
  await sql`alter table tickets
    add column sla_planned_key uuid not null default '00000000-0000-0000-0000-000000000000'`.execute(db);
  await sql`create index tickets_sla_planned_idx on tickets (sla_planned_key)
    where status in ('new', 'open', 'answered', 'postponed')`.execute(db);
  await sql`update sla_policies_state
    set policies_key = ('00000000-0000-4000-8000-' || lpad(to_hex(nextval('sla_policies_key_seq')), 12, '0'))::uuid
    where policies_key is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tickets_sla_planned_idx`.execute(db);
  await sql`alter table tickets drop column sla_planned_key`.execute(db);
  await sql`drop sequence sla_policies_key_seq`.execute(db);
}
