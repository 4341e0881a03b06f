import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { convertZendesk } from '../scripts/convert/zendesk.ts';
import {
  cleanTags,
  contactFieldPlan,
  contactRecord,
  type ImportRecord,
  mapChannel,
  mapPriority,
  mapStatus,
  ticketRecords,
  voiceCallRecord,
} from '../scripts/convert/zendesk-map.ts';

// The Zendesk converter (docs/import.md, "From Zendesk") on a small export written after
// Zendesk's documented shapes: test/fixtures/zendesk/ has three agents (one disabled), two
// groups (as an API page), four memberships (one of an end-user), seven user fields (one a
// lookup), two organizations, three end-users with field values and organizations, and three
// tickets: 101 with five audits (not in time order in the file), 102 without audits but with
// embedded comments and a rating, 103 asked by an agent, with audits in one API page.

const FIXTURES = new URL('./fixtures/zendesk/', import.meta.url).pathname;

async function convert(dir = FIXTURES) {
  const warnings: string[] = [];
  const records: ImportRecord[] = [];
  for await (const r of convertZendesk(dir, { warn: (m) => warnings.push(m) })) records.push(r);
  return { records, warnings };
}

const REFERENCES: Record<string, string> = {
  department: 'department',
  agent: 'agent',
  contact: 'contact',
  ticket: 'ticket',
  assignee: 'agent',
};

t.test('statuses, priorities and channels map to ours', async (t) => {
  const statuses = ['new', 'open', 'pending', 'hold', 'solved', 'closed', 'deleted', null];
  t.same(
    statuses.map((s) => mapStatus(s)),
    ['new', 'open', 'answered', 'open', 'resolved', 'resolved', null, null],
  );
  t.same(
    ['low', 'normal', 'high', 'urgent', null, 'odd'].map((p) => mapPriority(p)),
    ['low', 'normal', 'high', 'urgent', 'normal', 'normal'],
  );
  t.same(
    [
      'email',
      'web',
      'chat',
      'native_messaging',
      'voice',
      'twitter',
      'facebook',
      'instagram_dm',
      'whatsapp',
      'api',
      'sms',
      'rule',
      null,
    ].map((c) => mapChannel(c)),
    [
      'email',
      'contact_form',
      'chat',
      'chat',
      'call',
      'twitter',
      'facebook',
      'instagram',
      'whatsapp',
      'api',
      'api',
      'api',
      'api',
    ],
  );
});

t.test('voice comments are calls: voicemails and unanswered ones missed, odd numbers left out', async (t) => {
  const agents = new Map([['9003', 'agent' as const]]);
  const warnings: string[] = [];
  const audit = { created_at: '2025-05-01T10:00:00Z', author_id: 9002 };
  const call = (event: object, via?: object) =>
    voiceCallRecord('7', { id: 1, type: 'VoiceComment', ...event }, { ...audit, via }, agents, (w) =>
      warnings.push(w),
    );
  t.match(
    call(
      { data: { from: '+420600000001', call_duration: 30 } },
      { channel: 'voice', source: { rel: 'voicemail' } },
    ),
    { direction: 'inbound', outcome: 'missed', ended_at: '2025-05-01T10:00:30.000Z' },
    'a voicemail was not answered, however long it is',
  );
  t.notOk('answered_at' in call({ data: { call_duration: 30 } }, { source: { rel: 'voicemail' } }));
  const bare = call({});
  t.same(
    bare,
    {
      type: 'call',
      external_id: '1',
      ticket: '7',
      at: '2025-05-01T10:00:00Z',
      started_at: '2025-05-01T10:00:00Z',
      direction: 'inbound',
      outcome: 'missed',
    },
    'no call data: a missed inbound call at the audit’s time, no agent (the author is a customer)',
  );
  t.match(
    call({ data: { answered_by_id: 4242, call_duration: '12' } }),
    { outcome: 'answered', answered_at: '2025-05-01T10:00:00Z', ended_at: '2025-05-01T10:00:12.000Z' },
    'answered by someone not exported: answered, without an agent',
  );
  t.notOk('agent' in call({ data: { answered_by_id: 4242 } }));
  t.match(call({ author_id: 9003, data: { started_at: 'not a time', call_duration: -5 } }), {
    agent: '9003',
    started_at: '2025-05-01T10:00:00Z',
    outcome: 'missed',
  });
  t.notOk('ended_at' in call({ data: { call_duration: -5 } }), 'a negative duration says nothing');
  const odd = call({ data: { from: '12', to: `+${'1'.repeat(45)}`, call_duration: 0 } });
  t.notOk('from_number' in odd || 'to_number' in odd);
  t.same(warnings, [
    'ticket 7: call 1: from_number "12" does not fit; left out',
    `ticket 7: call 1: to_number "+${'1'.repeat(45)}" does not fit; left out`,
  ]);
});

