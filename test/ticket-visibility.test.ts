import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment, mintApiToken } from './helpers/app.ts';
import { ago, GHOST, makeTicket, ticketState } from './helpers/tickets.ts';

const ACTORS = [
  'admin',
  'reader',
  'solver',
  'supervisor',
  'manager',
  'nonMember',
  'outsider',
  'disabled',
  'readonly',
  'solverApi',
  'nonMemberApi',
] as const;
type ActorName = (typeof ACTORS)[number];
// API tokens carry their agent's departments and roles: the same answers as the agent's session.
const SAME_AS: Partial<Record<ActorName, ActorName>> = { solverApi: 'solver', nonMemberApi: 'nonMember' };
const column = (actor: ActorName) => ACTORS.indexOf(SAME_AS[actor] ?? actor);

interface Fixture {
  id: string;
  contact_id: string;
  word: string;
}

interface Route {
  name: string;
  /** The ticket is deleted before the request (restore). */
  deleted?: boolean;
  /** Reads answer 200 when allowed; writes must leave a trace in the history when they succeed. */
  write: boolean;
  request(ticket: Fixture, ids: Record<string, string>): InjectOptions;
  /** Lists and counts answer 200 to everyone signed in; what they contain is checked separately. */
  contains?(res: LightMyRequestResponse, ticket: Fixture, departmentId: string): boolean;
}

const ids = (res: LightMyRequestResponse) => (res.json().data as { id: string }[]).map((x) => x.id);

