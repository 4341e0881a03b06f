// Floor probes for bench:import: not the importer, but the least a replay of the bench's history
// must write on this schema, to tell what the importer's design costs from what the work costs
// (as bench:tickets' floor probes do for a creation). Each probe writes the history the importer
// writes for the bench's file (import.ts, generate()): per ticket its row, 5 messages and the 14
// events the replay records (created; the customer's message; assigned; the reply and the status
// it sets; the customer's message and the reopening; transferred and the unassignment it makes;
// assigned; the note; the reply and the status it sets; resolved), at the file's times, with the
// event data the reports read. The file's "answered" status record, which the reply before it
// already made, writes nothing. Fresh tickets of a database migrated to the latest schema: the
// tickets' indexes, the report triggers and the foreign keys do their work. No parsing,
// validation, look-ups of external ids, import keys, locks, access checks, rules or report
// folding.
//
//   per record:       one prepared statement per record (the row change, its message, its
//                     events), 200 records to a transaction as the importer batches them, on one
//                     connection: what replaying record by record costs, at best.
//   per record x 2:   the same on two connections at once, each with every other batch (disjoint
//                     tickets): the most parallel lanes could add on this machine.
//   set-based:        one statement per 200 records (20 tickets), writing each ticket once in its
//                     final state with all its messages and events: what replaying a batch as a
//                     set could reach.

import { randomUUID } from 'node:crypto';
import pg from 'pg';

const RECORDS_PER_TICKET = 10;
const TICKETS_PER_BATCH = 20;
const DEPARTMENTS = 5;
const AGENTS = 10;

interface FloorMessage {
  id: string;
  kind: 'customer' | 'agent' | 'note';
  body: string;
  at: string;
  author_agent_id: string | null;
}

interface FloorEvent {
  type: string;
  actor_type: 'agent' | 'contact';
  actor_agent_id: string | null;
  /** The agent the event counts for (the ticket's assignee for a customer's message). */
  agent_id: string | null;
  department_id: string;
  data: Record<string, unknown>;
}

/** One record of a ticket's replay: the row's new values, what it adds, at its time. */
interface Step {
  kind: 'create' | 'change' | 'message' | 'none';
  at: string;
  status?: string;
  department_id?: string;
  /** Present when the record sets the assignee (null: unassigns). */
  assignee_id?: string | null;
  message?: FloorMessage;
  events: FloorEvent[];
}

interface FloorTicket {
  id: string;
  contact_id: string;
  subject: string;
  channel: string;
  priority: string;
  tags: string[];
  steps: Step[];
}

