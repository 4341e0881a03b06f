import { parseString } from 'fast-csv';
import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';

// CSV injection past the leading-character check: a spreadsheet opening a .csv splits it on the
// list separator of its locale, `;` in much of Europe (Excel takes it from the regional
// settings), and a tab is a separator every importer offers. A value such as `Sam;=cmd|...` is
// then two cells, the second a formula, although the first character is harmless. A quoted
// field stays one cell whatever the separator, so every text cell holding a `;` or a tab must
// be quoted (OWASP CSV Injection: "the field separator ... as attackers could use this to start
// a new cell").

function cellsAs(text: string): Promise<string[][]> {
  return new Promise((resolve, reject) => {
    const rows: string[][] = [];
    parseString(text, { headers: false, ignoreEmpty: true })
      .on('data', (row: string[]) => rows.push(row))
      .on('error', reject)
      .on('end', () => resolve(rows));
  });
}

const FORMULA = /^[\s"]*[=+@\uFF1D\uFF0B\uFF20]/u;

/**
 * The cells a spreadsheet would read as formulas: split on , as written (quotes honoured), or, as
 * a reader whose separator is ; or tab sees it, at every such character and line break, where our
 * quotes do not count (only a quote opening one of its cells does: a leading " is looked through).
 */
async function formulas(text: string, delimiter: string) {
  const cells =
    delimiter === ','
      ? (await cellsAs(text)).flat()
      : text.split(/\r\n|\r|\n/).flatMap((line) => line.split(delimiter));
  return cells.filter((cell) => FORMULA.test(cell));
}

async function csv(ctx: TestContext, token: string, url: string) {
  const res = await ctx.request({ method: 'GET', url, token });
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.body;
}

const PLANTED = {
  subject: "Order 5521;=cmd|' /C calc'!A0;",
  name: 'Sam;@SUM(1+1)*cmd|x!A0',
  agent: 'Dana;=HYPERLINK(CHAR(104)&A2)',
  tag: 'vip;"=1+1"',
  tabbed: 'Sam\t=1+1',
};

t.test('a separator cannot start a formula cell in any CSV', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  await ctx.db.updateTable('departments').set({ selectable_on_contact_form: true }).execute();
  const { token: owner } = await agentWithToken(ctx, { role: 'owner' });
  const { token: solver } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });

  // The customer, through the public form.
  const form = await ctx.request({
    method: 'POST',
    url: '/v1/public/tickets',
    payload: {
      name: PLANTED.name,
      email: 'sam@example.com',
      subject: PLANTED.subject,
      message: 'Hello',
      department_id: sales,
    },
  });
  t.equal(form.statusCode, 202, form.body);
  // The lowest agent: their own name, a tag on a ticket, a contact with a tab in the name.
  const me = await ctx.request({
    method: 'PATCH',
    url: '/v1/me',
    token: solver,
    payload: { name: PLANTED.agent },
  });
  t.equal(me.statusCode, 200, me.body);
  const ticket = await ctx.request({
    method: 'POST',
    url: '/v1/tickets',
    token: solver,
    payload: {
      subject: 'Tagged',
      channel: 'email',
      contact: { email: 'tab@example.com', name: PLANTED.tabbed },
      message: { body: 'Hi' },
      department_id: sales,
      tags: [PLANTED.tag],
    },
  });
  t.equal(ticket.statusCode, 201, ticket.body);
  const reply = await ctx.request({
    method: 'POST',
    url: `/v1/tickets/${ticket.json().id}/messages`,
    token: solver,
    payload: { kind: 'reply', body: 'On it' },
  });
  t.equal(reply.statusCode, 201, reply.body);

  const files = {
    'tickets export': await csv(ctx, owner, '/v1/exports/tickets?format=csv'),
    'contacts export': await csv(ctx, owner, '/v1/exports/contacts?format=csv'),
    'agents report': await csv(ctx, owner, '/v1/reports/agents.csv'),
    'tags report': await csv(ctx, owner, '/v1/reports/tags.csv'),
  };
  t.match(files['tickets export'], 'Order 5521', 'the planted subject is in the export');
  t.match(files['agents report'], 'Dana', 'the planted agent name is in the report');
  t.match(files['tags report'], 'vip', 'the planted tag is in the report');
  for (const [what, text] of Object.entries(files)) {
    t.same(await formulas(text, ','), [], `${what}: no formula split on ,`);
    t.same(await formulas(text, ';'), [], `${what}: no formula split on ;`);
    t.same(await formulas(text, '\t'), [], `${what}: no formula split on tab`);
  }
});
