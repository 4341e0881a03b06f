import t from 'tap';
import { validateRule } from '../../src/rule-engine/index.ts';
import type { Catalog } from '../../src/rule-engine/types.ts';
import { ANN, catalog, rule, SALES } from './fixtures.ts';

/** The pointers (and messages) validateRule reports for a rule patched with `patch`. */
function errors(patch: Record<string, unknown>, using: Catalog = catalog) {
  return validateRule({ ...rule({ id: 'r1', position: 1 }), ...patch }, using);
}

const leaf = (field: string, operator: string, value?: unknown) =>
  value === undefined ? { field, operator } : { field, operator, value };

t.test('a valid rule has no errors', async (t) => {
  t.same(
    errors({
      department_id: SALES,
      conditions: {
        any: [
          {
            all: [
              leaf('channel', 'is_one_of', ['facebook', 'twitter']),
              leaf('subject', 'matches', '^re(fund)?'),
            ],
          },
          { all: [leaf('contact.custom.plan', 'is', 'pro'), leaf('priority', 'greater_than', 'low')] },
          { not: leaf('tags', 'contains_any', ['VIP']) },
        ],
      },
      actions: [
        { type: 'transfer', department_id: SALES },
        { type: 'assign', to: 'agent', agent_id: ANN },
        { type: 'assign', to: 'round_robin' },
        { type: 'set_status', status: 'postponed', postpone_seconds: 3600 },
        { type: 'replace_tags', tags: [] },
      ],
    }),
    [],
  );
});

