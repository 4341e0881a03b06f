import t from 'tap';
import {
  CHANNELS as TICKET_CHANNELS,
  PRIORITIES as TICKET_PRIORITIES,
  STATUSES as TICKET_STATUSES,
} from '../../src/domains/tickets/schemas.ts';
import { compileRules, evaluate, RuleSetError } from '../../src/rule-engine/index.ts';
import type { Condition, Rule } from '../../src/rule-engine/types.ts';
import { CHANNELS, PRIORITIES, SLA_KINDS, STATUSES } from '../../src/rule-engine/types.ts';
import { SLA_KINDS as CLOCK_KINDS } from '../../src/sla/index.ts';
import { ANN, BOB, event, holds, rule, run, SALES, SUPPORT, ticket } from './fixtures.ts';

t.test('the engine keeps the ticket vocabulary of the tickets domain', async (t) => {
  t.same([...CHANNELS], [...TICKET_CHANNELS]);
  t.same([...STATUSES], [...TICKET_STATUSES]);
  t.same([...PRIORITIES], [...TICKET_PRIORITIES]);
  t.same([...SLA_KINDS], [...CLOCK_KINDS], 'and the SLA clock’s target kinds (sla.kind)');
});

t.test('boolean trees of any depth', async (t) => {
  const yes: Condition = { field: 'channel', operator: 'is', value: 'email' };
  const no: Condition = { field: 'channel', operator: 'is', value: 'chat' };
  const cases: [string, Condition, boolean][] = [
    ['empty all is true', { all: [] }, true],
    ['all', { all: [yes, yes] }, true],
    ['all with one false', { all: [yes, no] }, false],
    ['any', { any: [no, yes] }, true],
    ['any all false', { any: [no, no] }, false],
    ['not', { not: no }, true],
    ['not not', { not: { not: yes } }, true],
    ['seed condition groups: any of alls', { any: [{ all: [yes, no] }, { all: [yes, yes] }] }, true],
    ['seed condition groups: no group', { any: [{ all: [yes, no] }, { all: [no, yes] }] }, false],
    ['depth 6', { all: [{ any: [no, { not: { all: [yes, { any: [no, { not: yes }] }] } }] }, yes] }, true],
    [
      'depth 6, flipped leaf',
      { all: [{ any: [no, { not: { all: [yes, { any: [no, { not: no }] }] } }] }, yes] },
      false,
    ],
    [
      'not of a type mismatch leaf is true',
      { not: { field: 'contact.custom.seats', operator: 'is', value: 1 } },
      true,
    ],
  ];
  for (const [name, condition, expected] of cases) {
    t.equal(
      holds(condition, ticket({ contact: { name: 'x', email: null, custom: { seats: 'many' } } })),
      expected,
      name,
    );
  }
});

t.test('rules run in position order, each seeing the snapshot the previous ones left', async (t) => {
  const rules: Rule[] = [
    rule({
      id: 'second',
      position: 20,
      conditions: { field: 'priority', operator: 'is', value: 'high' },
      actions: [{ type: 'add_tags', tags: ['saw-high'] }],
    }),
    rule({ id: 'first', position: 10, actions: [{ type: 'set_priority', priority: 'high' }] }),
    rule({ id: 'tie-b', position: 30, actions: [{ type: 'add_note', body: 'b' }] }),
    rule({ id: 'tie-a', position: 30, actions: [{ type: 'add_note', body: 'a' }] }),
  ];
  const result = run(rules);
  t.same(
    result.trace.rules.map((r) => r.rule_id),
    ['first', 'second', 'tie-a', 'tie-b'],
    'position order, ties by id',
  );
  t.same(
    result.effects.map((e) => [e.rule_id, e.type]),
    [
      ['first', 'set_priority'],
      ['second', 'set_tags'],
      ['tie-a', 'add_note'],
      ['tie-b', 'add_note'],
    ],
  );
  t.equal(result.ticket.priority, 'high');
  t.same(result.ticket.tags, ['refund', 'saw-high']);
});

