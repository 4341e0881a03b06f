import t, { type Test } from 'tap';
import { compileCalendar } from '../src/business-time/index.ts';
import type { Channel } from '../src/db/types.ts';
import { withBusinessTimes } from '../src/domains/tickets/business-times.ts';
import type { ActorEvent, BusinessSpan } from '../src/domains/tickets/repository.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';

// Business-hours variants of the report times (docs/metrics.md, "Business time"): what the write
// path records beside each calendar duration, and the reports' *_business_time columns over
// histories written with known times, by grouping, interval, attribution, goal and format.

type Row = Record<string, unknown>;
const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday'] as const;
const OFFICE = {
  time_zone: 'Europe/Prague',
  intervals: WEEKDAYS.map((day) => ({ day, start: '08:00', end: '18:00' })),
  holidays: [] as object[],
};

/** Percentiles come from histograms: within 0.5 % of the exact value (plus the rounding). */
function approx(t: Test, actual: unknown, expected: number, name: string) {
  const ok = typeof actual === 'number' && Math.abs(actual - expected) <= 0.005 * expected + 0.0005;
  t.ok(ok, name, { actual, expected });
}

t.test('the write path records the business time beside the calendar time', async (t) => {
  const ctx = await buildTestApp(t);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  type Method = 'GET' | 'POST' | 'PATCH';
  const api = async (method: Method, url: string, payload?: unknown) => {
    const res = await ctx.request({
      method,
      url,
      token: admin.token,
      ...(payload !== undefined && { payload: payload as object }),
    });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const schedule = async (name: string, body: object) =>
    (await api('POST', '/v1/schedules', { name, ...body })).id;
  const department = async (name: string, scheduleId: string | null) =>
    (await api('POST', '/v1/departments', { name, ...(scheduleId && { schedule_id: scheduleId }) })).id;
  const office = await department('Office', await schedule('Office hours', OFFICE));
  const always = await department(
    'Always',
    await schedule('Round the clock', {
      time_zone: 'UTC',
      intervals: [...WEEKDAYS, 'saturday', 'sunday'].map((day) => ({ day, start: '00:00', end: '24:00' })),
    }),
  );
  const never = await department('Never', await schedule('Never open', { time_zone: 'UTC', intervals: [] }));
  const plain = await department('Plain', null);

  const data = async (id: string) =>
    ((await api('GET', `/v1/tickets/${id}/history?limit=200`)).data as { type: string; data: Row }[]).map(
      (e): Row => ({ type: e.type, ...e.data }),
    );
  /** A ticket asked, answered and resolved through the API; its instants from the API and the row. */
  const lifecycle = async (departmentId: string | null) => {
    const ticket = await api('POST', '/v1/tickets', {
      subject: 'Where is my parcel?',
      contact: { email: 'jane@example.com' },
      message: { body: 'It has not come.' },
      ...(departmentId && { department_id: departmentId }),
    });
    const { waiting_since } = await ctx.db
      .selectFrom('tickets')
      .select('waiting_since')
      .where('id', '=', ticket.id)
      .executeTakeFirstOrThrow();
    await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'reply', body: 'On its way.' });
    const resolved = await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' });
    const events = await data(ticket.id);
    const answer = events.find((e) => e.type === 'message_added' && e.kind === 'agent')!;
    const resolve = events.find((e) => e.type === 'status_changed' && e.to === 'resolved')!;
    return {
      answer,
      resolve,
      waitingSince: waiting_since.getTime(),
      created: Date.parse(ticket.created_at),
      resolvedAt: Date.parse(resolved.resolved_at),
    };
  };

  await t.test('the calendar of the department: business minutes between the same instants', async (t) => {
    const run = await lifecycle(office);
    const calendar = compileCalendar(OFFICE as Parameters<typeof compileCalendar>[0]);
    const wait = run.answer.wait_seconds as number;
    const answeredAt = run.waitingSince + wait * 1000;
    t.equal(
      run.answer.wait_business_seconds,
      Math.round(calendar.businessMinutesBetween(run.waitingSince, answeredAt) * 60_000) / 1000,
      'the answer: business minutes of Mon-Fri 08:00-18:00 in Prague between wait start and answer',
    );
    t.equal(
      run.resolve.resolution_business_seconds,
      Math.round(calendar.businessMinutesBetween(run.created, run.resolvedAt) * 60_000) / 1000,
      'the first resolve: between creation and the resolve',
    );
    t.ok((run.answer.wait_business_seconds as number) <= wait, 'never more than the calendar time');
  });

  await t.test('always open, never open, no schedule and no default', async (t) => {
    const open = await lifecycle(always);
    t.equal(
      open.answer.wait_business_seconds,
      open.answer.wait_seconds,
      'round the clock: the calendar time',
    );
    t.equal(open.resolve.resolution_business_seconds, open.resolve.resolution_seconds);
    const closed = await lifecycle(never);
    t.equal(closed.answer.wait_business_seconds, 0, 'a schedule that never opens: 0');
    t.equal(closed.resolve.resolution_business_seconds, 0);
    t.ok((closed.resolve.resolution_seconds as number) >= 0, 'the calendar time is still there');
    const none = await lifecycle(plain);
    t.equal(
      none.answer.wait_business_seconds,
      none.answer.wait_seconds,
      'no schedule, no default: always open',
    );
    t.equal(none.resolve.resolution_business_seconds, none.resolve.resolution_seconds);
    const nowhere = await lifecycle(null);
    t.equal(nowhere.answer.wait_business_seconds, nowhere.answer.wait_seconds, 'no department either');
  });

  await t.test('departments without a schedule and tickets in none follow the default', async (t) => {
    await schedule('Closed default', { time_zone: 'UTC', intervals: [], is_default: true });
    const plainRun = await lifecycle(plain);
    t.equal(plainRun.answer.wait_business_seconds, 0, 'a department without its own: the default');
    t.equal(plainRun.resolve.resolution_business_seconds, 0);
    const nowhere = await lifecycle(null);
    t.equal(nowhere.answer.wait_business_seconds, 0, 'a ticket without department: the default');
    const own = await lifecycle(always);
    t.equal(own.answer.wait_business_seconds, own.answer.wait_seconds, 'a department’s own schedule wins');
  });

  await t.test('a note, a later resolve and an answer nobody waited for carry none', async (t) => {
    const ticket = await api('POST', '/v1/tickets', {
      subject: 'Thanks',
      contact: { email: 'joe@example.com' },
      message: { body: 'Hello' },
      department_id: office,
    });
    await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'reply', body: 'Hi' });
    await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'reply', body: 'Anything else?' });
    await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'note', body: 'Friendly.' });
    await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' });
    await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'customer', body: 'One more thing' });
    await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' });
    const events = await data(ticket.id);
    const answers = events.filter((e) => e.type === 'message_added' && e.kind === 'agent');
    t.equal(typeof answers[0]!.wait_business_seconds, 'number', 'the first answer has one');
    t.notOk('wait_business_seconds' in answers[1]!, 'the answer after it waited for nobody');
    const resolves = events.filter((e) => e.type === 'status_changed' && e.to === 'resolved');
    t.equal(typeof resolves[0]!.resolution_business_seconds, 'number');
    t.notOk('resolution_business_seconds' in resolves[1]!, 'a resolve after a reopen has none');
  });

  await t.test('a rule that transfers and resolves: the calendar of the department after it', async (t) => {
    // The lock read Always's schedule key; Never's is read once, for the resolve the rule makes.
    await api('POST', '/v1/automation-rules', {
      name: 'Park follow-ups',
      active: true,
      triggers: ['ticket.customer_replied'],
      conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: ['call'] }] }] },
      actions: [
        { type: 'transfer', department_id: never },
        { type: 'set_status', status: 'resolved' },
      ],
    });
    const ticket = await api('POST', '/v1/tickets', {
      subject: 'Call me back',
      channel: 'call',
      contact: { email: 'ring@example.com' },
      message: { body: 'Ring me.' },
      department_id: always,
    });
    await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'customer', body: 'Please call.' });
    const resolve = (await data(ticket.id)).find((e) => e.type === 'status_changed' && e.to === 'resolved')!;
    t.ok((resolve.resolution_seconds as number) > 0, 'some calendar time passed');
    t.equal(resolve.resolution_business_seconds, 0, 'measured in Never, where the rule moved it');
  });

  await t.test('a chat records its pickup in business time, with its own instants', async (t) => {
    // Friday 2026-11-27, 17:55 to 18:05 in Prague (UTC+1): five of the ten minutes are open.
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/chats',
      token: admin.token,
      payload: {
        contact: { email: 'chatty@example.com' },
        department_id: office,
        agent_id: admin.agent.id,
        started_at: '2026-11-27T16:55:00Z',
        picked_up_at: '2026-11-27T17:05:00Z',
        missed: false,
        ended_at: '2026-11-27T17:20:00Z',
        messages: [],
      },
    });
    t.equal(res.statusCode, 201, res.body);
    const chat = (await data(res.json().ticket_id)).find((e) => e.type === 'chat_recorded')!;
    t.equal(chat.pickup_seconds, 600);
    t.equal(chat.pickup_business_seconds, 300, 'only the five minutes before 18:00');
    t.equal(chat.duration_seconds, 1500);
    t.notOk('duration_business_seconds' in chat, 'the chat’s length has no business twin');
  });
});