/** The bench file's history for ticket `i` (import.ts, generate()), as the replay writes it. */
function history(
  i: number,
  start: number,
  stepMs: number,
  agents: string[],
  departments: string[],
  contacts: string[],
): FloorTicket {
  const base = start + i * stepMs;
  const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString();
  const d = departments[i % DEPARTMENTS]!;
  const d2 = departments[(i + 1) % DEPARTMENTS]!;
  const a1 = agents[i % DEPARTMENTS]!;
  const a2 = agents[((i + 1) % DEPARTMENTS) + DEPARTMENTS]!;
  const subject = `Where is my order #${100000 + i}?`;
  const priority = i % 10 === 0 ? 'high' : 'normal';
  const tags = i % 4 === 0 ? ['order'] : [];
  const byAgent = (
    type: string,
    agent: string,
    department: string,
    data: Record<string, unknown>,
    counts: string | null = agent,
  ) =>
    ({
      type,
      actor_type: 'agent',
      actor_agent_id: agent,
      agent_id: counts,
      department_id: department,
      data,
    }) as const;
  const byContact = (
    type: string,
    assignee: string | null,
    department: string,
    data: Record<string, unknown>,
  ) =>
    ({
      type,
      actor_type: 'contact',
      actor_agent_id: null,
      agent_id: assignee,
      department_id: department,
      data,
    }) as const;
  const message = (kind: FloorMessage['kind'], body: string, minutes: number, author: string | null) => ({
    id: randomUUID(),
    kind,
    body,
    at: at(minutes),
    author_agent_id: author,
  });
  const first = message(
    'customer',
    'Hello, my parcel has not arrived yet. Could you check the tracking, please?',
    0,
    null,
  );
  const reply1 = message('agent', 'Checking with the carrier.', 30, a1);
  const customer = message('customer', 'Any news?', 240, null);
  const note = message('note', 'Lost in transit; resend.', 360, a2);
  const reply2 = message('agent', 'We sent a new parcel.', 365, a2);
  const added = (m: FloorMessage, extra: Record<string, unknown> = {}) => ({
    kind: m.kind,
    message_id: m.id,
    ...extra,
  });
  return {
    id: randomUUID(),
    contact_id: contacts[i % contacts.length]!,
    subject,
    channel: i % 3 === 0 ? 'chat' : 'email',
    priority,
    tags,
    steps: [
      {
        kind: 'create',
        at: at(0),
        status: 'new',
        department_id: d,
        message: first,
        events: [
          byContact('created', null, d, { tags, status: 'new', subject, priority, department_id: d }),
          byContact('message_added', null, d, added(first)),
        ],
      },
      {
        kind: 'change',
        at: at(5),
        assignee_id: a1,
        events: [byAgent('assigned', a1, d, { from: null, to: a1 })],
      },
      {
        kind: 'message',
        at: at(30),
        status: 'answered',
        message: reply1,
        events: [
          byAgent(
            'message_added',
            a1,
            d,
            added(reply1, { first_answer: true, wait_seconds: 1800, wait_business_seconds: 1800 }),
          ),
          byAgent('status_changed', a1, d, { from: 'new', to: 'answered' }),
        ],
      },
      // The file's "answered" status record: the reply made it already.
      { kind: 'none', at: at(30), events: [] },
      {
        kind: 'message',
        at: at(240),
        status: 'open',
        message: customer,
        events: [
          byContact('message_added', a1, d, added(customer)),
          byContact('status_changed', a1, d, { from: 'answered', to: 'open' }),
        ],
      },
      {
        kind: 'change',
        at: at(300),
        department_id: d2,
        assignee_id: null,
        events: [
          byAgent('transferred', a1, d2, { from_department_id: d, to_department_id: d2 }, null),
          byAgent('assigned', a1, d2, { from: a1, to: null }, null),
        ],
      },
      {
        kind: 'change',
        at: at(301),
        assignee_id: a2,
        events: [byAgent('assigned', a2, d2, { from: null, to: a2 })],
      },
      {
        kind: 'message',
        at: at(360),
        message: note,
        events: [byAgent('message_added', a2, d2, added(note))],
      },
      {
        kind: 'message',
        at: at(365),
        status: 'answered',
        message: reply2,
        events: [
          byAgent(
            'message_added',
            a2,
            d2,
            added(reply2, { first_answer: false, wait_seconds: 7500, wait_business_seconds: 7500 }),
          ),
          byAgent('status_changed', a2, d2, { from: 'open', to: 'answered' }),
        ],
      },
      {
        kind: 'change',
        at: at(1440),
        status: 'resolved',
        events: [
          byAgent('status_changed', a2, d2, {
            from: 'answered',
            to: 'resolved',
            first_resolution: true,
            resolution_seconds: 86400,
            resolution_business_seconds: 86400,
          }),
        ],
      },
    ],
  };
}

const EVENT_COLUMNS = `ticket_id, type, actor_type, actor_agent_id, actor_contact_id, agent_id, department_id, channel, data, occurred_at`;
/** A step's events as the jsonb the statements read ($n::jsonb). */
const eventsJson = (events: FloorEvent[]) => JSON.stringify(events.map((e, ord) => ({ ord, ...e })));
const EVENTS_FROM = (param: string) => `jsonb_to_recordset(${param}::jsonb) as x(ord int, type text,
  actor_type text, actor_agent_id uuid, agent_id uuid, department_id uuid, data jsonb)`;