t.test('tags and contacts are made acceptable rather than refused', async (t) => {
  const warnings: string[] = [];
  const long = 'x'.repeat(51);
  t.same(
    cleanTags([' VIP ', 'vip', long, '', 'refund'], (m) => warnings.push(m)),
    ['vip', 'refund'],
  );
  t.equal(warnings.length, 2, 'the long and the empty tag are reported');
  t.same(cleanTags('damage  refund'), ['damage', 'refund'], 'a space-separated set');
  t.same(cleanTags(Array.from({ length: 60 }, (_, i) => `t${i}`)).length, 50);
  t.same(
    contactRecord({ id: 1, name: 'Shared', phone: '+420600000000', shared_phone_number: true }).phones,
    [],
  );
  t.equal((contactRecord({ id: 2, name: 'n'.repeat(300) }).name as string).length, 200);
});

t.test('user field values that ours would refuse are left out with a warning', async (t) => {
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);
  const { records, plan } = contactFieldPlan(
    [
      { key: 'since', type: 'date' },
      { key: 'orders', type: 'decimal' },
      { key: '2fa', type: 'checkbox' },
      { key: 'since!', type: 'text' },
      { key: 'size', type: 'dropdown', custom_field_options: [{ name: 'x'.repeat(101), value: 'xl' }] },
    ],
    null,
    warn,
  );
  t.same(
    records.map((r) => [r.key, r.field_type]),
    [
      ['since', 'date'],
      ['orders', 'number'],
      ['f_2fa', 'boolean'],
      ['since_', 'text'],
      ['size', 'text'],
    ],
    'keys ours takes, each once; options that do not fit a choice make it text',
  );
  const custom = (user_fields: Record<string, unknown>) =>
    contactRecord({ id: 9, name: 'N', user_fields }, plan, warn).custom_fields;
  t.same(custom({ since: '2024-02-30', orders: 'many', '2fa': 'yes' }), undefined);
  t.same(custom({ since: '2024-02-29T10:00:00Z', orders: '2.5', '2fa': false, size: 'xl' }), {
    since: '2024-02-29',
    orders: 2.5,
    f_2fa: false,
    size: 'x'.repeat(101),
  });
  t.same(warnings, [
    'user field size: its options do not fit a choice here; carried as text',
    'user 9: since "2024-02-30" does not fit; left out',
    'user 9: orders "many" does not fit; left out',
    'user 9: 2fa "yes" does not fit; left out',
  ]);
});