t.test('stop_processing ends the pass after a matching rule', async (t) => {
  const rules = [
    rule({
      id: 'a',
      position: 1,
      stop_processing: true,
      conditions: { field: 'channel', operator: 'is', value: 'chat' },
    }),
    rule({ id: 'b', position: 2, stop_processing: true }),
    rule({ id: 'c', position: 3 }),
  ];
  const result = run(rules);
  t.equal(result.trace.stopped_by, 'b', 'a did not match, so it did not stop anything');
  t.same(
    result.trace.rules.map((r) => [r.rule_id, r.considered, r.skipped, r.matched]),
    [
      ['a', true, null, false],
      ['b', true, null, true],
      ['c', false, 'stopped', false],
    ],
  );
  t.same(
    result.effects.map((e) => e.rule_id),
    ['b'],
  );
});

t.test('triggers and the active flag', async (t) => {
  const rules = [
    rule({ id: 'on-create', position: 1, triggers: ['ticket.created'] }),
    rule({ id: 'on-reply', position: 2, triggers: ['ticket.customer_replied', 'ticket.agent_replied'] }),
    rule({ id: 'off', position: 3, active: false }),
  ];
  const created = run(rules, ticket(), event({ type: 'ticket.created' }));
  t.same(
    created.trace.rules.map((r) => [r.rule_id, r.skipped, r.matched]),
    [
      ['on-create', null, true],
      ['on-reply', 'trigger', false],
      ['off', 'inactive', false],
    ],
  );
  const replied = run(rules, ticket(), event({ type: 'ticket.agent_replied' }));
  t.same(
    replied.trace.rules.filter((r) => r.matched).map((r) => r.rule_id),
    ['on-reply'],
  );
});

t.test('department-owned rules', async (t) => {
  t.test('are skipped for tickets of other departments, as the snapshot stands at their turn', async (t) => {
    const rules = [
      rule({ id: 'sales-only', position: 1, department_id: SALES }),
      rule({ id: 'move-to-sales', position: 2, actions: [{ type: 'transfer', department_id: SALES }] }),
      rule({
        id: 'sales-again',
        position: 3,
        department_id: SALES,
        actions: [{ type: 'add_tags', tags: ['sales'] }],
      }),
    ];
    const result = run(rules, ticket({ department_id: SUPPORT }));
    t.same(
      result.trace.rules.map((r) => [r.rule_id, r.skipped, r.matched]),
      [
        ['sales-only', 'department', false],
        ['move-to-sales', null, true],
        ['sales-again', null, true],
      ],
    );
    t.equal(result.ticket.department_id, SALES);
    t.same(result.ticket.tags, ['refund', 'sales']);
  });

  t.test('may transfer a ticket out, and then change it no further', async (t) => {
    const rules = [
      rule({
        id: 'support-router',
        department_id: SUPPORT,
        actions: [
          { type: 'add_tags', tags: ['routed'] },
          { type: 'transfer', department_id: SALES },
          { type: 'set_priority', priority: 'urgent' },
        ],
      }),
    ];
    const result = run(rules, ticket({ department_id: SUPPORT }));
    t.same(
      result.effects.map((e) => e.type),
      ['set_tags', 'transfer'],
    );
    t.equal(result.ticket.priority, 'normal', 'not changed after leaving the department');
    t.same(
      result.trace.rules[0]!.actions!.map((a) => [a.type, a.outcome, a.reason]),
      [
        ['add_tags', 'applied', null],
        ['transfer', 'applied', null],
        ['set_priority', 'skipped', "the ticket left the rule's department"],
      ],
    );
  });
});