// Per record: a statement per kind, prepared once per connection.
const CREATE = {
  name: 'import_floor_create',
  text: `
    with t as (
      insert into tickets (id, subject, channel, status, priority, department_id, contact_id, tags, search,
        created_at, updated_at, waiting_since, last_activity_at, last_customer_message_at)
      values ($1, $2, $3, 'new', $4, $5, $6, $7, to_tsvector('simple', $2 || ' ' || $9), $10, $10, $10, $10, $10)
      returning id, channel, contact_id
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_contact_id, body, department_id, created_at)
      select $8, t.id, 'customer', t.channel, t.contact_id, $9, $5, $10 from t
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, x.type, x.actor_type, x.actor_agent_id, t.contact_id, x.agent_id, x.department_id, t.channel, x.data, $10
    from t, ${EVENTS_FROM('$11')} order by x.ord`,
};
const CHANGE = {
  name: 'import_floor_change',
  text: `
    with t as (
      update tickets set
        assignee_id = case when $2 then $3::uuid else assignee_id end,
        department_id = coalesce($4, department_id),
        status = coalesce($5, status),
        resolved_at = case when $5 = 'resolved' then $6 else resolved_at end,
        first_resolved_at = case when $5 = 'resolved' then coalesce(first_resolved_at, $6) else first_resolved_at end,
        updated_at = $6, last_activity_at = $6, changed_at = now()
      where id = $1 returning id, channel, contact_id
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, x.type, x.actor_type, x.actor_agent_id, case when x.actor_type = 'contact' then t.contact_id end,
      x.agent_id, x.department_id, t.channel, x.data, $6
    from t, ${EVENTS_FROM('$7')} order by x.ord`,
};
const MESSAGE = {
  name: 'import_floor_message',
  text: `
    with t as (
      update tickets set status = coalesce($2, status), updated_at = $3, last_activity_at = $3, changed_at = now(),
        last_customer_message_at = case when $4 = 'customer' then $3 else last_customer_message_at end,
        last_agent_message_at = case when $4 = 'agent' then $3 else last_agent_message_at end,
        first_answered_at = case when $4 = 'agent' then coalesce(first_answered_at, $3) else first_answered_at end,
        waiting_since = case when $4 = 'customer' then $3 else waiting_since end,
        search = search || to_tsvector('simple', $5)
      where id = $1 returning id, channel, department_id, contact_id
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_agent_id, author_contact_id, body,
        department_id, created_at)
      select $6, t.id, $4, t.channel, $7, case when $7::uuid is null then t.contact_id end, $5, t.department_id, $3
      from t
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, x.type, x.actor_type, x.actor_agent_id, case when x.actor_type = 'contact' then t.contact_id end,
      x.agent_id, x.department_id, t.channel, x.data, $3
    from t, ${EVENTS_FROM('$8')} order by x.ord`,
};

async function perRecord(client: pg.Client, ticket: FloorTicket): Promise<void> {
  for (const step of ticket.steps) {
    switch (step.kind) {
      case 'create': {
        const m = step.message!;
        await client.query({
          ...CREATE,
          values: [
            ticket.id,
            ticket.subject,
            ticket.channel,
            ticket.priority,
            step.department_id,
            ticket.contact_id,
            ticket.tags,
            m.id,
            m.body,
            step.at,
            eventsJson(step.events),
          ],
        });
        break;
      }
      case 'change':
        await client.query({
          ...CHANGE,
          values: [
            ticket.id,
            step.assignee_id !== undefined,
            step.assignee_id ?? null,
            step.department_id ?? null,
            step.status ?? null,
            step.at,
            eventsJson(step.events),
          ],
        });
        break;
      case 'message': {
        const m = step.message!;
        await client.query({
          ...MESSAGE,
          values: [
            ticket.id,
            step.status ?? null,
            step.at,
            m.kind,
            m.body,
            m.id,
            m.author_agent_id,
            eventsJson(step.events),
          ],
        });
        break;
      }
      case 'none':
        break;
    }
  }
}

