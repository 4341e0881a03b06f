import { readFile } from 'node:fs/promises';
import { sql } from 'kysely';
import t from 'tap';
import { CURRENT_COUNTS, REPORT_TABLES, TAG_TOTAL_TABLES } from '../src/domains/reports/counters.ts';
import { FIGURE_COLUMN_TYPE, FIGURES, REPORT_FIGURES } from '../src/domains/reports/figures.ts';
import { figuresOf, METRIC_KEYS, METRICS, REPORT_COLUMN_KEYS } from '../src/domains/reports/metrics.ts';
import { agentWithToken, buildTestApp } from './helpers/app.ts';

// The report figures are listed once in the code (src/domains/reports/figures.ts); the frozen
// migrations that made the counter tables and the function that fills them spell the list out
// again. This file holds the two against each other on a migrated database, and the report
// columns against the contract, so a figure added on one side only fails here, not in a report.

const ctx = await buildTestApp(t);
const db = ctx.db;

interface Column {
  column_name: string;
  data_type: string;
  is_nullable: 'YES' | 'NO';
}

async function columnsOf(table: string): Promise<Column[]> {
  const { rows } = await sql<Column>`
    select column_name, data_type, is_nullable from information_schema.columns
    where table_schema = current_schema() and table_name = ${table}
    order by ordinal_position`.execute(db);
  return rows;
}

const sorted = (names: readonly string[]) => [...names].sort();

t.test('every counter table has exactly the figures of the list, typed by their kind', async (t) => {
  const counters = REPORT_TABLES.filter((table) => table.kind === 'counters');
  t.equal(counters.length, 9, 'counters at three grains, in full detail, by department and by tag');
  for (const table of counters) {
    t.same(table.values, FIGURES, `${table.name}: the list's figures are what the code sums`);
    const columns = await columnsOf(table.name);
    t.same(
      sorted(columns.map((c) => c.column_name)),
      sorted([...table.keys, 'fresh', ...FIGURES]),
      `${table.name}: its keys, fresh and one column per figure, no more, no fewer`,
    );
    const byName = new Map(columns.map((c) => [c.column_name, c]));
    const wrong = REPORT_FIGURES.filter((f) => {
      const column = byName.get(f.column);
      return column?.data_type !== FIGURE_COLUMN_TYPE[f.kind] || column.is_nullable !== 'NO';
    }).map((f) => `${f.column}: ${byName.get(f.column)?.data_type ?? 'missing'}`);
    t.same(wrong, [], `${table.name}: counts are integer, sums of seconds double precision, never null`);
  }
});

t.test('the tag counters summed over departments have their tag, bucket and every figure', async (t) => {
  t.same(
    Object.keys(TAG_TOTAL_TABLES).sort(),
    REPORT_TABLES.filter((table) => table.kind === 'counters' && table.keys.includes('tag'))
      .map((table) => table.name)
      .sort(),
    'one for each tag counter table',
  );
  for (const name of Object.values(TAG_TOTAL_TABLES)) {
    const columns = await columnsOf(name);
    t.same(sorted(columns.map((c) => c.column_name)), sorted(['bucket', 'tag', ...FIGURES]), name);
    const byName = new Map(columns.map((c) => [c.column_name, c]));
    const wrong = REPORT_FIGURES.filter((f) => {
      const column = byName.get(f.column);
      return column?.data_type !== FIGURE_COLUMN_TYPE[f.kind] || column.is_nullable !== 'NO';
    }).map((f) => f.column);
    t.same(wrong, [], `${name}: typed as the counters`);
    // Kept by the triggers' function on the tag counters: it must add every figure.
    const { rows } = await sql<{ definition: string }>`
      select pg_get_functiondef(${`${name}_fold()`}::regprocedure) as definition`.execute(db);
    const definition = rows[0]!.definition;
    t.same(
      FIGURES.filter((f) => !definition.includes(`${f} = t.${f} + excluded.${f}`)),
      [],
      `${name}_fold() adds every figure`,
    );
  }
});

t.test('the histograms and current counts have the columns the compactor folds', async (t) => {
  for (const table of [...REPORT_TABLES.filter((table) => table.kind === 'histograms'), CURRENT_COUNTS]) {
    const columns = await columnsOf(table.name);
    t.same(
      sorted(columns.map((c) => c.column_name)),
      sorted([...table.keys, 'fresh', ...table.values]),
      table.name,
    );
  }
});

