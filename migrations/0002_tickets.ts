import { type Kysely, sql } from 'kysely';

// Contacts, tickets and everything that happens to them. Frozen once run anywhere.
//
// Every change to a ticket is an append-only row in ticket_events, stamped with the department
// and assignee the ticket had at that moment: history, automation rules and reports all read it.
export async function up(db: Kysely<any>): Promise<void> {
  const ts = sql`timestamptz(3)`;

  await db.schema
    .createTable('contact_fields')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('key', 'text', (c) => c.notNull().unique())
    .addColumn('label', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) =>
      c.notNull().check(sql`type in ('text', 'number', 'date', 'boolean', 'choice')`),
    )
    .addColumn('options', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('contacts')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('custom_fields', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index contacts_name_idx on contacts (lower(name), id)`.execute(db);

  await db.schema
    .createTable('contact_emails')
    .addColumn('contact_id', 'uuid', (c) => c.notNull().references('contacts.id').onDelete('cascade'))
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('position', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`create unique index contact_emails_email_key on contact_emails (lower(email))`.execute(db);
  await db.schema
    .createIndex('contact_emails_contact_idx')
    .on('contact_emails')
    .column('contact_id')
    .execute();

  await db.schema
    .createTable('contact_phones')
    .addColumn('contact_id', 'uuid', (c) => c.notNull().references('contacts.id').onDelete('cascade'))
    .addColumn('phone', 'text', (c) => c.notNull().unique())
    .addColumn('position', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .createIndex('contact_phones_contact_idx')
    .on('contact_phones')
    .column('contact_id')
    .execute();

  await sql`create sequence ticket_number_seq start with 1001`.execute(db);

  await db.schema
    .createTable('tickets')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('number', 'bigint', (c) => c.notNull().unique().defaultTo(sql`nextval('ticket_number_seq')`))
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('channel', 'text', (c) =>
      c
        .notNull()
        .check(
          sql`channel in ('email', 'contact_form', 'chat', 'call', 'facebook', 'twitter', 'instagram', 'viber', 'whatsapp', 'api')`,
        ),
    )
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .check(sql`status in ('new', 'open', 'answered', 'postponed', 'resolved', 'spam', 'deleted')`),
    )
    .addColumn('priority', 'text', (c) =>
      c.notNull().check(sql`priority in ('low', 'normal', 'high', 'urgent')`),
    )
    .addColumn('priority_rank', 'smallint', (c) =>
      c
        .generatedAlwaysAs(
          sql`case priority when 'urgent' then 4 when 'high' then 3 when 'normal' then 2 else 1 end`,
        )
        .stored(),
    )
    .addColumn('department_id', 'uuid', (c) => c.references('departments.id'))
    .addColumn('assignee_id', 'uuid', (c) => c.references('agents.id'))
    .addColumn('contact_id', 'uuid', (c) => c.notNull().references('contacts.id'))
    .addColumn('tags', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('support_address', 'text')
    .addColumn('postponed_until', ts)
    .addColumn('status_before_delete', 'text')
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('first_answered_at', ts)
    .addColumn('last_customer_message_at', ts)
    .addColumn('last_agent_message_at', ts)
    .addColumn('resolved_at', ts)
    // When the ticket began to wait for an agent: what the to-solve queue and SLAs order by.
    .addColumn('waiting_since', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('search', sql`tsvector`, (c) => c.notNull().defaultTo(sql`''::tsvector`))
    .execute();
  // Lists: the visible set narrowed by department (or assignee) and status, newest first.
  await sql`create index tickets_department_status_created_idx on tickets (department_id, status, created_at desc, id desc)`.execute(
    db,
  );
  await sql`create index tickets_department_created_idx on tickets (department_id, created_at desc, id desc)`.execute(
    db,
  );
  await sql`create index tickets_assignee_status_created_idx on tickets (assignee_id, status, created_at desc, id desc)`.execute(
    db,
  );
  await sql`create index tickets_created_idx on tickets (created_at desc, id desc)`.execute(db);
  await sql`create index tickets_updated_idx on tickets (updated_at desc, id desc)`.execute(db);
  await sql`create index tickets_contact_idx on tickets (contact_id, created_at desc)`.execute(db);
  await sql`create index tickets_tags_idx on tickets using gin (tags)`.execute(db);
  await sql`create index tickets_search_idx on tickets using gin (search)`.execute(db);
  // The to-solve queue: waiting tickets of a department, by priority then age.
  await sql`create index tickets_queue_idx on tickets (department_id, priority_rank desc, waiting_since, id)
    where status in ('new', 'open')`.execute(db);
  await sql`create index tickets_postponed_idx on tickets (postponed_until) where status = 'postponed'`.execute(
    db,
  );

  await db.schema
    .createTable('ticket_messages')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('ticket_id', 'uuid', (c) => c.notNull().references('tickets.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('customer', 'agent', 'note')`))
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('author_agent_id', 'uuid', (c) => c.references('agents.id'))
    .addColumn('author_contact_id', 'uuid', (c) => c.references('contacts.id'))
    .addColumn('chat_id', 'uuid')
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('department_id', 'uuid')
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('ticket_messages_ticket_idx')
    .on('ticket_messages')
    .columns(['ticket_id', 'created_at', 'id'])
    .execute();

  await db.schema
    .createTable('ticket_events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('ticket_id', 'uuid', (c) => c.notNull().references('tickets.id').onDelete('cascade'))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) =>
      c.notNull().check(sql`actor_type in ('agent', 'contact', 'rule', 'system')`),
    )
    .addColumn('actor_agent_id', 'uuid')
    .addColumn('actor_contact_id', 'uuid')
    .addColumn('actor_rule_id', 'uuid')
    .addColumn('actor_rule_version', 'integer')
    .addColumn('via_token_id', 'uuid')
    // Owner of the ticket when the event happened: reports credit this department and agent.
    .addColumn('department_id', 'uuid')
    .addColumn('agent_id', 'uuid')
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('data', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('occurred_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('ticket_events_ticket_idx')
    .on('ticket_events')
    .columns(['ticket_id', 'id'])
    .execute();
  await db.schema
    .createIndex('ticket_events_occurred_idx')
    .on('ticket_events')
    .columns(['occurred_at'])
    .execute();

  await db.schema
    .createTable('calls')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('ticket_id', 'uuid', (c) => c.notNull().references('tickets.id').onDelete('cascade'))
    .addColumn('external_id', 'text', (c) => c.unique())
    .addColumn('direction', 'text', (c) => c.notNull().check(sql`direction in ('inbound', 'outbound')`))
    .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('answered', 'missed')`))
    .addColumn('agent_id', 'uuid', (c) => c.references('agents.id'))
    .addColumn('department_id', 'uuid')
    .addColumn('from_number', 'text')
    .addColumn('to_number', 'text')
    .addColumn('started_at', ts, (c) => c.notNull())
    .addColumn('answered_at', ts)
    .addColumn('ended_at', ts)
    .addColumn('duration_seconds', 'integer', (c) =>
      c.notNull().defaultTo(0).check(sql`duration_seconds >= 0`),
    )
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('calls_ticket_idx').on('calls').columns(['ticket_id', 'started_at']).execute();

  await db.schema
    .createTable('chats')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('ticket_id', 'uuid', (c) => c.notNull().references('tickets.id').onDelete('cascade'))
    .addColumn('external_id', 'text', (c) => c.unique())
    .addColumn('agent_id', 'uuid', (c) => c.references('agents.id'))
    .addColumn('department_id', 'uuid')
    .addColumn('started_at', ts, (c) => c.notNull())
    .addColumn('picked_up_at', ts)
    .addColumn('missed', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('ended_at', ts)
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('chats_ticket_idx').on('chats').columns(['ticket_id', 'started_at']).execute();

  await db.schema
    .createTable('ratings')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('ticket_id', 'uuid', (c) => c.notNull().references('tickets.id').onDelete('cascade'))
    .addColumn('message_id', 'uuid', (c) => c.references('ticket_messages.id').onDelete('set null'))
    .addColumn('agent_id', 'uuid', (c) => c.references('agents.id'))
    .addColumn('department_id', 'uuid')
    .addColumn('value', 'text', (c) => c.notNull().check(sql`value in ('positive', 'negative')`))
    .addColumn('comment', 'text')
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('ratings_ticket_idx')
    .on('ratings')
    .columns(['ticket_id', 'created_at'])
    .execute();

  // Idempotency-Key replays: the first response to a key is kept and returned to every retry.
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('request_hash', 'text', (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('response', 'jsonb')
    .addColumn('created_at', ts, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['scope', 'key'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'idempotency_keys',
    'ratings',
    'chats',
    'calls',
    'ticket_events',
    'ticket_messages',
    'tickets',
    'contact_phones',
    'contact_emails',
    'contacts',
    'contact_fields',
  ]) {
    await db.schema.dropTable(table).execute();
  }
  await sql`drop sequence ticket_number_seq`.execute(db);
}