t.test('errors point at the offending node', async (t) => {
  const cases: [string, Record<string, unknown>, { pointer: string; message: string | RegExp }[]][] = [
    [
      'unknown field deep in condition groups',
      {
        conditions: {
          any: [
            { all: [leaf('channel', 'is', 'email')] },
            { all: [leaf('channel', 'is', 'email'), leaf('subjct', 'is', 'x')] },
          ],
        },
      },
      [{ pointer: '/conditions/any/1/all/1/field', message: 'unknown field "subjct"' }],
    ],
    [
      'operator that does not fit the field',
      { conditions: { all: [leaf('priority', 'contains', 'hi')] } },
      [
        {
          pointer: '/conditions/all/0/operator',
          message: /"contains" does not apply to priority \(a priority field\); use one of: is, is_not/,
        },
      ],
    ],
    [
      'unknown operator',
      { conditions: leaf('subject', 'resembles', 'x') },
      [{ pointer: '/conditions/operator', message: /^must be one of: is, is_not/ }],
    ],
    [
      'value of the wrong type',
      { conditions: { all: [leaf('contact.custom.seats', 'greater_than', '10')] } },
      [{ pointer: '/conditions/all/0/value', message: 'must be a finite number' }],
    ],
    [
      'wrong type inside a list',
      { conditions: { any: [{ all: [leaf('channel', 'is_one_of', ['email', 'fax'])] }] } },
      [{ pointer: '/conditions/any/0/all/0/value/1', message: /^must be one of: email, contact_form/ }],
    ],
    [
      'unsafe pattern: backreference',
      { conditions: { all: [leaf('subject', 'matches', '(a+)\\1')] } },
      [
        {
          pointer: '/conditions/all/0/value',
          message: /^pattern is not a valid RE2 pattern: .*invalid escape/,
        },
      ],
    ],
    [
      'unsafe pattern: lookahead',
      { conditions: leaf('message.body', 'matches', 'refund(?=now)') },
      [{ pointer: '/conditions/value', message: /^pattern is not a valid RE2 pattern/ }],
    ],
    [
      'pattern too long',
      { conditions: leaf('subject', 'matches', 'a'.repeat(501)) },
      [{ pointer: '/conditions/value', message: 'pattern must be at most 500 characters' }],
    ],
    [
      'pattern that expands too much',
      { conditions: leaf('subject', 'matches', '((a{100}){100}){100}') },
      [{ pointer: '/conditions/value', message: /^pattern (is too complex|is not a valid RE2 pattern)/ }],
    ],
    [
      'department that does not exist, in a condition and in an action',
      {
        conditions: leaf('department_id', 'is_one_of', [SALES, 'd-gone']),
        actions: [{ type: 'transfer', department_id: 'd-gone' }],
      },
      [
        { pointer: '/conditions/value/1', message: 'department "d-gone" does not exist' },
        { pointer: '/actions/0/department_id', message: 'department "d-gone" does not exist' },
      ],
    ],
    [
      'agent that does not exist',
      {
        actions: [
          { type: 'add_note', body: 'x' },
          { type: 'assign', to: 'agent', agent_id: 'a-nobody' },
        ],
      },
      [{ pointer: '/actions/1/agent_id', message: 'agent "a-nobody" does not exist' }],
    ],
    [
      'owning department that does not exist',
      { department_id: 'd-gone' },
      [{ pointer: '/department_id', message: 'department "d-gone" does not exist' }],
    ],
    [
      'unknown contact field',
      { conditions: leaf('contact.custom.shoe_size', 'is', 42) },
      [{ pointer: '/conditions/field', message: 'unknown contact field "shoe_size"' }],
    ],
    [
      'choice value outside the options',
      { conditions: leaf('contact.custom.plan', 'is', 'Gold') },
      [{ pointer: '/conditions/value', message: "must be one of the field's options: Free, Pro" }],
    ],
    [
      'previous value of a field that has none',
      { conditions: leaf('previous.message.body', 'contains', 'x') },
      [{ pointer: '/conditions/field', message: '"message.body" has no previous value' }],
    ],
    [
      'change operator on previous.<field>',
      { conditions: leaf('previous.status', 'has_changed') },
      [{ pointer: '/conditions/operator', message: /"has_changed" does not apply to previous.status/ }],
    ],
    [
      'value given to an operator that takes none',
      { conditions: leaf('tags', 'is_empty', []) },
      [{ pointer: '/conditions/value', message: 'must be omitted for is_empty' }],
    ],
    [
      'missing value',
      { conditions: { not: leaf('subject', 'contains') } },
      [{ pointer: '/conditions/not/value', message: 'is required' }],
    ],
    [
      'blank text value',
      { conditions: leaf('subject', 'is', '  ') },
      [{ pointer: '/conditions/value', message: 'must not be blank' }],
    ],
    [
      'bad date',
      { conditions: leaf('contact.custom.since', 'less_than', '2023-02-30') },
      [{ pointer: '/conditions/value', message: 'must be a date written YYYY-MM-DD' }],
    ],
    [
      'mixed node',
      { conditions: { all: [{ all: [], field: 'subject' }] } },
      [{ pointer: '/conditions/all/0', message: /^must be exactly one of/ }],
    ],
    [
      'empty any',
      { conditions: { any: [] } },
      [{ pointer: '/conditions/any', message: 'must have at least one condition' }],
    ],
    [
      'unknown property in a leaf (a typo)',
      { conditions: { field: 'subject', operator: 'is', vlaue: 'x' } },
      [
        { pointer: '/conditions/vlaue', message: 'is not a known property' },
        { pointer: '/conditions/value', message: 'is required' },
      ],
    ],
    [
      'too deep',
      {
        conditions: Array.from({ length: 17 }).reduce((node) => ({ not: node }), leaf('subject', 'is', 'x')),
      },
      [{ pointer: `/conditions${'/not'.repeat(16)}`, message: 'nests deeper than 16 levels' }],
    ],
    [
      'rule fields',
      {
        name: ' ',
        active: 'yes',
        position: 1.5,
        stop_processing: undefined,
        triggers: ['ticket.created', 'ticket.deleted', 'ticket.created'],
      },
      [
        { pointer: '/name', message: 'must not be blank' },
        { pointer: '/active', message: 'must be a boolean' },
        { pointer: '/position', message: 'must be an integer' },
        { pointer: '/stop_processing', message: 'must be a boolean' },
        { pointer: '/triggers/1', message: /^must be one of: ticket.created/ },
        { pointer: '/triggers/2', message: 'repeats "ticket.created"' },
      ],
    ],
    [
      'actions',
      {
        actions: [
          { type: 'explode' },
          { type: 'assign', to: 'nobody', agent_id: ANN },
          { type: 'set_status', status: 'postponed' },
          { type: 'set_status', status: 'spam' },
          { type: 'add_tags', tags: [] },
          { type: 'add_note', body: '' },
          { type: 'mark_spam', reason: 'x' },
        ],
      },
      [
        { pointer: '/actions/0/type', message: /^must be one of: transfer, assign/ },
        { pointer: '/actions/1/agent_id', message: 'is only allowed when to is agent' },
        {
          pointer: '/actions/2/postpone_seconds',
          message: 'must be a whole number of seconds from 60 to 31536000',
        },
        { pointer: '/actions/3/status', message: /^must be one of: open, answered, resolved, postponed/ },
        { pointer: '/actions/4/tags', message: 'must have at least 1 item' },
        { pointer: '/actions/5/body', message: 'must not be blank' },
        { pointer: '/actions/6/reason', message: 'is not a known property' },
      ],
    ],
    [
      'no actions on a rule that does not stop processing',
      { actions: [] },
      [{ pointer: '/actions', message: 'must have at least one action (or the rule must stop processing)' }],
    ],
    [
      'ticket.idle without its parameter',
      { triggers: ['ticket.idle'] },
      [{ pointer: '/idle', message: /^is required with the ticket.idle trigger/ }],
    ],
    [
      'an idle parameter on a rule that does not listen to ticket.idle',
      { idle: { minutes: 60, business: false } },
      [{ pointer: '/idle', message: 'is only allowed with the ticket.idle trigger (set it to null)' }],
    ],
    [
      'idle minutes out of range, not whole, missing; business not a boolean; unknown key',
      { triggers: ['ticket.idle'], idle: { minutes: 0, business: 'yes', hours: 2 } },
      [
        { pointer: '/idle/hours', message: 'is not a known property' },
        { pointer: '/idle/minutes', message: 'must be a whole number of minutes from 1 to 525600' },
        { pointer: '/idle/business', message: 'must be a boolean' },
      ],
    ],
    [
      'idle minutes past a year, and fractional',
      { triggers: ['ticket.idle', 'ticket.updated'], idle: { minutes: 525_601, business: true } },
      [{ pointer: '/idle/minutes', message: 'must be a whole number of minutes from 1 to 525600' }],
    ],
    [
      'idle minutes fractional, business missing',
      { triggers: ['ticket.idle'], idle: { minutes: 1.5 } },
      [
        { pointer: '/idle/minutes', message: 'must be a whole number of minutes from 1 to 525600' },
        { pointer: '/idle/business', message: /^is required/ },
      ],
    ],
    [
      'idle not an object',
      { triggers: ['ticket.idle'], idle: 60 },
      [{ pointer: '/idle', message: 'must be an object {"minutes", "business"}, not a number' }],
    ],
    [
      'SLA event fields take the SLA kinds and no change operators',
      {
        triggers: ['sla.breached'],
        conditions: {
          all: [leaf('sla.kind', 'is', 'first_reply'), leaf('sla.policy_id', 'has_changed')],
        },
      },
      [
        {
          pointer: '/conditions/all/0/value',
          message: 'must be one of: first_answer, next_answer, first_assignment, resolution',
        },
        { pointer: '/conditions/all/1/operator', message: /^"has_changed" does not apply to sla.policy_id/ },
      ],
    ],
  ];
  for (const [name, patch, expected] of cases) {
    const got = errors(patch);
    t.equal(got.length, expected.length, `${name}: ${JSON.stringify(got)}`);
    expected.forEach((want, i) => {
      t.equal(got[i]?.pointer, want.pointer, `${name}: pointer ${i}`);
      if (typeof want.message === 'string') t.equal(got[i]?.message, want.message, `${name}: message ${i}`);
      else t.match(got[i]?.message, want.message, `${name}: message ${i}`);
    });
  }
});

