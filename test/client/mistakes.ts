// Mistakes the generated client must refuse to compile. Each is marked with a ts-expect-error
// directive, so tsc fails if one ever type-checks (an unused directive is an error).
import type createClient from 'openapi-fetch';
import type { components, paths } from './deskroute.ts';

type Condition = components['schemas']['RuleCondition'];
type Action = components['schemas']['RuleAction'];

export async function mistakes(client: ReturnType<typeof createClient<paths>>, departmentId: string) {
  // @ts-expect-error an operator that does not exist
  const badOperator: Condition = { field: 'priority', operator: 'equals', value: 'high' };
  // @ts-expect-error a value no field takes
  const badValue: Condition = { field: 'created_in_working_hours', operator: 'is', value: { yes: 1 } };
  // @ts-expect-error a group that is neither all, any nor not
  const badGroup: Condition = { some: [] };
  // @ts-expect-error assigning to an agent needs agent_id
  const noAgent: Action = { type: 'assign', to: 'agent' };
  // @ts-expect-error postponing needs postpone_seconds
  const noSeconds: Action = { type: 'set_status', status: 'postponed' };
  // @ts-expect-error spam is not a status a rule sets (mark_spam is)
  const spam: Action = { type: 'set_status', status: 'spam' };
  // @ts-expect-error an action that does not exist
  const explode: Action = { type: 'explode' };
  // @ts-expect-error a rule needs triggers
  await client.POST('/v1/automation-rules', { body: { name: 'x', conditions: { all: [] }, actions: [] } });
  const contact = { email: 'a@example.com' };
  const message = { body: 'Hi' };
  // @ts-expect-error a ticket needs a subject
  await client.POST('/v1/tickets', { body: { contact, message } });
  // @ts-expect-error a channel that does not exist
  await client.POST('/v1/tickets', { body: { subject: 's', channel: 'fax', contact, message } });
  // @ts-expect-error departments have a name, not a title
  await client.POST('/v1/departments', { body: { title: 'Sales' } });
  // @ts-expect-error a column that does not exist
  await client.GET('/v1/reports/agents', { params: { query: { columns: ['happiness'] } } });
  // @ts-expect-error a report grouped by something that is no dimension
  await client.GET('/v1/reports/departments', { params: { query: { group_by: ['weather'] } } });
  return [badOperator, badValue, badGroup, noAgent, noSeconds, spam, explode, departmentId];
}
