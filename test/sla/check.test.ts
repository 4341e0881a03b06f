// checkPolicy: what the API will answer 422 for, each problem with its JSON pointer.

import t from 'tap';
import type { Catalog } from '../../src/rule-engine/index.ts';
import {
  checkPolicy,
  MAX_ESCALATIONS,
  MAX_TARGET_MINUTES,
  type SlaEscalation,
  type SlaKind,
} from '../../src/sla/index.ts';
import { policy, SALES, SUPPORT } from './fixtures.ts';

const catalog: Catalog = {
  departmentIds: new Set([SUPPORT, SALES]),
  agentIds: new Set(),
  customFields: new Map([['vip', 'boolean']]),
};

const valid = policy();
const escalation = (patch: Partial<SlaEscalation> = {}): SlaEscalation => ({
  on: 'breach',
  kinds: [],
  action: 'next_level',
  notify_supervisors: false,
  ...patch,
});

t.test('a valid policy has no problems', async (t) => {
  t.same(checkPolicy(valid, catalog), []);
  t.same(
    checkPolicy(
      policy({
        warn_before_minutes: 30,
        conditions: {
          all: [
            { field: 'priority', operator: 'greater_than', value: 'normal' },
            { field: 'contact.custom.vip', operator: 'is', value: true },
            { field: 'channel', operator: 'is_one_of', value: ['email', 'chat'] },
          ],
        },
        targets: { urgent: { resolution: { minutes: MAX_TARGET_MINUTES, business: false } } },
        escalations: [
          { on: 'warning', kinds: ['resolution'], action: 'next_level', notify_supervisors: false },
          { on: 'breach', kinds: [], action: 'next_level', notify_supervisors: true },
        ],
      }),
      catalog,
    ),
    [],
  );
});

t.test('each problem is reported at its pointer', async (t) => {
  const cases: { name: string; policy: unknown; pointers: string[] }[] = [
    { name: 'not an object', policy: [], pointers: [''] },
    { name: 'an unknown property', policy: { ...valid, colour: 'red' }, pointers: ['/colour'] },
    { name: 'blank name', policy: { ...valid, name: ' ' }, pointers: ['/name'] },
    { name: 'version 0', policy: { ...valid, version: 0 }, pointers: ['/version'] },
    {
      name: 'unknown transfer mode',
      policy: { ...valid, on_transfer: 'keep_original' },
      pointers: ['/on_transfer'],
    },
    {
      name: 'pause flag missing',
      policy: { ...valid, pause_when_answered: undefined },
      pointers: ['/pause_when_answered'],
    },
    {
      name: 'warning of 0 minutes',
      policy: { ...valid, warn_before_minutes: 0 },
      pointers: ['/warn_before_minutes'],
    },
    {
      name: 'an unknown department in the conditions',
      policy: { ...valid, conditions: { field: 'department_id', operator: 'is', value: 'd-gone' } },
      pointers: ['/conditions/value'],
    },
    {
      name: 'a message field',
      policy: {
        ...valid,
        conditions: { all: [{ field: 'message.body', operator: 'contains', value: 'refund' }] },
      },
      pointers: ['/conditions/all/0/field'],
    },
    {
      name: 'a previous value and a change operator',
      policy: {
        ...valid,
        conditions: {
          any: [
            { field: 'previous.priority', operator: 'is', value: 'low' },
            { not: { field: 'priority', operator: 'has_changed' } },
          ],
        },
      },
      pointers: ['/conditions/any/0/field', '/conditions/any/1/not/operator'],
    },
    { name: 'no targets', policy: { ...valid, targets: {} }, pointers: ['/targets'] },
    { name: 'targets not an object', policy: { ...valid, targets: [] }, pointers: ['/targets'] },
    {
      name: 'an unknown priority and kind',
      policy: {
        ...valid,
        targets: { critical: {}, normal: { first_reply: { minutes: 5, business: true } } },
      },
      pointers: ['/targets/critical', '/targets/normal/first_reply', '/targets'],
    },
    {
      name: 'bad minutes and business',
      policy: {
        ...valid,
        targets: {
          normal: {
            first_answer: { minutes: 0.5, business: 'yes' },
            resolution: { minutes: MAX_TARGET_MINUTES + 1, business: true, extra: 1 },
          },
        },
      },
      pointers: [
        '/targets/normal/first_answer/minutes',
        '/targets/normal/first_answer/business',
        '/targets/normal/resolution/extra',
        '/targets/normal/resolution/minutes',
      ],
    },
    {
      name: 'escalations not an array',
      policy: { ...valid, escalations: {} },
      pointers: ['/escalations'],
    },
    {
      name: 'escalations missing',
      policy: { ...valid, escalations: undefined },
      pointers: ['/escalations'],
    },
    {
      name: 'too many escalations',
      policy: {
        ...valid,
        escalations: Array.from({ length: MAX_ESCALATIONS + 1 }, () => escalation()),
      },
      pointers: ['/escalations'],
    },
    {
      name: 'an escalation of the wrong shape',
      policy: { ...valid, escalations: [escalation(), 'next_level'] },
      pointers: ['/escalations/1'],
    },
    {
      name: 'unknown moment, action and property, kinds and flag of the wrong type',
      policy: {
        ...valid,
        escalations: [
          { on: 'late', kinds: 'resolution', action: 'promote', notify_supervisors: 1, to: 'boss' },
        ],
      },
      pointers: [
        '/escalations/0/to',
        '/escalations/0/on',
        '/escalations/0/kinds',
        '/escalations/0/action',
        '/escalations/0/notify_supervisors',
      ],
    },
    {
      name: 'unknown, repeated and untargeted kinds',
      policy: {
        ...valid,
        escalations: [
          escalation({ kinds: ['first_reply', 'resolution', 'resolution', 'next_answer'] as SlaKind[] }),
        ],
      },
      pointers: ['/escalations/0/kinds/0', '/escalations/0/kinds/2', '/escalations/0/kinds/3'],
    },
    {
      name: 'a warning escalation on a policy that never warns',
      policy: { ...valid, escalations: [escalation({ on: 'warning' })] },
      pointers: ['/escalations/0/on'],
    },
    {
      name: 'escalations behind earlier ones that answer all they would',
      policy: {
        ...valid,
        warn_before_minutes: 5,
        escalations: [
          escalation({ kinds: ['first_answer'] }),
          escalation({ on: 'warning' }),
          escalation({ kinds: ['resolution'], action: 'supervisors' }),
          escalation({ kinds: [] }),
          escalation({ on: 'warning', kinds: ['resolution'] }),
        ],
      },
      pointers: ['/escalations/3', '/escalations/4'],
    },
  ];
  for (const c of cases) {
    const errors = checkPolicy(c.policy, catalog);
    t.same(
      errors.map((e) => e.pointer),
      c.pointers,
      c.name,
    );
    t.ok(
      errors.every((e) => e.message.length > 0),
      `${c.name}: every problem says what is wrong`,
    );
  }
});

t.test(
  'a condition tree deeper than the rule engine allows is one problem, not a stack overflow',
  async (t) => {
    let conditions: unknown = { field: 'priority', operator: 'is', value: 'low' };
    for (let i = 0; i < 10_000; i++) conditions = { not: conditions };
    const errors = checkPolicy({ ...valid, conditions }, catalog);
    t.ok(errors.length >= 1);
    t.ok(errors.length < 5, `${errors.length} problems`);
  },
);
