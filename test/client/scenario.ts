// A help-desk integration written against a client generated from openapi/openapi.json
// (openapi-typescript + openapi-fetch), with no casts: test/client-types.test.ts generates
// ./deskroute.ts next to a copy of this file, type-checks it, then runs it against a real server.
import createClient from 'openapi-fetch';
import type { components, paths } from './deskroute.ts';

type Rule = components['schemas']['AutomationRule'];

export interface ScenarioResult {
  departmentId: string;
  ticketId: string;
  ticketLocation: string | null;
  rule: Rule;
  reportRows: number;
  ticketsListed: number;
  /** The goal the report measured, and the share met over the range (null: no sample). */
  goal: { within: string; countedWithinSeconds: number; metPct: number | null } | null;
}

export async function scenario(baseUrl: string, email: string, password: string): Promise<ScenarioResult> {
  const anonymous = createClient<paths>({ baseUrl });
  const signIn = await anonymous.POST('/v1/auth/token', { body: { email, password } });
  if (!signIn.data) throw new Error(`sign-in failed: ${JSON.stringify(signIn.error)}`);
  const client = createClient<paths>({
    baseUrl,
    headers: { authorization: `Bearer ${signIn.data.access_token}` },
  });

  const department = await client.POST('/v1/departments', { body: { name: 'Marketing' } });
  if (!department.data) throw new Error(`department: ${JSON.stringify(department.error)}`);

  const plan = await client.POST('/v1/contact-fields', {
    body: { key: 'plan', label: 'Plan', type: 'choice', options: ['Free', 'Gold'] },
  });
  if (!plan.data) throw new Error(`contact field: ${JSON.stringify(plan.error)}`);

  const ticket = await client.POST('/v1/tickets', {
    headers: { 'idempotency-key': 'scenario-ticket-1' },
    body: {
      subject: 'Loved your post',
      channel: 'instagram',
      contact: { email: 'fan@example.com', name: 'A fan' },
      message: { body: 'Can I get the discount?' },
    },
  });
  if (!ticket.data) throw new Error(`ticket: ${JSON.stringify(ticket.error)}`);

  const rule = await client.POST('/v1/automation-rules', {
    body: {
      name: 'Social media goes to Marketing',
      triggers: ['ticket.created'],
      conditions: {
        any: [
          { all: [{ field: 'channel', operator: 'is_one_of', value: ['facebook', 'instagram'] }] },
          { field: 'priority', operator: 'greater_than', value: 'normal' },
          { not: { field: 'tags', operator: 'contains_any', value: ['internal'] } },
          { field: 'contact.custom.plan', operator: 'is', value: 'Gold' },
        ],
      },
      actions: [
        { type: 'transfer', department_id: department.data.id },
        { type: 'assign', to: 'nobody' },
        { type: 'set_status', status: 'postponed', postpone_seconds: 3600 },
      ],
    },
  });
  if (!rule.data) throw new Error(`rule: ${JSON.stringify(rule.error)}`);

  // Lists need neither limit nor sort.
  const tickets = await client.GET('/v1/tickets');
  if (!tickets.data) throw new Error(`tickets: ${JSON.stringify(tickets.error)}`);

  const report = await client.GET('/v1/reports/departments', {
    params: {
      query: { preset: 'last_7_days', group_by: ['department', 'channel'], columns: ['created_tickets'] },
    },
  });
  if (!report.data) throw new Error(`report: ${JSON.stringify(report.error)}`);
  // The same operation answers CSV when asked to; this call asked for JSON.
  if (typeof report.data === 'string') throw new Error('report: CSV instead of JSON');

  // A goal: fixed column keys, the goal itself in the metadata.
  const goals = await client.GET('/v1/reports/departments', {
    params: { query: { preset: 'last_7_days', goal: 'resolution:24h', columns: ['goal_met_pct'] } },
  });
  if (!goals.data || typeof goals.data === 'string') throw new Error(`goals: ${JSON.stringify(goals.error)}`);
  const goal = goals.data.goal;

  return {
    departmentId: department.data.id,
    ticketId: ticket.data.id,
    ticketLocation: ticket.response.headers.get('location'),
    rule: rule.data,
    reportRows: report.data.data.length,
    ticketsListed: tickets.data.data.length,
    goal: goal && {
      within: goal.within,
      countedWithinSeconds: goal.counted_within_seconds,
      metPct: goals.data.totals.goal_met_pct ?? null,
    },
  };
}
