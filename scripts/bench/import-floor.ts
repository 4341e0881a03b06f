// Floor probes for bench:import: not the importer, but the least a replay of the bench's history
// must write on this schema, to tell what the importer's design costs from what the work costs
// (as bench:tickets' floor probes do for a creation). Each probe writes the same history as the
// bench's file (a ticket with its first message, then 2 assignments, a transfer, 4 messages and
// 2 status changes, each at its own time) into fresh tickets of a database migrated to the latest
// schema: the tickets' indexes, the report triggers and the foreign keys all do their work. No
// parsing, validation, look-ups of external ids, import keys, access checks, rules or report
// folds; timestamps and event data are computed here.
//
//   per record:       one prepared statement per record (the row change, its message, its
//                     event), 200 records to a transaction as the importer batches them, on one
//                     connection: what replaying record by record costs, at best.
//   per record x 2:   the same on two connections at once, each with half of the tickets: the
//                     most parallel lanes could add on this machine.
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
  agent_id: string | null;
  department_id: string;
  data: Record<string, unknown>;
  at: string;
}

/** One step of a ticket's replay: the row's new values and what it adds. */
interface Step {
  kind: 'create' | 'assign' | 'transfer' | 'status' | 'message';
  set: Record<string, unknown>;
  message?: FloorMessage;
  event?: FloorEvent;
  events?: FloorEvent[];
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

/** The bench file's history for ticket `i`, as rows (scripts/bench/import.ts, generate()). */
function history(i: number, agents: string[], departments: string[], contacts: string[]): FloorTicket {
  const start = Date.parse('2025-01-01T00:00:00Z') + i * 300_000;
  const at = (minutes: number) => new Date(start + minutes * 60_000).toISOString();
  const d = departments[i % DEPARTMENTS]!;
  const d2 = departments[(i + 1) % DEPARTMENTS]!;
  const a1 = agents[i % DEPARTMENTS]!;
  const a2 = agents[((i + 1) % DEPARTMENTS) + DEPARTMENTS]!;
  const id = randomUUID();
  const contact = contacts[i % contacts.length]!;
  const event = (
    type: string,
    minutes: number,
    department: string,
    data: Record<string, unknown>,
    actor: string | null,
    agent: string | null = actor,
  ): FloorEvent => ({
    type,
    actor_type: actor ? 'agent' : 'contact',
    actor_agent_id: actor,
    agent_id: agent,
    department_id: department,
    data,
    at: at(minutes),
  });
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
  const added = (m: FloorMessage, department: string, extra: Record<string, unknown> = {}) =>
    event(
      'message_added',
      (Date.parse(m.at) - start) / 60_000,
      department,
      { kind: m.kind, message_id: m.id, ...extra },
      m.author_agent_id,
      m.kind === 'customer' ? null : m.author_agent_id,
    );
  const subject = `Where is my order #${100000 + i}?`;
  return {
    id,
    contact_id: contact,
    subject,
    channel: i % 3 === 0 ? 'chat' : 'email',
    priority: i % 10 === 0 ? 'high' : 'normal',
    tags: i % 4 === 0 ? ['order'] : [],
    steps: [
      {
        kind: 'create',
        set: { status: 'new', department_id: d, at: at(0) },
        message: first,
        events: [
          event(
            'created',
            0,
            d,
            { tags: [], status: 'new', subject, priority: 'normal', department_id: d },
            null,
          ),
          added(first, d),
        ],
      },
      {
        kind: 'assign',
        set: { assignee_id: a1, at: at(5) },
        event: event('assigned', 5, d, { from: null, to: a1 }, a1),
      },
      {
        kind: 'message',
        set: { status: null, at: at(30) },
        message: reply1,
        event: added(reply1, d, { first_answer: true, wait_seconds: 1800, wait_business_seconds: 1800 }),
      },
      {
        kind: 'status',
        set: { status: 'answered', at: at(30) },
        event: event('status_changed', 30, d, { from: 'new', to: 'answered' }, a1),
      },
      { kind: 'message', set: { status: 'open', at: at(240) }, message: customer, event: added(customer, d) },
      {
        kind: 'transfer',
        set: { department_id: d2, at: at(300) },
        event: event('transferred', 300, d2, { from_department_id: d, to_department_id: d2 }, a1, null),
      },
      {
        kind: 'assign',
        set: { assignee_id: a2, at: at(301) },
        event: event('assigned', 301, d2, { from: null, to: a2 }, a2),
      },
      { kind: 'message', set: { status: null, at: at(360) }, message: note, event: added(note, d2) },
      {
        kind: 'message',
        set: { status: null, at: at(365) },
        message: reply2,
        event: added(reply2, d2, { first_answer: false, wait_seconds: 7500, wait_business_seconds: 7500 }),
      },
      {
        kind: 'status',
        set: { status: 'resolved', at: at(1440) },
        event: event(
          'status_changed',
          1440,
          d2,
          {
            from: 'answered',
            to: 'resolved',
            first_resolution: true,
            resolution_seconds: 86400,
            resolution_business_seconds: 86400,
          },
          a2,
        ),
      },
    ],
  };
}

const EVENT_COLUMNS = `ticket_id, type, actor_type, actor_agent_id, actor_contact_id, agent_id, department_id, channel, data, occurred_at`;

// Per record: a statement per kind, prepared once per connection.
const CREATE = {
  name: 'import_floor_create',
  text: `
    with t as (
      insert into tickets (id, subject, channel, status, priority, department_id, contact_id, tags, search,
        created_at, updated_at, waiting_since, last_activity_at, last_customer_message_at)
      values ($1, $2, $3, 'new', $4, $5, $6, $7, to_tsvector('simple', $2 || ' ' || $9), $10, $10, $10, $10, $10)
      returning id, channel, department_id, contact_id
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_contact_id, body, department_id, created_at)
      select $8, t.id, 'customer', t.channel, t.contact_id, $9, t.department_id, $10 from t
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, x.type, 'contact', null, t.contact_id, null, t.department_id, t.channel, x.data, $10
    from t, jsonb_to_recordset($11::jsonb) as x(type text, data jsonb)`,
};
const ASSIGN = {
  name: 'import_floor_assign',
  text: `
    with t as (
      update tickets set assignee_id = $2, updated_at = $3, last_activity_at = $3, changed_at = now()
      where id = $1 returning id, channel, department_id
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, 'assigned', 'agent', $2, null, $2, t.department_id, t.channel, $4, $3 from t`,
};
const TRANSFER = {
  name: 'import_floor_transfer',
  text: `
    with t as (
      update tickets set department_id = $2, assignee_id = null, updated_at = $3, last_activity_at = $3,
        changed_at = now()
      where id = $1 returning id, channel, department_id
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, 'transferred', 'agent', $5, null, null, t.department_id, t.channel, $4, $3 from t`,
};
const STATUS = {
  name: 'import_floor_status',
  text: `
    with t as (
      update tickets set status = $2, updated_at = $3, last_activity_at = $3, changed_at = now(),
        resolved_at = case when $2 = 'resolved' then $3 else resolved_at end,
        first_resolved_at = case when $2 = 'resolved' then coalesce(first_resolved_at, $3) else first_resolved_at end
      where id = $1 returning id, channel, department_id
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, 'status_changed', 'agent', $5, null, $5, t.department_id, t.channel, $4, $3 from t`,
};
const MESSAGE = {
  name: 'import_floor_message',
  text: `
    with t as (
      update tickets set status = coalesce($2, status), updated_at = $3, last_activity_at = $3, changed_at = now(),
        last_customer_message_at = case when $4 = 'customer' then $3 else last_customer_message_at end,
        last_agent_message_at = case when $4 = 'agent' then $3 else last_agent_message_at end,
        first_answered_at = case when $4 = 'agent' then coalesce(first_answered_at, $3) else first_answered_at end,
        search = search || to_tsvector('simple', $5)
      where id = $1 returning id, channel, department_id, contact_id
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_agent_id, author_contact_id, body,
        department_id, created_at)
      select $6, t.id, $4, t.channel, $7, case when $7::uuid is null then t.contact_id end, $5, t.department_id, $3
      from t
    )
    insert into ticket_events (${EVENT_COLUMNS})
    select t.id, 'message_added', case when $7::uuid is null then 'contact' else 'agent' end, $7,
      case when $7::uuid is null then t.contact_id end, $7, t.department_id, t.channel, $8, $3 from t`,
};

async function perRecord(client: pg.Client, ticket: FloorTicket): Promise<void> {
  for (const step of ticket.steps) {
    const s = step.set as {
      at: string;
      status?: string | null;
      department_id?: string;
      assignee_id?: string;
    };
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
            s.department_id,
            ticket.contact_id,
            ticket.tags,
            m.id,
            m.body,
            s.at,
            JSON.stringify(step.events!.map((e) => ({ type: e.type, data: e.data }))),
          ],
        });
        break;
      }
      case 'assign':
        await client.query({ ...ASSIGN, values: [ticket.id, s.assignee_id, s.at, step.event!.data] });
        break;
      case 'transfer':
        await client.query({
          ...TRANSFER,
          values: [ticket.id, s.department_id, s.at, step.event!.data, step.event!.actor_agent_id],
        });
        break;
      case 'status':
        await client.query({
          ...STATUS,
          values: [ticket.id, s.status, s.at, step.event!.data, step.event!.actor_agent_id],
        });
        break;
      case 'message': {
        const m = step.message!;
        await client.query({
          ...MESSAGE,
          values: [ticket.id, s.status, s.at, m.kind, m.body, m.id, m.author_agent_id, step.event!.data],
        });
        break;
      }
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
      const s = step.set as {
        at: string;
        status?: string | null;
        department_id?: string;
        assignee_id?: string;
      };
      if (step.kind === 'create') Object.assign(row, { created_at: s.at, waiting_since: s.at });
      if (s.status) row.status = s.status;
      if (s.department_id) row.department_id = s.department_id;
      if (step.kind === 'transfer') row.assignee_id = null;
      if (s.assignee_id) row.assignee_id = s.assignee_id;
      if (s.status === 'resolved') {
        row.resolved_at = s.at;
        row.first_resolved_at ??= s.at;
      }
      row.updated_at = s.at;
      const m = step.message;
      if (m) {
        words.push(m.body);
        if (m.kind === 'customer') row.last_customer_message_at = m.at;
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
      for (const e of step.events ?? [step.event!]) {
        events.push({
          ord: events.length,
          ticket_id: ticket.id,
          type: e.type,
          actor_type: e.actor_type,
          actor_agent_id: e.actor_agent_id,
          actor_contact_id: e.actor_type === 'contact' ? ticket.contact_id : null,
          agent_id: e.agent_id,
          department_id: e.department_id,
          channel: ticket.channel,
          data: e.data,
          occurred_at: e.at,
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
  /** CPU ms per record: this process (the client) and PostgreSQL. */
  clientMs: number;
  postgresMs: number;
}

/**
 * Runs the three floor probes, `tickets` tickets each (10 records a ticket), in `databaseUrl`
 * (migrated to the latest schema; the probes add their own agents, departments and contacts).
 */
export async function importFloor(
  databaseUrl: string,
  tickets: number,
  postgresCpuSeconds: () => number,
): Promise<FloorFigure[]> {
  const clients = [
    new pg.Client({ connectionString: databaseUrl }),
    new pg.Client({ connectionString: databaseUrl }),
  ];
  for (const c of clients) await c.connect();
  const [one, two] = clients as [pg.Client, pg.Client];
  try {
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
    let next = 0;
    const fresh = (n: number) =>
      Array.from({ length: n }, () => history(next++, agents, departments, contacts));

    const figures: FloorFigure[] = [];
    const measure = async (name: string, n: number, run: (batch: FloorTicket[][]) => Promise<void>) => {
      const all = fresh(n);
      const batches: FloorTicket[][] = [];
      for (let i = 0; i < all.length; i += TICKETS_PER_BATCH)
        batches.push(all.slice(i, i + TICKETS_PER_BATCH));
      await one.query('vacuum analyze tickets, ticket_events, ticket_messages');
      const cpu0 = process.cpuUsage();
      const pg0 = postgresCpuSeconds();
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
        postgresMs: ((postgresCpuSeconds() - pg0) * 1000) / records,
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
    for (const c of clients) await c.end();
  }
}
