import { type Kysely, sql } from 'kysely';

// Automation rules, their immutable versions, and what they did to tickets. Frozen once run
// anywhere; docs/rules.md describes the engine, src/domains/automation-rules/ the rest.
//
// - automation_rules holds the current definition of each rule. Conditions and actions are the
//   rule engine's JSON, validated when written (validateRule), never by the database.
// - automation_rule_versions keeps every definition a rule ever had (created, updated,
//   reordered, deleted), with the rule-set version it became part of. No foreign key: versions
//   outlive the rule, so a ticket's history can always name the version that acted.
// - automation_rules_state is one row whose rules_version grows with every change to any rule,
//   in the same transaction (with a fresh random rules_key, the key of each instance's
//   compiled-rules cache), and the way back to the exact rule set a past evaluation saw: the
//   latest version of each rule at or below it.
// - rule_runs records each evaluation that considered at least one rule: what the rules saw
//   (enough to replay the evaluation exactly), which rules acted and what was applied.
// - round_robin_cursors remembers, per department, who got the last round-robin ticket.
export async function up(db: Kysely<any>): Promise<void> {
  const ts = sql`timestamptz(3)`;

  await db.schema
    .createTable('automation_rules')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('note', 'text')
    .addColumn('active', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('stop_processing', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('triggers', sql`text[]`, (c) => c.notNull())
    .addColumn('conditions', 'jsonb', (c) => c.notNull())
    .addColumn('actions', 'jsonb', (c) => c.notNull())
    // The owning department: its managers edit the rule; deleting it is blocked while it owns rules.
    .addColumn('department_id', 'uuid', (c) => c.references('departments.id'))
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    // Agents who wrote the rule; not foreign keys, so authorship never blocks deleting an agent.
    .addColumn('created_by', 'uuid')
    .addColumn('updated_by', 'uuid')
    .execute();
  await sql`create index automation_rules_position_idx on automation_rules (position, id)`.execute(db);
  await sql`create index automation_rules_department_idx on automation_rules (department_id)`.execute(db);

  await db.schema
    .createTable('automation_rule_versions')
    .addColumn('rule_id', 'uuid', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('rules_version', 'bigint', (c) => c.notNull())
    .addColumn('definition', 'jsonb', (c) => c.notNull())
    .addColumn('change', 'text', (c) =>
      c.notNull().check(sql`change in ('created', 'updated', 'reordered', 'deleted')`),
    )
    .addColumn('changed_by', 'uuid')
    .addColumn('changed_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('automation_rule_versions_pkey', ['rule_id', 'version'])
    .execute();
  // The rule set as of a rules_version: the latest version of each rule at or below it.
  await sql`create index automation_rule_versions_rules_version_idx on automation_rule_versions (rules_version)`.execute(
    db,
  );

  await db.schema
    .createTable('automation_rules_state')
    .addColumn('id', 'boolean', (c) => c.primaryKey().defaultTo(true).check(sql`id`))
    .addColumn('rules_version', 'bigint', (c) => c.notNull().defaultTo(0))
    // Renewed with every change: caches key on it, since databases copied from one template
    // (or several databases in one process) share version numbers but not these.
    .addColumn('rules_key', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .execute();
  await sql`insert into automation_rules_state (id, rules_version) values (true, 0)`.execute(db);

  await db.schema
    .createTable('rule_runs')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('ticket_id', 'uuid', (c) => c.notNull().references('tickets.id').onDelete('cascade'))
    .addColumn('event_types', sql`text[]`, (c) => c.notNull())
    .addColumn('rules_version', 'bigint', (c) => c.notNull())
    // The ticket snapshot, previous values and triggering message id the rules saw.
    .addColumn('input', 'jsonb', (c) => c.notNull())
    // Compact: only the rules that matched, with what each action did.
    .addColumn('trace', 'jsonb', (c) => c.notNull())
    // What was applied, with assignment intents resolved to the agent chosen.
    .addColumn('effects', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('rule_runs_ticket_idx').on('rule_runs').columns(['ticket_id', 'id']).execute();

  await db.schema
    .createTable('round_robin_cursors')
    .addColumn('department_id', 'uuid', (c) =>
      c.primaryKey().references('departments.id').onDelete('cascade'),
    )
    .addColumn('last_agent_id', 'uuid')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'round_robin_cursors',
    'rule_runs',
    'automation_rules_state',
    'automation_rule_versions',
    'automation_rules',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
