import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';

// Capacity counts an agent's tickets in every department: two departments assigning at the same
// moment must not both hand an agent at capacity 1 a ticket. (On PGlite requests run one at a
// time; on PostgreSQL they race for real.)

t.test('capacity holds across departments assigning at once', async (t) => {
  const ctx = await buildTestApp(t);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  let n = 0;
  for (const to of ['least_busy', 'round_robin'] as const) {
    await t.test(to, async (t) => {
      const a = await makeDepartment(ctx.db, `${to} A`);
      const b = await makeDepartment(ctx.db, `${to} B`);
      const x = await agentWithToken(ctx, {
        name: `X ${to}`,
        departments: [
          [a, 'solver'],
          [b, 'solver'],
        ],
      });
      await ctx.request({
        method: 'PUT',
        url: '/v1/me/presence',
        token: x.token,
        payload: { status: 'online' },
      });
      const capped = await ctx.request({
        method: 'PATCH',
        url: `/v1/agents/${x.agent.id}`,
        token: admin.token,
        payload: { capacity: 1 },
      });
      t.equal(capped.statusCode, 200);
      for (const [tag, department_id] of [
        [`${to}-alpha`, a],
        [`${to}-beta`, b],
      ] as const) {
        const rule = await ctx.request({
          method: 'POST',
          url: '/v1/automation-rules',
          token: admin.token,
          payload: {
            name: `Assign ${tag}`,
            triggers: ['ticket.created'],
            conditions: { all: [{ field: 'subject', operator: 'contains', value: tag }] },
            actions: [
              { type: 'transfer', department_id },
              { type: 'assign', to, available_only: true },
            ],
          },
        });
        t.equal(rule.statusCode, 201, rule.body);
      }
      for (let round = 0; round < 8; round++) {
        const created = await Promise.all(
          [`${to}-alpha`, `${to}-beta`].map((tag) =>
            ctx.request({
              method: 'POST',
              url: '/v1/tickets',
              token: admin.token,
              payload: {
                subject: `${tag} ${round}`,
                contact: { email: `capacity-${++n}@example.com` },
                message: { body: 'Hello' },
              },
            }),
          ),
        );
        t.same(
          created.map((r) => r.statusCode),
          [201, 201],
        );
        const held = created.filter((r) => r.json().assignee_id === x.agent.id).length;
        t.equal(held, 1, `round ${round}: one ticket for the agent at capacity 1, not one per department`);
        // Resolved tickets do not count: the next round starts with the agent free again.
        await ctx.db
          .updateTable('tickets')
          .set({ status: 'resolved' })
          .where('assignee_id', '=', x.agent.id)
          .execute();
      }
    });
  }
});
