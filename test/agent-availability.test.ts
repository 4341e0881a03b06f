import t from 'tap';
import { confirmPresence } from '../src/domains/agents/repository.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';
import { makeTicket } from './helpers/tickets.ts';

// Agent availability (issue 14) through the API: presence set, confirmed and timing out;
// capacity; membership levels; and round robin / least busy limited to available agents and to
// a level, on real tickets.

const TIMEOUT = 120;

t.test('agent availability', async (t) => {
  const ctx = await buildTestApp(t, { PRESENCE_TIMEOUT_SECONDS: String(TIMEOUT) });
  const admin = await agentWithToken(ctx, { role: 'admin', name: 'Ada Admin' });

  type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  const api = (method: Method, url: string, token: string, payload?: unknown) =>
    ctx.request({ method, url, token, ...(payload !== undefined && { payload: payload as object }) });
  const settingsEvents = async () =>
    Number(
      (
        await ctx.db
          .selectFrom('settings_events')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const agentRow = (id: string) =>
    ctx.db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  /** Puts the agent's last confirmation `seconds` in the past, as if their client went quiet. */
  const confirmedAgo = (id: string, status: 'online' | 'away' | 'offline', seconds: number) =>
    confirmPresence(ctx.db, id, status, {
      at: new Date(Date.now() - seconds * 1000),
      timeoutSeconds: TIMEOUT,
    });

  await t.test('presence: set, heartbeat, read, time out, come back', async (t) => {
    const { agent, token } = await agentWithToken(ctx, { name: 'Pia Present' });
    const events = await settingsEvents();

    const initial = await api('GET', '/v1/me/presence', token);
    t.equal(initial.statusCode, 200);
    t.same(initial.json(), {
      status: 'offline',
      stated_status: 'offline',
      changed_at: null,
      confirmed_at: null,
      expires_at: null,
    });

    const online = await api('PUT', '/v1/me/presence', token, { status: 'online' });
    t.equal(online.statusCode, 200);
    const first = online.json();
    t.equal(first.status, 'online');
    t.equal(first.stated_status, 'online');
    t.equal(first.changed_at, first.confirmed_at, 'a change of presence is dated by its confirmation');
    t.equal(
      Date.parse(first.expires_at) - Date.parse(first.confirmed_at),
      TIMEOUT * 1000,
      'holds for the configured timeout',
    );

    await new Promise((resolve) => setTimeout(resolve, 5));
    const beat = (await api('PUT', '/v1/me/presence', token, { status: 'online' })).json();
    t.equal(beat.status, 'online');
    t.equal(beat.changed_at, first.changed_at, 'a heartbeat does not move changed_at');
    t.ok(Date.parse(beat.confirmed_at) > Date.parse(first.confirmed_at), 'but confirms again');
    t.ok(Date.parse(beat.expires_at) > Date.parse(first.expires_at), 'and moves the expiry');

    const shown = (await api('GET', `/v1/agents/${agent.id}`, admin.token)).json();
    t.equal(shown.presence, 'online', 'admins read it on the agent');
    t.equal(shown.presence_changed_at, first.changed_at);
    const listed = (await api('GET', `/v1/agents?q=${encodeURIComponent('Pia Present')}`, token)).json();
    t.match(listed.data, [{ id: agent.id, presence: 'online', presence_changed_at: first.changed_at }]);

    // The client went quiet 200 s ago: past the 120 s timeout it reads offline, changed when it ran out.
    const quiet = await confirmedAgo(agent.id, 'online', 200);
    const ranOut = new Date(quiet!.presence_confirmed_at!.getTime() + TIMEOUT * 1000).toISOString();
    const timedOut = (await api('GET', '/v1/me/presence', token)).json();
    t.equal(timedOut.status, 'offline', 'offline after the timeout');
    t.equal(timedOut.stated_status, 'online', 'what was said is kept');
    t.equal(timedOut.changed_at, ranOut, 'it changed when the confirmation ran out');
    t.match((await api('GET', `/v1/agents/${agent.id}`, admin.token)).json(), {
      presence: 'offline',
      presence_changed_at: ranOut,
    });
    t.equal((await agentRow(agent.id)).presence, 'online', 'no job rewrote the row');

    const back = (await api('PUT', '/v1/me/presence', token, { status: 'online' })).json();
    t.equal(back.status, 'online');
    t.ok(Date.parse(back.changed_at) > Date.parse(ranOut), 'coming back online is a change');

    const away = (await api('PUT', '/v1/me/presence', token, { status: 'away' })).json();
    t.equal(away.status, 'away');
    t.ok(Date.parse(away.changed_at) >= Date.parse(back.changed_at));
    const off = (await api('PUT', '/v1/me/presence', token, { status: 'offline' })).json();
    t.match(off, { status: 'offline', stated_status: 'offline', expires_at: null });

    // Away that timed out reads offline; stating offline then changes nothing visible.
    const stale = await confirmedAgo(agent.id, 'away', 500);
    const awayRanOut = new Date(stale!.presence_confirmed_at!.getTime() + TIMEOUT * 1000).toISOString();
    const later = (await api('PUT', '/v1/me/presence', token, { status: 'offline' })).json();
    t.equal(later.status, 'offline');
    t.equal(later.changed_at, awayRanOut, 'already offline since the timeout: no new change');
    t.equal(await settingsEvents(), events, 'presence is no settings event');
  });

  await t.test('presence: bad bodies answer 400 and change nothing', async (t) => {
    const { agent, token } = await agentWithToken(ctx);
    await api('PUT', '/v1/me/presence', token, { status: 'away' });
    const before = await agentRow(agent.id);
    for (const payload of [
      {},
      { status: 'busy' },
      { status: 'ONLINE' },
      { status: 1 },
      { status: null },
      { status: 'online', until: '2030-01-01T00:00:00Z' },
      { status: 'x'.repeat(100_000) },
    ]) {
      const res = await api('PUT', '/v1/me/presence', token, payload);
      t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 60));
      t.match(res.headers['content-type'], /^application\/problem\+json/);
    }
    t.same(await agentRow(agent.id), before, 'nothing changed');
  });

  await t.test("presence: only admins set another agent's, and never online", async (t) => {
    const { agent: target, token: targetToken } = await agentWithToken(ctx, { name: 'Otto Target' });
    const { token: peer } = await agentWithToken(ctx, { name: 'Pete Peer' });
    await api('PUT', '/v1/me/presence', targetToken, { status: 'online' });
    const before = await agentRow(target.id);

    const refused = await api('PUT', `/v1/agents/${target.id}/presence`, peer, { status: 'offline' });
    t.equal(refused.statusCode, 403);
    t.equal(refused.json().code, 'admin_required');
    const notOnline = await api('PUT', `/v1/agents/${target.id}/presence`, admin.token, { status: 'online' });
    t.equal(notOnline.statusCode, 400, 'an admin cannot put someone online');
    t.same(await agentRow(target.id), before, 'nothing changed');

    const missing = await api(
      'PUT',
      `/v1/agents/${'0'.repeat(8)}-0000-4000-8000-000000000000/presence`,
      admin.token,
      {
        status: 'offline',
      },
    );
    t.equal(missing.statusCode, 404);

    const forced = await api('PUT', `/v1/agents/${target.id}/presence`, admin.token, { status: 'offline' });
    t.equal(forced.statusCode, 200);
    t.equal(forced.json().status, 'offline');
    t.equal((await api('GET', '/v1/me/presence', targetToken)).json().status, 'offline', 'the agent sees it');

    const self = await api('PUT', `/v1/agents/${target.id}/presence`, targetToken, { status: 'away' });
    t.equal(self.statusCode, 200, 'an agent may use the same route for themselves');
    t.equal(self.json().status, 'away');

    const disabled = await api('PATCH', `/v1/agents/${target.id}`, admin.token, { status: 'disabled' });
    t.equal(disabled.json().presence, 'offline', 'a disabled agent goes offline at once');

    const owner = await agentWithToken(ctx, { role: 'owner', name: 'Olga Owner' });
    t.equal((await api('PUT', '/v1/me/presence', owner.token, { status: 'online' })).statusCode, 200);
    const onOwner = await api('PUT', `/v1/agents/${owner.agent.id}/presence`, admin.token, {
      status: 'offline',
    });
    t.equal(onOwner.statusCode, 403, "an admin may not change an owner's presence");
    t.equal(onOwner.json().code, 'owner_required');
    t.equal((await agentRow(owner.agent.id)).presence, 'online', 'the owner stays online');
    const byOwner = await api('PUT', `/v1/agents/${admin.agent.id}/presence`, owner.token, {
      status: 'away',
    });
    t.equal(byOwner.statusCode, 200, "an owner may set an admin's");
  });

  await t.test('capacity: admins set it; others cannot; bad values answer 400', async (t) => {
    const { agent, token } = await agentWithToken(ctx, { name: 'Cara Capacity' });
    const set = await api('PATCH', `/v1/agents/${agent.id}`, admin.token, { capacity: 3 });
    t.equal(set.statusCode, 200);
    t.equal(set.json().capacity, 3);
    const event = await ctx.db
      .selectFrom('settings_events')
      .select(['type', 'payload'])
      .where('subject_id', '=', agent.id)
      .where('type', '=', 'agent.updated')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    t.match(event.payload, { changes: { capacity: { from: null, to: 3 } } }, 'a settings event');

    const before = await agentRow(agent.id);
    const own = await api('PATCH', `/v1/agents/${agent.id}`, token, { capacity: 50 });
    t.equal(own.statusCode, 403, 'not even their own');
    for (const capacity of [-1, 10_001, 2.5, '3', true]) {
      const res = await api('PATCH', `/v1/agents/${agent.id}`, admin.token, { capacity });
      t.equal(res.statusCode, 400, JSON.stringify(capacity));
    }
    t.same(await agentRow(agent.id), before, 'nothing changed');

    const cleared = await api('PATCH', `/v1/agents/${agent.id}`, admin.token, { capacity: null });
    t.equal(cleared.json().capacity, null, 'null: no limit');
  });

  await t.test(
    "presence is not part of an agent's version: a heartbeat does not make an edit stale",
    async (t) => {
      const { agent, token } = await agentWithToken(ctx, { name: 'Eve Editable' });
      const read = await api('GET', `/v1/agents/${agent.id}`, admin.token);
      const etag = read.headers.etag as string;
      const me = await api('GET', '/v1/me', token);
      const myEtag = me.headers.etag as string;
      t.equal(myEtag, etag, '/v1/me and /v1/agents/{id} give one version');

      t.equal((await api('PUT', '/v1/me/presence', token, { status: 'online' })).statusCode, 200);
      await confirmedAgo(agent.id, 'away', TIMEOUT * 2);
      const after = await api('GET', `/v1/agents/${agent.id}`, admin.token);
      t.equal(after.json().presence, 'offline', 'the presence did change (timed out)');
      t.equal(after.headers.etag, etag, 'the ETag did not');

      const edit = await ctx.request({
        method: 'PATCH',
        url: `/v1/agents/${agent.id}`,
        token: admin.token,
        headers: { 'if-match': etag },
        payload: { capacity: 5 },
      });
      t.equal(edit.statusCode, 200, "the admin's edit read before the presence change still applies");
      t.not(edit.headers.etag, etag, 'a setting changes the version');

      const stale = await ctx.request({
        method: 'PATCH',
        url: '/v1/me',
        token,
        headers: { 'if-match': myEtag },
        payload: { name: 'Eve Stale' },
      });
      t.equal(stale.statusCode, 412, 'a real change since the read still makes it stale');
      t.equal((await agentRow(agent.id)).name, 'Eve Editable', 'and nothing changed');
    },
  );

  await t.test('levels on memberships', async (t) => {
    const dept = await makeDepartment(ctx.db, 'Levels');
    const other = await makeDepartment(ctx.db, 'Elsewhere');
    const ann = await makeAgent(ctx.db, { name: 'Ann Level' });
    const bob = await makeAgent(ctx.db, { name: 'Bob Level' });
    const members = (url = `/v1/departments/${dept}/members`, token = admin.token) => api('GET', url, token);

    const added = await api('PUT', `/v1/departments/${dept}/members/${ann.id}`, admin.token, { level: 2 });
    t.equal(added.statusCode, 201);
    t.match(added.json(), { agent_id: ann.id, role: 'solver', level: 2 });
    const role = await api('PUT', `/v1/departments/${dept}/members/${ann.id}`, admin.token, {
      role: 'supervisor',
    });
    t.match(role.json(), { role: 'supervisor', level: 2 }, 'the level stays when only the role changes');
    const newcomer = await api('PUT', `/v1/departments/${dept}/members/${bob.id}`, admin.token, {});
    t.equal(newcomer.json().level, 1, 'tier 1 by default');
    t.match((await members()).json().data, [
      { agent_id: ann.id, level: 2 },
      { agent_id: bob.id, level: 1 },
    ]);
    t.match((await api('GET', `/v1/agents/${ann.id}`, admin.token)).json().departments, [
      { department_id: dept, role: 'supervisor', level: 2 },
    ]);
    const event = await ctx.db
      .selectFrom('settings_events')
      .select('payload')
      .where('subject_id', '=', ann.id)
      .where('type', '=', 'member.updated')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    t.match(event.payload, { changes: { role: { from: 'solver', to: 'supervisor' } } });

    const beforeBad = (await members()).json();
    for (const level of [0, 4, 1.5, '2', null]) {
      const res = await api('PUT', `/v1/departments/${dept}/members/${ann.id}`, admin.token, { level });
      t.equal(res.statusCode, 400, `level ${JSON.stringify(level)}`);
      const whole = await api('PUT', `/v1/departments/${dept}/members`, admin.token, {
        members: [{ agent_id: ann.id, level }],
      });
      t.equal(whole.statusCode, 400, `level ${JSON.stringify(level)} in the whole set`);
    }
    t.same((await members()).json(), beforeBad, 'nothing changed');

    const replaced = await api('PUT', `/v1/departments/${dept}/members`, admin.token, {
      members: [
        { agent_id: ann.id, role: 'solver', level: 3 },
        { agent_id: bob.id, role: 'solver' },
      ],
    });
    t.equal(replaced.statusCode, 200);
    t.match(replaced.json().data, [
      { agent_id: ann.id, level: 3 },
      { agent_id: bob.id, level: 1 },
    ]);
    const levelEvent = await ctx.db
      .selectFrom('settings_events')
      .select('payload')
      .where('subject_id', '=', ann.id)
      .where('type', '=', 'member.updated')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    t.match(levelEvent.payload, {
      changes: { role: { from: 'supervisor', to: 'solver' }, level: { from: 2, to: 3 } },
    });

    // Members of another department: reading them is open to every agent today (the listing
    // has no department check), so their levels are too; changing them is not.
    const { token: outsider } = await agentWithToken(ctx, { departments: [[other, 'manager']] });
    const seen = await members(`/v1/departments/${dept}/members`, outsider);
    t.equal(seen.statusCode, 200);
    t.same(seen.json().data, (await members()).json().data, 'the same listing an admin gets');
    const before = (await members()).json();
    const refused = await api('PUT', `/v1/departments/${dept}/members/${bob.id}`, outsider, { level: 3 });
    t.equal(refused.statusCode, 403, "a manager elsewhere cannot set this department's levels");
    t.equal(refused.json().code, 'department_manager_required');
    t.same((await members()).json(), before, 'nothing changed');
  });

  await t.test('assignment limited to available agents and to a level', async (t) => {
    const desk = await makeDepartment(ctx.db, 'Desk');
    const solver = (name: string, level: 1 | 2 | 3, role: 'solver' | 'reader' = 'solver') =>
      agentWithToken(ctx, { name, departments: [[desk, role]] }).then(async (a) => {
        await api('PUT', `/v1/departments/${desk}/members/${a.agent.id}`, admin.token, { level });
        return a;
      });
    const l1Free = await solver('L1 Free', 1);
    const l1Full = await solver('L1 Full', 1);
    const l1Away = await solver('L1 Away', 1);
    const l1Gone = await solver('L1 Gone', 1);
    const l2On = await solver('L2 On', 2);
    const l2Off = await solver('L2 Off', 2);
    const reader = await solver('L1 Reader', 1, 'reader');
    for (const a of [l1Free, l1Full, l1Gone, l2On, reader])
      await api('PUT', '/v1/me/presence', a.token, { status: 'online' });
    await api('PUT', '/v1/me/presence', l1Away.token, { status: 'away' });
    await confirmedAgo(l1Gone.agent.id, 'online', TIMEOUT + 10);

    // L1 Full may hold 2; one open ticket counts, a postponed, a resolved and a spam one do not.
    await api('PATCH', `/v1/agents/${l1Full.agent.id}`, admin.token, { capacity: 2 });
    const held: string[] = [];
    for (const status of ['open', 'postponed', 'resolved', 'spam'] as const) {
      const { id } = await makeTicket(ctx.db, { department_id: desk, assignee_id: l1Full.agent.id });
      held.push(id);
      await ctx.db
        .updateTable('tickets')
        .set({
          status,
          postponed_until: status === 'postponed' ? new Date(Date.now() + 86_400_000) : null,
        })
        .where('id', '=', id)
        .execute();
    }

    const rule = async (tag: string, action: Record<string, unknown>) => {
      const res = await api('POST', '/v1/automation-rules', admin.token, {
        name: `Assign ${tag}`,
        triggers: ['ticket.created'],
        conditions: { all: [{ field: 'subject', operator: 'contains', value: tag }] },
        actions: [{ type: 'transfer', department_id: desk }, action],
      });
      if (res.statusCode !== 201) throw new Error(`rule failed: ${res.statusCode} ${res.body}`);
      return res.json();
    };
    let n = 0;
    const create = async (subject: string) => {
      const res = await api('POST', '/v1/tickets', admin.token, {
        subject: `${subject} ${++n}`,
        contact: { email: `availability-${n}@example.com` },
        message: { body: 'Hello' },
      });
      if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body}`);
      return res.json() as { id: string; assignee_id: string | null };
    };
    const effects = async (id: string) =>
      (await api('GET', `/v1/tickets/${id}/rule-trace`, admin.token)).json().data[0].effects as Record<
        string,
        unknown
      >[];
    const name = new Map(
      [l1Free, l1Full, l1Away, l1Gone, l2On, l2Off, reader].map((a) => [a.agent.id, a.agent.name]),
    );
    const who = (id: string | null) => (id === null ? null : name.get(id));

    // Round robin over the available agents of every level: L1 Free, L1 Full (room for one
    // more) and L2 On, in id order, taking turns; L1 Full drops out once she holds two.
    await rule('rr-available', { type: 'assign', to: 'round_robin', available_only: true });
    const ring = [l1Free, l1Full, l2On].map((a) => a.agent.id).sort();
    const got: (string | null)[] = [];
    for (let i = 0; i < 6; i++) got.push((await create('rr-available')).assignee_id);
    const expected: string[] = [];
    {
      let last: string | null = null;
      let fullHolds = 1;
      for (let i = 0; i < 6; i++) {
        const qualifying = ring.filter((id) => id !== l1Full.agent.id || fullHolds < 2);
        const next: string = qualifying.find((id) => last === null || id > last) ?? qualifying[0]!;
        if (next === l1Full.agent.id) fullHolds++;
        expected.push(next);
        last = next;
      }
    }
    t.same(got.map(who), expected.map(who), 'available agents in turn, capacity respected');
    t.equal(got.filter((id) => id === l1Full.agent.id).length, 1, 'L1 Full took exactly one more');
    t.notOk(
      got.some((id) => [l1Away, l1Gone, l2Off, reader].some((a) => a.agent.id === id)),
      'never the away, the timed out, the offline or a reader',
    );

    // Least busy on level 2 among available agents: only L2 On.
    await rule('lb-level2', { type: 'assign', to: 'least_busy', available_only: true, level: 2 });
    for (let i = 0; i < 3; i++) t.equal(who((await create('lb-level2')).assignee_id), 'L2 On');

    // Level 2 without availability: L2 Off has fewer tickets, so least busy picks her.
    await rule('lb-any2', { type: 'assign', to: 'least_busy', level: 2 });
    t.equal(who((await create('lb-any2')).assignee_id), 'L2 Off', 'presence ignored without available_only');

    // Round robin on level 1 with availability: only L1 Free now (L1 Full is at capacity).
    await rule('rr-level1', { type: 'assign', to: 'round_robin', available_only: true, level: 1 });
    for (let i = 0; i < 3; i++) t.equal(who((await create('rr-level1')).assignee_id), 'L1 Free');

    // Freeing a slot brings L1 Full back.
    await ctx.db.updateTable('tickets').set({ status: 'resolved' }).where('id', '=', held[0]!).execute();
    const lb1 = await rule('lb-level1', { type: 'assign', to: 'least_busy', available_only: true, level: 1 });
    t.equal(who((await create('lb-level1')).assignee_id), 'L1 Full', 'under capacity again, and least busy');

    // Nobody at level 3: unassigned, and the run says why.
    await rule('rr-level3', { type: 'assign', to: 'round_robin', level: 3 });
    const none = await create('rr-level3');
    t.equal(none.assignee_id, null, 'left unassigned');
    t.match((await effects(none.id)).at(-1), {
      type: 'assign_intent',
      strategy: 'round_robin',
      level: 3,
      agent_id: null,
      reason: /no active solver, supervisor or manager of level 3/,
    });

    // Everyone on level 1 goes away: nobody available, and the run says so.
    await api('PUT', '/v1/me/presence', l1Free.token, { status: 'away' });
    await api('PUT', `/v1/agents/${l1Full.agent.id}/presence`, admin.token, { status: 'offline' });
    const nobody = await create('lb-level1');
    t.equal(nobody.assignee_id, null);
    t.match((await effects(nobody.id)).at(-1), {
      type: 'assign_intent',
      strategy: 'least_busy',
      available_only: true,
      level: 1,
      agent_id: null,
      reason:
        /none of the department's 4 active solvers, supervisors or managers of level 1 is online and under capacity/,
    });
    t.ok(lb1.id);

    // Simulation shows the same picks and reasons, and moves no round robin.
    const cursor = () =>
      ctx.db
        .selectFrom('round_robin_cursors')
        .select('last_agent_id')
        .where('department_id', '=', desk)
        .executeTakeFirst();
    const cursorBefore = await cursor();
    const simulate = async (action: Record<string, unknown>) => {
      const res = await api('POST', '/v1/automation-rules/simulate', admin.token, {
        event: { type: 'ticket.created' },
        ticket: { channel: 'email', subject: 'Simulated', department_id: desk, contact: { name: 'Sim' } },
        rules: [{ name: 'Draft', triggers: ['ticket.created'], conditions: { all: [] }, actions: [action] }],
      });
      t.equal(res.statusCode, 200, res.body);
      return res.json();
    };
    const l2 = await simulate({ type: 'assign', to: 'round_robin', available_only: true, level: 2 });
    t.match(l2.effects, [{ type: 'assign_intent', level: 2, available_only: true, agent_id: l2On.agent.id }]);
    t.notOk('reason' in l2.effects[0], 'no reason when someone qualified');
    const l1 = await simulate({ type: 'assign', to: 'round_robin', available_only: true, level: 1 });
    t.match(l1, {
      effects: [{ type: 'assign_intent', agent_id: null, reason: /online and under capacity/ }],
      result: { assignee_id: null },
    });
    t.same(await cursor(), cursorBefore, 'the round robin did not move');
  });

  await t.test('rule validation of the new options: 422 with pointers, nothing saved', async (t) => {
    const desk = await makeDepartment(ctx.db, 'Validation desk');
    const count = async () =>
      Number(
        (
          await ctx.db
            .selectFrom('automation_rules')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const before = await count();
    const cases: [Record<string, unknown>, string][] = [
      [{ type: 'assign', to: 'round_robin', level: 4 }, '/actions/1/level'],
      [{ type: 'assign', to: 'least_busy', level: 0 }, '/actions/1/level'],
      [{ type: 'assign', to: 'least_busy', level: '2' }, '/actions/1/level'],
      [{ type: 'assign', to: 'least_busy', level: 1.5 }, '/actions/1/level'],
      [{ type: 'assign', to: 'round_robin', available_only: 'yes' }, '/actions/1/available_only'],
      [{ type: 'assign', to: 'nobody', available_only: true }, '/actions/1/available_only'],
      [{ type: 'assign', to: 'agent', agent_id: admin.agent.id, level: 2 }, '/actions/1/level'],
      [{ type: 'assign', to: 'round_robin', skills: ['french'] }, '/actions/1'],
    ];
    for (const [action, pointer] of cases) {
      const res = await api('POST', '/v1/automation-rules', admin.token, {
        name: 'Bad assignment',
        triggers: ['ticket.created'],
        conditions: { all: [] },
        actions: [{ type: 'transfer', department_id: desk }, action],
      });
      t.equal(res.statusCode, 422, JSON.stringify(action));
      t.ok(
        JSON.stringify(res.json()).includes(pointer),
        `${JSON.stringify(action)} points at ${pointer}: ${res.body.slice(0, 300)}`,
      );
    }
    t.equal(await count(), before, 'no rule saved');
  });
});