// Set-based: a batch's tickets in their final state, with all their messages and events.
const SET_BASED = {
  name: 'import_floor_set',
  text: `
    with t as (
      insert into tickets (id, subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
        search, created_at, updated_at, waiting_since, last_activity_at, first_answered_at,
        last_customer_message_at, last_agent_message_at, resolved_at, first_resolved_at)
      select id, subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
        to_tsvector('simple', words), created_at, updated_at, waiting_since, updated_at, first_answered_at,
        last_customer_message_at, last_agent_message_at, resolved_at, first_resolved_at
      from jsonb_to_recordset($1::jsonb) as x(id uuid, subject text, channel text, status text, priority text,
        department_id uuid, assignee_id uuid, contact_id uuid, tags text[], words text, created_at timestamptz,
        updated_at timestamptz, waiting_since timestamptz, first_answered_at timestamptz,
        last_customer_message_at timestamptz, last_agent_message_at timestamptz, resolved_at timestamptz,
        first_resolved_at timestamptz)
      returning id
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_agent_id, author_contact_id, body,
        department_id, created_at)
      select id, ticket_id, kind, channel, author_agent_id, author_contact_id, body, department_id, created_at
      from jsonb_to_recordset($2::jsonb) as x(id uuid, ticket_id uuid, kind text, channel text,
        author_agent_id uuid, author_contact_id uuid, body text, department_id uuid, created_at timestamptz)
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select ticket_id, type, actor_type, actor_agent_id, actor_contact_id, agent_id, department_id, channel, data,
      occurred_at
    from jsonb_to_recordset($3::jsonb) as x(ord int, ticket_id uuid, type text, actor_type text, actor_agent_id uuid,
      actor_contact_id uuid, agent_id uuid, department_id uuid, channel text, data jsonb, occurred_at timestamptz)
    order by ord`,
};

async function setBased(client: pg.Client, tickets: FloorTicket[]): Promise<void> {
  const rows: object[] = [];
  const messages: object[] = [];
  const events: object[] = [];
  for (const ticket of tickets) {
    const row: Record<string, unknown> = {
      id: ticket.id,
      subject: ticket.subject,
      channel: ticket.channel,
      priority: ticket.priority,
      contact_id: ticket.contact_id,
      tags: ticket.tags,
      assignee_id: null,
      first_answered_at: null,
      last_customer_message_at: null,
      last_agent_message_at: null,
      resolved_at: null,
      first_resolved_at: null,
    };
    const words: string[] = [ticket.subject];
    for (const step of ticket.steps) {
      if (step.kind === 'none') continue;
      if (step.kind === 'create') Object.assign(row, { created_at: step.at, waiting_since: step.at });
      if (step.status) row.status = step.status;
      if (step.department_id) row.department_id = step.department_id;
      if (step.assignee_id !== undefined) row.assignee_id = step.assignee_id;
      if (step.status === 'resolved') {
        row.resolved_at = step.at;
        row.first_resolved_at ??= step.at;
      }
      row.updated_at = step.at;
      const m = step.message;
      if (m) {
        words.push(m.body);
        if (m.kind === 'customer') {
          row.last_customer_message_at = m.at;
          row.waiting_since = m.at;
        }
        if (m.kind === 'agent') {
          row.last_agent_message_at = m.at;
          row.first_answered_at ??= m.at;
        }
        messages.push({
          id: m.id,
          ticket_id: ticket.id,
          kind: m.kind,
          channel: ticket.channel,
          author_agent_id: m.author_agent_id,
          author_contact_id: m.author_agent_id ? null : ticket.contact_id,
          body: m.body,
          department_id: row.department_id,
          created_at: m.at,
        });
      }
      for (const e of step.events) {
        events.push({
          ord: events.length,
          ticket_id: ticket.id,
          ...e,
          actor_contact_id: e.actor_type === 'contact' ? ticket.contact_id : null,
          channel: ticket.channel,
          occurred_at: step.at,
        });
      }
    }
    row.words = words.join(' ');
    rows.push(row);
  }
  await client.query({
    ...SET_BASED,
    values: [JSON.stringify(rows), JSON.stringify(messages), JSON.stringify(events)],
  });
}

