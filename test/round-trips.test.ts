import t from 'tap';
import { roundTrips } from '../src/db/client.ts';
import { agentWithToken, buildTestApp, makeDepartment, mintApiToken } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';

// Round trips to PostgreSQL are most of what a ticket's creation and an agent's list cost on a
// small machine (docs/tickets.md, "What a creation costs"): the hot paths keep their counts, and
// a change that adds a query to them shows here first. Counted by the app's own pg client.
const skip = (await testDatabaseKind()) === 'pglite' ? 'PGlite has no round trips to count' : false;

async function until(probe: () => boolean) {
  for (let i = 0; i < 400 && !probe(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!probe()) throw new Error('timed out');
}

t.test('round trips of the hot ticket routes', { skip }, async (t) => {
  const ctx = await buildTestApp(t);
  const support = await makeDepartment(ctx.db, 'Support');
  const solver = await agentWithToken(ctx, { departments: [[support, 'solver']] });
  const apiToken = await mintApiToken(ctx, solver.token);
  let n = 0;
  const counted = async (options: Parameters<typeof ctx.request>[0]) => {
    const before = roundTrips();
    const res = await ctx.request(options);
    t.ok(res.statusCode < 300, `${options.method} ${options.url}: ${res.statusCode}`);
    return roundTrips() - before;
  };
  const create = (token: string) =>
    counted({
      method: 'POST',
      url: '/v1/tickets',
      token,
      payload: {
        subject: `Where is my order ${++n}?`,
        channel: 'email',
        contact: { email: `customer-${n}@example.com`, name: 'Customer' },
        message: { body: 'It has not arrived.' },
        department_id: support,
      },
    });
  const list = (token: string) =>
    counted({ method: 'GET', url: `/v1/tickets?status=new&department_id=${support}`, token });
  // Credentials are cached per process (src/plugins/auth-cache.ts): counted cold and warm.
  await until(() => ctx.app.authCache.listening);
  await create(apiToken); // prepares the statements of this connection's first creation
  for (const [who, token] of [
    ['an API token', apiToken],
    ['a session', solver.token],
  ] as const) {
    ctx.app.authCache.clear();
    // No rule acts on creation, no SLA policy, no schedule: the contact is found or made by the
    // opening statement itself (src/domains/tickets/one-statement.ts).
    t.equal(
      await create(token),
      2,
      `a creation by ${who}: credentials, BEGIN + contact and opening + COMMIT`,
    );
    t.equal(
      await create(token),
      1,
      `the next one, its credentials cached: BEGIN + contact and opening + COMMIT`,
    );
    ctx.app.authCache.clear();
    t.equal(
      await list(token),
      2,
      `an agent's filtered list by ${who}: credentials with departments, the list`,
    );
    t.equal(await list(token), 1, 'the next one, its credentials cached: the list with contacts');
  }
  await t.test(
    'after a rule change, the requests that miss the rule set together load it once',
    async (t) => {
      const admin = await agentWithToken(ctx, { role: 'admin' });
      const rule = await ctx.request({
        method: 'POST',
        url: '/v1/automation-rules',
        token: admin.token,
        payload: {
          name: 'Tag orders',
          triggers: ['ticket.created'],
          conditions: { all: [{ field: 'subject', operator: 'contains', value: 'order' }] },
          actions: [{ type: 'add_tags', tags: ['orders'] }],
        },
      });
      t.equal(rule.statusCode, 201, rule.body);
      await create(apiToken); // loads and compiles the new rule set
      await create(apiToken);
      const one = await create(apiToken); // a creation with the set cached
      t.equal(one, 2, 'a rule acts on creation: BEGIN + contact, then the opening + COMMIT');
      const renamed = await ctx.request({
        method: 'PATCH',
        url: `/v1/automation-rules/${rule.json().id}`,
        token: admin.token,
        payload: { name: 'Tag order questions' },
      });
      t.equal(renamed.statusCode, 200, 'the rule set has a new key');
      const before = roundTrips();
      const all = await Promise.all(Array.from({ length: 6 }, () => create(apiToken)));
      t.equal(all.length, 6);
      t.equal(roundTrips() - before, 6 * one + 1, 'six creations, and one load of the rule set among them');
    },
  );
  await t.test('SLA policies: nothing without them, one query per change with them', async (t) => {
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const ticketId = (
      await ctx.request({
        method: 'POST',
        url: '/v1/tickets',
        token: solver.token,
        payload: {
          subject: 'Late',
          channel: 'email',
          contact: { email: 'late@example.com' },
          message: { body: 'Still nothing.' },
          department_id: support,
        },
      })
    ).json().id;
    t.ok(ticketId);
    let priority = 0;
    const change = () =>
      counted({
        method: 'PATCH',
        url: `/v1/tickets/${ticketId}`,
        token: solver.token,
        payload: { priority: ['low', 'normal'][priority++ % 2] },
      });
    await change(); // prepares this connection's statements
    const without = await change();
    const policy = await ctx.request({
      method: 'POST',
      url: '/v1/sla-policies',
      token: admin.token,
      payload: {
        name: 'Everything',
        conditions: { all: [] },
        targets: {
          low: { resolution: { minutes: 600, business: true } },
          normal: { resolution: { minutes: 300, business: true } },
        },
      },
    });
    t.equal(policy.statusCode, 201, policy.body);
    await create(apiToken); // loads and compiles the policies
    const creation = await create(apiToken);
    t.equal(creation, 2, `a creation with policies (credentials cached): no extra round trip (${creation})`);
    await change();
    t.equal(await change(), without + 1, 'a change with policies: one extra query (the calendars in play)');
  });
});
