import t from 'tap';
import {
  type HistoryEvent,
  type TicketHistory,
  ticketRecords,
} from '../src/domains/exports/import-records.ts';

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 9, 0, s));
const ev = (
  id: number,
  type: string,
  data: Record<string, unknown>,
  s: number,
  agent: string | null = 'a1',
): HistoryEvent => ({
  id: String(id),
  type,
  actor_type: agent ? 'agent' : 'system',
  actor_agent_id: agent,
  data,
  occurred_at: at(s),
});

t.test('a history becomes a ticket record and its timeline, in order', async (t) => {
  const history: TicketHistory = {
    ticket: { id: 't1', channel: 'chat', contact_id: 'c1', created_at: at(0), subject: 'Now' },
    events: [
      ev(1, 'created', { subject: 'Then', priority: 'high', department_id: 'd1', tags: ['a'] }, 0, null),
      ev(2, 'message_added', { message_id: 'm1', kind: 'customer' }, 0, null),
      ev(3, 'subject_changed', { from: 'Then', to: 'Now' }, 1),
      ev(4, 'tags_changed', { added: ['b'], removed: ['a'] }, 2),
      ev(5, 'status_changed', { from: 'new', to: 'deleted' }, 3),
      ev(6, 'status_changed', { from: 'deleted', to: 'open' }, 4),
      ev(7, 'transferred', { from_department_id: 'd1', to_department_id: null }, 5),
      ev(8, 'assigned', { from: null, to: 'a2' }, 6, null),
      ev(9, 'chat_recorded', { chat_id: 'ch1' }, 7),
      ev(10, 'message_added', { message_id: 'm2', kind: 'agent' }, 8),
      ev(11, 'rated', { rating_id: 'r1' }, 9, null),
      ev(12, 'sla.breached', {}, 10, null),
      ev(13, 'priority_changed', { from: 'high', to: 'urgent' }, 11, null),
    ],
    messages: new Map([
      [
        'm1',
        { id: 'm1', kind: 'customer', body: 'Hi', author_agent_id: null, chat_id: null, created_at: at(0) },
      ],
      [
        'm2',
        { id: 'm2', kind: 'agent', body: 'Hello', author_agent_id: 'a2', chat_id: null, created_at: at(8) },
      ],
      [
        'm3',
        {
          id: 'm3',
          kind: 'customer',
          body: 'In chat',
          author_agent_id: null,
          chat_id: 'ch1',
          created_at: at(7),
        },
      ],
    ]),
    calls: new Map(),
    chats: new Map([
      [
        'ch1',
        { id: 'ch1', agent_id: null, started_at: at(7), picked_up_at: null, missed: true, ended_at: null },
      ],
    ]),
    ratings: new Map([['r1', { value: 'negative', comment: null }]]),
  };
  t.same(
    ticketRecords(history),
    [
      {
        type: 'ticket',
        external_id: 't1',
        created_at: at(0).toISOString(),
        subject: 'Then',
        channel: 'chat',
        contact: 'c1',
        department: 'd1',
        priority: 'high',
        tags: ['a'],
        message: { body: 'Hi', author: 'contact' },
      },
      {
        type: 'subject',
        external_id: '3',
        ticket: 't1',
        at: at(1).toISOString(),
        agent: 'a1',
        subject: 'Now',
      },
      { type: 'tags', external_id: '4', ticket: 't1', at: at(2).toISOString(), agent: 'a1', tags: ['b'] },
      {
        type: 'status',
        external_id: '6',
        ticket: 't1',
        at: at(4).toISOString(),
        agent: 'a1',
        status: 'open',
      },
      { type: 'assignment', external_id: '8', ticket: 't1', at: at(6).toISOString(), assignee: 'a2' },
      {
        type: 'chat',
        external_id: 'ch1',
        ticket: 't1',
        at: at(7).toISOString(),
        started_at: at(7).toISOString(),
        missed: true,
        messages: [{ from: 'customer', body: 'In chat', sent_at: at(7).toISOString() }],
      },
      {
        type: 'message',
        external_id: 'm2',
        ticket: 't1',
        at: at(8).toISOString(),
        kind: 'reply',
        body: 'Hello',
        agent: 'a2',
      },
      { type: 'rating', external_id: '11', ticket: 't1', at: at(9).toISOString(), value: 'negative' },
      { type: 'priority', external_id: '13', ticket: 't1', at: at(11).toISOString(), priority: 'urgent' },
    ],
    'deletions, transfers to no department and SLA events have no record; subject and priority changes do',
  );
});
