// The workload of npm run bench:rules: ticket creation requests as a help desk receives them, and
// realistic automation rules over them. Seeded, so every run sends the same tickets and rules.
import type { Condition, ConditionLeaf } from '../../src/rule-engine/index.ts';
import { Random } from '../seed-demo/random.ts';

// Customers mostly write filler with a few topical words; a rule keys on one topic, a sender or
// a pattern, so a ticket matches a rule or two of the 500.
const TOPICS = [
  'refund',
  'invoice',
  'password',
  'login',
  'broken',
  'delivery',
  'cancel',
  'upgrade',
  'billing',
  'crash',
  'shipping',
  'discount',
  'warranty',
  'payment',
  'subscription',
  'voucher',
  'exchange',
  'damaged',
  'missing',
  'tracking',
  'receipt',
  'coupon',
  'reset',
  'account',
  'export',
  'invoice',
  'pricing',
  'wholesale',
  'partnership',
  'press',
  'collaboration',
  'return',
  'size',
  'colour',
  'Rückerstattung',
  'facture',
  'commande',
  'Lieferung',
  'garantía',
  'reembolso',
] as const;
const FILLER = [
  'hello',
  'the',
  'my',
  'is',
  'and',
  'not',
  'with',
  'for',
  'a',
  'it',
  'since',
  'yesterday',
  'still',
  'please',
  'thanks',
  'could',
  'you',
  'check',
  'order',
  'today',
  'again',
  'we',
  'have',
  'our',
];
const PATTERNS = [
  '\\b(refund|rückerstattung|reembolso)\\b',
  'order\\s*#?\\d{6,}',
  '(cancel|stop) (my )?subscription',
  'inv-\\d{4,}',
  'pass(word)?\\s+reset',
  '(broken|damaged|missing) (item|parcel)',
  '\\btracking (number|code)\\b',
];
const DOMAINS = Array.from({ length: 200 }, (_, i) => `customer${i}.example`);
const TAGS = Array.from({ length: 30 }, (_, i) => `tag${i}`);
export const CHANNELS = [
  ['email', 40],
  ['contact_form', 12],
  ['chat', 12],
  ['api', 8],
  ['whatsapp', 8],
  ['facebook', 5],
  ['instagram', 5],
  ['twitter', 4],
  ['viber', 3],
  ['call', 3],
] as const;

export function ticketBodies(departments: string[]) {
  const random = new Random(7);
  let n = 0;
  return () => {
    const sentence = (min: number, max: number) =>
      Array.from({ length: random.int(min, max) }, () =>
        random.chance(0.015) ? random.pick(TOPICS) : random.pick(FILLER),
      ).join(' ');
    let body = sentence(20, 70);
    if (random.chance(0.02)) body += ` order #${random.int(100_000, 999_999)}`;
    const i = n++;
    return JSON.stringify({
      subject: `${random.chance(0.15) ? random.pick(TOPICS) : random.pick(FILLER)} ${sentence(2, 6)}`,
      channel: random.weighted(CHANNELS),
      contact: { email: `customer-${i}@${random.pick(DOMAINS)}`, name: `Customer ${i}` },
      message: { body },
      ...(random.chance(0.7) && { department_id: random.pick(departments) }),
      priority: random.weighted([
        ['low', 1],
        ['normal', 7],
        ['high', 2],
      ] as const),
      ...(random.chance(0.3) && { tags: [random.pick(TAGS)] }),
    });
  };
}

export function makeRules(count: number, departments: string[]) {
  const random = new Random(11);
  const some = <T>(items: readonly T[], min: number, max: number) => {
    const set = new Set<T>();
    const n = random.int(min, max);
    while (set.size < n) set.add(random.pick(items));
    return [...set];
  };
  const selective: (() => ConditionLeaf)[] = [
    () => ({ field: 'subject', operator: 'contains', value: random.pick(TOPICS) }),
    () => ({ field: 'subject', operator: 'starts_with', value: random.pick(TOPICS) }),
    () => ({ field: 'message.body', operator: 'matches', value: random.pick(PATTERNS) }),
    () => ({
      field: 'message.body',
      operator: 'contains',
      value: `${random.pick(TOPICS)} ${random.pick(FILLER)}`,
    }),
    () => ({ field: 'sender.domain', operator: 'is', value: random.pick(DOMAINS) }),
    () => ({ field: 'contact.email', operator: 'ends_with', value: `@${random.pick(DOMAINS)}` }),
  ];
  // Each narrows further: high priority, a few departments, some tags, no other topic.
  const refining: (() => ConditionLeaf)[] = [
    () => ({ field: 'priority', operator: 'greater_than', value: 'normal' }),
    () => ({ field: 'department_id', operator: 'is_one_of', value: some(departments, 1, 2) }),
    () => ({ field: 'tags', operator: 'contains_any', value: some(TAGS, 2, 4) }),
    () => ({ field: 'subject', operator: 'does_not_contain', value: random.pick(TOPICS) }),
  ];
  const channels = CHANNELS.map(([c]) => c);
  return Array.from({ length: count }, (_, i) => {
    const first: Condition[] = [
      { field: 'channel', operator: 'is_one_of', value: some(channels, 2, 5) },
      random.pick(selective)(),
      random.pick(refining)(),
    ];
    const second: Condition[] = [random.pick(selective)(), random.pick(refining)()];
    const kind = random.next();
    const actions =
      kind < 0.6
        ? [{ type: 'add_tags', tags: [`auto-${i % 40}`] }]
        : kind < 0.8
          ? [
              { type: 'set_priority', priority: 'high' },
              { type: 'add_tags', tags: ['escalated'] },
            ]
          : kind < 0.95
            ? [
                { type: 'transfer', department_id: random.pick(departments) },
                { type: 'assign', to: random.chance(0.5) ? 'round_robin' : 'least_busy' },
              ]
            : [{ type: 'add_note', body: `Rule ${i}: check the customer’s order history.` }];
    const owned = random.chance(0.1);
    return {
      name: `Rule ${String(i).padStart(3, '0')}`,
      note: 'Generated by bench:rules.',
      ...(owned && { department_id: random.pick(departments) }),
      triggers: random.chance(0.85)
        ? ['ticket.created']
        : random.pick([
            ['ticket.created', 'ticket.customer_replied'],
            ['ticket.updated'],
            ['ticket.status_changed'],
          ]),
      conditions: { any: [{ all: first }, { all: second }] },
      actions,
    };
  });
}