t.test('no loops: a change made by a rule raises no event and no rule acts twice', async (t) => {
  // Ping-pong rules: each undoes the other. With re-triggering they would loop forever.
  const rules = [
    rule({
      id: 'raise',
      position: 1,
      triggers: ['ticket.updated', 'ticket.transferred'],
      conditions: { field: 'priority', operator: 'is', value: 'low' },
      actions: [
        { type: 'set_priority', priority: 'high' },
        { type: 'transfer', department_id: SALES },
      ],
    }),
    rule({
      id: 'lower',
      position: 2,
      triggers: ['ticket.updated', 'ticket.transferred'],
      conditions: { field: 'priority', operator: 'is', value: 'high' },
      actions: [
        { type: 'set_priority', priority: 'low' },
        { type: 'transfer', department_id: SUPPORT },
      ],
    }),
    rule({
      id: 'on-transfer-only',
      position: 3,
      triggers: ['ticket.transferred'],
      actions: [{ type: 'add_note', body: 'would fire if a rule transfer raised an event' }],
    }),
  ];
  const result = run(rules, ticket({ priority: 'low' }), event({ type: 'ticket.updated' }));
  t.same(
    result.effects.map((e) => [e.rule_id, e.type]),
    [
      ['raise', 'set_priority'],
      ['raise', 'transfer'],
      ['lower', 'set_priority'],
      ['lower', 'transfer'],
    ],
  );
  t.equal(result.trace.rules.length, 3, 'each rule appears once');
  t.equal(
    result.trace.rules[2]!.skipped,
    'trigger',
    'the rule transfer did not fire ticket.transferred rules',
  );
  t.equal(result.ticket.priority, 'low');
});

t.test('has_changed sees changes made by earlier rules in the same pass', async (t) => {
  const rules = [
    rule({ id: 'bump', position: 1, actions: [{ type: 'set_priority', priority: 'urgent' }] }),
    rule({
      id: 'notice',
      position: 2,
      conditions: { field: 'priority', operator: 'changed_to', value: 'urgent' },
    }),
  ];
  const result = run(rules, ticket(), event({ type: 'ticket.updated', previous: {} }));
  t.same(
    result.trace.rules.map((r) => r.matched),
    [true, true],
  );
});

