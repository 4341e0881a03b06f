// escalationFor: which escalation a write's warnings and breaches call for (docs/sla.md, "Escalation").

import t from 'tap';
import {
  compilePolicies,
  escalationFor,
  type SlaEscalation,
  type SlaEvent,
  type SlaKind,
} from '../../src/sla/index.ts';
import { policy } from './fixtures.ts';

const escalation = (patch: Partial<SlaEscalation> = {}): SlaEscalation => ({
  on: 'breach',
  kinds: [],
  action: 'next_level',
  notify_supervisors: false,
  ...patch,
});

const fired = (type: 'sla.breached' | 'sla.warning', kind: SlaKind, policy_id = 'p-support'): SlaEvent => ({
  type,
  at: 0,
  policy_id,
  policy_version: 1,
  kind,
  cycle: 1,
  due_at: null,
  reason: null,
  late: null,
});

const ladder = [
  escalation({ on: 'warning', kinds: ['first_answer'] }),
  escalation({ kinds: ['resolution'], action: 'supervisors' }),
  escalation({ kinds: [], notify_supervisors: true }),
];

t.test('the first escalation whose moment and kinds match, breaches before warnings', async (t) => {
  const policies = compilePolicies([policy({ warn_before_minutes: 10, escalations: ladder })]);
  const cases: { name: string; events: SlaEvent[]; index: number | null; on?: string; kind?: string }[] = [
    { name: 'nothing fired', events: [], index: null },
    { name: 'a warning of a listed kind', events: [fired('sla.warning', 'first_answer')], index: 0 },
    { name: 'a warning of another kind', events: [fired('sla.warning', 'resolution')], index: null },
    { name: 'a breach of a listed kind', events: [fired('sla.breached', 'resolution')], index: 1 },
    { name: 'empty kinds: any breach', events: [fired('sla.breached', 'first_answer')], index: 2 },
    {
      name: 'a breach outranks a warning fired before it',
      events: [fired('sla.warning', 'first_answer'), fired('sla.breached', 'resolution')],
      index: 1,
      on: 'breach',
      kind: 'resolution',
    },
    {
      name: 'two breaches: the first in order',
      events: [fired('sla.breached', 'first_answer'), fired('sla.breached', 'resolution')],
      index: 2,
      kind: 'first_answer',
    },
    {
      name: 'a policy no longer in the list escalates nothing',
      events: [fired('sla.breached', 'resolution', 'p-gone')],
      index: null,
    },
    {
      name: 'other clock events are not escalated',
      events: [{ ...fired('sla.breached', 'resolution'), type: 'sla.fulfilled' }],
      index: null,
    },
  ];
  for (const c of cases) {
    const choice = escalationFor(policies, c.events);
    t.equal(choice === null ? null : ladder.indexOf(choice.escalation), c.index, c.name);
    if (choice && c.on) t.equal(choice.on, c.on, `${c.name}: on`);
    if (choice && c.kind) t.equal(choice.event.kind, c.kind, `${c.name}: kind`);
  }
});

t.test('a policy without escalations, or inactive, escalates nothing', async (t) => {
  const none = compilePolicies([policy()]);
  t.equal(escalationFor(none, [fired('sla.breached', 'resolution')]), null);
  const inactive = compilePolicies([policy({ active: false, escalations: ladder })]);
  t.equal(escalationFor(inactive, [fired('sla.breached', 'resolution')]), null);
});

t.test('the choice names the policy as it stands', async (t) => {
  const current = policy({ version: 4, escalations: ladder });
  const choice = escalationFor(compilePolicies([current]), [fired('sla.breached', 'resolution')]);
  t.equal(choice?.policy.version, 4, 'the current version, not the one the target started under');
});