t.test('the fixture export converts to the expected records', async (t) => {
  const { records, warnings } = await convert();
  const ids = (type: string) => records.filter((r) => r.type === type).map((r) => r.external_id);

  t.same(ids('agent'), ['9001', '9002', '9003'], 'staff become agents');
  t.match(
    records.find((r) => r.external_id === '9003' && r.type === 'agent'),
    { status: 'disabled', role: 'agent' },
  );
  t.match(
    records.find((r) => r.external_id === '9001' && r.type === 'agent'),
    { status: 'active', role: 'admin' },
  );
  t.same(ids('department'), ['301', '302']);
  t.same(
    records.filter((r) => r.type === 'membership').map((r) => [r.external_id, r.role]),
    [
      ['301:9002', 'solver'],
      ['302:9001', 'manager'],
      ['301:9003', 'solver'],
    ],
    'an end-user’s group membership is dropped',
  );
  t.same(ids('contact'), ['7001', '7002', '7003', '9002'], 'end-users, then the agent who asked ticket 103');
  t.same(
    records.find((r) => r.type === 'contact' && r.external_id === '7003'),
    {
      type: 'contact',
      external_id: '7003',
      name: 'Zendesk user 7003',
      emails: [],
      phones: ['+420602333444'],
    },
  );

  // User fields and organizations: contact fields, before the contacts that carry them.
  t.same(
    records.filter((r) => r.type === 'contact_field'),
    [
      {
        type: 'contact_field',
        external_id: 'user_field:plan',
        key: 'plan',
        label: 'Plan',
        field_type: 'choice',
        options: ['Gold', 'Silver'],
      },
      {
        type: 'contact_field',
        external_id: 'user_field:vip',
        key: 'vip',
        label: 'VIP',
        field_type: 'boolean',
      },
      {
        type: 'contact_field',
        external_id: 'user_field:customer_since',
        key: 'customer_since',
        label: 'Customer since',
        field_type: 'date',
      },
      {
        type: 'contact_field',
        external_id: 'user_field:orders',
        key: 'orders',
        label: 'Orders',
        field_type: 'number',
      },
      {
        type: 'contact_field',
        external_id: 'user_field:Region-Code',
        key: 'region_code',
        label: 'Region code',
        field_type: 'text',
      },
      {
        type: 'contact_field',
        external_id: 'user_field:interests',
        key: 'interests',
        label: 'Interests',
        field_type: 'text',
      },
      {
        type: 'contact_field',
        external_id: 'organization',
        key: 'organization',
        label: 'Organization',
        field_type: 'text',
      },
    ],
    'a lookup field is left out; a key ours would refuse is rewritten',
  );
  t.ok(
    records.findIndex((r) => r.type === 'contact_field') >
      records.findLastIndex((r) => r.type === 'membership') &&
      records.findLastIndex((r) => r.type === 'contact_field') <
        records.findIndex((r) => r.type === 'contact'),
    'contact fields come after the memberships, before the contacts',
  );
  t.same(
    Object.fromEntries(
      records.filter((r) => r.type === 'contact').map((r) => [r.external_id, r.custom_fields ?? null]),
    ),
    {
      '7001': {
        plan: 'Gold',
        vip: true,
        customer_since: '2023-04-01',
        orders: 12,
        region_code: 'CZ-10',
        interests: 'Bikes, Tents',
        organization: 'Shop s.r.o.',
      },
      '7002': { vip: false, orders: 3, organization: "Dana's Bikes" },
      '7003': null,
      '9002': null,
    },
    'values as ours: the option names, dates without time, numbers; what does not fit is left out',
  );

  // Ticket 101 from its audits: it opens as created (group 301, first tags, normal priority, first
  // subject), not as it is now.
  const t101 = records.filter((r) => r.ticket === '101').map(({ ticket: _, ...r }) => r);
  t.same(
    records.find((r) => r.type === 'ticket' && r.external_id === '101'),
    {
      type: 'ticket',
      external_id: '101',
      created_at: '2025-03-01T09:00:00Z',
      subject: 'Parcel arrived damaged',
      channel: 'email',
      contact: '7001',
      department: '301',
      priority: 'normal',
      tags: ['damage'],
      message: { body: 'The box was crushed.', author: 'contact' },
    },
  );
  t.same(
    t101,
    [
      {
        type: 'message',
        external_id: '5010',
        at: '2025-03-01T10:15:00Z',
        kind: 'note',
        body: "Refunds are billing's call.",
        agent: '9002',
      },
      { type: 'transfer', external_id: '5011', at: '2025-03-01T10:15:00Z', department: '302', agent: '9002' },
      {
        type: 'assignment',
        external_id: '5012',
        at: '2025-03-01T10:15:00Z',
        assignee: '9001',
        agent: '9002',
      },
      { type: 'status', external_id: '5013', at: '2025-03-01T10:15:00Z', status: 'open', agent: '9002' },
      {
        type: 'message',
        external_id: '5020',
        at: '2025-03-01T11:30:00Z',
        kind: 'reply',
        body: 'Sorry! A refund is on its way.',
        agent: '9001',
      },
      { type: 'status', external_id: '5021', at: '2025-03-01T11:30:00Z', status: 'answered', agent: '9001' },
      {
        type: 'tags',
        external_id: '5022',
        at: '2025-03-01T11:30:00Z',
        tags: ['damage', 'refund'],
        agent: '9001',
      },
      { type: 'priority', external_id: '5023', at: '2025-03-01T11:30:00Z', priority: 'high', agent: '9001' },
      {
        type: 'subject',
        external_id: '5024',
        at: '2025-03-01T11:30:00Z',
        subject: 'Parcel arrived damaged: refunded',
        agent: '9001',
      },
      {
        type: 'message',
        external_id: '5030',
        at: '2025-03-02T08:00:00Z',
        kind: 'customer',
        body: 'Got it, thank you!',
      },
      { type: 'status', external_id: '5031', at: '2025-03-02T08:00:00Z', status: 'resolved' },
      {
        type: 'rating',
        external_id: '5032',
        at: '2025-03-02T08:00:00Z',
        value: 'positive',
        comment: 'Quick refund',
      },
    ],
    'closed after solved leaves no record; the system (-1) is no agent',
  );

  // Ticket 102 without audits: its current state and its embedded comments.
  t.match(
    records.find((r) => r.type === 'ticket' && r.external_id === '102'),
    {
      subject: 'How do I change my plan?',
      channel: 'contact_form',
      department: '301',
      priority: 'normal',
      tags: ['plan'],
      message: { body: 'How do I change my plan?\nThanks', author: 'contact' },
    },
  );
  t.same(
    records.filter((r) => r.ticket === '102').map((r) => [r.type, r.external_id, r.at]),
    [
      ['assignment', '102:assignee', '2025-03-02T14:00:00Z'],
      ['message', '6102', '2025-03-02T16:30:00Z'],
      ['status', '102:status', '2025-03-02T16:30:00Z'],
      ['rating', '102:rating', '2025-03-02T17:00:00Z'],
    ],
  );

  // Ticket 103: a private voice comment opens it, so it has no first message; an assignee that
  // is not an exported agent is skipped with a warning.
  const t103 = records.find((r) => r.type === 'ticket' && r.external_id === '103')!;
  t.equal(t103.message, undefined);
  t.match(t103, { channel: 'call', contact: '9002', department: '301' });
  t.same(
    records
      .filter((r) => r.ticket === '103')
      .map((r) => [r.type, r.kind ?? r.status ?? r.assignee ?? r.outcome]),
    [
      ['call', 'answered'],
      ['message', 'note'],
      ['status', 'open'],
      ['assignment', '9003'],
      // open -> hold: both are our open, so no status record
      ['assignment', null],
      ['call', 'missed'],
      ['message', 'note'],
    ],
  );
  // Its voice comments are calls too: who answered, the numbers, the start and the duration.
  t.same(
    records.filter((r) => r.ticket === '103' && r.type === 'call'),
    [
      {
        type: 'call',
        external_id: '5101',
        ticket: '103',
        at: '2025-03-04T08:00:00Z',
        started_at: '2025-03-04T07:58:20.000Z',
        direction: 'inbound',
        outcome: 'answered',
        agent: '9003',
        from_number: '+420600000001',
        to_number: '+420222000111',
        answered_at: '2025-03-04T07:58:20.000Z',
        ended_at: '2025-03-04T07:59:55.000Z',
      },
      {
        type: 'call',
        external_id: '5113',
        ticket: '103',
        at: '2025-03-04T09:00:00Z',
        started_at: '2025-03-04T09:00:00Z',
        direction: 'outbound',
        outcome: 'missed',
        agent: '9003',
        from_number: '+420222000111',
        to_number: '+420600000001',
        ended_at: '2025-03-04T09:00:00.000Z',
      },
    ],
  );
  t.same(warnings, [
    'user field account_manager: a lookup field (a link to another Zendesk object) is not carried',
    'user 7002: plan "platinum" does not fit; left out',
    'user 7003: organization 599 is not in organizations.json; left out',
    'ticket 103: assignee 4242 is not an exported agent; assignment skipped',
  ]);
});

