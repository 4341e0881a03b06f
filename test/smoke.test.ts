import t from 'tap';
import { buildTestApp, makeAgent, signIn } from './helpers/app.ts';

t.test('smoke', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await makeAgent(ctx.db, { role: 'owner' });
  const token = await signIn(ctx, owner.email);
  const res = await ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token,
    payload: { name: 'Support' },
  });
  t.equal(res.statusCode, 201, res.body);
  t.equal(ctx.database.kind, process.env.TEST_DATABASE_URL ? 'env' : 'pglite');
});