t.test('business times in reports: every grouping, mode, goal and format', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const post = async (url: string, payload: object) => {
    const res = await ctx.request({ method: 'POST', url, token: admin.token, payload });
    if (res.statusCode !== 201) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  // Mon-Fri 08:00-18:00 in Prague, closed on Monday 2026-03-16.
  const hours = await post('/v1/schedules', {
    name: 'Prague office',
    ...OFFICE,
    holidays: [{ name: 'Closed', date: '2026-03-16', yearly: false, start: null, end: null }],
  });
  const support = (await post('/v1/departments', { name: 'Support', schedule_id: hours.id })).id as string;
  const sales = await makeDepartment(db, 'Sales');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[support, 'solver']] });
  const bob = await makeAgent(db, { name: 'Bob', departments: [[sales, 'solver']] });

  /**
   * A ticket whose history is written with known times (as the reports tests do). The business
   * values come from the write path's own function, in the calendar of each event's department.
   */
  async function history(
    now: { department: string; assignee: string; channel: Channel },
    events: {
      type: string;
      at: string;
      department: string;
      agent: string;
      data?: Row;
      business?: BusinessSpan[];
    }[],
  ) {
    const contact = await db
      .insertInto('contacts')
      .values({ name: 'Customer' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const ticket = await db
      .insertInto('tickets')
      .values({
        subject: 'Business fixture',
        channel: now.channel,
        status: 'resolved',
        priority: 'normal',
        department_id: now.department,
        assignee_id: now.assignee,
        contact_id: contact.id,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const computed = await withBusinessTimes(
      db,
      events.map(
        (e): ActorEvent => ({
          type: e.type as ActorEvent['type'],
          data: e.data ?? {},
          ...(e.business && { business: e.business }),
          actor: { type: 'system', agentId: null, contactId: null, tokenId: null },
          ticket: { id: ticket.id, department_id: e.department, assignee_id: e.agent, channel: now.channel },
        }),
      ),
      new Map(),
    );
    await db
      .insertInto('ticket_events')
      .values(
        events.map((e, i) => ({
          ticket_id: ticket.id,
          type: e.type,
          actor_type: 'system' as const,
          actor_agent_id: null,
          actor_contact_id: null,
          department_id: e.department,
          agent_id: e.agent,
          channel: now.channel,
          data: JSON.stringify(computed[i]!.data ?? {}),
          occurred_at: new Date(e.at),
        })),
      )
      .execute();
    return computed.map((e) => e.data ?? {});
  }
  const answer = (created: string, at: string): Row & { business: BusinessSpan[] } => ({
    data: { kind: 'agent', first_answer: true, wait_seconds: (Date.parse(at) - Date.parse(created)) / 1000 },
    business: [{ field: 'wait_business_seconds', from: new Date(created), to: new Date(at) }],
  });
  const resolve = (created: string, at: string) => ({
    data: {
      from: 'answered',
      to: 'resolved',
      first_resolution: true,
      resolution_seconds: (Date.parse(at) - Date.parse(created)) / 1000,
    },
    business: [{ field: 'resolution_business_seconds' as const, from: new Date(created), to: new Date(at) }],
  });

  // A: created Friday 2026-03-06 17:00 in Prague (16:00Z), answered Monday 09:00 (08:00Z),
  // resolved Tuesday 12:00 (11:00Z).
  const a = await history({ department: support, assignee: ann.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-06T16:00:00Z', department: support, agent: ann.id },
    {
      type: 'message_added',
      at: '2026-03-09T08:00:00Z',
      department: support,
      agent: ann.id,
      ...answer('2026-03-06T16:00:00Z', '2026-03-09T08:00:00Z'),
    },
    {
      type: 'status_changed',
      at: '2026-03-10T11:00:00Z',
      department: support,
      agent: ann.id,
      ...resolve('2026-03-06T16:00:00Z', '2026-03-10T11:00:00Z'),
    },
  ]);
  t.same(
    [a[1]!.wait_seconds, a[1]!.wait_business_seconds],
    [64 * 3600, 2 * 3600],
    'Friday 17:00 to Monday 09:00: 64 h calendar, 2 h business',
  );
  t.same(
    [a[2]!.resolution_seconds, a[2]!.resolution_business_seconds],
    [91 * 3600, 15 * 3600],
    'to Tuesday 12:00: 91 h calendar, 1 + 10 + 4 h business',
  );
  // B: Friday 2026-03-13 17:00 to Tuesday 10:00 over the closed Monday; now in Sales.
  const b = await history({ department: sales, assignee: bob.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-13T16:00:00Z', department: support, agent: ann.id },
    {
      type: 'message_added',
      at: '2026-03-17T09:00:00Z',
      department: support,
      agent: ann.id,
      ...answer('2026-03-13T16:00:00Z', '2026-03-17T09:00:00Z'),
    },
    {
      type: 'transferred',
      at: '2026-03-17T10:00:00Z',
      department: sales,
      agent: bob.id,
      data: { from_department_id: support, to_department_id: sales },
    },
  ]);
  t.same(
    [b[1]!.wait_seconds, b[1]!.wait_business_seconds],
    [89 * 3600, 3 * 3600],
    'over a holiday: 89 h calendar, 1 + 0 + 2 h business',
  );
  // C: Sales has no schedule and there is no default: business time is calendar time.
  const c = await history({ department: sales, assignee: bob.id, channel: 'chat' }, [
    { type: 'created', at: '2026-03-06T16:00:00Z', department: sales, agent: bob.id },
    {
      type: 'message_added',
      at: '2026-03-09T08:00:00Z',
      department: sales,
      agent: bob.id,
      ...answer('2026-03-06T16:00:00Z', '2026-03-09T08:00:00Z'),
    },
  ]);
  t.equal(c[1]!.wait_business_seconds, 64 * 3600, 'no schedule: the calendar time');
  // D: an answer recorded before business times existed: a calendar sample only.
  await history({ department: sales, assignee: bob.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-09T07:00:00Z', department: sales, agent: bob.id },
    {
      type: 'message_added',
      at: '2026-03-09T07:01:40Z',
      department: sales,
      agent: bob.id,
      data: { kind: 'agent', first_answer: true, wait_seconds: 100 },
    },
  ]);

  const get = async (url: string) => {
    const res = await ctx.request({ method: 'GET', url, token: admin.token });
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const month = 'from=2026-03-01&to=2026-04-01&timezone=Europe/Prague';
  const COLUMNS = [
    'avg_first_answer_time',
    'avg_first_answer_business_time',
    'median_first_answer_business_time',
    'p90_first_answer_business_time',
    'avg_resolution_time',
    'avg_resolution_business_time',
  ];
  const byDepartment = async (query: string) => {
    const rows = (await get(`/v1/reports/departments?${month}&columns=${COLUMNS.join(',')}${query}`)).json()
      .data as Row[];
    return new Map(rows.map((r) => [r.department_id, r]));
  };

  await t.test('by department, credited where the samples were recorded', async (t) => {
    const rows = await byDepartment('');
    const s = rows.get(support)!;
    t.equal(s.avg_first_answer_time, (64 * 3600 + 89 * 3600) / 2, 'Support: calendar average');
    t.equal(s.avg_first_answer_business_time, (2 * 3600 + 3 * 3600) / 2, 'Support: business average');
    approx(t, s.median_first_answer_business_time, 9000, 'business median');
    approx(t, s.p90_first_answer_business_time, 7200 + 0.9 * 3600, 'business p90');
    t.equal(s.avg_resolution_time, 91 * 3600);
    t.equal(s.avg_resolution_business_time, 15 * 3600, 'resolution business time');
    const l = rows.get(sales)!;
    t.equal(l.avg_first_answer_time, (64 * 3600 + 100) / 2, 'Sales: the old answer is a calendar sample');
    t.equal(l.avg_first_answer_business_time, 64 * 3600, 'but no business sample');
    approx(t, l.median_first_answer_business_time, 64 * 3600, 'its median: the one business sample');
    t.equal(l.avg_resolution_business_time, null, 'no resolution in Sales');
  });

  await t.test('attribution=current follows the tickets to where they are now', async (t) => {
    const rows = await byDepartment('&attribution=current');
    t.equal(rows.get(support)!.avg_first_answer_business_time, 7200, 'Support keeps A');
    t.equal(rows.get(sales)!.avg_first_answer_business_time, (3 * 3600 + 64 * 3600) / 2, 'B moved to Sales');
    approx(t, rows.get(sales)!.median_first_answer_business_time, (3 * 3600 + 64 * 3600) / 2, 'median');
    t.equal(rows.get(support)!.avg_resolution_business_time, 15 * 3600);
  });

  await t.test('by day in Prague, by agent and by channel', async (t) => {
    const days = (
      await get(
        `/v1/reports/departments?${month}&interval=day&department_id=${support}&columns=avg_first_answer_business_time`,
      )
    ).json().data as Row[];
    const onDay = (d: string) =>
      days.find((r) => String(r.period_start).startsWith(d))?.avg_first_answer_business_time;
    t.equal(onDay('2026-03-09'), 7200, 'Monday 9 March: A');
    t.equal(onDay('2026-03-17'), 10800, 'Tuesday 17 March: B');
    t.equal(onDay('2026-03-10'), null, 'no answer that day');
    const agents = (await get(`/v1/reports/agents?${month}&columns=avg_first_answer_business_time`)).json()
      .data as Row[];
    t.equal(agents.find((r) => r.agent_id === ann.id)?.avg_first_answer_business_time, 9000, 'Ann: A and B');
    t.equal(agents.find((r) => r.agent_id === bob.id)?.avg_first_answer_business_time, 64 * 3600, 'Bob: C');
    const channels = (
      await get(`/v1/reports/channels?${month}&columns=avg_first_answer_business_time`)
    ).json().data as Row[];
    t.equal(channels.find((r) => r.channel === 'chat')?.avg_first_answer_business_time, 64 * 3600, 'chat: C');
    t.equal(channels.find((r) => r.channel === 'email')?.avg_first_answer_business_time, 9000, 'email: A, B');
  });

  await t.test('goals on the business clock', async (t) => {
    const goal = async (g: string) => {
      const res = await get(
        `/v1/reports/departments?${month}&department_id=${support}&columns=goal_met_pct,goal_met,goal_missed&goal=${g}`,
      );
      return res.json() as { data: Row[]; goal: Row; columns: Row[] };
    };
    const business = await goal('first_answer:150m:business');
    t.same(
      [business.data[0]!.goal_met, business.data[0]!.goal_missed, business.data[0]!.goal_met_pct],
      [1, 1, 50],
      '2 h met, 3 h missed',
    );
    t.match(business.goal, { kind: 'first_answer', clock: 'business', within: '150m', seconds: 9000 });
    t.equal(business.columns[0]!.label, 'First answer within 150m business time %');
    const calendar = await goal('first_answer:150m');
    t.same(
      [calendar.data[0]!.goal_met, calendar.data[0]!.goal_missed],
      [0, 2],
      'on the calendar both missed',
    );
    t.equal(calendar.goal.clock, 'calendar', 'the default clock');
    const resolution = await goal('resolution:16h:business');
    t.equal(resolution.data[0]!.goal_met_pct, 100, 'resolution in 15 business hours: met');
    const current = (
      await get(
        `/v1/reports/departments?${month}&columns=goal_met&goal=first_answer:150m:business&attribution=current`,
      )
    ).json().data as Row[];
    t.equal(
      current.find((r) => r.department_id === sales)?.goal_met,
      0,
      'current: B and C in Sales, both missed',
    );
    const bad = await ctx.request({
      method: 'GET',
      url: `/v1/reports/departments?${month}&goal=first_answer:1h:weekly`,
      token: admin.token,
    });
    t.equal(bad.statusCode, 400);
    t.equal(bad.json().code, 'invalid_goal');
  });

  await t.test('CSV carries the same values under their labels', async (t) => {
    const res = await get(
      `/v1/reports/departments.csv?${month}&unit_row=true&columns=avg_first_answer_business_time,median_resolution_business_time`,
    );
    const lines = res.body.trim().split('\n');
    t.equal(
      lines[0],
      'Department ID,Department,Avg first answer business time,Median resolution business time',
    );
    t.equal(lines[1], ',,seconds,seconds');
    const row = lines.find((l) => l.includes(',Support,'))!.split(',');
    t.equal(row[2], '9000');
    approx(t, Number(row[3]), 54000, 'median resolution business time');
  });
});