export interface FloorFigure {
  name: string;
  records: number;
  seconds: number;
  /** CPU ms per record: this process (the client) and the probe's PostgreSQL backends. */
  clientMs: number;
  postgresMs: number;
}

/**
 * Runs the three floor probes, `tickets` tickets each (10 records a ticket, the first `stepMs`
 * apart from 2025-01-01 as in the bench's file), in `databaseUrl` (migrated to the latest schema;
 * the probes add their own agents, departments and contacts). `backendCpuSeconds` reads the CPU
 * seconds of the backends serving that database so far: the probe's two connections stay open
 * throughout, so its differences are their work alone.
 */
export async function importFloor(
  databaseUrl: string,
  tickets: number,
  stepMs: number,
  backendCpuSeconds: () => number,
): Promise<FloorFigure[]> {
  const clients: pg.Client[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const client = new pg.Client({ connectionString: databaseUrl });
      // A backend ended under it (the database dropped on an interrupt) must not crash the bench.
      client.on('error', () => {});
      clients.push(client);
      await client.connect();
    }
    const [one, two] = clients as [pg.Client, pg.Client];
    const ids = async (text: string, n: number) =>
      (await one.query<{ id: string }>(text, [n])).rows.map((r) => r.id);
    const agents = await ids(
      `insert into agents (name, email, role) select 'Floor ' || g, 'floor-' || g || '@import.bench', 'agent'
       from generate_series(1, $1) g returning id`,
      AGENTS,
    );
    const departments = await ids(
      `insert into departments (name) select 'Floor ' || g from generate_series(1, $1) g returning id`,
      DEPARTMENTS,
    );
    const contacts = await ids(
      `insert into contacts (name) select 'Floor customer ' || g from generate_series(1, $1) g returning id`,
      Math.max(1, Math.round(tickets / 10)),
    );
    const start = Date.parse('2025-01-01T00:00:00Z');
    let next = 0;
    const fresh = (n: number) =>
      Array.from({ length: n }, () => history(next++, start, stepMs, agents, departments, contacts));

    const figures: FloorFigure[] = [];
    const measure = async (name: string, n: number, run: (batches: FloorTicket[][]) => Promise<void>) => {
      const all = fresh(n);
      const batches: FloorTicket[][] = [];
      for (let i = 0; i < all.length; i += TICKETS_PER_BATCH)
        batches.push(all.slice(i, i + TICKETS_PER_BATCH));
      await one.query('vacuum analyze tickets, ticket_events, ticket_messages');
      const cpu0 = process.cpuUsage();
      const pg0 = backendCpuSeconds();
      const t0 = performance.now();
      await run(batches);
      const ms = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const records = n * RECORDS_PER_TICKET;
      figures.push({
        name,
        records,
        seconds: ms / 1000,
        clientMs: (cpu.user + cpu.system) / 1000 / records,
        postgresMs: ((backendCpuSeconds() - pg0) * 1000) / records,
      });
    };
    const inTransactions = async (client: pg.Client, batches: FloorTicket[][]) => {
      for (const batch of batches) {
        await client.query('begin');
        for (const ticket of batch) await perRecord(client, ticket);
        await client.query('commit');
      }
    };
    // A warm-up of each path (prepares its statements), not counted.
    await inTransactions(one, [fresh(TICKETS_PER_BATCH)]);
    await inTransactions(two, [fresh(TICKETS_PER_BATCH)]);
    await setBased(one, fresh(TICKETS_PER_BATCH));

    await measure('per record', tickets, (batches) => inTransactions(one, batches));
    await measure('per record x 2', tickets, async (batches) => {
      await Promise.all([
        inTransactions(
          one,
          batches.filter((_, i) => i % 2 === 0),
        ),
        inTransactions(
          two,
          batches.filter((_, i) => i % 2 === 1),
        ),
      ]);
    });
    await measure('set-based', tickets, async (batches) => {
      for (const batch of batches) await setBased(one, batch);
    });
    return figures;
  } finally {
    for (const c of clients) await c.end().catch(() => {});
  }
}
