import { sql } from 'kysely';
import t from 'tap';
import { seedDemo } from '../scripts/seed-demo.ts';
import { wakePostponedTickets } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';
import { countTickets, makeTicket, ticketState } from './helpers/tickets.ts';

// What rules do to tickets, through the API against a real database: the Marketing example end
// to end, ordering and stop_processing, department-owned rules, every action, that rules never
// re-trigger, that a failing action undoes everything, every trigger, the history and the
// rule trace, and simulation.

interface HistoryEvent {
  type: string;
  actor: {
    type: string;
    agent_id: string | null;
    contact_id: string | null;
    rule_id: string | null;
    rule_version: number | null;
  };
  department_id: string | null;
  agent_id: string | null;
  data: Record<string, unknown>;
}
interface TraceRule {
  rule_id: string;
  name: string;
  version: number | null;
  considered: boolean;
  skipped: string | null;
  matched: boolean;
  conditions: { pointer: string; result: boolean; value?: unknown }[] | null;
  actions: { pointer: string; type: string; outcome: string; reason: string | null }[] | null;
}
interface Run {
  events: string[];
  rules: TraceRule[];
  effects: Record<string, unknown>[];
  ticket: Record<string, unknown>;
}

const SOCIAL = ['facebook', 'twitter', 'instagram', 'viber'];