t.test('every record has an external id, references come first, timelines are in time order', async (t) => {
  const { records } = await convert();
  const seen = new Map<string, Set<string>>();
  const lastAt = new Map<string, number>();
  for (const [line, r] of records.entries()) {
    t.ok(
      typeof r.external_id === 'string' && r.external_id.length > 0 && r.external_id.length <= 200,
      `line ${line + 1} has an external_id`,
    );
    const own = seen.get(r.type) ?? new Set<string>();
    t.notOk(own.has(r.external_id), `line ${line + 1}: ${r.type} ${r.external_id} is unique`);
    for (const [field, type] of Object.entries(REFERENCES)) {
      const ref = r[field];
      if (typeof ref !== 'string') continue;
      t.ok(seen.get(type)?.has(ref), `line ${line + 1}: ${field} ${ref} refers to an earlier ${type}`);
    }
    const agent = (r.message as { agent?: string } | undefined)?.agent;
    if (agent)
      t.ok(seen.get('agent')?.has(agent), `line ${line + 1}: the first message's agent comes earlier`);
    if (r.type === 'ticket') lastAt.set(r.external_id, Date.parse(r.created_at as string));
    else if (typeof r.ticket === 'string') {
      const at = Date.parse(r.at as string);
      t.ok(at >= lastAt.get(r.ticket)!, `line ${line + 1}: in time order`);
      lastAt.set(r.ticket, at);
    }
    own.add(r.external_id);
    seen.set(r.type, own);
  }
});

