// Loading benchmark data as a bulk import would: without the table's indexes, built again after.
import type pg from 'pg';

/**
 * Drops the indexes of `table` (those behind constraints stay), runs `load`, then builds them
 * again: one sort per index instead of an index update per row. Returns how many were rebuilt.
 */
export async function withoutIndexes(client: pg.Client, table: string, load: () => Promise<void>) {
  const indexes = (
    await client.query(
      `select i.indexname, i.indexdef from pg_indexes i
       where i.tablename = $1 and i.indexname not in (select conname from pg_constraint where conrelid = $1::regclass)`,
      [table],
    )
  ).rows as { indexname: string; indexdef: string }[];
  for (const index of indexes) await client.query(`drop index ${index.indexname}`);
  await load();
  for (const index of indexes) await client.query(index.indexdef);
  return indexes.length;
}

const AGENTS_PER_DEPARTMENT = 3;
const CONTACTS = 5000;

/**
 * Benchmark tickets straight in SQL (bench:tickets and bench:views load 1M): departments of very different sizes (5 % in none), statuses
 * that depend on age (recent tickets are still new or open, old ones resolved), a year of
 * created_at growing towards now, a quarter unassigned, 5000 contacts, 3 solvers per department. The list indexes are
 * dropped during the load and rebuilt after, as a bulk import would.
 */
export async function loadBenchTickets(
  client: pg.Client,
  options: { tickets: number; departments: number; log: (line: string) => void },
): Promise<{ departments: string[]; agents: string[] }> {
  const { tickets: TICKETS, departments: DEPARTMENTS, log: out } = options;
  const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;
  const started = performance.now();
  const departments = (
    await client.query(
      `insert into departments (name) select 'Department ' || lpad(g::text, 2, '0') from generate_series(1, ${DEPARTMENTS}) g returning id, name`,
    )
  ).rows
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((r) => r.id as string);
  const agents = (
    await client.query(
      `insert into agents (name, email, role) select 'Agent ' || g, 'agent-' || g || '@bench.example', 'agent'
       from generate_series(1, ${DEPARTMENTS * AGENTS_PER_DEPARTMENT}) g returning id, email`,
    )
  ).rows
    .sort((a, b) => Number(a.email.split(/[-@]/)[1]) - Number(b.email.split(/[-@]/)[1]))
    .map((r) => r.id as string);
  await client.query(
    `insert into department_members (department_id, agent_id, role)
     select ($1::uuid[])[(g - 1) / ${AGENTS_PER_DEPARTMENT} + 1], ($2::uuid[])[g], 'solver'
     from generate_series(1, ${DEPARTMENTS * AGENTS_PER_DEPARTMENT}) g`,
    [departments, agents],
  );
  const contacts = (
    await client.query(
      `insert into contacts (name) select 'Customer ' || g from generate_series(1, ${CONTACTS}) g returning id`,
    )
  ).rows.map((r) => r.id as string);
  await client.query(
    `insert into contact_emails (contact_id, email) select c, 'customer-' || ordinality || '@bench.example'
     from unnest($1::uuid[]) with ordinality c`,
    [contacts],
  );

  const rebuilt = await withoutIndexes(client, 'tickets', async () => {
    const chunk = 250_000;
    for (let from = 0; from < TICKETS; from += chunk) {
      const to = Math.min(TICKETS, from + chunk);
      await client.query(
        `insert into tickets (subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
         created_at, updated_at, first_answered_at, last_customer_message_at, last_agent_message_at,
         resolved_at, waiting_since, postponed_until, search)
       select subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
         created_at, updated_at,
         case when status <> 'new' then least(created_at + interval '4 hours' * random(), now()) end,
         created_at,
         case when status <> 'new' then updated_at end,
         case when status = 'resolved' then updated_at end,
         case when status = 'open' then updated_at else created_at end,
         case when status = 'postponed' then now() + interval '1 day' * (1 + random() * 10) end,
         to_tsvector('simple', subject)
       from (
         select *,
           case
             when age < interval '3 days' then
               case when rs < 0.35 then 'new' when rs < 0.6 then 'open' when rs < 0.85 then 'answered'
                    when rs < 0.9 then 'postponed' else 'resolved' end
             when age < interval '30 days' then
               case when rs < 0.03 then 'new' when rs < 0.10 then 'open' when rs < 0.30 then 'answered'
                    when rs < 0.33 then 'postponed' when rs < 0.97 then 'resolved' else 'spam' end
             else
               case when rs < 0.003 then 'open' when rs < 0.03 then 'answered' when rs < 0.95 then 'resolved'
                    when rs < 0.99 then 'spam' else 'deleted' end
           end as status,
           least(created_at + least(age, interval '7 days') * random(), now()) as updated_at
         from (
           select
             'Order #' || (100000 + g) || ' ' || (array['delivery', 'refund', 'invoice', 'exchange', 'question'])[1 + g % 5] as subject,
             (array['email','email','email','chat','chat','call','contact_form','whatsapp','facebook','api'])[1 + floor(random() * 10)::int] as channel,
             (array['low','normal','normal','normal','normal','normal','normal','high','high','urgent'])[1 + floor(random() * 10)::int] as priority,
             d,
             ($1::uuid[])[d + 1] as department_id,
             case when d is null or random() < 0.25 then null
                  else ($2::uuid[])[d * ${AGENTS_PER_DEPARTMENT} + 1 + floor(random() * ${AGENTS_PER_DEPARTMENT})::int] end as assignee_id,
             ($3::uuid[])[1 + floor(random() * ${CONTACTS})::int] as contact_id,
             case when random() < 0.3 then '{order}'::text[] when random() < 0.07 then '{vip,order}'::text[] else '{}'::text[] end as tags,
             created_at,
             now() - created_at as age,
             random() as rs
           from (
             select g,
               case when random() < 0.05 then null else least(${DEPARTMENTS - 1}, floor(power(random(), 1.7) * ${DEPARTMENTS}))::int end as d,
               now() - interval '365 days' * (1 - sqrt(random())) as created_at
             from generate_series(${from + 1}, ${to}) g
           ) a
         ) b
       ) c`,
        [departments, agents, contacts],
      );
      out(`  loaded ${to} tickets (${seconds(started)})`);
    }
  });
  out(`  rebuilt ${rebuilt} indexes (${seconds(started)})`);
  // As after any bulk import: statistics and the visibility map, and no autovacuum running
  // through the table during the measurements.
  await client.query('vacuum (analyze) tickets');
  await client.query('analyze');
  out(`  vacuumed and analyzed (${seconds(started)})`);
  return { departments, agents };
}