t.test('ticket visibility and roles', async (t) => {
  const ctx = await buildTestApp(t);
  const admin = await agentWithToken(ctx, { role: 'admin' });

  await t.test('a help desk with no departments shows every ticket to every agent', async (t) => {
    const departments = await ctx.request({ method: 'GET', url: '/v1/departments', token: admin.token });
    t.same(departments.json().data, [], 'no departments yet');
    const ann = await agentWithToken(ctx, { name: 'Ann' });
    const ben = await agentWithToken(ctx, { name: 'Ben' });
    const own = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: ann.token,
      payload: {
        subject: 'Printer on fire',
        contact: { email: 'flames@example.com' },
        message: { body: 'It is really burning' },
        assignee_id: ann.agent.id,
      },
    });
    t.equal(own.statusCode, 201, own.body);
    const other = await makeTicket(ctx.db, { subject: 'Lost parcel' });
    for (const viewer of [ann, ben]) {
      for (const id of [own.json().id, other.id]) {
        const res = await ctx.request({ method: 'GET', url: `/v1/tickets/${id}`, token: viewer.token });
        t.equal(res.statusCode, 200, `${viewer.agent.name} reads ${id}`);
      }
      const list = await ctx.request({ method: 'GET', url: '/v1/tickets', token: viewer.token });
      t.same(ids(list).sort(), [own.json().id, other.id].sort(), `${viewer.agent.name} lists both`);
      const counts = await ctx.request({ method: 'GET', url: '/v1/tickets/counts', token: viewer.token });
      t.same(counts.json(), {
        departments: [],
        no_department: { new: 2, open: 0, answered: 0, postponed: 0, resolved: 0 },
      });
    }
    // every agent may work them, even one assigned to a colleague (triage)
    const resolve = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${own.json().id}`,
      token: ben.token,
      payload: { status: 'resolved' },
    });
    t.equal(resolve.statusCode, 200, resolve.body);
    t.equal(resolve.json().status, 'resolved');
  });

  // From here on the help desk has departments.
  const support = await makeDepartment(ctx.db, 'Support');
  const billing = await makeDepartment(ctx.db, 'Billing');
  const reader = await agentWithToken(ctx, { name: 'Reader', departments: [[support, 'reader']] });
  const solver = await agentWithToken(ctx, { name: 'Solver', departments: [[support, 'solver']] });
  const colleague = await agentWithToken(ctx, { name: 'Colleague', departments: [[support, 'solver']] });
  const supervisor = await agentWithToken(ctx, {
    name: 'Supervisor',
    departments: [[support, 'supervisor']],
  });
  const manager = await agentWithToken(ctx, { name: 'Manager', departments: [[support, 'manager']] });
  const nonMember = await agentWithToken(ctx, { name: 'Elsewhere', departments: [[billing, 'manager']] });
  // The assignee outside the department: a solver in Support who was removed from it (through the
  // API) while still holding tickets there.
  const outsider = await agentWithToken(ctx, { name: 'Leaver', departments: [[support, 'solver']] });
  const disabled = await agentWithToken(ctx, { name: 'Dormant', departments: [[support, 'manager']] });

  await t.test('an assignee who left the department keeps seeing and working their ticket', async (t) => {
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: supervisor.token,
      payload: {
        subject: 'Assigned before leaving',
        contact: { email: 'leaver-case@example.com' },
        message: { body: 'Help' },
        department_id: support,
        assignee_id: outsider.agent.id,
      },
    });
    t.equal(created.statusCode, 201, created.body);
    const id = created.json().id;
    const removed = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${support}/members/${outsider.agent.id}`,
      token: admin.token,
    });
    t.equal(removed.statusCode, 204);
    const get = await ctx.request({ method: 'GET', url: `/v1/tickets/${id}`, token: outsider.token });
    t.equal(get.statusCode, 200);
    t.equal(get.json().assignee_id, outsider.agent.id);
    const list = await ctx.request({
      method: 'GET',
      url: `/v1/tickets?department_id=${support}`,
      token: outsider.token,
    });
    t.same(ids(list), [id], 'of the department, only the ticket assigned to them');
    const counts = await ctx.request({ method: 'GET', url: '/v1/tickets/counts', token: outsider.token });
    const supportCounts = counts
      .json()
      .departments.find((d: { department_id: string }) => d.department_id === support);
    t.same(supportCounts?.counts, { new: 1, open: 0, answered: 0, postponed: 0, resolved: 0 });
    t.notOk(
      counts.json().departments.some((d: { department_id: string }) => d.department_id === billing),
      'no departments they neither belong to nor hold tickets of',
    );
    const reply = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${id}/messages`,
      token: outsider.token,
      payload: { kind: 'reply', body: 'On it.' },
    });
    t.equal(reply.statusCode, 201);
    const other = await makeTicket(ctx.db, { department_id: support });
    const notTheirs = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${other.id}`,
      token: outsider.token,
    });
    t.equal(notTheirs.statusCode, 404, 'the rest of the department is out of reach');
  });

  const disable = await ctx.request({
    method: 'PATCH',
    url: `/v1/agents/${disabled.agent.id}`,
    token: admin.token,
    payload: { status: 'disabled' },
  });
  if (disable.statusCode !== 200) throw new Error(`disabling failed: ${disable.body}`);

  const tokens: Record<ActorName, string> = {
    admin: admin.token,
    reader: reader.token,
    solver: solver.token,
    supervisor: supervisor.token,
    manager: manager.token,
    nonMember: nonMember.token,
    outsider: outsider.token,
    disabled: disabled.token,
    readonly: await mintApiToken(ctx, admin.token, ['read'], 'read-only export'),
    solverApi: await mintApiToken(ctx, solver.token),
    nonMemberApi: await mintApiToken(ctx, nonMember.token),
  };

  const routes: Route[] = [
    { name: 'GET ticket', write: false, request: (x) => ({ method: 'GET', url: `/v1/tickets/${x.id}` }) },
    {
      name: 'PATCH priority',
      write: true,
      request: (x) => ({ method: 'PATCH', url: `/v1/tickets/${x.id}`, payload: { priority: 'urgent' } }),
    },
    {
      name: 'PATCH status',
      write: true,
      request: (x) => ({ method: 'PATCH', url: `/v1/tickets/${x.id}`, payload: { status: 'resolved' } }),
    },
    {
      name: 'PATCH assignee',
      write: true,
      request: (x, a) => ({
        method: 'PATCH',
        url: `/v1/tickets/${x.id}`,
        payload: { assignee_id: a.colleague },
      }),
    },
    { name: 'DELETE', write: true, request: (x) => ({ method: 'DELETE', url: `/v1/tickets/${x.id}` }) },
    {
      name: 'restore',
      write: true,
      deleted: true,
      request: (x) => ({ method: 'POST', url: `/v1/tickets/${x.id}/restore` }),
    },
    {
      name: 'GET messages',
      write: false,
      request: (x) => ({ method: 'GET', url: `/v1/tickets/${x.id}/messages` }),
    },
    {
      name: 'reply',
      write: true,
      request: (x) => ({
        method: 'POST',
        url: `/v1/tickets/${x.id}/messages`,
        payload: { kind: 'reply', body: 'Hi!' },
      }),
    },
    {
      name: 'note',
      write: true,
      request: (x) => ({
        method: 'POST',
        url: `/v1/tickets/${x.id}/messages`,
        payload: { kind: 'note', body: 'Hmm' },
      }),
    },
    {
      name: 'customer message',
      write: true,
      request: (x) => ({
        method: 'POST',
        url: `/v1/tickets/${x.id}/messages`,
        payload: { kind: 'customer', body: 'Any news?' },
      }),
    },
    {
      name: 'tags',
      write: true,
      request: (x) => ({ method: 'POST', url: `/v1/tickets/${x.id}/tags`, payload: { add: ['vip'] } }),
    },
    {
      name: 'transfer',
      write: true,
      request: (x, a) => ({
        method: 'POST',
        url: `/v1/tickets/${x.id}/transfer`,
        payload: { department_id: a.billing },
      }),
    },
    {
      name: 'history',
      write: false,
      request: (x) => ({ method: 'GET', url: `/v1/tickets/${x.id}/history` }),
    },
    {
      name: 'rating',
      write: true,
      request: (x) => ({
        method: 'POST',
        url: `/v1/tickets/${x.id}/ratings`,
        payload: { value: 'positive' },
      }),
    },
    {
      name: 'list',
      write: false,
      request: (x) => ({ method: 'GET', url: `/v1/tickets?contact_id=${x.contact_id}` }),
      contains: (res, x) => ids(res).includes(x.id),
    },
    {
      name: 'search',
      write: false,
      request: (x) => ({ method: 'GET', url: `/v1/tickets?q=${x.word}` }),
      contains: (res, x) => ids(res).includes(x.id),
    },
    {
      name: 'counts',
      write: false,
      request: () => ({ method: 'GET', url: '/v1/tickets/counts' }),
      contains: (res, _x, department) =>
        res.json().departments.some((d: { department_id: string }) => d.department_id === department),
    },
    {
      name: 'record call',
      write: true,
      request: (x) => ({
        method: 'POST',
        url: '/v1/calls',
        payload: {
          ticket_id: x.id,
          direction: 'inbound',
          outcome: 'missed',
          from_number: '+420 601 000 111',
          started_at: ago(300),
        },
      }),
    },
    {
      name: 'record chat',
      write: true,
      request: (x) => ({
        method: 'POST',
        url: '/v1/chats',
        payload: {
          ticket_id: x.id,
          started_at: ago(600),
          missed: true,
          ended_at: ago(500),
          messages: [{ from: 'customer', body: 'Anyone there?', sent_at: ago(590) }],
        },
      }),
    },
  ];

  // The ticket: in Support, assigned to the agent who has left Support.
  // biome-ignore format: the table reads best aligned
  const MATRIX: Record<string, number[]> = {
    //                   admin  reader solver superv mngr   nonMem outsid disabl rdonly
    'GET ticket':       [200,   200,   200,   200,   200,   404,   200,   401,   200],
    'PATCH priority':   [200,   403,   200,   200,   200,   404,   200,   401,   403],
    // solvers change the status of their own or unassigned tickets only
    'PATCH status':     [200,   403,   403,   200,   200,   404,   200,   401,   403],
    'PATCH assignee':   [200,   403,   403,   200,   200,   404,   403,   401,   403],
    DELETE:             [204,   403,   403,   204,   204,   404,   403,   401,   403],
    restore:            [200,   403,   403,   200,   200,   404,   403,   401,   403],
    'GET messages':     [200,   200,   200,   200,   200,   404,   200,   401,   200],
    reply:              [201,   403,   201,   201,   201,   404,   201,   401,   403],
    note:               [201,   403,   201,   201,   201,   404,   201,   401,   403],
    'customer message': [201,   403,   201,   201,   201,   404,   201,   401,   403],
    tags:               [200,   403,   200,   200,   200,   404,   200,   401,   403],
    transfer:           [200,   403,   403,   200,   200,   404,   403,   401,   403],
    history:            [200,   200,   200,   200,   200,   404,   200,   401,   200],
    rating:             [201,   403,   201,   201,   201,   404,   201,   401,   403],
    // lists and counts answer everyone signed in; the matrix test checks what they contain
    list:               [200,   200,   200,   200,   200,   200,   200,   401,   200],
    search:             [200,   200,   200,   200,   200,   200,   200,   401,   200],
    counts:             [200,   200,   200,   200,   200,   200,   200,   401,   200],
    'record call':      [201,   403,   201,   201,   201,   404,   201,   401,   403],
    'record chat':      [201,   403,   201,   201,   201,   404,   201,   401,   403],
  };

  await t.test('the matrix: every ticket route for every kind of caller', async (t) => {
    t.same(Object.keys(MATRIX).sort(), routes.map((r) => r.name).sort(), 'one row per route');
    const canRead = (actor: ActorName) => MATRIX['GET ticket']![column(actor)] === 200;
    let n = 0;
    for (const route of routes) {
      for (const actor of ACTORS) {
        const expected = MATRIX[route.name]![column(actor)]!;
        const word = `matrixword${++n}`;
        const record = await makeTicket(ctx.db, {
          subject: `Matrix ${word}`,
          department_id: support,
          assignee_id: outsider.agent.id,
        });
        const fixture: Fixture = { id: record.id, contact_id: record.contact_id, word };
        if (route.deleted) {
          const del = await ctx.request({
            method: 'DELETE',
            url: `/v1/tickets/${record.id}`,
            token: admin.token,
          });
          t.equal(del.statusCode, 204);
        }
        const before = await ticketState(ctx.db, record.id);
        const res = await ctx.request({
          ...route.request(fixture, { colleague: colleague.agent.id, billing }),
          token: tokens[actor],
        });
        const label = `${route.name} as ${actor}`;
        t.equal(res.statusCode, expected, `${label}: ${res.statusCode === expected ? '' : res.body}`);
        const after = await ticketState(ctx.db, record.id);
        if (res.statusCode >= 400) {
          t.same(after, before, `${label}: refused, nothing changed`);
          const code = res.json().code;
          if (actor === 'disabled') t.equal(code, 'agent_disabled', label);
          else if (actor === 'readonly') t.equal(code, 'insufficient_scope', label);
          else if (res.statusCode === 404) t.equal(code, 'ticket_not_found', label);
          else t.match(code, /^(solver|supervisor)_required$/, label);
        } else if (route.write) {
          t.ok(after.events > before.events, `${label}: recorded in the history`);
        } else {
          t.same(after, before, `${label}: a read changes nothing`);
        }
        if (route.contains && res.statusCode === 200) {
          t.equal(route.contains(res, fixture, support), canRead(actor), `${label}: the same policy as GET`);
        }
      }
    }
  });

  await t.test('tickets in no department: every agent sees them and triages them', async (t) => {
    const ticket = await makeTicket(ctx.db, { subject: 'Unsorted', assignee_id: colleague.agent.id });
    for (const viewer of [nonMember, reader]) {
      const get = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token: viewer.token });
      t.equal(get.statusCode, 200);
    }
    const status = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: reader.token,
      payload: { status: 'spam' },
    });
    t.equal(status.statusCode, 200, 'a reader elsewhere changes the status of a colleague’s unsorted ticket');
    t.equal(status.json().status, 'spam');
    const reassign = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: nonMember.token,
      payload: { assignee_id: null, status: 'open' },
    });
    t.equal(reassign.statusCode, 200);
    t.equal(reassign.json().assignee_id, null);
    const transfer = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/transfer`,
      token: nonMember.token,
      payload: { department_id: support, note: 'Support should look at this' },
    });
    t.equal(transfer.statusCode, 200, transfer.body);
    t.equal(transfer.json().department_id, support);
    const gone = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}`,
      token: nonMember.token,
    });
    t.equal(gone.statusCode, 404, 'once in a department they are not in, it is out of their reach');
    const readerNow = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: reader.token,
      payload: { status: 'resolved' },
    });
    t.equal(readerNow.statusCode, 403, 'and a reader of that department now only reads it');
  });

  await t.test('solvers take unassigned tickets and work their own; supervisors reassign', async (t) => {
    const ticket = await makeTicket(ctx.db, { department_id: support });
    const giveAway = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: solver.token,
      payload: { assignee_id: colleague.agent.id },
    });
    t.equal(giveAway.statusCode, 403);
    t.equal(giveAway.json().code, 'supervisor_required');
    const resolve = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: solver.token,
      payload: { status: 'resolved' },
    });
    t.equal(resolve.statusCode, 200, 'status of an unassigned ticket');
    const take = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: solver.token,
      payload: { assignee_id: solver.agent.id, status: 'open' },
    });
    t.equal(take.statusCode, 200, take.body);
    t.equal(take.json().assignee_id, solver.agent.id);
    const steal = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: colleague.token,
      payload: { assignee_id: colleague.agent.id },
    });
    t.equal(steal.statusCode, 403, 'a solver does not take a ticket from another');
    const colleagueStatus = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: colleague.token,
      payload: { status: 'resolved' },
    });
    t.equal(colleagueStatus.statusCode, 403);
    t.equal(colleagueStatus.json().code, 'supervisor_required');
    const colleagueTags = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/tags`,
      token: colleague.token,
      payload: { add: ['Needs-Info'] },
    });
    t.equal(colleagueTags.statusCode, 200, 'but tags, replies and notes are fine');

    for (const [assignee, code] of [
      [reader.agent.id, 'assignee_not_member'],
      [nonMember.agent.id, 'assignee_not_member'],
      [disabled.agent.id, 'agent_disabled'],
      [GHOST, 'agent_not_found'],
    ] as const) {
      const before = await ticketState(ctx.db, ticket.id);
      const res = await ctx.request({
        method: 'PATCH',
        url: `/v1/tickets/${ticket.id}`,
        token: supervisor.token,
        payload: { assignee_id: assignee },
      });
      t.equal(res.statusCode, 422, code);
      t.equal(res.json().code, code);
      t.same(await ticketState(ctx.db, ticket.id), before);
    }
    const reassign = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: supervisor.token,
      payload: { assignee_id: colleague.agent.id, status: 'resolved' },
    });
    t.equal(reassign.statusCode, 200);
    t.equal(reassign.json().assignee_id, colleague.agent.id);
    t.equal(reassign.json().status, 'resolved');

    // creating: solvers may open tickets for themselves, only supervisors for others
    const payload = {
      subject: 'Phone order',
      contact: { phone: '+1 555 0100' },
      message: { body: 'Order 12' },
    };
    const forOther = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: solver.token,
      payload: { ...payload, department_id: support, assignee_id: colleague.agent.id },
    });
    t.equal(forOther.statusCode, 403);
    const forSelf = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: solver.token,
      payload: { ...payload, department_id: support, assignee_id: solver.agent.id },
    });
    t.equal(forSelf.statusCode, 201);
  });

  await t.test('one policy: lists, search, counts and single reads agree for every caller', async (t) => {
    const make = (input: Parameters<typeof makeTicket>[1]) =>
      makeTicket(ctx.db, { subject: 'Policy zebracorn', tags: ['policy-check'], ...input });
    const tickets = [
      await make({ department_id: support }),
      await make({ department_id: support, assignee_id: solver.agent.id }),
      await make({ department_id: support, assignee_id: outsider.agent.id }),
      await make({ department_id: billing }),
      await make({ department_id: billing, assignee_id: outsider.agent.id }),
      await make({ department_id: billing, assignee_id: nonMember.agent.id }),
      await make({}),
      await make({ department_id: support, priority: 'high' }),
    ];
    const deleted = tickets.at(-1)!;
    t.equal(
      (await ctx.request({ method: 'DELETE', url: `/v1/tickets/${deleted.id}`, token: admin.token }))
        .statusCode,
      204,
    );
    const all = ['new', 'open', 'answered', 'postponed', 'resolved', 'spam', 'deleted']
      .map((s) => `status=${s}`)
      .join('&');
    for (const actor of ACTORS.filter((a) => a !== 'disabled')) {
      const token = tokens[actor];
      const readable: string[] = [];
      for (const ticket of tickets) {
        const res = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token });
        t.ok([200, 404].includes(res.statusCode));
        if (res.statusCode === 200) readable.push(ticket.id);
      }
      const listed: string[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/v1/tickets?tag=policy-check&${all}&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
        const page = await ctx.request({ method: 'GET', url, token });
        t.equal(page.statusCode, 200);
        listed.push(...ids(page));
        cursor = page.json().next_cursor;
      } while (cursor);
      t.same(listed.sort(), [...readable].sort(), `${actor}: the list shows exactly what GET shows`);
      const search = await ctx.request({ method: 'GET', url: `/v1/tickets?q=zebracorn&${all}`, token });
      t.same(ids(search).sort(), [...readable].sort(), `${actor}: search too`);
      const live = await ctx.request({ method: 'GET', url: '/v1/tickets?q=zebracorn', token });
      t.same(
        ids(live).sort(),
        readable.filter((id) => id !== deleted.id).sort(),
        `${actor}: deleted hidden by default`,
      );
    }
    const expectations: [ActorName, number][] = [
      ['admin', 7],
      ['reader', 4], // 3 in Support + the one in no department
      ['outsider', 3], // 2 assigned to them + no department
      ['nonMember', 4], // 3 in Billing + no department
    ];
    for (const [actor, count] of expectations) {
      const res = await ctx.request({ method: 'GET', url: '/v1/tickets?q=zebracorn', token: tokens[actor] });
      t.equal(ids(res).length, count, actor);
    }
  });
});
