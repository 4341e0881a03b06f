import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import tap from 'tap';
import { AgentSchema } from '../src/domains/agents/schemas.ts';
import { ApiTokenSchema } from '../src/domains/api-tokens/schemas.ts';
import { AutomationRuleSchema, RULE_STAND_INS } from '../src/domains/automation-rules/schemas.ts';
import { DepartmentSchema, MemberSchema } from '../src/domains/departments/schemas.ts';
import { eventSchemas } from '../src/domains/events/catalogue.ts';
import { feedHead, readFeed, recordSettingsEvent } from '../src/domains/events/repository.ts';
import { buildTestApp, makeDepartment } from './helpers/app.ts';
import { makeTicket } from './helpers/tickets.ts';

tap.test('readFeed: every event once, in commit-safe order, across pages', async (t) => {
  const ctx = await buildTestApp(t);
  const departmentId = await makeDepartment(ctx.db);
  const start = await feedHead(ctx.db);
  const a = await makeTicket(ctx.db, { department_id: departmentId });
  await ctx.db.transaction().execute((trx) =>
    recordSettingsEvent(trx, {
      type: 'department.updated',
      actor: { type: 'system' },
      departmentId,
      subjectId: departmentId,
      payload: { changes: { name: { from: 'x', to: 'y' } } },
    }),
  );
  const b = await makeTicket(ctx.db);

  const seen: string[] = [];
  const types: string[] = [];
  let cursor = start;
  for (let page = 0; page < 20; page++) {
    const { rows, next } = await readFeed(ctx.db, { after: cursor, limit: 2 });
    for (const row of rows) {
      seen.push(row.event.id);
      types.push(row.event.type);
    }
    if (rows.length === 0) break;
    cursor = next;
  }
  t.same(new Set(seen).size, seen.length, 'no event twice');
  // Ticket a: created + customer message; then the settings event; then b's two.
  t.same(types, [
    'ticket.created',
    'ticket.customer_replied',
    'department.updated',
    'ticket.created',
    'ticket.customer_replied',
  ]);
  const again = await readFeed(ctx.db, { after: start, limit: 100 });
  t.same(
    again.rows.map((r) => r.event.id),
    seen,
    'one page or many: the same events in the same order',
  );
  const [created, replied] = again.rows;
  t.equal(created!.event.ticket_id, a.id);
  t.equal(created!.event.department_id, departmentId);
  t.same(created!.visibility, { department_id: departmentId, assignee_id: null });
  t.equal(again.rows[2]!.visibility, null, 'settings events are for admins only');
  t.equal(again.rows[3]!.event.ticket_id, b.id);
  t.match(replied!.event.payload, { message: { kind: 'customer', body: /Hello/ } });
});

tap.test('every feed row fits the Event schema of the spec', async (t) => {
  const ctx = await buildTestApp(t);
  await makeTicket(ctx.db);
  const { rows } = await readFeed(ctx.db, { limit: 100 });
  t.ok(rows.length > 0);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  for (const schema of [
    ...RULE_STAND_INS,
    DepartmentSchema,
    MemberSchema,
    AgentSchema,
    ApiTokenSchema,
    AutomationRuleSchema,
    ...eventSchemas,
  ]) {
    ajv.addSchema(schema);
  }
  const check = ajv.getSchema('Event')!;
  t.notOk(check({ ...rows[0]!.event, type: 'ticket.nonsense' }), 'the check can fail');
  for (const row of rows) {
    t.ok(check(row.event), `${row.event.type} fits ${JSON.stringify(check.errors?.slice(0, 2))}`);
  }
});
