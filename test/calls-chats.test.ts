import t from 'tap';
import type { Db } from '../src/db/database.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { countTickets, GHOST, ticketState } from './helpers/tickets.ts';

interface HistoryEvent {
  type: string;
  actor: { type: string; agent_id: string | null; contact_id: string | null };
  data: Record<string, unknown>;
}

const countOf = async (db: Db, table: 'calls' | 'chats') =>
  Number(
    (
      await db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

t.test('calls and chats', async (t) => {
  const ctx = await buildTestApp(t);
  const phone = await makeDepartment(ctx.db, 'Phone');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const phil = await agentWithToken(ctx, { name: 'Phil', departments: [[phone, 'solver']] });

  // Whole seconds two hours ago: what telephony systems send, and safely in the past.
  const base = Math.floor(Date.now() / 1000) * 1000 - 2 * 3_600_000;
  const at = (seconds: number) => new Date(base + seconds * 1000).toISOString();

  type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
  const api = (method: Method, url: string, payload?: unknown, token = admin.token) =>
    ctx.request({ method, url, token, ...(payload !== undefined && { payload: payload as object }) });
  const get = async (id: string) => (await api('GET', `/v1/tickets/${id}`)).json();
  const history = async (id: string): Promise<HistoryEvent[]> =>
    (await api('GET', `/v1/tickets/${id}/history?limit=200`)).json().data;
  const answeredTicket = async () => {
    const created = await api('POST', '/v1/tickets', {
      subject: 'Call me back',
      contact: { phone: '+420 777 000 111' },
      message: { body: 'Please call' },
      department_id: phone,
    });
    const id = created.json().id as string;
    await api('POST', `/v1/tickets/${id}/messages`, { kind: 'reply', body: 'Will do' }, phil.token);
    return id;
  };

  await t.test('an answered call opens a call ticket for the contact with that number', async (t) => {
    const existing = await api('POST', '/v1/tickets', {
      subject: 'Earlier question',
      contact: { phone: '+420 601 234 567', name: 'Petra' },
      message: { body: 'Hello' },
    });
    const contactId = existing.json().contact.id;
    const res = await api('POST', '/v1/calls', {
      external_id: 'pbx-1',
      direction: 'inbound',
      outcome: 'answered',
      from_number: '+420-601-234-567',
      to_number: '+420 222 000 111',
      agent_id: phil.agent.id,
      department_id: phone,
      started_at: at(0),
      answered_at: at(12),
      ended_at: at(280),
    });
    t.equal(res.statusCode, 201, res.body);
    const call = res.json();
    t.match(call, {
      external_id: 'pbx-1',
      direction: 'inbound',
      outcome: 'answered',
      agent_id: phil.agent.id,
      from_number: '+420-601-234-567',
      started_at: at(0),
      answered_at: at(12),
      ended_at: at(280),
      duration_seconds: 268,
    });
    t.not(call.ticket_id, existing.json().id, 'a new ticket');
    const ticket = await get(call.ticket_id);
    t.match(ticket, {
      channel: 'call',
      status: 'answered',
      department_id: phone,
      first_answered_at: at(12),
      contact: { id: contactId, name: 'Petra', phone: '+420601234567' },
    });
    t.match(ticket.subject, /^Call from \+420-601-234-567$/);
    const events = await history(call.ticket_id);
    t.same(
      events.map((e) => [e.type, e.actor.type]),
      [
        ['created', 'agent'],
        ['status_changed', 'agent'],
        ['call_recorded', 'agent'],
      ],
    );
    t.same(events[2]!.data, {
      call_id: call.id,
      direction: 'inbound',
      outcome: 'answered',
      agent_id: phil.agent.id,
      duration_seconds: 268,
    });
    const messages = await api('GET', `/v1/tickets/${call.ticket_id}/messages`);
    t.same(messages.json().data, [], 'a call adds no message');

    const unknown = await api('POST', '/v1/calls', {
      direction: 'inbound',
      outcome: 'missed',
      from_number: '(605) 111-222',
      started_at: at(300),
    });
    t.equal(unknown.statusCode, 201);
    const fresh = await get(unknown.json().ticket_id);
    t.equal(fresh.contact.phone, '605111222', 'a new contact, with the number normalised');
    t.equal(fresh.status, 'new', 'a missed call on a new ticket: still waiting for a first answer');
    t.equal(fresh.first_answered_at, null);
    t.equal(fresh.last_customer_message_at, at(300));
    const outbound = await api('POST', '/v1/calls', {
      direction: 'outbound',
      outcome: 'answered',
      from_number: '+420 222 000 111',
      to_number: '+420 601 234 567',
      agent_id: phil.agent.id,
      started_at: at(400),
      answered_at: at(405),
    });
    t.equal(outbound.statusCode, 201);
    t.equal((await get(outbound.json().ticket_id)).contact.id, contactId, 'outbound: the number called');
    t.equal(outbound.json().duration_seconds, 0, 'no end, no known talk time');
  });

  await t.test('calls on an existing ticket: a missed inbound call reopens it', async (t) => {
    const id = await answeredTicket();
    const answeredAt = (await get(id)).first_answered_at;
    const outboundMissed = await api('POST', '/v1/calls', {
      ticket_id: id,
      direction: 'outbound',
      outcome: 'missed',
      to_number: '+420 777 000 111',
      started_at: at(1000),
    });
    t.equal(outboundMissed.statusCode, 201);
    t.equal((await get(id)).status, 'answered', 'we called and nobody answered: still on the customer');
    const missed = await api('POST', '/v1/calls', {
      ticket_id: id,
      direction: 'inbound',
      outcome: 'missed',
      from_number: '+420 777 000 111',
      started_at: at(1100),
      ended_at: at(1130),
    });
    t.equal(missed.statusCode, 201);
    t.equal(missed.json().ticket_id, id);
    t.equal(missed.json().duration_seconds, 0);
    let ticket = await get(id);
    t.equal(ticket.status, 'open', 'the customer called and waits');
    t.equal(ticket.last_customer_message_at, at(1100));
    const reopened = (await history(id)).filter((e) => e.type === 'status_changed').at(-1)!;
    t.match(reopened, { actor: { type: 'contact' }, data: { from: 'answered', to: 'open' } });
    const callback = await api(
      'POST',
      '/v1/calls',
      {
        ticket_id: id,
        direction: 'outbound',
        outcome: 'answered',
        to_number: '+420 777 000 111',
        agent_id: phil.agent.id,
        started_at: at(1200),
        answered_at: at(1210),
        ended_at: at(1270),
      },
      phil.token,
    );
    t.equal(callback.statusCode, 201, callback.body);
    ticket = await get(id);
    t.equal(ticket.status, 'answered');
    t.equal(ticket.first_answered_at, answeredAt, 'the first answer stays the first');
    const recorded = (await history(id)).filter((e) => e.type === 'call_recorded');
    t.same(
      recorded.map((e) => [e.data.direction, e.data.outcome, e.data.duration_seconds]),
      [
        ['outbound', 'missed', 0],
        ['inbound', 'missed', 0],
        ['outbound', 'answered', 60],
      ],
    );
  });

  await t.test('call mistakes answer 4xx and record nothing', async (t) => {
    const id = await answeredTicket();
    const deleted = await answeredTicket();
    await api('DELETE', `/v1/tickets/${deleted}`);
    const call = {
      direction: 'inbound',
      outcome: 'answered',
      from_number: '+420 601 999 000',
      started_at: at(0),
      answered_at: at(10),
      ended_at: at(60),
    };
    const seed = await api('POST', '/v1/calls', { ...call, external_id: 'pbx-dup' });
    t.equal(seed.statusCode, 201);
    const tickets = await countTickets(ctx.db);
    const calls = await countOf(ctx.db, 'calls');
    const state = await ticketState(ctx.db, id);
    const { answered_at: _, ...unanswered } = call;
    const cases: [unknown, number, string, string?][] = [
      [unanswered, 400, 'invalid_call_times', 'body/answered_at'],
      [{ ...call, outcome: 'missed' }, 400, 'invalid_call_times', 'body/answered_at'],
      [{ ...call, answered_at: at(-5) }, 400, 'invalid_call_times', 'body/answered_at'],
      [{ ...call, ended_at: at(5) }, 400, 'invalid_call_times', 'body/ended_at'],
      [{ ...unanswered, outcome: 'missed', ended_at: at(-1) }, 400, 'invalid_call_times', 'body/ended_at'],
      [
        {
          ...unanswered,
          outcome: 'missed',
          started_at: new Date(Date.now() + 3_600_000).toISOString(),
          ended_at: undefined,
        },
        400,
        'invalid_call_times',
        'body/started_at',
      ],
      [{ ...call, direction: 'sideways' }, 400, 'validation_failed', 'body/direction'],
      [{ ...call, started_at: 'yesterday' }, 400, 'validation_failed', 'body/started_at'],
      [{ ...call, duration_seconds: 50 }, 400, 'validation_failed', 'body/duration_seconds'],
      [{ ...call, agent_id: 'phil' }, 400, 'validation_failed', 'body/agent_id'],
      [{ ...call, ticket_id: 'T-1001' }, 400, 'validation_failed', 'body/ticket_id'],
      [{ ...call, from_number: 12345 }, 400, 'validation_failed', 'body/from_number'],
      [{ ...call, from_number: 'call me' }, 400, 'invalid_phone'],
      [{ ...call, from_number: undefined }, 400, 'contact_required', 'body/contact'],
      [
        { ...call, ticket_id: id, contact: { phone: '+420 601 999 000' } },
        400,
        'ticket_or_new_ticket',
        'body/contact',
      ],
      [{ ...call, ticket_id: id, subject: 'x' }, 400, 'ticket_or_new_ticket', 'body/subject'],
      [{ ...call, agent_id: GHOST }, 422, 'agent_not_found', 'body/agent_id'],
      [{ ...call, department_id: GHOST }, 422, 'department_not_found', 'body/department_id'],
      [{ ...call, ticket_id: GHOST }, 404, 'ticket_not_found'],
      [{ ...call, ticket_id: deleted }, 409, 'ticket_deleted'],
      [{ ...call, external_id: 'pbx-dup' }, 409, 'call_already_recorded'],
      [{ ...call, ticket_id: id, external_id: 'pbx-dup' }, 409, 'call_already_recorded'],
    ];
    for (const [payload, status, code, field] of cases) {
      const res = await api('POST', '/v1/calls', JSON.parse(JSON.stringify(payload)));
      const label = JSON.stringify(payload).slice(0, 90);
      t.equal(res.statusCode, status, `${label}: ${res.body.slice(0, 200)}`);
      t.equal(res.json().code, code, label);
      if (field)
        t.ok(
          res.json().errors?.some((e: { field: string }) => e.field === field),
          `${label}: ${field}`,
        );
    }
    t.equal(await countTickets(ctx.db), tickets, 'no ticket opened');
    t.equal(await countOf(ctx.db, 'calls'), calls, 'no call recorded');
    t.same(await ticketState(ctx.db, id), state, 'the existing ticket untouched');
  });

  await t.test(
    'a chat with its messages: sent times kept, chat_id on each, first agent message answers',
    async (t) => {
      const earlier = await api('POST', '/v1/tickets', {
        subject: 'Email first',
        contact: { email: 'chatty@example.com', name: 'Chatty' },
        message: { body: 'Hi' },
      });
      const res = await api('POST', '/v1/chats', {
        external_id: 'chat-1',
        contact: { email: 'Chatty@Example.com' },
        department_id: phone,
        agent_id: phil.agent.id,
        started_at: at(0),
        picked_up_at: at(20),
        missed: false,
        ended_at: at(360),
        // out of order on purpose: they are stored by when they were sent
        messages: [
          { from: 'agent', body: 'It ships today, with tracking', sent_at: at(40) },
          { from: 'customer', body: 'Hi, where is my marmalade order?', sent_at: at(5) },
          { from: 'agent', body: 'You are welcome!', sent_at: at(90) },
          { from: 'customer', body: 'Great, thanks', sent_at: at(60) },
        ],
      });
      t.equal(res.statusCode, 201, res.body);
      const chat = res.json();
      t.match(chat, {
        external_id: 'chat-1',
        agent_id: phil.agent.id,
        started_at: at(0),
        picked_up_at: at(20),
        missed: false,
        ended_at: at(360),
        message_count: 4,
      });
      const ticket = await get(chat.ticket_id);
      t.match(ticket, {
        channel: 'chat',
        status: 'answered',
        department_id: phone,
        first_answered_at: at(40),
        last_customer_message_at: at(60),
        contact: { id: earlier.json().contact.id },
      });
      const messages = (await api('GET', `/v1/tickets/${chat.ticket_id}/messages`)).json().data;
      t.same(
        messages.map((m: Record<string, unknown>) => [m.kind, m.body, m.created_at, m.chat_id, m.channel]),
        [
          ['customer', 'Hi, where is my marmalade order?', at(5), chat.id, 'chat'],
          ['agent', 'It ships today, with tracking', at(40), chat.id, 'chat'],
          ['customer', 'Great, thanks', at(60), chat.id, 'chat'],
          ['agent', 'You are welcome!', at(90), chat.id, 'chat'],
        ],
      );
      t.equal(messages[1].author_agent_id, phil.agent.id);
      t.equal(messages[0].author_contact_id, ticket.contact.id);
      const events = await history(chat.ticket_id);
      t.same(
        events.map((e) => e.type),
        ['created', 'status_changed', 'chat_recorded'],
      );
      t.same(events[2]!.data, {
        chat_id: chat.id,
        agent_id: phil.agent.id,
        missed: false,
        pickup_seconds: 20,
        // the department has no schedule and there is no default: always open
        pickup_business_seconds: 20,
        duration_seconds: 360,
        customer_messages: 2,
        agent_messages: 2,
      });
      const found = await api('GET', '/v1/tickets?q=marmalade');
      t.same(
        found.json().data.map((x: { id: string }) => x.id),
        [chat.ticket_id],
        'chat messages are searchable',
      );

      const later = await api('POST', '/v1/chats', {
        ticket_id: chat.ticket_id,
        agent_id: phil.agent.id,
        started_at: at(600),
        picked_up_at: at(610),
        missed: false,
        messages: [
          { from: 'agent', body: 'Following up', sent_at: at(615) },
          { from: 'customer', body: 'It has not arrived', sent_at: at(620) },
        ],
      });
      t.equal(later.statusCode, 201);
      const after = await get(chat.ticket_id);
      t.equal(after.status, 'open', 'the customer wrote last: they wait');
      t.equal(after.first_answered_at, at(40), 'the first answer stays the first');
      t.equal(after.last_customer_message_at, at(620));
    },
  );

  await t.test('a missed chat leaves the customer waiting: new stays new, answered reopens', async (t) => {
    const missed = await api('POST', '/v1/chats', {
      contact: { email: 'nobody-answered@example.com' },
      started_at: at(0),
      missed: true,
      ended_at: at(120),
      messages: [{ from: 'customer', body: 'Hello?', sent_at: at(10) }],
    });
    t.equal(missed.statusCode, 201, missed.body);
    t.equal(missed.json().picked_up_at, null);
    const ticket = await get(missed.json().ticket_id);
    t.match(ticket, {
      status: 'new',
      first_answered_at: null,
      last_customer_message_at: at(10),
      department_id: null,
    });

    const id = await answeredTicket();
    const reopen = await api('POST', '/v1/chats', {
      ticket_id: id,
      started_at: at(0),
      missed: true,
      messages: [],
    });
    t.equal(reopen.statusCode, 201);
    const now = await get(id);
    t.equal(now.status, 'open');
    t.equal(now.last_customer_message_at, at(0), 'no messages: the customer waited from the start');
    t.match((await history(id)).at(-1), {
      type: 'chat_recorded',
      data: { missed: true, pickup_seconds: null, customer_messages: 0, agent_messages: 0 },
    });
  });

  await t.test('chat mistakes answer 4xx and record nothing', async (t) => {
    const id = await answeredTicket();
    const chat = {
      contact: { email: 'chat-mistakes@example.com' },
      agent_id: phil.agent.id,
      started_at: at(0),
      picked_up_at: at(10),
      missed: false,
      ended_at: at(100),
      messages: [{ from: 'customer', body: 'Hi', sent_at: at(5) }],
    };
    const seed = await api('POST', '/v1/chats', { ...chat, external_id: 'chat-dup' });
    t.equal(seed.statusCode, 201, seed.body);
    const tickets = await countTickets(ctx.db);
    const chats = await countOf(ctx.db, 'chats');
    const state = await ticketState(ctx.db, id);
    const cases: [unknown, number, string, string?][] = [
      [
        { ...chat, missed: true, agent_id: undefined, picked_up_at: at(10) },
        400,
        'invalid_chat',
        'body/picked_up_at',
      ],
      [{ ...chat, picked_up_at: undefined }, 400, 'invalid_chat', 'body/picked_up_at'],
      [{ ...chat, agent_id: undefined }, 400, 'invalid_chat', 'body/agent_id'],
      [{ ...chat, picked_up_at: at(-1) }, 400, 'invalid_chat', 'body/picked_up_at'],
      [{ ...chat, ended_at: at(-10) }, 400, 'invalid_chat', 'body/ended_at'],
      [
        { ...chat, messages: [{ from: 'customer', body: 'Hi', sent_at: at(-1) }] },
        400,
        'invalid_chat',
        'body/messages/0/sent_at',
      ],
      [
        { ...chat, messages: [{ from: 'customer', body: 'Hi', sent_at: at(101) }] },
        400,
        'invalid_chat',
        'body/messages/0/sent_at',
      ],
      [
        {
          ...chat,
          missed: true,
          picked_up_at: undefined,
          messages: [{ from: 'agent', body: 'Hi', sent_at: at(5) }],
        },
        400,
        'invalid_chat',
        'body/messages/0/from',
      ],
      [{ ...chat, messages: undefined }, 400, 'validation_failed', 'body/messages'],
      [{ ...chat, missed: 'no' }, 400, 'validation_failed', 'body/missed'],
      // RFC 3339 allows a leap second; a JavaScript Date cannot hold one (it was a 500).
      [{ ...chat, started_at: '2024-01-01T23:59:60Z' }, 400, 'validation_failed', 'body/started_at'],
      [
        { ...chat, messages: [{ from: 'customer', body: 'Hi', sent_at: '2024-06-30T23:59:60Z' }] },
        400,
        'validation_failed',
        'body/messages/0/sent_at',
      ],
      [{ ...chat, messages: [{ from: 'bot', body: 'Hi', sent_at: at(5) }] }, 400, 'validation_failed'],
      [{ ...chat, messages: [{ from: 'customer', body: '', sent_at: at(5) }] }, 400, 'validation_failed'],
      [
        { ...chat, messages: [{ from: 'customer', body: 'x'.repeat(20_001), sent_at: at(5) }] },
        400,
        'validation_failed',
      ],
      [{ ...chat, contact: undefined }, 400, 'contact_required', 'body/contact'],
      [{ ...chat, ticket_id: id }, 400, 'ticket_or_new_ticket', 'body/contact'],
      [{ ...chat, agent_id: GHOST }, 422, 'agent_not_found', 'body/agent_id'],
      [{ ...chat, contact: undefined, ticket_id: GHOST }, 404, 'ticket_not_found'],
      [{ ...chat, external_id: 'chat-dup' }, 409, 'chat_already_recorded'],
      [{ ...chat, contact: undefined, ticket_id: id, external_id: 'chat-dup' }, 409, 'chat_already_recorded'],
    ];
    for (const [payload, status, code, field] of cases) {
      const res = await api('POST', '/v1/chats', JSON.parse(JSON.stringify(payload)));
      const label = JSON.stringify(payload).slice(0, 90);
      t.equal(res.statusCode, status, `${label}: ${res.body.slice(0, 200)}`);
      t.equal(res.json().code, code, label);
      if (field)
        t.ok(
          res.json().errors?.some((e: { field: string }) => e.field === field),
          `${label}: ${field}`,
        );
    }
    t.equal(await countTickets(ctx.db), tickets, 'no ticket opened');
    t.equal(await countOf(ctx.db, 'chats'), chats, 'no chat recorded');
    t.same(await ticketState(ctx.db, id), state, 'the existing ticket untouched');
  });
});