t.test('no report table is left out of the list the code keeps', async (t) => {
  // Kept by functions of their own migrations, not folded by the compactor: the pending events
  // (0007), the compacted months' summaries (0008), the kept percentiles (0039, cache.ts) and
  // counts (0053); and added to by the compactor's fold of the tag counters (0043).
  const summaries = [
    'report_pending_events',
    'report_department_quantiles_month',
    'report_total_histograms_month',
    'report_total_coarse_histograms_month',
    'report_percentile_cache',
    'report_count_cache',
    ...Object.values(TAG_TOTAL_TABLES),
  ];
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables
    where table_schema = current_schema() and table_type = 'BASE TABLE' and table_name like 'report\\_%'`.execute(
    db,
  );
  t.same(
    sorted(rows.map((r) => r.table_name)),
    sorted([...REPORT_TABLES.map((table) => table.name), CURRENT_COUNTS.name, ...summaries]),
  );
});

t.test('report_event_facts() returns the figures of the list, in its order', async (t) => {
  // The events source of a report (attribution=current) and the rebuild read its columns by name,
  // the counting statement by position: both must be the list's.
  const { rows } = await sql<{ parameter_name: string; data_type: string }>`
    select p.parameter_name, p.data_type
    from information_schema.routines r
    join information_schema.parameters p on p.specific_schema = r.specific_schema and p.specific_name = r.specific_name
    where r.routine_schema = current_schema() and r.routine_name = 'report_event_facts' and p.parameter_mode = 'OUT'
    order by p.ordinal_position`.execute(db);
  t.same(
    rows.map((r) => `${r.parameter_name} ${r.data_type}`),
    [
      'bucket timestamp with time zone',
      'department_id uuid',
      'agent_id uuid',
      'channel text',
      ...REPORT_FIGURES.map((f) => `${f.column} ${FIGURE_COLUMN_TYPE[f.kind]}`),
    ],
  );
});

t.test('the counting of pending events writes every figure into every counter table', async (t) => {
  const { rows } = await sql<{ definition: string }>`
    select pg_get_functiondef('report_count_pending(integer)'::regprocedure) as definition`.execute(db);
  const definition = rows[0]!.definition.replace(/\s+/g, ' ');
  for (const table of REPORT_TABLES.filter((table) => table.kind === 'counters')) {
    const insert = `insert into ${table.name} (${table.keys.join(', ')}, fresh, ${FIGURES.join(', ')})`;
    t.ok(definition.includes(insert), `${table.name}: ${insert}`);
  }
});

t.test('every figure is read by some report column, and columns read only figures', async (t) => {
  const read = new Set(METRICS.flatMap((m) => figuresOf(m.formula)));
  t.same(
    FIGURES.filter((f) => !read.has(f)),
    [],
    'no figure is counted for nothing',
  );
  t.same(
    [...read].filter((f) => !FIGURES.includes(f)),
    [],
    'no column reads a figure the tables do not keep',
  );
  t.equal(new Set(FIGURES).size, FIGURES.length, 'no figure listed twice');
  t.equal(new Set(METRIC_KEYS).size, METRIC_KEYS.length, 'no column listed twice');
});

t.test("the contract's columns are the report columns, on every report route", async (t) => {
  const spec = JSON.parse(await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')) as {
    paths: Record<
      string,
      Record<string, { parameters?: { name: string; schema: { items?: { enum?: string[] } } }[] }>
    >;
    components: { schemas: Record<string, { properties: Record<string, unknown> }> };
  };
  const routes = ['departments', 'agents', 'channels'].flatMap((kind) => [
    `/v1/reports/${kind}`,
    `/v1/reports/${kind}.csv`,
  ]);
  for (const route of routes) {
    const columns = spec.paths[route]?.get?.parameters?.find((p) => p.name === 'columns');
    t.same(columns?.schema.items?.enum, REPORT_COLUMN_KEYS, `${route}: columns enum (the goal columns last)`);
  }
  const totals = Object.keys(spec.components.schemas.ReportTotals!.properties);
  t.same(totals, REPORT_COLUMN_KEYS, 'ReportTotals has one property per column');
  const row = Object.keys(spec.components.schemas.ReportRow!.properties);
  t.same(
    row.slice(row.length - REPORT_COLUMN_KEYS.length),
    REPORT_COLUMN_KEYS,
    'ReportRow ends with one property per column',
  );

  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const res = await ctx.request({ method: 'GET', url: '/v1/reports/columns', token });
  t.equal(res.statusCode, 200);
  t.same(
    res.json<{ data: { key: string }[] }>().data.map((c) => c.key),
    REPORT_COLUMN_KEYS,
    'GET /v1/reports/columns lists them in the same order',
  );
});