t.test('actions', async (t) => {
  t.test('tags: add, remove, replace, canonical and bounded', async (t) => {
    const result = run(
      [
        rule({
          actions: [
            { type: 'add_tags', tags: [' VIP ', 'refund', 'billing'] },
            { type: 'remove_tags', tags: ['REFUND'] },
          ],
        }),
      ],
      ticket({ tags: ['refund'] }),
    );
    t.same(result.ticket.tags, ['vip', 'billing']);
    t.same(
      result.effects.map((e) => (e.type === 'set_tags' ? [e.added, e.removed] : null)),
      [
        [['vip', 'billing'], []],
        [[], ['refund']],
      ],
    );
    const replaced = run([rule({ actions: [{ type: 'replace_tags', tags: [] }] })]);
    t.same(replaced.ticket.tags, []);
    const unchanged = run([rule({ actions: [{ type: 'replace_tags', tags: ['Refund'] }] })]);
    t.same(unchanged.effects, [], 'replacing with the same set changes nothing');
    const full = Array.from({ length: 49 }, (_, i) => `t${i}`);
    const capped = run([rule({ actions: [{ type: 'add_tags', tags: ['x', 'y'] }] })], ticket({ tags: full }));
    t.equal(capped.ticket.tags.length, 50);
    t.match(capped.trace.rules[0]!.actions![0]!, { outcome: 'applied', reason: /1 tag\(s\) left out/ });
    // And 2,000 bytes together: 45 tags of 50 characters are 2,250.
    const long = Array.from({ length: 45 }, (_, i) => `long-${String(i).padStart(2, '0')}-`.padEnd(50, 'z'));
    const bytes = run([rule({ actions: [{ type: 'replace_tags', tags: long }] })]);
    t.same(bytes.ticket.tags, long.slice(0, 40));
    t.match(bytes.trace.rules[0]!.actions![0]!, {
      outcome: 'applied',
      reason: "5 tag(s) left out: a ticket's tags take at most 2000 bytes together",
    });
    const added = run([rule({ actions: [{ type: 'add_tags', tags: long }] })], ticket({ tags: ['vip'] }));
    t.same(added.ticket.tags, ['vip', ...long.slice(0, 39)]);
    t.match(added.trace.rules[0]!.actions![0]!, { reason: /^6 tag\(s\) left out: a ticket's tags take/ });
  });

  t.test('status: set, resolve, postpone from the event time, mark spam', async (t) => {
    const postponed = run([
      rule({ actions: [{ type: 'set_status', status: 'postponed', postpone_seconds: 3600 }] }),
    ]);
    t.equal(postponed.ticket.status, 'postponed');
    t.equal(postponed.ticket.postponed_until, '2024-06-01T11:00:00.000Z');
    const resolved = run([rule({ actions: [{ type: 'set_status', status: 'resolved' }] })]);
    t.match(resolved.effects, [
      { type: 'set_status', status: 'resolved', from: 'new', postponed_until: null },
    ]);
    const spam = run([rule({ actions: [{ type: 'mark_spam' }, { type: 'mark_spam' }] })]);
    t.same(
      spam.effects.map((e) => e.type),
      ['mark_spam'],
      'the second mark_spam changes nothing',
    );
    t.equal(spam.ticket.status, 'spam');
  });

  t.test('assign: to an agent, to nobody, and strategies as intents', async (t) => {
    const direct = run([rule({ actions: [{ type: 'assign', to: 'agent', agent_id: ANN }] })]);
    t.equal(direct.ticket.assignee_id, ANN);
    const nobody = run([rule({ actions: [{ type: 'assign', to: 'nobody' }] })], ticket({ assignee_id: BOB }));
    t.match(nobody.effects, [{ type: 'assign', agent_id: null }]);

    const rules = [
      rule({ id: 'rr', position: 1, actions: [{ type: 'assign', to: 'round_robin' }] }),
      rule({ id: 'sees-empty', position: 2, conditions: { field: 'assignee_id', operator: 'is_empty' } }),
      rule({
        id: 'sees-not-empty',
        position: 3,
        conditions: { field: 'assignee_id', operator: 'is_not_empty' },
      }),
      rule({
        id: 'sees-not',
        position: 4,
        conditions: { not: { field: 'assignee_id', operator: 'is', value: ANN } },
      }),
    ];
    const result = run(rules, ticket({ department_id: SUPPORT }));
    t.same(result.effects[0], {
      rule_id: 'rr',
      action_index: 0,
      type: 'assign_intent',
      strategy: 'round_robin',
      department_id: SUPPORT,
    });
    t.equal(result.ticket.assignee_id, null, 'the snapshot assignee is not changed by an intent');
    t.same(result.ticket.pending_assignment, { strategy: 'round_robin', department_id: SUPPORT });
    t.same(
      result.trace.rules.map((r) => r.matched),
      [true, false, false, true],
      'a pending assignee is unknown: leaves on it are false, their negation true',
    );
    const traced = evaluate(event(), ticket(), compileRules(rules, { version: 1 }));
    t.same(traced.trace.rules[1]!.conditions, [
      { pointer: '/conditions', result: false, value: { pending: 'round_robin' } },
    ]);

    const noDepartment = run(
      [rule({ actions: [{ type: 'assign', to: 'least_busy' }] })],
      ticket({ department_id: null }),
    );
    t.same(noDepartment.effects, []);
    t.match(noDepartment.trace.rules[0]!.actions, [
      { outcome: 'skipped', reason: 'the ticket has no department' },
    ]);

    const transferred = run(
      [rule({ actions: [{ type: 'transfer', department_id: SALES }] })],
      ticket({ assignee_id: ANN }),
    );
    t.same(
      transferred.ticket.pending_assignment,
      { strategy: 'keep_if_member', department_id: SALES },
      'whether the assignee stays is for the caller to decide',
    );
  });

  t.test('notes, and actions that change nothing', async (t) => {
    const result = run([
      rule({
        actions: [
          { type: 'add_note', body: 'Looks like a refund.' },
          { type: 'set_priority', priority: 'normal' },
          { type: 'transfer', department_id: SUPPORT },
        ],
      }),
    ]);
    t.same(result.effects, [
      {
        rule_id: result.trace.rules[0]!.rule_id,
        action_index: 0,
        type: 'add_note',
        body: 'Looks like a refund.',
      },
    ]);
    t.same(
      result.trace.rules[0]!.actions!.map((a) => a.outcome),
      ['applied', 'unchanged', 'unchanged'],
    );
  });
});

t.test('trace', async (t) => {
  const rules = [
    rule({
      id: 'r',
      conditions: {
        any: [
          {
            all: [
              { field: 'channel', operator: 'is', value: 'chat' },
              { field: 'subject', operator: 'contains', value: 'x' },
            ],
          },
          {
            all: [
              { field: 'subject', operator: 'starts_with', value: 'refund' },
              { field: 'priority', operator: 'has_changed' },
            ],
          },
        ],
      },
    }),
  ];
  const result = evaluate(
    event({ type: 'ticket.updated', previous: { priority: 'low' } }),
    ticket(),
    compileRules(rules, { version: 3 }),
  );
  t.equal(result.trace.version, 3);
  t.equal(result.trace.event, 'ticket.updated');
  t.same(result.trace.rules[0]!.conditions, [
    { pointer: '/conditions', result: true },
    { pointer: '/conditions/any/0', result: false },
    { pointer: '/conditions/any/0/all/0', result: false, value: 'email' },
    { pointer: '/conditions/any/1', result: true },
    { pointer: '/conditions/any/1/all/0', result: true, value: 'Refund for order 5521' },
    { pointer: '/conditions/any/1/all/1', result: true, value: { from: 'low', to: 'normal' } },
  ]);
  t.same(result.trace.rules[0]!.actions, [
    { pointer: '/actions/0', type: 'add_note', outcome: 'applied', reason: null },
  ]);
  const long = evaluate(
    event({ message: { body: 'y'.repeat(2000), sender_email: null } }),
    ticket(),
    compileRules([rule({ conditions: { field: 'message.body', operator: 'contains', value: 'zz' } })], {
      version: 1,
    }),
  );
  t.equal(
    (long.trace.rules[0]!.conditions![0]!.value as string).length,
    501,
    'long text is cut in the trace',
  );
});

t.test('pure and deterministic', async (t) => {
  const rules = [
    rule({
      actions: [
        { type: 'add_tags', tags: ['a'] },
        { type: 'set_status', status: 'postponed', postpone_seconds: 60 },
      ],
    }),
  ];
  const compiled = compileRules(rules, { version: 1 });
  const input = ticket();
  const copy = structuredClone(input);
  const first = evaluate(event(), input, compiled);
  const second = evaluate(event(), input, compiled);
  t.same(input, copy, 'the input ticket is not mutated');
  t.same(first, second, 'same inputs, same output');
  t.not(first.ticket, input);
  t.ok(Object.isFrozen(compiled), 'the compiled set is frozen');
});

t.test('compileRules refuses malformed rule sets with pointers prefixed by the rule index', async (t) => {
  const good = rule({ id: 'same' });
  const bad = {
    ...rule(),
    conditions: { field: 'priority', operator: 'contains', value: 'x' },
  } as unknown as Rule;
  try {
    compileRules([good, bad, { ...good }], { version: 1 });
    t.fail('should throw');
  } catch (error) {
    t.ok(error instanceof RuleSetError);
    t.same(
      (error as RuleSetError).errors.map((e) => e.pointer),
      ['/1/conditions/operator', '/2/id'],
    );
  }
  t.equal(compileRules([], { version: 2 }).rules.length, 0, 'an empty set compiles');
});

t.test('where code generation is forbidden, compileRules falls back to closures', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const script = `
    import { compileRules, evaluate } from './src/rule-engine/index.ts';
    const rule = { id: 'r', name: 'r', active: true, position: 0, stop_processing: false, triggers: ['ticket.created'],
      conditions: { any: [{ all: [{ field: 'channel', operator: 'is', value: 'email' }, { field: 'subject', operator: 'contains', value: 'refund' }] }] },
      actions: [{ type: 'add_tags', tags: ['auto'] }] };
    const ticket = { id: 't', channel: 'email', subject: 'Refund please', status: 'new', priority: 'normal', department_id: null,
      assignee_id: null, tags: [], support_address: null, postponed_until: null, contact: { name: 'n', email: null, custom: {} },
      created_in_working_hours: true };
    const result = evaluate({ type: 'ticket.created', occurred_at: '2024-06-01T10:00:00Z' }, ticket, compileRules([rule], { version: 1 }), { trace: 'matches' });
    console.log(JSON.stringify(result.ticket.tags));
  `;
  const child = spawnSync(
    process.execPath,
    ['--disallow-code-generation-from-strings', '--input-type=module', '-e', script],
    { cwd: new URL('../..', import.meta.url).pathname, encoding: 'utf8' },
  );
  t.equal(child.stderr.includes('Error'), false, child.stderr);
  t.equal(child.stdout.trim(), '["auto"]');
});
