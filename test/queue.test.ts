import pg from 'pg';
import t, { type Test } from 'tap';
import type { AgentRow, DepartmentRole } from '../src/db/types.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';

t.test('the to-solve queue', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });

  // Session tokens minted directly: the concurrency test needs many agents, and signing each one
  // in through scrypt would only slow the suite down.
  const tokenFor = (agent: AgentRow) =>
    ctx.app.jwt.sign({ sub: agent.id, pwd: agent.password_changed_at!.getTime() });
  async function queueAgent(departments: [string, DepartmentRole][], role: AgentRow['role'] = 'agent') {
    const agent = await makeAgent(ctx.db, { departments, role });
    return { agent, token: tokenFor(agent) };
  }

  let seq = 0;
  async function openTicket(departmentId: string | null, extra: Record<string, unknown> = {}) {
    const n = ++seq;
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: admin,
      payload: {
        subject: `Question ${n}`,
        contact: { email: `customer-${n}@example.com` },
        message: { body: 'Help, please.' },
        department_id: departmentId,
        ...extra,
      },
    });
    if (res.statusCode !== 201) throw new Error(`ticket not created: ${res.statusCode} ${res.body}`);
    return res.json().id as string;
  }
  const waitingSince = (id: string, iso: string) =>
    ctx.db.updateTable('tickets').set({ waiting_since: iso }).where('id', '=', id).execute();
  const change = async (id: string, method: 'PATCH' | 'DELETE', payload?: object) => {
    const res = await ctx.request({
      method,
      url: `/v1/tickets/${id}`,
      token: admin,
      ...(payload && { payload }),
    });
    if (res.statusCode >= 300) throw new Error(`${method} failed: ${res.statusCode} ${res.body}`);
  };
  const next = (token: string) => ctx.request({ method: 'POST', url: '/v1/queue/next', token });
  /** Tests that hold row locks from a second connection, as another caller would. */
  const twoConnections = {
    skip:
      ctx.database.kind === 'pglite' ? 'needs a second connection to hold row locks (PGlite has one)' : false,
  } as const;
  const colleagueConnection = async (t: Test) => {
    const colleague = new pg.Client({ connectionString: ctx.database.url! });
    await colleague.connect();
    t.teardown(() => colleague.end());
    return colleague;
  };
  const ticketRow = (id: string) =>
    ctx.db.selectFrom('tickets').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const assignedEvents = (id: string) =>
    ctx.db
      .selectFrom('ticket_events')
      .selectAll()
      .where('ticket_id', '=', id)
      .where('type', '=', 'assigned')
      .execute();

  await t.test('hands out by priority, then longest waiting, and assigns the caller', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const { agent, token } = await queueAgent([[dep, 'solver']]);
    const oldNormal = await openTicket(dep);
    const newUrgent = await openTicket(dep, { priority: 'urgent' });
    const oldUrgent = await openTicket(dep, { priority: 'urgent' });
    const newNormal = await openTicket(dep);
    const low = await openTicket(dep, { priority: 'low' });
    await waitingSince(oldNormal, '2026-01-01T08:00:00Z');
    await waitingSince(newNormal, '2026-01-01T10:00:00Z');
    await waitingSince(oldUrgent, '2026-01-01T09:00:00Z');
    await waitingSince(newUrgent, '2026-01-01T11:00:00Z');
    await waitingSince(low, '2025-01-01T00:00:00Z');

    const first = await next(token);
    t.equal(first.statusCode, 200);
    const ticket = first.json();
    t.equal(ticket.id, oldUrgent, 'urgent beats normal; of two urgent ones the longer waiting');
    t.equal(ticket.assignee_id, agent.id, 'the answer shows the new assignee');
    t.equal(ticket.status, 'new', 'taking a ticket does not change its status');
    t.match(ticket.contact, { email: /@example\.com$/ });
    t.match(first.headers.etag, /^".+"$/);
    const events = await assignedEvents(oldUrgent);
    t.equal(events.length, 1);
    t.match(events[0], {
      actor_type: 'agent',
      actor_agent_id: agent.id,
      agent_id: agent.id,
      data: { from: null, to: agent.id },
    });
    const get = await ctx.request({ method: 'GET', url: `/v1/tickets/${oldUrgent}`, token });
    t.equal(get.headers.etag, first.headers.etag, 'the same representation as GET');

    // The caller's own ticket stays in the queue (same order) until they work it.
    t.equal((await next(token)).json().id, oldUrgent, 'their own ticket comes back while it waits');
    t.equal((await assignedEvents(oldUrgent)).length, 1, 'and is not assigned again');
    await change(oldUrgent, 'PATCH', { status: 'resolved' });

    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await next(token);
      t.equal(res.statusCode, 200);
      order.push(res.json().id);
      await change(res.json().id, 'PATCH', { status: 'answered' });
    }
    t.same(order, [newUrgent, oldNormal, newNormal, low]);
    const empty = await next(token);
    t.equal(empty.statusCode, 204, 'nothing left');
    t.equal(empty.body, '');
  });

  await t.test('an open ticket the customer wrote to again is eligible like a new one', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const { token } = await queueAgent([[dep, 'solver']]);
    const id = await openTicket(dep);
    for (const payload of [
      { kind: 'reply', body: 'We are on it.' },
      { kind: 'customer', body: 'Any news?' },
    ]) {
      await ctx.request({ method: 'POST', url: `/v1/tickets/${id}/messages`, token: admin, payload });
    }
    t.equal((await ticketRow(id)).status, 'open');
    const res = await next(token);
    t.equal(res.statusCode, 200);
    t.equal(res.json().id, id);
  });

  await t.test(
    'postponed, answered, resolved, spam, deleted and others’ tickets are never handed out',
    async (t) => {
      const dep = await makeDepartment(ctx.db);
      const { token } = await queueAgent([[dep, 'solver']]);
      const { agent: colleague } = await queueAgent([[dep, 'solver']]);
      const ids = {
        postponed: await openTicket(dep),
        answered: await openTicket(dep),
        resolved: await openTicket(dep),
        spam: await openTicket(dep),
        deleted: await openTicket(dep),
        colleague: await openTicket(dep, { assignee_id: colleague.id }),
        noDepartment: await openTicket(null),
      };
      await change(ids.postponed, 'PATCH', {
        status: 'postponed',
        postponed_until: new Date(Date.now() + 86_400_000).toISOString(),
      });
      await change(ids.answered, 'PATCH', { status: 'answered' });
      await change(ids.resolved, 'PATCH', { status: 'resolved' });
      await change(ids.spam, 'PATCH', { status: 'spam' });
      await change(ids.deleted, 'DELETE');
      const before = await Promise.all(Object.values(ids).map(ticketRow));

      const res = await next(token);
      t.equal(res.statusCode, 204);
      t.same(await Promise.all(Object.values(ids).map(ticketRow)), before, 'nothing changed');
      t.equal((await ticketRow(ids.colleague)).assignee_id, colleague.id);
    },
  );

  await t.test('only departments with the queue on, where the caller solves', async (t) => {
    const on = await makeDepartment(ctx.db);
    const off = await makeDepartment(ctx.db);
    const foreign = await makeDepartment(ctx.db);
    await ctx.db.updateTable('departments').set({ to_solve_enabled: false }).where('id', '=', off).execute();
    const inOff = await openTicket(off, { priority: 'urgent' });
    const inForeign = await openTicket(foreign, { priority: 'urgent' });
    const inOn = await openTicket(on, { priority: 'low' });

    const reader = await queueAgent([[on, 'reader']]);
    t.equal((await next(reader.token)).statusCode, 204, 'readers only read');

    const solver = await queueAgent([
      [on, 'solver'],
      [off, 'manager'],
    ]);
    const first = await next(solver.token);
    t.equal(first.json().id, inOn, 'the department with the queue off is skipped, even for urgent tickets');
    await change(inOn, 'PATCH', { status: 'answered' });
    t.equal((await next(solver.token)).statusCode, 204, 'another department’s ticket is never handed out');

    for (const role of ['supervisor', 'manager'] as const) {
      const id = await openTicket(on);
      const res = await next((await queueAgent([[on, role]])).token);
      t.equal(res.json().id, id, `${role}s take tickets too`);
    }

    const { token: adminWithoutDepartments } = await queueAgent([], 'admin');
    t.equal((await next(adminWithoutDepartments)).statusCode, 204, 'admins: only their own departments');
    const { agent: owner, token: ownerToken } = await queueAgent([[foreign, 'solver']], 'owner');
    const res = await next(ownerToken);
    t.equal(res.json().id, inForeign, 'an owner who solves in a department is fed from it');
    t.equal(res.json().assignee_id, owner.id);
    t.equal(
      (await ticketRow(inOff)).assignee_id,
      null,
      'the ticket in the department with the queue off stays',
    );
  });

  await t.test('read-only tokens and callers without credentials cannot take tickets', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const { agent } = await queueAgent([[dep, 'solver']]);
    const id = await openTicket(dep);
    const session = tokenFor(agent);
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/api-tokens',
      token: session,
      payload: { name: 'dashboard', scopes: ['read'] },
    });
    t.equal(created.statusCode, 201);
    const readOnly = await next(created.json().secret);
    t.equal(readOnly.statusCode, 403);
    t.equal(readOnly.json().code, 'insufficient_scope');
    const anonymous = await ctx.request({ method: 'POST', url: '/v1/queue/next' });
    t.equal(anonymous.statusCode, 401);
    t.equal((await ticketRow(id)).assignee_id, null, 'still unassigned');
  });

  await t.test(
    '60 concurrent requests from 60 agents for 40 tickets: each ticket to one agent',
    async (t) => {
      const dep = await makeDepartment(ctx.db);
      const tickets = new Set<string>();
      for (let i = 0; i < 40; i++)
        tickets.add(
          await openTicket(dep, { priority: (['low', 'normal', 'high', 'urgent'] as const)[i % 4] }),
        );
      const agents = await Promise.all(Array.from({ length: 60 }, () => queueAgent([[dep, 'solver']])));

      const results = await Promise.all(
        agents.map(async ({ agent, token }) => ({ agent, res: await next(token) })),
      );

      const handed = results.filter((r) => r.res.statusCode === 200);
      t.same(
        results.filter((r) => r.res.statusCode !== 200).map((r) => r.res.statusCode),
        Array(20).fill(204),
        'the rest hear that the queue is empty',
      );
      t.equal(
        handed.length,
        Math.min(results.length, tickets.size),
        'as many handed out as requests or tickets allow',
      );
      const ids = handed.map((r) => r.res.json().id as string);
      t.equal(new Set(ids).size, ids.length, 'no ticket handed out twice');
      t.ok(
        ids.every((id) => tickets.has(id)),
        'only the department’s tickets',
      );
      for (const { agent, res } of handed) {
        const id = res.json().id as string;
        t.equal(res.json().assignee_id, agent.id);
        t.equal(
          (await ticketRow(id)).assignee_id,
          agent.id,
          'assigned to exactly the agent that received it',
        );
        const events = await assignedEvents(id);
        t.equal(events.length, 1, 'one assignment in the history');
        t.equal(events[0]?.actor_agent_id, agent.id);
      }
    },
  );

  // On PGlite the calls queue up on its one connection, so this checks the semantics there; on a
  // server the four calls really race (before the per-agent lock, each took a ticket of its own).
  await t.test('four concurrent calls of one agent: one hand-out, the same ticket to all four', async (t) => {
    for (let round = 0; round < 5; round++) {
      const dep = await makeDepartment(ctx.db);
      for (let i = 0; i < 6; i++) await openTicket(dep);
      const { agent, token } = await queueAgent([[dep, 'solver']]);
      const { agent: colleague, token: colleagueToken } = await queueAgent([[dep, 'solver']]);

      const calls = [
        token,
        token,
        token,
        token,
        colleagueToken,
        colleagueToken,
        colleagueToken,
        colleagueToken,
      ];
      const results = (await Promise.all(calls.map((tk) => next(tk)))).map((res) => ({
        statusCode: res.statusCode,
        id: res.statusCode === 200 ? (res.json().id as string) : null,
      }));

      t.same(
        results.map((r) => r.statusCode),
        Array(8).fill(200),
        `round ${round}: every call answers`,
      );
      for (const [who, slice] of [
        [agent, results.slice(0, 4)],
        [colleague, results.slice(4)],
      ] as const) {
        const ids = new Set(slice.map((r) => r.id));
        t.equal(ids.size, 1, `round ${round}: all four calls of one agent get the same ticket`);
        const held = await ctx.db
          .selectFrom('tickets')
          .select('id')
          .where('department_id', '=', dep)
          .where('assignee_id', '=', who.id)
          .execute();
        t.same(
          held.map((r) => r.id),
          [...ids],
          `round ${round}: the agent holds exactly that one ticket`,
        );
        t.equal((await assignedEvents(slice[0]!.id!)).length, 1, `round ${round}: assigned once`);
      }
      t.not(results[0]!.id, results[4]!.id, `round ${round}: colleagues get different tickets`);
    }
  });

  await t.test('one hand-out at a time: the agent’s own ticket comes back before any other', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const { agent, token } = await queueAgent([[dep, 'solver']]);
    const first = await openTicket(dep, { priority: 'low' });
    t.equal((await next(token)).json().id, first);
    // A more urgent ticket arrives while the agent holds one: it waits for the next free agent.
    const urgent = await openTicket(dep, { priority: 'urgent' });
    t.equal((await next(token)).json().id, first, 'the ticket they hold, not the more urgent one');
    t.equal((await ticketRow(urgent)).assignee_id, null, 'the urgent ticket stays unassigned');
    await change(first, 'PATCH', { status: 'answered' });
    const after = await next(token);
    t.equal(after.json().id, urgent, 'once they worked theirs, the next one');
    t.equal(after.json().assignee_id, agent.id);
  });

  await t.test(
    'a colleague’s scan holding the agent’s own ticket for a moment does not hand the agent a second',
    twoConnections,
    async (t) => {
      const dep = await makeDepartment(ctx.db);
      const { agent, token } = await queueAgent([[dep, 'solver']]);
      const held = await openTicket(dep, { priority: 'high' });
      t.equal((await next(token)).json().id, held);
      const other = await openTicket(dep);
      // What a colleague's FOR UPDATE SKIP LOCKED scan leaves behind when it locked this row on a
      // snapshot taken before the assignment, then found it taken: a lock until its transaction ends.
      const colleague = await colleagueConnection(t);
      await colleague.query('begin');
      await colleague.query('select id from tickets where id = $1 for update', [held]);
      const asked = next(token);
      // The call must really be waiting for that lock, or the test would prove nothing.
      for (let waited = 0; ; waited += 50) {
        const waiting = await colleague.query(
          "select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        if (waiting.rowCount) break;
        if (waited > 10_000) throw new Error('the queue call never waited for the held row');
        await new Promise((r) => setTimeout(r, 50));
      }
      await colleague.query('commit');
      const res = await asked;
      t.equal(res.statusCode, 200);
      t.equal(res.json().id, held, 'the ticket the agent holds, once the colleague’s lock is gone');
      t.equal((await ticketRow(other)).assignee_id, null, 'no second ticket for the agent');
      t.equal(res.json().assignee_id, agent.id);
    },
  );

  await t.test(
    'the queue’s first tickets locked by others: the first free one, however far down',
    twoConnections,
    async (t) => {
      // The queue reads a few candidates per department first (8, then 128), then everything:
      // locks on 3, 10 and 137 of the first tickets reach each of the three reads.
      const dep = await makeDepartment(ctx.db);
      for (let i = 0; i < 145; i++) await openTicket(dep);
      const colleague = await colleagueConnection(t);
      for (const locked of [3, 10, 137]) {
        const free = (
          await colleague.query(
            `select id from tickets where department_id = $1 and assignee_id is null
             order by sla_due_at, priority_rank desc, waiting_since, id`,
            [dep],
          )
        ).rows.map((r) => r.id as string);
        await colleague.query('begin');
        await colleague.query('select id from tickets where id = any($1::uuid[]) for update', [
          free.slice(0, locked),
        ]);
        const { agent, token } = await queueAgent([[dep, 'solver']]);
        const res = await next(token);
        await colleague.query('commit');
        t.equal(res.statusCode, 200, `${locked} locked: a ticket is handed out`);
        t.equal(res.json().id, free[locked], `${locked} locked: the first free one in queue order`);
        t.equal(res.json().assignee_id, agent.id);
      }
    },
  );

  await t.test(
    'one department’s first tickets locked: its next one before a less urgent one of another',
    twoConnections,
    async (t) => {
      const urgent = await makeDepartment(ctx.db);
      const calm = await makeDepartment(ctx.db);
      const high: string[] = [];
      for (let i = 0; i < 10; i++) high.push(await openTicket(urgent, { priority: 'high' }));
      const low = await openTicket(calm, { priority: 'low' });
      const colleague = await colleagueConnection(t);
      await colleague.query('begin');
      // The 8 the first read of the urgent department sees, held by others.
      await colleague.query('select id from tickets where id = any($1::uuid[]) for update', [
        high.slice(0, 8),
      ]);
      const { token } = await queueAgent([
        [urgent, 'solver'],
        [calm, 'solver'],
      ]);
      const res = await next(token);
      await colleague.query('commit');
      t.equal(res.json().id, high[8], 'the ninth urgent one, not the low one');
      t.equal((await ticketRow(low)).assignee_id, null);
    },
  );

  await t.test('many concurrent requests from a few agents: nobody gets a colleague’s ticket', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const tickets = new Set<string>();
    for (let i = 0; i < 40; i++) tickets.add(await openTicket(dep));
    const agents = await Promise.all(Array.from({ length: 6 }, () => queueAgent([[dep, 'solver']])));

    const results = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const { agent, token } = agents[i % agents.length]!;
        return { agent, res: await next(token) };
      }),
    );

    // An agent's own waiting ticket stays in their queue, so asking again may hand the same
    // ticket back to the same agent, never to anyone else.
    t.ok(
      results.every((r) => r.res.statusCode === 200),
      'every agent always gets a ticket',
    );
    const receivers = new Map<string, Set<string>>();
    for (const { agent, res } of results) {
      const id = res.json().id as string;
      t.ok(tickets.has(id));
      receivers.set(id, (receivers.get(id) ?? new Set()).add(agent.id));
    }
    for (const [id, who] of receivers) {
      t.equal(who.size, 1, 'handed to one agent only');
      t.equal((await ticketRow(id)).assignee_id, [...who][0], 'and assigned to that agent');
      t.equal((await assignedEvents(id)).length, 1, 'assigned once');
    }
    const assigned = await ctx.db
      .selectFrom('tickets')
      .select('id')
      .where('department_id', '=', dep)
      .where('assignee_id', 'is not', null)
      .execute();
    t.same(
      new Set(assigned.map((r) => r.id)),
      new Set(receivers.keys()),
      'no ticket assigned without being handed out',
    );
  });
});