t.test('the same input gives the same output', async (t) => {
  const first = (await convert()).records.map((r) => JSON.stringify(r));
  const second = (await convert()).records.map((r) => JSON.stringify(r));
  t.same(second, first);
  // Audits in API order give what the shuffled file gives.
  const audits = [
    {
      id: 2,
      ticket_id: 1,
      created_at: '2025-01-01T10:00:00Z',
      author_id: 5,
      events: [{ id: 20, type: 'Change', field_name: 'status', value: 'solved' }],
    },
    {
      id: 1,
      ticket_id: 1,
      created_at: '2025-01-01T09:00:00Z',
      author_id: 6,
      events: [{ id: 10, type: 'Comment', body: 'Hi', public: true, author_id: 6 }],
    },
  ];
  const ticket = { id: 1, created_at: '2025-01-01T09:00:00Z', requester_id: 6, subject: 'Hi' };
  const agents = new Map([['5', 'agent' as const]]);
  t.same(ticketRecords(ticket, audits, agents), ticketRecords(ticket, [...audits].reverse(), agents));
});

t.test('an export the converter cannot read says where and why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zendesk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(FIXTURES, dir, { recursive: true });

  // Audits of 103 before those of 101: the merge cannot pair them.
  const lines = readFileSync(join(dir, 'ticket_audits.json'), 'utf8').trim().split('\n');
  writeFileSync(join(dir, 'ticket_audits.json'), `${[lines.at(-1), ...lines.slice(0, -1)].join('\n')}\n`);
  await t.rejects(convert(dir), /audits of ticket 101 were left over/);

  writeFileSync(join(dir, 'ticket_audits.json'), '{"audits": [\n  {"id": 1}\n]}\n');
  await t.rejects(convert(dir), /ticket_audits\.json:1: not a JSON line/);

  rmSync(join(dir, 'tickets.json'));
  await t.rejects(convert(dir), /tickets\.json: missing/);
});

t.test('npm run convert:zendesk writes the records as NDJSON and a summary', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zendesk-out-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = new URL('../scripts/convert/zendesk.ts', import.meta.url).pathname;
  const file = join(dir, 'out.ndjson');
  const run = spawnSync(process.execPath, [script, FIXTURES, '--out', file], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  const { records } = await convert();
  t.same(readFileSync(file, 'utf8'), records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  t.match(
    run.stderr,
    /converted: 3 agent, 2 department, 3 membership, 7 contact_field, 4 contact, 3 ticket, .*; 4 warning\(s\)/,
  );
  const stdout = spawnSync(process.execPath, [script, FIXTURES], { encoding: 'utf8' });
  t.equal(stdout.stdout, readFileSync(file, 'utf8'), 'stdout without --out');
  const missing = spawnSync(process.execPath, [script, join(dir, 'nowhere')], { encoding: 'utf8' });
  t.equal(missing.status, 1);
  t.match(missing.stderr, /users\.json: missing/);
});