t.test('time-based triggers: SLA events and idle tickets', async (t) => {
  t.same(
    errors({
      triggers: ['sla.warning', 'sla.breached'],
      conditions: {
        all: [
          leaf('sla.kind', 'is_one_of', ['first_answer', 'resolution']),
          leaf('sla.policy_id', 'is', '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11'),
        ],
      },
    }),
    [],
  );
  t.same(errors({ triggers: ['ticket.idle'], idle: { minutes: 1, business: false } }), []);
  t.same(
    errors({ triggers: ['ticket.idle', 'ticket.created'], idle: { minutes: 525_600, business: true } }),
    [],
  );
  t.same(errors({ idle: null }), [], 'null idle on another trigger is fine');
});

t.test('tags must exist only when the catalog lists them', async (t) => {
  const patch = {
    conditions: leaf('tags', 'contains_any', ['VIP', 'ghost']),
    actions: [{ type: 'add_tags', tags: ['Ghost'] }],
  };
  t.same(errors(patch), [], 'no tag list: any tag is fine');
  t.same(
    errors(patch, { ...catalog, tags: new Set(['vip']) }).map((e) => [e.pointer, e.message]),
    [
      ['/conditions/value/1', 'tag "ghost" does not exist'],
      ['/actions/0/tags/0', 'tag "ghost" does not exist'],
    ],
  );
});

t.test('a rule that is not an object', async (t) => {
  t.same(validateRule(null, catalog), [{ pointer: '', message: 'must be an object, not null' }]);
  t.same(validateRule([], catalog), [{ pointer: '', message: 'must be an object, not an array' }]);
});

t.test('pointer tokens are escaped', async (t) => {
  t.same(errors({ 'a/b~c': 1 }), [{ pointer: '/a~1b~0c', message: 'is not a known property' }]);
});