t.test('automation rules at work', async (t) => {
  const ctx = await buildTestApp(t);
  const marketing = await makeDepartment(ctx.db, 'Marketing');
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin', name: 'Ada Admin' });
  const ann = await agentWithToken(ctx, {
    name: 'Ann',
    departments: [
      [sales, 'solver'],
      [support, 'solver'],
    ],
  });
  const dan = await makeAgent(ctx.db, { name: 'Dan Reader', departments: [[sales, 'reader']] });
  const stranger = await agentWithToken(ctx, { name: 'Stranger', departments: [[marketing, 'solver']] });

  type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  const api = (
    method: Method,
    url: string,
    payload?: unknown,
    token = admin.token,
    headers?: Record<string, string>,
  ) =>
    ctx.request({
      method,
      url,
      token,
      ...(payload !== undefined && { payload: payload as object }),
      ...(headers && { headers }),
    });
  const rule = async (payload: Record<string, unknown>) => {
    const res = await api('POST', '/v1/automation-rules', { triggers: ['ticket.created'], ...payload });
    if (res.statusCode !== 201) throw new Error(`rule failed: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const removeRules = async () => {
    for (const r of (await api('GET', '/v1/automation-rules?limit=200')).json().data) {
      await api('DELETE', `/v1/automation-rules/${r.id}`);
    }
  };
  let n = 0;
  const create = async (payload: Record<string, unknown> = {}, token = admin.token) => {
    const res = await api(
      'POST',
      '/v1/tickets',
      {
        subject: `Ticket ${++n}`,
        contact: { email: `customer-${n}@example.com`, name: `Customer ${n}` },
        message: { body: 'Hello there' },
        ...payload,
      },
      token,
    );
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const get = async (id: string) => (await api('GET', `/v1/tickets/${id}`)).json();
  const history = async (id: string): Promise<HistoryEvent[]> =>
    (await api('GET', `/v1/tickets/${id}/history?limit=200`)).json().data;
  const runs = async (id: string): Promise<Run[]> => {
    const res = await api('GET', `/v1/tickets/${id}/rule-trace?limit=200`);
    if (res.statusCode !== 200) throw new Error(`rule-trace: ${res.statusCode} ${res.body}`);
    return res.json().data;
  };
  const matched = (run: Run | undefined) => run?.rules.filter((r) => r.matched).map((r) => r.name) ?? [];
  const countRows = async (table: 'rule_runs' | 'contacts' | 'round_robin_cursors' | 'ticket_messages') =>
    Number(
      (
        await ctx.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  await t.test('the Marketing example: social tickets land in Marketing, unassigned', async (t) => {
    const routing = await rule({
      name: 'Marketing ticket routing',
      note: 'Social media conversations belong to Marketing.',
      active: true,
      conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: SOCIAL }] }] },
      actions: [
        { type: 'transfer', department_id: marketing },
        { type: 'assign', to: 'nobody' },
      ],
    });
    const ticket = await create({ channel: 'facebook', department_id: sales, assignee_id: ann.agent.id });
    t.match(
      ticket,
      { channel: 'facebook', department_id: marketing, assignee_id: null, status: 'new' },
      'the response shows it',
    );
    t.same(await get(ticket.id), ticket);
    const events = await history(ticket.id);
    t.same(
      events.map((e) => [e.type, e.actor.type, e.department_id, e.agent_id]),
      [
        ['created', 'contact', sales, ann.agent.id],
        ['message_added', 'contact', sales, ann.agent.id],
        ['assigned', 'agent', sales, ann.agent.id],
        ['transferred', 'rule', marketing, null],
        ['assigned', 'rule', marketing, null],
      ],
    );
    t.match(events[3], {
      actor: { type: 'rule', rule_id: routing.id, rule_version: 1, agent_id: null },
      data: { from_department_id: sales, to_department_id: marketing },
    });
    t.match(events[4], {
      actor: { rule_id: routing.id, rule_version: 1 },
      data: { from: ann.agent.id, to: null },
    });

    for (const channel of ['twitter', 'instagram', 'viber']) {
      t.equal((await create({ channel })).department_id, marketing, channel);
    }
    for (const channel of ['email', 'whatsapp', 'api']) {
      const other = await create({ channel, department_id: sales });
      t.equal(other.department_id, sales, `${channel} stays`);
      t.same(
        (await history(other.id)).filter((e) => e.actor.type === 'rule'),
        [],
      );
    }

    const first = await api(
      'POST',
      '/v1/tickets',
      {
        subject: 'Idempotent',
        channel: 'instagram',
        contact: { email: 'idem@example.com' },
        message: { body: 'Hi!' },
      },
      admin.token,
      { 'idempotency-key': 'social-1' },
    );
    t.equal(first.json().department_id, marketing, 'the Idempotency-Key path runs rules too');
    const replay = await api(
      'POST',
      '/v1/tickets',
      {
        subject: 'Idempotent',
        channel: 'instagram',
        contact: { email: 'idem@example.com' },
        message: { body: 'Hi!' },
      },
      admin.token,
      { 'idempotency-key': 'social-1' },
    );
    t.same(replay.json(), first.json());
    t.equal((await runs(first.json().id)).length, 1, 'and only once');

    // A new version of the rule acts under its new number.
    await api('PATCH', `/v1/automation-rules/${routing.id}`, { note: 'Owned by the social team.' });
    const later = await create({ channel: 'viber' });
    t.match(
      (await history(later.id)).find((e) => e.actor.type === 'rule'),
      {
        actor: { rule_id: routing.id, rule_version: 2 },
      },
    );

    // The public contact form: its tickets are contact_form, which this rule leaves alone...
    await api('PATCH', `/v1/departments/${sales}`, { selectable_on_contact_form: true });
    const form = (body: Record<string, unknown>) =>
      ctx.request({
        method: 'POST',
        url: '/v1/public/tickets',
        payload: { name: 'Sam Lee', subject: 'Pallets?', message: 'Do you sell by the pallet?', ...body },
      });
    const byReference = async (reference: string) =>
      ctx.db
        .selectFrom('tickets')
        .select(['id', 'department_id', 'channel', 'tags'])
        .where('number', '=', Number(reference.slice(2)))
        .executeTakeFirstOrThrow();
    const plain = await form({ email: 'sam@example.com', department_id: sales });
    t.equal(plain.statusCode, 202);
    t.equal((await byReference(plain.json().reference)).department_id, sales);
    // ...and a rule on the sender routes them.
    const wholesale = await rule({
      name: 'Big customers to Marketing',
      conditions: { all: [{ field: 'sender.domain', operator: 'is', value: 'BigCorp.example' }] },
      actions: [
        { type: 'transfer', department_id: marketing },
        { type: 'add_tags', tags: ['Key account'] },
      ],
    });
    const big = await form({ email: 'buyer@bigcorp.example', department_id: sales });
    t.equal(big.statusCode, 202, big.body);
    const bigTicket = await byReference(big.json().reference);
    t.match(bigTicket, { department_id: marketing, channel: 'contact_form', tags: ['key account'] });
    t.match(
      (await history(bigTicket.id)).filter((e) => e.actor.type === 'rule'),
      [
        { type: 'transferred', actor: { rule_id: wholesale.id, rule_version: 1 } },
        { type: 'tags_changed', actor: { rule_id: wholesale.id }, data: { added: ['key account'] } },
      ],
    );
    await removeRules();
  });

  await t.test(
    'rules run in position order on a snapshot each rule updates; stop_processing ends the pass',
    async (t) => {
      const scope = { field: 'subject', operator: 'contains', value: 'order-test' };
      const first = await rule({
        name: 'First',
        position: 10,
        conditions: { all: [scope] },
        actions: [{ type: 'add_tags', tags: ['first'] }],
      });
      const second = await rule({
        name: 'Second',
        position: 20,
        conditions: { all: [scope, { field: 'tags', operator: 'contains_any', value: ['first'] }] },
        actions: [
          { type: 'set_priority', priority: 'high' },
          { type: 'add_tags', tags: ['second'] },
        ],
      });
      const stopper = await rule({
        name: 'Stopper',
        position: 30,
        stop_processing: true,
        conditions: { all: [scope, { field: 'priority', operator: 'is', value: 'high' }] },
        actions: [{ type: 'add_tags', tags: ['stopper'] }],
      });
      const never = await rule({
        name: 'Never',
        position: 40,
        conditions: { all: [scope] },
        actions: [{ type: 'add_tags', tags: ['never'] }],
      });

      const ticket = await create({ subject: 'An order-test ticket' });
      t.same(ticket.tags, ['first', 'second', 'stopper']);
      t.equal(ticket.priority, 'high', 'the second rule saw the first rule’s tag');
      const [run] = await runs(ticket.id);
      t.same(
        run!.rules.map((r) => [r.name, r.matched, r.skipped]),
        [
          ['First', true, null],
          ['Second', true, null],
          ['Stopper', true, null],
          ['Never', false, 'stopped'],
        ],
      );
      t.same(
        (await history(ticket.id))
          .filter((e) => e.actor.type === 'rule')
          .map((e) => [e.type, e.actor.rule_id]),
        [
          ['tags_changed', first.id],
          ['priority_changed', second.id],
          ['tags_changed', second.id],
          ['tags_changed', stopper.id],
        ],
        'consecutive effects of one rule are one change by that rule',
      );

      const order = await api('PUT', '/v1/automation-rules/order', {
        rule_ids: [second.id, first.id, stopper.id, never.id],
      });
      t.equal(order.statusCode, 200);
      const reordered = await create({ subject: 'Another order-test ticket' });
      t.same(reordered.tags, ['first', 'never'], 'the second rule now runs before the tag it needs exists');
      t.equal(reordered.priority, 'normal');
      await removeRules();
    },
  );

  await t.test(
    'add_tags stops at the tags’ byte budget, and later rules see the tags as written',
    async (t) => {
      // 40 tags of 50 characters: 2,000 bytes, one too many next to the ticket's own tag. The
      // engine once added them all, so a later rule saw a tag the write then dropped.
      const many = Array.from({ length: 40 }, (_, i) =>
        `budget-${String(i).padStart(2, '0')}-`.padEnd(50, 'x'),
      );
      const scope = { field: 'subject', operator: 'contains', value: 'budget-test' };
      const filler = await rule({
        name: 'Filler',
        position: 10,
        conditions: { all: [scope] },
        actions: [{ type: 'add_tags', tags: many }],
      });
      await rule({
        name: 'Sees the last tag',
        position: 20,
        conditions: { all: [scope, { field: 'tags', operator: 'contains_any', value: [many[39]] }] },
        actions: [{ type: 'set_priority', priority: 'high' }],
      });
      const ticket = await create({ subject: 'A budget-test ticket', tags: ['seed'] });
      t.same(ticket.tags, ['seed', ...many.slice(0, 39)], 'the first 39 fit beside the ticket’s tag');
      t.equal(ticket.priority, 'normal', 'the later rule did not see the tag left out');
      const [run] = await runs(ticket.id);
      t.same(
        run!.rules.map((r) => [r.name, r.matched]),
        [
          ['Filler', true],
          ['Sees the last tag', false],
        ],
      );
      t.match(run!.rules[0]!.actions, [
        {
          type: 'add_tags',
          outcome: 'applied',
          reason: "1 tag(s) left out: a ticket's tags take at most 2000 bytes together",
        },
      ]);
      t.same(
        (await history(ticket.id))
          .filter((e) => e.actor.type === 'rule')
          .map((e) => [e.type, e.actor.rule_id]),
        [['tags_changed', filler.id]],
      );
      await removeRules();
    },
  );

  await t.test('a department’s rule only matches and changes tickets of its department', async (t) => {
    const owned = await rule({
      name: 'Sales intake',
      department_id: sales,
      conditions: { all: [] },
      actions: [
        { type: 'add_tags', tags: ['sales-seen'] },
        { type: 'transfer', department_id: support },
        { type: 'add_tags', tags: ['after-transfer'] },
      ],
    });
    const elsewhere = await create({ department_id: marketing });
    t.same(elsewhere.tags, []);
    t.match((await runs(elsewhere.id))[0]!.rules, [
      { name: 'Sales intake', considered: false, skipped: 'department' },
    ]);

    const inSales = await create({ department_id: sales });
    t.match(
      inSales,
      { department_id: support, tags: ['sales-seen'] },
      'it may transfer tickets out, then stops changing them',
    );
    t.match((await runs(inSales.id))[0]!.rules[0]!.actions, [
      { type: 'add_tags', outcome: 'applied' },
      { type: 'transfer', outcome: 'applied' },
      { type: 'add_tags', outcome: 'skipped', reason: "the ticket left the rule's department" },
    ]);

    // A global rule that moves a ticket into Sales first brings it into the Sales rule's reach.
    await rule({
      name: 'Into Sales',
      position: -1,
      conditions: { all: [{ field: 'subject', operator: 'starts_with', value: 'quote' }] },
      actions: [{ type: 'transfer', department_id: sales }],
    });
    const quote = await create({ subject: 'Quote for 40 chairs' });
    t.match(quote, { department_id: support, tags: ['sales-seen'] });
    t.equal(owned.department_id, sales);
    await removeRules();
  });

  await t.test(
    'actions: assign, round robin, least busy, tags, priority, status, postpone, spam, note',
    async (t) => {
      const desk = await makeDepartment(ctx.db, 'Desk');
      const members = [];
      for (const name of ['Xena', 'Yuri', 'Zoe'])
        members.push(await makeAgent(ctx.db, { name, departments: [[desk, 'solver']] }));
      await makeAgent(ctx.db, { name: 'Rita Reader', departments: [[desk, 'reader']] });
      const disabled = await makeAgent(ctx.db, { name: 'Dora Disabled', departments: [[desk, 'manager']] });
      await ctx.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', disabled.id).execute();
      const byId = members.map((m) => m.id).sort();

      await rule({
        name: 'Round robin',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'rr-test' }] },
        actions: [
          { type: 'transfer', department_id: desk },
          { type: 'assign', to: 'round_robin' },
        ],
      });
      const rr = [];
      for (let i = 0; i < 7; i++) rr.push((await create({ subject: `rr-test ${i}` })).assignee_id);
      t.same(
        rr,
        [0, 1, 2, 0, 1, 2, 0].map((i) => byId[i]),
        'available members in turn, by id; readers and disabled agents never',
      );
      t.match((await runs((await create({ subject: 'rr-test again' })).id))[0]!.effects, [
        { type: 'transfer' },
        { type: 'assign_intent', strategy: 'round_robin', agent_id: byId[1] },
      ]);

      const open = new Map<string, number>(byId.map((id) => [id, 0]));
      for (const id of rr.concat([byId[1]!])) open.set(id, (open.get(id) ?? 0) + 1);
      await rule({
        name: 'Least busy',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'lb-test' }] },
        actions: [
          { type: 'transfer', department_id: desk },
          { type: 'assign', to: 'least_busy' },
        ],
      });
      // Xena's tickets get resolved: she becomes the least busy.
      const xena = byId[0]!;
      await ctx.db
        .updateTable('tickets')
        .set({ status: 'resolved' })
        .where('assignee_id', '=', xena)
        .execute();
      open.set(xena, 0);
      for (let i = 0; i < 5; i++) {
        const expected = [...open.entries()].sort(([a, x], [b, y]) => x - y || (a < b ? -1 : 1))[0]![0];
        const ticket = await create({ subject: `lb-test ${i}` });
        t.equal(ticket.assignee_id, expected, `least busy #${i}`);
        open.set(expected, open.get(expected)! + 1);
      }

      // An assignment a later rule replaces is not resolved: the round robin does not move.
      await rule({
        name: 'Round robin, then overruled',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'overrule-test' }] },
        actions: [
          { type: 'transfer', department_id: desk },
          { type: 'assign', to: 'round_robin' },
        ],
      });
      await rule({
        name: 'Overrule',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'overrule-test' }] },
        actions: [{ type: 'assign', to: 'agent', agent_id: byId[2]! }],
      });
      const cursor = async () =>
        (
          await ctx.db
            .selectFrom('round_robin_cursors')
            .select('last_agent_id')
            .where('department_id', '=', desk)
            .executeTakeFirst()
        )?.last_agent_id;
      const cursorBefore = await cursor();
      const overruled = await create({ subject: 'overrule-test' });
      t.equal(overruled.assignee_id, byId[2]);
      t.equal(await cursor(), cursorBefore, 'the round robin did not move');
      t.match((await runs(overruled.id))[0]!.effects, [
        { type: 'transfer' },
        { type: 'assign_intent', superseded: true, agent_id: null },
        { type: 'assign', agent_id: byId[2] },
      ]);

      await rule({
        name: 'To Ann',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'assign-test' }] },
        actions: [{ type: 'assign', to: 'agent', agent_id: ann.agent.id }],
      });
      t.equal((await create({ subject: 'assign-test', department_id: sales })).assignee_id, ann.agent.id);
      await rule({
        name: 'Nobody',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'nobody-test' }] },
        actions: [{ type: 'assign', to: 'nobody' }],
      });
      t.equal(
        (await create({ subject: 'nobody-test', department_id: sales, assignee_id: ann.agent.id }))
          .assignee_id,
        null,
      );

      await rule({
        name: 'Tags',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'tag-test' }] },
        actions: [
          { type: 'add_tags', tags: ['Added', 'more'] },
          { type: 'remove_tags', tags: ['old', 'MORE'] },
        ],
      });
      t.same((await create({ subject: 'tag-test', tags: ['old', 'kept'] })).tags, ['kept', 'added']);
      await rule({
        name: 'Replace',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'replace-test' }] },
        actions: [{ type: 'replace_tags', tags: ['only'] }],
      });
      t.same((await create({ subject: 'replace-test', tags: ['a', 'b'] })).tags, ['only']);

      await rule({
        name: 'Urgent',
        conditions: { all: [{ field: 'message.body', operator: 'matches', value: '\\burgent\\b' }] },
        actions: [{ type: 'set_priority', priority: 'urgent' }],
      });
      t.equal((await create({ message: { body: 'This is URGENT please' } })).priority, 'urgent');

      await rule({
        name: 'Resolve',
        conditions: { all: [{ field: 'subject', operator: 'is', value: 'Thanks!' }] },
        actions: [{ type: 'set_status', status: 'resolved' }],
      });
      const resolved = await create({ subject: 'thanks!' });
      t.equal(resolved.status, 'resolved');
      t.ok(resolved.resolved_at);

      await rule({
        name: 'Postpone',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'later-test' }] },
        actions: [{ type: 'set_status', status: 'postponed', postpone_seconds: 3600 }],
      });
      const before = Date.now();
      const postponed = await create({ subject: 'later-test' });
      t.equal(postponed.status, 'postponed');
      const until = Date.parse(postponed.postponed_until);
      t.ok(
        until >= before + 3_600_000 - 1000 && until <= Date.now() + 3_600_000 + 1000,
        'for the duration, from now',
      );
      t.match(
        (await history(postponed.id)).find((e) => e.type === 'status_changed'),
        {
          actor: { type: 'rule' },
          data: { from: 'new', to: 'postponed', postponed_until: postponed.postponed_until },
        },
      );

      await rule({
        name: 'Spam',
        conditions: { all: [{ field: 'sender.domain', operator: 'ends_with', value: 'spam.example' }] },
        actions: [{ type: 'mark_spam' }],
      });
      t.equal((await create({ contact: { email: 'win@cheap-spam.example' } })).status, 'spam');

      const noteRule = await rule({
        name: 'Note',
        conditions: { all: [{ field: 'subject', operator: 'contains', value: 'note-test' }] },
        actions: [
          { type: 'add_note', body: 'Check the order history first.' },
          { type: 'set_priority', priority: 'low' },
        ],
      });
      const noted = await create({ subject: 'note-test' });
      const messages = (await api('GET', `/v1/tickets/${noted.id}/messages`)).json().data;
      t.match(messages[1], {
        kind: 'note',
        body: 'Check the order history first.',
        author_agent_id: null,
        author_contact_id: null,
      });
      t.match(
        (await history(noted.id)).filter((e) => e.actor.type === 'rule'),
        [
          {
            type: 'message_added',
            data: { kind: 'note', message_id: messages[1].id },
            actor: { rule_id: noteRule.id, rule_version: 1 },
          },
          { type: 'priority_changed', data: { from: 'normal', to: 'low' } },
        ],
      );
      t.equal((await api('GET', '/v1/tickets?q=warehouse')).json().data.length, 0);
      t.same(
        (await api('GET', '/v1/tickets?q=order%20history')).json().data.map((x: { id: string }) => x.id),
        [noted.id],
        'notes are searchable like any other',
      );
      await removeRules();
    },
  );

  await t.test(
    'no loops: changes made by rules trigger no rules, and no rule acts twice per change',
    async (t) => {
      const scope = { field: 'subject', operator: 'contains', value: 'loop-test' };
      await rule({
        name: 'Bump on update',
        triggers: ['ticket.updated', 'ticket.status_changed'],
        conditions: { all: [scope] },
        actions: [
          { type: 'set_priority', priority: 'urgent' },
          { type: 'add_tags', tags: ['bumped'] },
          { type: 'add_note', body: 'Bumped.' },
        ],
      });
      await rule({
        name: 'Into Sales',
        conditions: { all: [scope] },
        actions: [{ type: 'transfer', department_id: sales }],
      });
      await rule({
        name: 'On transfer',
        triggers: ['ticket.transferred'],
        conditions: { all: [scope] },
        actions: [{ type: 'add_tags', tags: ['transferred'] }],
      });
      const ticket = await create({ subject: 'loop-test' });
      t.match(
        ticket,
        { department_id: sales, tags: [], priority: 'normal' },
        'the rule’s transfer and update raise no events',
      );

      const patched = await api('PATCH', `/v1/tickets/${ticket.id}`, {
        status: 'resolved',
        subject: 'loop-test again',
      });
      t.match(patched.json(), { priority: 'urgent', tags: ['bumped'], status: 'resolved' });
      const events = await history(ticket.id);
      t.equal(events.filter((e) => e.type === 'priority_changed').length, 1);
      t.equal(
        events.filter((e) => e.type === 'message_added' && e.data.kind === 'note').length,
        1,
        'one change, one pass: once',
      );
      const all = await runs(ticket.id);
      t.same(
        all.map((r) => r.events),
        [['ticket.created'], ['ticket.updated', 'ticket.status_changed']],
      );

      const moved = await api('POST', `/v1/tickets/${ticket.id}/transfer`, { department_id: support });
      t.same(moved.json().tags, ['bumped', 'transferred'], 'a transfer by hand does run transfer rules');
      t.same((await runs(ticket.id)).at(-1)!.events, ['ticket.transferred', 'ticket.updated']);
      await removeRules();
    },
  );

  await t.test('a failing action undoes the whole change, never half of it', async (t) => {
    const scope = { field: 'subject', operator: 'contains', value: 'fail-test' };
    await rule({
      name: 'Tag first',
      conditions: { all: [scope] },
      actions: [{ type: 'add_tags', tags: ['half'] }],
    });
    const failing = await rule({
      name: 'Assign the reader',
      conditions: { all: [scope] },
      actions: [
        { type: 'set_priority', priority: 'high' },
        { type: 'assign', to: 'agent', agent_id: dan.id },
      ],
    });
    const tickets = await countTickets(ctx.db);
    const contacts = await countRows('contacts');
    const runCount = await countRows('rule_runs');
    const res = await api('POST', '/v1/tickets', {
      subject: 'fail-test',
      contact: { email: 'never-stored@example.com' },
      message: { body: 'Hi' },
      department_id: sales,
    });
    t.equal(res.statusCode, 409);
    t.equal(res.json().code, 'rule_action_failed');
    t.match(
      res.json().detail,
      /"Assign the reader" \(version 1\) could not apply action 2 \(assign\): the agent is not a solver/,
    );
    t.equal(await countTickets(ctx.db), tickets, 'no ticket');
    t.equal(await countRows('contacts'), contacts, 'no contact');
    t.equal(await countRows('rule_runs'), runCount, 'no run');

    await api('PATCH', `/v1/automation-rules/${failing.id}`, { triggers: ['ticket.updated'] });
    const ticket = await create({ subject: 'fail-test later', department_id: sales });
    t.same(ticket.tags, ['half']);
    const state = await ticketState(ctx.db, ticket.id);
    const patch = await api('PATCH', `/v1/tickets/${ticket.id}`, { priority: 'low', tags: ['changed'] });
    t.equal(patch.statusCode, 409);
    t.same(await ticketState(ctx.db, ticket.id), state, 'the agent’s change is undone with the rule’s');

    const formTickets = await countTickets(ctx.db);
    await api('PATCH', `/v1/automation-rules/${failing.id}`, { triggers: ['ticket.created'] });
    const form = await ctx.request({
      method: 'POST',
      url: '/v1/public/tickets',
      payload: {
        name: 'X',
        email: 'x@example.com',
        subject: 'fail-test',
        message: 'Hi',
        department_id: sales,
      },
    });
    t.equal(form.statusCode, 409);
    t.notMatch(form.json().detail, /Assign the reader/, 'the public form does not show rule names');
    t.equal(await countTickets(ctx.db), formTickets);

    // A rule whose transfer target was deleted since: inactive rules do not block the deletion,
    // and switching one on again through the API would be refused, so the stored rule is edited
    // the way data goes bad.
    const gone = await makeDepartment(ctx.db, 'Gone');
    const stale = await rule({
      name: 'To a department that went',
      active: false,
      triggers: ['ticket.created', 'ticket.updated'],
      conditions: { all: [{ field: 'subject', operator: 'contains', value: 'gone-test' }] },
      actions: [
        { type: 'add_tags', tags: ['moving'] },
        { type: 'transfer', department_id: gone },
      ],
    });
    const existing = await create({ subject: 'gone-test', department_id: support });
    t.equal((await api('DELETE', `/v1/departments/${gone}`)).statusCode, 204);
    await ctx.db.updateTable('automation_rules').set({ active: true }).where('id', '=', stale.id).execute();
    await sql`update automation_rules_state set rules_version = rules_version + 1, rules_key = gen_random_uuid()`.execute(
      ctx.db,
    );
    const before = await countTickets(ctx.db);
    const refused = await api('POST', '/v1/tickets', {
      subject: 'gone-test again',
      contact: { email: 'gone@example.com' },
      message: { body: 'Hi' },
    });
    t.equal(refused.statusCode, 409);
    t.match(refused.json(), {
      code: 'rule_action_failed',
      detail:
        /"To a department that went" \(version 1\) could not apply action 2 \(transfer\): the department no longer exists/,
    });
    t.equal(await countTickets(ctx.db), before);
    const existingState = await ticketState(ctx.db, existing.id);
    const patched = await api('PATCH', `/v1/tickets/${existing.id}`, { priority: 'urgent' });
    t.equal(patched.statusCode, 409);
    t.match(patched.json().detail, /the department no longer exists/);
    t.same(await ticketState(ctx.db, existing.id), existingState, 'the tag before it is undone too');
    await removeRules();
  });

  await t.test('every trigger: the changes that raise it, through the API', async (t) => {
    const triggers = await makeDepartment(ctx.db, 'Triggers');
    await api('PUT', `/v1/departments/${triggers}/members/${ann.agent.id}`, { role: 'supervisor' });
    const scope = { field: 'subject', operator: 'contains', value: 'trig-test' };
    for (const trigger of [
      'ticket.created',
      'ticket.updated',
      'ticket.customer_replied',
      'ticket.agent_replied',
      'ticket.transferred',
      'ticket.status_changed',
    ]) {
      await rule({
        name: trigger,
        triggers: [trigger],
        conditions: { all: [scope] },
        actions: [{ type: 'add_note', body: trigger }],
      });
    }
    const ticket = await create({ subject: 'trig-test', department_id: triggers });
    const id = ticket.id;
    const last = async () => (await runs(id)).at(-1)!;
    const step = async (what: string, act: () => Promise<unknown>, events: string[], names: string[]) => {
      const before = (await runs(id)).length;
      await act();
      const after = await runs(id);
      if (events.length === 0) {
        t.equal(after.length, before, `${what}: no run`);
        return;
      }
      t.equal(after.length, before + 1, `${what}: one run`);
      t.same(after.at(-1)!.events, events, `${what}: events`);
      t.same(matched(after.at(-1)), names, `${what}: rules`);
    };
    t.same(matched(await last()), ['ticket.created']);
    await step(
      'PATCH priority',
      () => api('PATCH', `/v1/tickets/${id}`, { priority: 'high' }),
      ['ticket.updated'],
      ['ticket.updated'],
    );
    await step('PATCH nothing new', () => api('PATCH', `/v1/tickets/${id}`, { priority: 'high' }), [], []);
    await step(
      'PATCH status',
      () => api('PATCH', `/v1/tickets/${id}`, { status: 'resolved' }),
      ['ticket.updated', 'ticket.status_changed'],
      ['ticket.updated', 'ticket.status_changed'],
    );
    await step(
      'customer message reopening it',
      () => api('POST', `/v1/tickets/${id}/messages`, { kind: 'customer', body: 'Still broken' }),
      ['ticket.customer_replied', 'ticket.status_changed'],
      ['ticket.customer_replied', 'ticket.status_changed'],
    );
    await step(
      'customer message on an open ticket',
      () => api('POST', `/v1/tickets/${id}/messages`, { kind: 'customer', body: 'Hello?' }),
      ['ticket.customer_replied'],
      ['ticket.customer_replied'],
    );
    await step(
      'reply',
      () => api('POST', `/v1/tickets/${id}/messages`, { kind: 'reply', body: 'On it' }, ann.token),
      ['ticket.agent_replied', 'ticket.status_changed'],
      ['ticket.agent_replied', 'ticket.status_changed'],
    );
    await step('note', () => api('POST', `/v1/tickets/${id}/messages`, { kind: 'note', body: 'Hm' }), [], []);
    await step(
      'tags',
      () => api('POST', `/v1/tickets/${id}/tags`, { add: ['x'] }),
      ['ticket.updated'],
      ['ticket.updated'],
    );
    await step(
      'transfer',
      () => api('POST', `/v1/tickets/${id}/transfer`, { department_id: sales }),
      ['ticket.transferred', 'ticket.updated'],
      ['ticket.updated', 'ticket.transferred'],
    );
    await step(
      'delete',
      () => api('DELETE', `/v1/tickets/${id}`),
      ['ticket.status_changed'],
      ['ticket.status_changed'],
    );
    await step(
      'restore',
      () => api('POST', `/v1/tickets/${id}/restore`),
      ['ticket.status_changed'],
      ['ticket.status_changed'],
    );
    await api('PATCH', `/v1/tickets/${id}`, {
      status: 'postponed',
      postponed_until: new Date(Date.now() + 60_000).toISOString(),
    });
    await ctx.db
      .updateTable('tickets')
      .set({ postponed_until: new Date(Date.now() - 1000) })
      .where('id', '=', id)
      .execute();
    await step(
      'postponed ticket waking up',
      async () => t.equal(await wakePostponedTickets(ctx.db), 1),
      ['ticket.status_changed'],
      ['ticket.status_changed'],
    );
    await step(
      'answered call on it',
      () =>
        api('POST', '/v1/calls', {
          ticket_id: id,
          direction: 'outbound',
          outcome: 'answered',
          started_at: new Date(Date.now() - 60_000).toISOString(),
          answered_at: new Date(Date.now() - 50_000).toISOString(),
        }),
      ['ticket.status_changed'],
      ['ticket.status_changed'],
    );
    await step(
      'missed chat on it',
      () =>
        api('POST', '/v1/chats', {
          ticket_id: id,
          missed: true,
          started_at: new Date(Date.now() - 60_000).toISOString(),
          messages: [
            { from: 'customer', body: 'anyone?', sent_at: new Date(Date.now() - 59_000).toISOString() },
          ],
        }),
      ['ticket.status_changed'],
      ['ticket.status_changed'],
    );

    const quinn = await agentWithToken(ctx, { name: 'Quinn', departments: [[triggers, 'solver']] });
    const queued = await create({ subject: 'trig-test queue', department_id: triggers });
    const taken = await api('POST', '/v1/queue/next', undefined, quinn.token);
    t.equal(taken.json().id, queued.id);
    t.same(
      (await runs(queued.id)).at(-1)!.events,
      ['ticket.updated'],
      'taking it from the queue is an update',
    );

    const called = await api('POST', '/v1/calls', {
      direction: 'inbound',
      outcome: 'missed',
      from_number: '+1 555 0199',
      subject: 'trig-test call',
      department_id: triggers,
      started_at: new Date(Date.now() - 60_000).toISOString(),
    });
    t.same(
      (await runs(called.json().ticket_id)).map((r) => r.events),
      [['ticket.created']],
      'a call opening a ticket',
    );
    const noteCount = await countRows('ticket_messages');
    t.ok(noteCount > 0);
    await removeRules();
  });

  await t.test('rule-trace: every rule, what it saw, and why the others did not act', async (t) => {
    const routing = await rule({
      name: 'Marketing ticket routing',
      position: 1,
      conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: SOCIAL }] }] },
      actions: [
        { type: 'transfer', department_id: marketing },
        { type: 'assign', to: 'nobody' },
      ],
    });
    await rule({
      name: 'Refunds',
      position: 2,
      conditions: {
        any: [
          { all: [{ field: 'subject', operator: 'contains', value: 'refund' }] },
          {
            all: [
              { field: 'message.body', operator: 'contains', value: 'money back' },
              { field: 'priority', operator: 'is', value: 'high' },
            ],
          },
        ],
      },
      actions: [{ type: 'add_tags', tags: ['refund'] }],
    });
    await rule({
      name: 'Sleeping',
      position: 3,
      active: false,
      conditions: { all: [] },
      actions: [{ type: 'add_tags', tags: ['z'] }],
    });
    await rule({
      name: 'Replies only',
      position: 4,
      triggers: ['ticket.customer_replied'],
      conditions: { all: [] },
      actions: [{ type: 'add_tags', tags: ['r'] }],
    });
    await rule({
      name: 'Sales only',
      position: 5,
      department_id: sales,
      conditions: { all: [] },
      actions: [{ type: 'add_tags', tags: ['s'] }],
    });
    await rule({
      name: 'Stop here',
      position: 6,
      stop_processing: true,
      conditions: { all: [] },
      actions: [],
    });
    await rule({
      name: 'After the stop',
      position: 7,
      conditions: { all: [] },
      actions: [{ type: 'add_tags', tags: ['late'] }],
    });

    const ticket = await create({
      channel: 'twitter',
      subject: 'Hello',
      message: { body: 'I want my money back' },
    });
    const [run] = await runs(ticket.id);
    t.same(run!.events, ['ticket.created']);
    t.match(
      run!.ticket,
      { channel: 'twitter', department_id: null, subject: 'Hello' },
      'the ticket as the rules saw it',
    );
    const by = (name: string) => run!.rules.find((r) => r.name === name)!;
    t.match(by('Marketing ticket routing'), {
      rule_id: routing.id,
      version: 1,
      considered: true,
      matched: true,
      conditions: [
        { pointer: '/conditions', result: true },
        { pointer: '/conditions/any/0', result: true },
        { pointer: '/conditions/any/0/all/0', result: true, value: 'twitter' },
      ],
      actions: [
        { pointer: '/actions/0', type: 'transfer', outcome: 'applied' },
        { pointer: '/actions/1', type: 'assign', outcome: 'unchanged' },
      ],
    });
    t.same(
      by('Refunds').conditions,
      [
        { pointer: '/conditions', result: false },
        { pointer: '/conditions/any/0', result: false },
        { pointer: '/conditions/any/0/all/0', result: false, value: 'Hello' },
        { pointer: '/conditions/any/1', result: false },
        { pointer: '/conditions/any/1/all/0', result: true, value: 'I want my money back' },
        { pointer: '/conditions/any/1/all/1', result: false, value: 'normal' },
      ],
      'why it did not match: each node and the value it read',
    );
    t.match(by('Refunds'), { considered: true, matched: false, actions: null });
    t.match(by('Sleeping'), { considered: false, skipped: 'inactive', conditions: null });
    t.match(by('Replies only'), { considered: false, skipped: 'trigger' });
    t.match(by('Sales only'), { considered: false, skipped: 'department' });
    t.match(by('Stop here'), { matched: true });
    t.match(by('After the stop'), { considered: false, skipped: 'stopped' });
    t.match(run!.effects, [
      { type: 'transfer', rule_id: routing.id, rule_version: 1, department_id: marketing },
    ]);

    // The trace shows the rules as they were then, not as they are now.
    await api('PATCH', `/v1/automation-rules/${routing.id}`, {
      name: 'Renamed',
      conditions: { all: [{ field: 'channel', operator: 'is', value: 'email' }] },
    });
    const [again] = await runs(ticket.id);
    t.match(again!.rules[0], { name: 'Marketing ticket routing', version: 1, matched: true });
    t.same(again!.rules, run!.rules);

    const quiet = await create({ channel: 'email', subject: 'refund please' });
    t.same(
      (await runs(quiet.id)).map((r) => matched(r)),
      [['Renamed', 'Refunds', 'Stop here']],
    );
    t.equal(
      (await api('GET', `/v1/tickets/${ticket.id}/rule-trace`, undefined, stranger.token)).statusCode,
      200,
      'in Marketing now',
    );
    const hidden = await create({ channel: 'api', subject: 'private', department_id: sales });
    t.equal(
      (await api('GET', `/v1/tickets/${hidden.id}/rule-trace`, undefined, stranger.token)).statusCode,
      404,
    );
    await removeRules();
  });

  await t.test(
    'simulate: saved ticket or snapshot, saved or draft rules, and nothing is written',
    async (t) => {
      const desk = await makeDepartment(ctx.db, 'Simulated desk');
      const agents = [];
      for (const name of ['Sim A', 'Sim B'])
        agents.push(await makeAgent(ctx.db, { name, departments: [[desk, 'solver']] }));
      const routing = await rule({
        name: 'Marketing ticket routing',
        conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: SOCIAL }] }] },
        actions: [
          { type: 'transfer', department_id: marketing },
          { type: 'assign', to: 'nobody' },
        ],
      });
      await api('PATCH', `/v1/automation-rules/${routing.id}`, { active: false });
      const saved = await create({ channel: 'facebook', department_id: sales, assignee_id: ann.agent.id });
      t.equal(saved.department_id, sales, 'inactive: did not act');
      await api('PATCH', `/v1/automation-rules/${routing.id}`, { active: true });

      const state = await ticketState(ctx.db, saved.id);
      const runsBefore = await countRows('rule_runs');
      const cursors = await countRows('round_robin_cursors');
      const simulate = (payload: Record<string, unknown>, token = admin.token) =>
        api('POST', '/v1/automation-rules/simulate', payload, token);

      const onSaved = await simulate({ ticket_id: saved.id, event: { type: 'ticket.created' } });
      t.equal(onSaved.statusCode, 200, onSaved.body);
      t.match(onSaved.json(), {
        event: 'ticket.created',
        ticket: { id: saved.id, channel: 'facebook', department_id: sales, assignee_id: ann.agent.id },
        result: { department_id: marketing, assignee_id: null },
        changes: [
          { field: 'department_id', from: sales, to: marketing },
          { field: 'assignee_id', from: ann.agent.id, to: null },
        ],
        rules: [
          { rule_id: routing.id, version: 3, matched: true, conditions: [{}, {}, { value: 'facebook' }] },
        ],
      });

      const onSnapshot = await simulate({
        event: { type: 'ticket.customer_replied', message: { body: 'When will my order ship?' } },
        ticket: {
          channel: 'email',
          subject: 'Order',
          department_id: desk,
          contact: { name: 'Jo', email: 'jo@example.com' },
        },
        rules: [
          {
            name: 'Draft: shipping questions',
            triggers: ['ticket.customer_replied'],
            conditions: { all: [{ field: 'message.body', operator: 'contains', value: 'ship' }] },
            actions: [
              { type: 'assign', to: 'round_robin' },
              { type: 'add_note', body: 'Shipping FAQ: https://example.com/faq' },
              { type: 'set_status', status: 'postponed', postpone_seconds: 7200 },
            ],
          },
        ],
      });
      t.equal(onSnapshot.statusCode, 200, onSnapshot.body);
      const sim = onSnapshot.json();
      const first = agents.map((a) => a.id).sort()[0];
      t.match(sim, {
        rules_version: null,
        rules: [{ rule_id: 'draft-1', version: null, name: 'Draft: shipping questions', matched: true }],
        effects: [
          { type: 'assign_intent', strategy: 'round_robin', agent_id: first, rule_version: null },
          { type: 'add_note' },
          { type: 'set_status', status: 'postponed' },
        ],
        notes: ['Shipping FAQ: https://example.com/faq'],
        result: { assignee_id: first, status: 'postponed' },
      });
      t.same(
        sim.changes.map((c: { field: string }) => c.field),
        ['assignee_id', 'status', 'postponed_until'],
      );
      t.equal(sim.rules.length, 1, 'drafts alone, without the saved rules');

      const replaced = await simulate({
        ticket_id: saved.id,
        event: { type: 'ticket.created' },
        include_saved_rules: true,
        rules: [
          {
            id: routing.id,
            name: 'Marketing ticket routing (draft)',
            triggers: ['ticket.created'],
            conditions: { all: [{ field: 'channel', operator: 'is', value: 'viber' }] },
            actions: [{ type: 'transfer', department_id: marketing }],
          },
        ],
      });
      t.match(replaced.json(), {
        rules: [{ rule_id: routing.id, matched: false, version: null }],
        changes: [],
      });

      const invalid = await simulate({
        event: { type: 'ticket.created' },
        ticket: { channel: 'email' },
        rules: [
          {
            name: 'Bad',
            triggers: ['ticket.created'],
            conditions: { all: [{ field: 'channel', operator: 'contains', value: 'x' }] },
            actions: [{ type: 'mark_spam' }],
          },
        ],
      });
      t.equal(invalid.statusCode, 422);
      t.equal(invalid.json().errors[0].field, 'body/rules/0/conditions/all/0/operator');

      const both = await simulate({ event: { type: 'ticket.created' }, ticket_id: saved.id, ticket: {} });
      t.equal(both.statusCode, 422);
      const hidden = await create({ department_id: sales, channel: 'email' });
      t.equal(
        (await simulate({ event: { type: 'ticket.created' }, ticket_id: hidden.id }, stranger.token))
          .statusCode,
        404,
      );

      t.same(await ticketState(ctx.db, saved.id), state, 'the saved ticket is untouched');
      t.equal(await countRows('rule_runs'), runsBefore + 1, 'only the ticket created meanwhile ran rules');
      t.equal(await countRows('round_robin_cursors'), cursors, 'round robin did not move');
      await removeRules();
    },
  );

  await t.test('the demo seed ships the Marketing rule, and it works end to end', async (t) => {
    const demo = await buildTestApp(t);
    await seedDemo(demo.db, { tickets: 12, months: 1, seed: 3 });
    const { token } = await agentWithToken(demo, { role: 'admin' });
    const seeded = await demo.request({ method: 'GET', url: '/v1/departments?q=Marketing', token });
    const marketingId = seeded.json().data[0].id as string;
    const list = (await demo.request({ method: 'GET', url: '/v1/automation-rules', token })).json().data;
    t.match(list, [
      {
        name: 'Marketing ticket routing',
        note: /Marketing/,
        active: true,
        triggers: ['ticket.created'],
        conditions: {
          any: [
            {
              all: [
                {
                  field: 'channel',
                  operator: 'is_one_of',
                  value: ['facebook', 'twitter', 'instagram', 'viber'],
                },
              ],
            },
          ],
        },
        actions: [
          { type: 'transfer', department_id: marketingId },
          { type: 'assign', to: 'nobody' },
        ],
        version: 1,
      },
    ]);
    const res = await demo.request({
      method: 'POST',
      url: '/v1/tickets',
      token,
      payload: {
        subject: 'Collab?',
        channel: 'instagram',
        contact: { email: 'influencer@example.com' },
        message: { body: 'Hi!' },
      },
    });
    t.match(res.json(), { department_id: marketingId, assignee_id: null });
    await seedDemo(demo.db, { tickets: 1, months: 1, seed: 4, force: true });
    t.equal(
      (await demo.request({ method: 'GET', url: '/v1/automation-rules', token })).json().data.length,
      1,
      'seeded once',
    );
  });

  await t.test('tickets opened outside POST /v1/tickets run rules too (service path)', async (t) => {
    await rule({
      name: 'Whatsapp to Support',
      conditions: { all: [{ field: 'channel', operator: 'is', value: 'whatsapp' }] },
      actions: [{ type: 'transfer', department_id: support }],
    });
    const ticket = await makeTicket(ctx.db, { channel: 'whatsapp' });
    t.equal(ticket.department_id, support);
    await removeRules();
  });
});
