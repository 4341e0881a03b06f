import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import t from 'tap';
import * as deletedNames from '../migrations/0012_deleted_names.ts';
import { loadConfig } from '../src/config.ts';
import { METRICS, REPORT_COLUMN_KEYS } from '../src/domains/reports/metrics.ts';
import {
  findReportPage,
  type ReportSpec,
  reportRowReader,
  rowJsonWriter,
  sortKeyReader,
  streamReportRows,
} from '../src/domains/reports/repository.ts';
import { rowFields } from '../src/domains/reports/service.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';

// Reports over figures written by the real API (tickets, replies, transfers, status changes,
// calls, chats, ratings), visibility, parameters, CSV and streaming.

type Row = Record<string, unknown>;
const QUARTER = 15 * 60 * 1000;

t.test('reports through the API', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const sam = await agentWithToken(ctx, { name: 'Sam', departments: [[sales, 'solver']] });
  const sue = await agentWithToken(ctx, { name: 'Sue', departments: [[support, 'supervisor']] });

  type Method = 'GET' | 'POST' | 'PATCH';
  const api = async (method: Method, url: string, payload?: unknown, token = admin.token) => {
    const res = await ctx.request({
      method,
      url,
      token,
      ...(payload !== undefined && { payload: payload as object }),
    });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const now = Date.now();
  const ago = (seconds: number) => new Date(Math.floor(now / 1000) * 1000 - seconds * 1000).toISOString();
  // Quarter-hour ends around now (reports need them), wide enough for the whole test.
  const from = new Date(Math.floor((now - 3_600_000) / QUARTER) * QUARTER).toISOString();
  const to = new Date(Math.ceil((now + 3_600_000) / QUARTER) * QUARTER).toISOString();
  const range = `from=${from}&to=${to}`;

  // An email ticket asked in Sales, answered twice by Sam (a note in between), moved to
  // Support, resolved by Sue, reopened by the customer, resolved again, then rated.
  const ticket = await api('POST', '/v1/tickets', {
    subject: 'Where is my order?',
    channel: 'email',
    contact: { email: 'jane@example.com', name: 'Jane' },
    message: { body: 'It has not arrived.' },
    department_id: sales,
  });
  const messages = `/v1/tickets/${ticket.id}/messages`;
  await api('POST', messages, { kind: 'reply', body: 'Looking into it.' }, sam.token);
  await api('POST', messages, { kind: 'note', body: 'Warehouse says Tuesday.' }, sam.token);
  await api('POST', messages, { kind: 'customer', body: 'Any news?' });
  await api('POST', messages, { kind: 'reply', body: 'Tuesday.' }, sam.token);
  await api('POST', `/v1/tickets/${ticket.id}/transfer`, { department_id: support });
  await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' }, sue.token);
  await api('POST', messages, { kind: 'customer', body: 'It came broken.' });
  await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' }, sue.token);
  await api('POST', `/v1/tickets/${ticket.id}/ratings`, { value: 'positive' });
  // An agent writes first: the opening message is an answer, with nobody waiting for it.
  await api(
    'POST',
    '/v1/tickets',
    {
      subject: 'Your invoice',
      channel: 'email',
      contact: { email: 'jane@example.com' },
      message: { body: 'Here is your invoice.', author: 'agent' },
      department_id: sales,
    },
    sam.token,
  );

  // Calls in Support (one answered, 300 s of talk; one missed), chats in Sales (one picked
  // up, one missed): each opens a ticket of its own.
  await api('POST', '/v1/calls', {
    direction: 'inbound',
    outcome: 'answered',
    from_number: '+420 777 111 222',
    department_id: support,
    agent_id: sue.agent.id,
    started_at: ago(600),
    answered_at: ago(590),
    ended_at: ago(290),
  });
  await api('POST', '/v1/calls', {
    direction: 'inbound',
    outcome: 'missed',
    from_number: '+420 777 111 333',
    department_id: support,
    started_at: ago(500),
  });
  await api('POST', '/v1/chats', {
    contact: { email: 'chatty@example.com' },
    department_id: sales,
    agent_id: sam.agent.id,
    started_at: ago(400),
    picked_up_at: ago(390),
    ended_at: ago(100),
    missed: false,
    messages: [
      { from: 'customer', body: 'Hi', sent_at: ago(395) },
      { from: 'agent', body: 'Hello!', sent_at: ago(380) },
      { from: 'customer', body: 'Thanks', sent_at: ago(200) },
    ],
  });
  await api('POST', '/v1/chats', {
    contact: { email: 'gone@example.com' },
    department_id: sales,
    started_at: ago(300),
    missed: true,
    messages: [{ from: 'customer', body: 'Anyone?', sent_at: ago(299) }],
  });

  const columns = [
    'created_tickets',
    'answers',
    'incoming_messages',
    'resolved_tickets',
    'reopened_tickets',
    'transfers_in',
    'transfers_out',
    'positive_ratings',
    'not_rated',
    'calls',
    'missed_calls',
    'incoming_calls',
    'finished_calls',
    'call_minutes',
    'chats',
    'missed_chats',
    'incoming_chats',
    'finished_chats',
    'chat_messages',
  ];
  const pick = (row: Row) => Object.fromEntries(columns.map((c) => [c, row[c]]));

  await t.test('figures written by the API land in the right department', async (t) => {
    const report = await api('GET', `/v1/reports/departments?${range}&columns=${columns.join(',')}`);
    const rows = new Map(report.data.map((r: Row) => [r.department_id, r]));
    const zero = Object.fromEntries(columns.map((c) => [c, 0]));
    t.same(pick(rows.get(sales) as Row), {
      ...zero,
      created_tickets: 4,
      answers: 3,
      incoming_messages: 5, // the first message, the follow-up, and 2 + 1 in chats
      transfers_out: 1,
      chats: 1,
      missed_chats: 1,
      incoming_chats: 2,
      finished_chats: 1,
      chat_messages: 1,
    });
    t.same(pick(rows.get(support) as Row), {
      ...zero,
      created_tickets: 2,
      incoming_messages: 1,
      resolved_tickets: 2,
      reopened_tickets: 1,
      transfers_in: 1,
      positive_ratings: 1,
      not_rated: 1,
      calls: 1,
      missed_calls: 1,
      incoming_calls: 2,
      finished_calls: 1,
      call_minutes: 5,
    });
    const times = await api(
      'GET',
      `/v1/reports/agents?${range}&agent_id=${sam.agent.id}&columns=avg_first_answer_time,avg_next_answer_time,avg_chat_pickup_time,avg_chat_time`,
    );
    t.same(
      times.data.map((r: Row) => r.agent_id),
      [sam.agent.id],
      'one row: Sam’s',
    );
    const samRow = times.data[0] as Row;
    // Measured between this test's own requests: seconds, at most the time since it began.
    const elapsed = (Date.now() - now) / 1000 + 1;
    for (const key of ['avg_first_answer_time', 'avg_next_answer_time'] as const) {
      const value = samRow[key];
      t.type(value, 'number', `${key} was measured`);
      t.ok(typeof value === 'number' && value >= 0 && value <= elapsed, `${key} is within the test’s run`);
    }
    t.same([samRow.avg_chat_pickup_time, samRow.avg_chat_time], [10, 300]);
  });

  await t.test('visibility: agents see their departments (and no department), admins all', async (t) => {
    const mine = await api(
      'GET',
      `/v1/reports/departments?${range}&columns=created_tickets`,
      undefined,
      sam.token,
    );
    t.same(
      mine.data.map((r: Row) => r.department_name),
      ['Sales'],
      'only Sales',
    );
    t.equal(mine.totals.created_tickets, 4, 'totals only over what they may see');
    const refused = await ctx.request({
      method: 'GET',
      url: `/v1/reports/departments?${range}&department_id=${support}`,
      token: sam.token,
    });
    t.equal(refused.statusCode, 403);
    t.equal(refused.json().code, 'department_not_visible');
    const agents = await api('GET', `/v1/reports/agents?${range}&columns=answers`, undefined, sam.token);
    // Sam's own row first: an empty list would pass the absence check below on its own.
    t.ok(
      agents.data.some((r: Row) => r.agent_id === sam.agent.id),
      'their own row is listed',
    );
    t.notOk(
      agents.data.some((r: Row) => r.agent_id === sue.agent.id),
      'agents of other departments are not listed',
    );

    const minted = await api(
      'POST',
      '/v1/api-tokens',
      { name: 'nightly export', scopes: ['read'] },
      sam.token,
    );
    const readOnly = minted.secret as string;
    const viaToken = await ctx.request({
      method: 'GET',
      url: `/v1/reports/departments.csv?${range}&columns=created_tickets`,
      token: readOnly,
    });
    t.equal(viaToken.statusCode, 200, 'a read-only token may export');
    t.equal(viaToken.body, `Department ID,Department,Created tickets\n${sales},Sales,4`);
  });

  await t.test('bad parameters answer problem+json 400, for JSON and CSV alike', async (t) => {
    const cases: [string, string][] = [
      ['columns=answers,bogus', 'unknown_column'],
      ['timezone=Mars/Olympus', 'unknown_timezone'],
      // PostgreSQL lists these, schedules refuse them (localtime is the database server's own zone).
      ['timezone=localtime', 'unknown_timezone'],
      ['timezone=posixrules', 'unknown_timezone'],
      ['timezone=Factory', 'unknown_timezone'],
      ['timezone=posix/Europe/Prague', 'unknown_timezone'],
      ['timezone=right/UTC', 'unknown_timezone'],
      ['timezone=%2B05:00', 'unknown_timezone'],
      ['from=2026-03-02&to=2026-03-01', 'invalid_range'],
      ['from=2026-03-01', 'range_incomplete'],
      ['preset=today&from=2026-03-01&to=2026-03-02', 'preset_or_range'],
      ['from=2026-03-01T10:07:00Z&to=2026-03-02', 'range_not_aligned'],
      ['from=yesterday&to=2026-03-02', 'validation_failed'],
      ['from=2026-02-30&to=2026-03-02', 'invalid_range'],
      ['group_by=department,weather', 'unknown_group_by'],
      ['sort=-weather', 'unknown_sort'],
      ['interval=fortnight', 'validation_failed'],
      ['department_id=sales', 'validation_failed'],
      ['channel=pigeon', 'validation_failed'],
      ['from=2000-01-01&to=2026-01-01&interval=hour', 'too_many_periods'],
      ['cursor=not-a-cursor', 'invalid_cursor'],
    ];
    for (const [query, code] of cases) {
      for (const path of ['/v1/reports/departments', '/v1/reports/departments.csv']) {
        const res = await ctx.request({ method: 'GET', url: `${path}?${query}`, token: admin.token });
        t.equal(res.statusCode, 400, `${path}?${query}`);
        t.match(res.headers['content-type'], /^application\/problem\+json/);
        t.equal(res.json().code, code, query);
      }
    }
    const anonymous = await ctx.request({ method: 'GET', url: '/v1/reports/departments.csv' });
    t.equal(anonymous.statusCode, 401);
    const unknownParameter = await ctx.request({
      method: 'GET',
      url: `/v1/reports/departments?${range}&colums=answers`,
      token: admin.token,
    });
    t.equal(unknownParameter.statusCode, 400, 'a misspelt parameter is refused, not ignored');
    for (const query of ['department_id=sales', `department_id=${sales}&limit=0`, 'department_id=']) {
      const res = await ctx.request({
        method: 'GET',
        url: `/v1/reports/agents/leaderboard?${range}&${query}`,
        token: admin.token,
      });
      t.equal(res.statusCode, 400, `leaderboard ?${query}`);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
    }
    const board = await ctx.request({
      method: 'GET',
      url: `/v1/reports/agents/leaderboard?${range}&timezone=localtime`,
      token: admin.token,
    });
    t.equal(board.statusCode, 400, 'the leaderboard checks its zone alike');
    t.equal(board.json().code, 'unknown_timezone');
    const anyCase = await ctx.request({
      method: 'GET',
      url: `/v1/reports/departments?${range}&timezone=europe/prague`,
      token: admin.token,
    });
    t.equal(anyCase.statusCode, 200, 'any case, as schedules take it');
    t.equal(anyCase.json().range.timezone, 'Europe/Prague', 'answered in IANA spelling');
  });

  await t.test('a blank list filter matches nothing, channel as department_id and agent_id', async (t) => {
    // channel=, and channel=%20 are lists of no value, as department_id=, is: no figure matches.
    for (const url of [
      '/v1/reports/channels?channel=,',
      '/v1/reports/channels?channel=%20',
      '/v1/reports/departments?group_by=channel&channel=,',
      '/v1/reports/agents?group_by=channel,time&interval=day&channel=%20',
      '/v1/reports/channels?department_id=,',
      '/v1/reports/channels?agent_id=%20',
      '/v1/reports/departments?department_id=,',
    ]) {
      const res = await ctx.request({ method: 'GET', url: `${url}&${range}`, token: admin.token });
      t.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
      const figures = (res.json().data as Row[]).filter((row) => Number(row.answers) > 0);
      t.same(figures, [], `${url}: no figures`);
    }
    const everything = await ctx.request({
      method: 'GET',
      url: `/v1/reports/channels?${range}`,
      token: admin.token,
    });
    t.ok(
      (everything.json().data as Row[]).some((row) => Number(row.answers) > 0),
      'unfiltered: figures',
    );
    for (const url of [
      '/v1/reports/channels.csv?channel=,',
      '/v1/reports/agents.csv?group_by=channel,time&interval=day&channel=%20',
    ]) {
      const res = await ctx.request({ method: 'GET', url: `${url}&${range}`, token: admin.token });
      t.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
      t.notMatch(res.body, /\n(\S+,)?email,/, `${url}: no channel's row`);
    }
  });

  await t.test('CSV: negotiation, file name, labels and the unit row', async (t) => {
    const url = `/v1/reports/departments?${range}&columns=answers,avg_first_answer_time,call_minutes`;
    const csv = (accept: string) =>
      ctx.request({ method: 'GET', url, token: admin.token, headers: { accept } });
    t.match((await csv('text/csv')).headers['content-type'], /^text\/csv; charset=utf-8/);
    t.match((await csv('application/json;q=0.5, text/csv')).headers['content-type'], /^text\/csv/);
    t.match((await csv('text/csv;q=0.1, application/json')).headers['content-type'], /^application\/json/);
    t.match((await csv('*/*')).headers['content-type'], /^application\/json/);

    const file = await ctx.request({
      method: 'GET',
      url: `/v1/reports/agents.csv?from=2026-03-01&to=2026-04-01&interval=day&timezone=Europe/Prague&unit_row=true&columns=answers,avg_first_answer_time,call_minutes`,
      token: admin.token,
    });
    t.equal(file.statusCode, 200);
    t.equal(
      file.headers['content-disposition'],
      'attachment; filename="deskroute-agents-2026-03-01--2026-04-01-by-day.csv"',
    );
    const lines = file.body.split('\n');
    t.equal(lines[0], 'Period start,Period end,Agent ID,Agent,Answers,Avg first answer time,Call minutes');
    t.equal(lines[1], ',,,,count,seconds,minutes');
    t.match(lines[2], /^2026-03-01T00:00:00\+01:00,2026-03-02T00:00:00\+01:00,/);
    t.ok(
      lines.some((l) => l.startsWith('2026-03-29T00:00:00+01:00,2026-03-30T00:00:00+02:00,')),
      'DST day',
    );
  });

  await t.test('the export streams: batches on demand, and stops when told', async (t) => {
    const spec: ReportSpec = {
      from: new Date('2025-01-01T00:00:00Z'),
      to: new Date('2025-03-01T00:00:00Z'),
      timezone: 'UTC',
      interval: 'hour',
      weekShift: 0,
      groupBy: ['time', 'department'],
      departments: null,
      agents: null,
      channels: null,
      attribution: 'event',
      source: 'counters',
      metrics: METRICS.filter((m) => m.key === 'answers'),
      // Latest first: one statement (not in chunks of a few periods), read 100 rows at a time.
      sort: [{ key: 'time', direction: 'desc' }],
    };
    let all = 0;
    await streamReportRows(ctx.db, spec, {
      batch: 1000,
      signal: new AbortController().signal,
      onRows: async (rows) => {
        all += rows.length;
      },
    });
    t.equal(all, 59 * 24 * 2, 'every hour of two months for both departments');

    const abort = new AbortController();
    const batches: number[] = [];
    const stopped = streamReportRows(ctx.db, spec, {
      batch: 100,
      signal: abort.signal,
      onRows: async (rows) => {
        batches.push(rows.length);
        if (batches.length === 2) abort.abort(new Error('client went away'));
      },
    });
    await t.rejects(stopped, { message: 'client went away' });
    t.same(batches, [100, 100], 'no batch was fetched after the abort');
    const after = await api('GET', `/v1/reports/departments?${range}&columns=answers`);
    t.ok(after.data.length > 0, 'the database is free again');
  });

  await t.test('a client that hangs up mid-export stops the query', async (t) => {
    await ctx.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = ctx.app.server.address() as AddressInfo;
    const received = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          port,
          host: '127.0.0.1',
          path: '/v1/reports/departments.csv?from=2023-01-01&to=2026-01-01&interval=hour&columns=answers',
          headers: { authorization: `Bearer ${admin.token}` },
        },
        (res) => {
          res.once('data', (chunk: Buffer) => {
            req.destroy();
            resolve(chunk.length);
          });
        },
      );
      req.on('error', (error) => {
        if ((error as { code?: string }).code !== 'ECONNRESET') reject(error);
      });
      req.end();
    });
    t.ok(received > 0, 'the first rows arrived');
    // With backpressure, an export nobody reads would hold its transaction (and on PGlite the
    // only connection) forever; a prompt answer shows it was let go.
    const started = Date.now();
    const next = await api('GET', `/v1/reports/departments?${range}&columns=answers`);
    t.ok(next.data.length > 0);
    t.ok(Date.now() - started < 10_000, 'the next report did not wait for the abandoned export');
    if (ctx.database.url) {
      // The hang-up reaches the server asynchronously: give it a moment.
      let busy: { query: string; state: string }[] = [];
      for (let attempt = 0; attempt < 50; attempt++) {
        busy = (
          await sql<{ query: string; state: string }>`
            select query, state from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid()
              and query like '%report_rows%' and state <> 'idle'`.execute(ctx.db)
        ).rows;
        if (busy.length === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      t.same(busy, [], 'no export query is left running');
    }
  });

  await t.test('leaderboard of one department', async (t) => {
    const board = await api('GET', `/v1/reports/agents/leaderboard?${range}&department_id=${sales}`);
    t.same(
      board.data.map((r: Row) => [r.rank, r.agent_id, r.answers]),
      [
        [1, sam.agent.id, 3],
        [2, admin.agent.id, 0], // the admin moved a ticket out of Sales: a transfer out is theirs
      ],
    );
    const elsewhere = await ctx.request({
      method: 'GET',
      url: `/v1/reports/agents/leaderboard?${range}&department_id=${support}`,
      token: sam.token,
    });
    t.equal(elsewhere.statusCode, 403, "another department's leaderboard is not theirs to see");
    const columns = await api('GET', '/v1/reports/columns');
    t.equal(columns.data.length, REPORT_COLUMN_KEYS.length, 'every column, the goal columns included');
  });

  await t.test('the JSON body: envelope and rows serialized apart, one document', async (t) => {
    // The route writes the envelope with no rows and each row by the row schema (routes.ts,
    // reportBody): a tag holding the very text it splits at, and one beyond ASCII, stay text.
    const planted = '"data":[] ünï ’';
    await api('POST', '/v1/tickets', {
      subject: 'Tagged',
      channel: 'email',
      contact: { email: 'tags@example.com' },
      message: { body: 'Tagged.' },
      department_id: sales,
      tags: [planted, 'zz'],
    });
    const read = async (url: string) => {
      const res = await ctx.request({ method: 'GET', url, token: admin.token });
      t.equal(res.statusCode, 200, url);
      t.equal(res.body, JSON.stringify(res.json()), 'one compact JSON document, in schema order');
      t.equal(Number(res.headers['content-length']), Buffer.byteLength(res.body), 'its length in bytes');
      return res.json();
    };
    const report = await read(`/v1/reports/tags?${range}&columns=created_tickets,answers`);
    const tags = report.data.map((r: Row) => r.tag);
    t.ok(tags.includes(planted.toLowerCase()), 'the planted tag is a row of its own');
    t.ok(tags.includes('zz'));
    t.same(Object.keys(report).slice(-4), ['data', 'totals', 'overlapping_groups', 'next_cursor']);
    const empty = await read('/v1/reports/tags?from=2001-01-01&to=2001-01-02&columns=created_tickets');
    t.same(empty.data, [], 'no rows');
    const one = await read(`/v1/reports/tags?${range}&columns=created_tickets&limit=1`);
    t.equal(one.data.length, 1, 'one row');
    t.type(one.next_cursor, 'string');

    // Rows are written field by field from the statement's columns (rowJsonWriter), in the
    // order the spec lists the row's properties, whatever order the columns were asked in.
    const spec = JSON.parse(readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8'));
    const order = Object.keys(spec.components.schemas.ReportRow.properties);
    const asked = [
      'median_resolution_time',
      'answers',
      'created_tickets',
      'positive_ratings_pct',
      'avg_first_answer_time',
    ];
    const every = await read(
      `/v1/reports/departments?${range}&interval=day&group_by=tag,channel,agent,department,time` +
        `&columns=${asked.join(',')}&sort=-answers`,
    );
    t.ok(every.data.length > 1, 'rows');
    const fields = [
      'period_start',
      'period_end',
      'department_id',
      'department_name',
      'department_deleted',
      'agent_id',
      'agent_name',
      'agent_deleted',
      'channel',
      'tag',
      ...asked,
    ];
    for (const row of every.data as Row[]) {
      t.same(
        Object.keys(row),
        order.filter((key) => fields.includes(key)),
        'every field asked, in the schema order',
      );
      t.type(row.department_deleted, 'boolean');
    }
    t.ok(
      (every.data as Row[]).some((r) => r.answers !== 0 && typeof r.answers === 'number'),
      'figures as numbers',
    );
  });

  await t.test('rows read as arrays (pg) or by name: the same JSON and cursors', async (t) => {
    // jsonReport reads its page as arrays where the driver is pg (prepared.ts, arrayRows);
    // every other reader of report rows reads them by name. From the counters (tags have no
    // agents there) and from the events (every dimension).
    const pg = (await testDatabaseKind()) !== 'pglite';
    for (const [source, groupBy] of [
      ['counters', ['time', 'department', 'agent', 'channel']],
      ['events', ['time', 'department', 'agent', 'channel', 'tag']],
    ] as const) {
      const spec: ReportSpec = {
        from: new Date(from),
        to: new Date(to),
        timezone: 'Asia/Kathmandu',
        interval: 'hour',
        weekShift: 0,
        groupBy: [...groupBy],
        departments: null,
        agents: null,
        channels: null,
        attribution: 'event',
        source,
        metrics: METRICS,
        sort: [{ key: 'avg_first_answer_time', direction: 'desc' }],
      };
      const fields = rowFields(spec);
      const byName = await findReportPage(ctx.db, spec, { limit: 1000 });
      const asArrays = await findReportPage(ctx.db, spec, { limit: 1000, arrays: true });
      t.ok(byName.length > 2, `${source}: rows`);
      t.notOk(Array.isArray(byName[0]), 'by name unless asked');
      t.equal(Array.isArray(asArrays[0]), pg, pg ? 'as arrays from pg' : 'by name from PGlite');
      const written = asArrays.map(rowJsonWriter(spec, fields));
      t.same(written, byName.map(rowJsonWriter(spec, fields)), 'the same JSON');
      t.same(asArrays.map(sortKeyReader(spec)), byName.map(sortKeyReader(spec)), 'the same sort keys');
      // Field for field, what reportRowReader reads by name.
      const read = (byName as Row[]).map(reportRowReader(spec));
      written.forEach((text, i) => {
        const { values, sortKey: _, ...dimensions } = read[i]!;
        const expected: Row = {};
        for (const field of fields)
          expected[field] = field in values ? values[field] : dimensions[field as never];
        t.same(JSON.parse(text), expected, `row ${i}`);
      });
      t.ok(
        read.some((r) => r.values.avg_first_answer_time !== null) &&
          read.some((r) => r.values.avg_first_answer_time === null),
        'numbers and nulls among the figures',
      );
    }
  });
});

t.test('the help desk time zone is the default of every report', async (t) => {
  t.equal(loadConfig({}).timezone, 'UTC');
  for (const zone of ['Mars/Olympus', 'localtime', '+05:00']) {
    t.throws(() => loadConfig({ DESKROUTE_TIMEZONE: zone }), { message: /DESKROUTE_TIMEZONE/ }, zone);
  }
  t.equal(
    loadConfig({ DESKROUTE_TIMEZONE: 'asia/kathmandu' }).timezone,
    'Asia/Kathmandu',
    'kept in IANA spelling',
  );
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'Asia/Kathmandu' });
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const res = await ctx.request({
    method: 'GET',
    url: '/v1/reports/channels?from=2026-03-20&to=2026-03-21&interval=day&columns=answers',
    token,
  });
  t.equal(res.json().range.timezone, 'Asia/Kathmandu');
  t.equal(res.json().range.from, '2026-03-19T18:15:00.000Z', 'dates are local midnights there');
  t.equal(res.json().data[0].period_start, '2026-03-20T00:00:00+05:45');
});

t.test('concurrent writers of one department are all counted', async (t) => {
  const ctx = await buildTestApp(t);
  const desk = await makeDepartment(ctx.db, 'Busy desk');
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const created = await Promise.all(
    Array.from({ length: 24 }, (_, i) =>
      ctx.request({
        method: 'POST',
        url: '/v1/tickets',
        token,
        payload: {
          subject: `Rush ${i}`,
          contact: { email: `rush-${i}@example.com` },
          message: { body: 'Help' },
          department_id: desk,
        },
      }),
    ),
  );
  t.same(
    created.map((r) => r.statusCode),
    Array(24).fill(201),
  );
  const report = await ctx.request({
    method: 'GET',
    url: `/v1/reports/departments?from=${new Date(Math.floor(Date.now() / QUARTER) * QUARTER - 3_600_000).toISOString()}&to=${new Date(Math.ceil(Date.now() / QUARTER) * QUARTER + 3_600_000).toISOString()}&department_id=${desk}&columns=created_tickets,incoming_messages`,
    token,
  });
  t.same(
    report.json().data.map((r: Row) => [r.created_tickets, r.incoming_messages]),
    [[24, 24]],
  );
});

t.test('deleted departments and agents keep their names in reports', async (t) => {
  const ctx = await buildTestApp(t);
  const billing = await makeDepartment(ctx.db, 'Billing');
  const support = await makeDepartment(ctx.db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const rita = await agentWithToken(ctx, { name: 'Rita', departments: [[billing, 'supervisor']] });
  const send = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, token = admin.token) =>
    ctx.request({ method, url, token, ...(payload && { payload }) });
  const now = Date.now();
  const range = `from=${new Date(Math.floor(now / QUARTER) * QUARTER - 3_600_000).toISOString()}&to=${new Date(Math.ceil(now / QUARTER) * QUARTER + 3_600_000).toISOString()}`;

  // Two tickets asked in Billing; Rita moves one to Support (a transfer out is hers) and writes
  // nothing, holds nothing, so she can be deleted; then Billing goes, its other ticket moving
  // to Support.
  const ids: string[] = [];
  for (const subject of ['Double charge', 'Refund']) {
    const created = await send('POST', '/v1/tickets', {
      subject,
      contact: { email: 'payer@example.com' },
      message: { body: 'I paid twice.' },
      department_id: billing,
    });
    t.equal(created.statusCode, 201);
    ids.push(created.json().id);
  }
  const moved = await send('POST', `/v1/tickets/${ids[0]}/transfer`, { department_id: support }, rita.token);
  t.equal(moved.statusCode, 200);
  t.equal(moved.json().assignee_id, null, 'nobody holds the ticket');
  t.equal((await send('DELETE', `/v1/agents/${rita.agent.id}`)).statusCode, 204);
  t.equal(
    (await send('DELETE', `/v1/departments/${billing}?move_to_department_id=${support}`)).statusCode,
    204,
  );

  const departments = await send('GET', `/v1/reports/departments?${range}&columns=created_tickets`);
  t.equal(departments.statusCode, 200);
  t.same(
    departments
      .json()
      .data.map((r: Row) => [r.department_id, r.department_name, r.department_deleted, r.created_tickets]),
    [
      [billing, 'Billing', true, 2],
      [support, 'Support', false, 0],
    ],
    'the past row of the deleted department carries its name, and says it is deleted',
  );
  const departmentsCsv = await send('GET', `/v1/reports/departments.csv?${range}&columns=created_tickets`);
  t.equal(departmentsCsv.statusCode, 200);
  t.equal(
    departmentsCsv.body,
    `Department ID,Department,Created tickets\n${billing},Billing,2\n${support},Support,0`,
    'CSV too',
  );
  const onlyBilling = await send(
    'GET',
    `/v1/reports/departments?${range}&columns=created_tickets&department_id=${billing}`,
  );
  t.equal(onlyBilling.statusCode, 200, 'a deleted department is still a fair filter');
  t.same(
    onlyBilling.json().data.map((r: Row) => [r.department_name, r.created_tickets]),
    [['Billing', 2]],
  );

  const agents = await send(
    'GET',
    `/v1/reports/agents?${range}&columns=transfers_out&agent_id=${rita.agent.id}`,
  );
  t.equal(agents.statusCode, 200);
  t.same(
    agents.json().data.map((r: Row) => [r.agent_id, r.agent_name, r.agent_deleted, r.transfers_out]),
    [[rita.agent.id, 'Rita', true, 1]],
    'the deleted agent’s past row carries her name',
  );
  const agentsCsv = await send(
    'GET',
    `/v1/reports/agents.csv?${range}&columns=transfers_out&agent_id=${rita.agent.id}`,
  );
  t.equal(agentsCsv.body, `Agent ID,Agent,Transfers out\n${rita.agent.id},Rita,1`, 'CSV too');
  const byBoth = await send(
    'GET',
    `/v1/reports/departments?${range}&group_by=department,agent&columns=transfers_out&sort=agent`,
  );
  t.match(
    byBoth.json().data.filter((r: Row) => r.agent_id === rita.agent.id),
    [
      {
        department_name: 'Billing',
        department_deleted: true,
        agent_name: 'Rita',
        agent_deleted: true,
        transfers_out: 1,
      },
    ],
    'both names in a two-dimension report',
  );

  const board = await send('GET', `/v1/reports/agents/leaderboard?${range}&department_id=${billing}`);
  t.equal(board.statusCode, 200, 'the leaderboard of a deleted department still answers');
  t.same(
    board
      .json()
      .data.filter((r: Row) => r.agent_id === rita.agent.id)
      .map((r: Row) => r.agent_name),
    ['Rita'],
    'and names her too',
  );
});

t.test('report filters on departments or agents that never existed answer 404', async (t) => {
  const ctx = await buildTestApp(t);
  const desk = await makeDepartment(ctx.db, 'Desk');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const member = await agentWithToken(ctx, { departments: [[desk, 'solver']] });
  const unknown = '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b';
  const range = 'preset=last_7_days';
  for (const [url, code] of [
    [`/v1/reports/agents/leaderboard?${range}&department_id=${unknown}`, 'department_not_found'],
    [`/v1/reports/departments?${range}&department_id=${desk},${unknown}`, 'department_not_found'],
    [`/v1/reports/departments.csv?${range}&department_id=${unknown}`, 'department_not_found'],
    [`/v1/reports/channels?${range}&department_id=none&department_id=${unknown}`, 'department_not_found'],
    [`/v1/reports/agents?${range}&agent_id=${unknown}`, 'agent_not_found'],
    [`/v1/reports/agents.csv?${range}&agent_id=${member.agent.id},${unknown}`, 'agent_not_found'],
  ] as const) {
    for (const [who, token] of [
      ['admin', admin.token],
      ['member', member.token],
    ] as const) {
      const res = await ctx.request({ method: 'GET', url, token });
      t.equal(res.statusCode, 404, `${who}: ${url}`);
      t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
      t.equal(res.json().code, code);
      t.match(res.json().errors, [{ message: new RegExp(unknown) }], 'names the unknown id');
    }
  }
  const known = await ctx.request({
    method: 'GET',
    url: `/v1/reports/agents/leaderboard?${range}&department_id=${desk}`,
    token: member.token,
  });
  t.equal(known.statusCode, 200, 'a known department still answers');
});

t.test('departments and agents deleted before their names were kept still report, as deleted', async (t) => {
  const ctx = await buildTestApp(t);
  const billing = await makeDepartment(ctx.db, 'Old billing');
  const support = await makeDepartment(ctx.db, 'Support desk');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const old = await agentWithToken(ctx, { name: 'Olga', departments: [[billing, 'supervisor']] });
  const send = (method: 'GET' | 'DELETE' | 'POST', url: string, payload?: object, token = admin.token) =>
    ctx.request({ method, url, token, ...(payload && { payload }) });
  const created = await send('POST', '/v1/tickets', {
    subject: 'Invoice',
    contact: { email: 'old@example.com' },
    message: { body: 'Where is my invoice?' },
    department_id: billing,
  });
  t.equal(created.statusCode, 201);
  t.equal(
    (await send('POST', `/v1/tickets/${created.json().id}/transfer`, { department_id: support }, old.token))
      .statusCode,
    200,
  );
  // The deletions happen as they did before migration 0012: no name is kept.
  await sql`alter table departments disable trigger keep_name_of_departments`.execute(ctx.db);
  await sql`alter table agents disable trigger keep_name_of_agents`.execute(ctx.db);
  t.equal((await send('DELETE', `/v1/agents/${old.agent.id}`)).statusCode, 204);
  t.equal(
    (await send('DELETE', `/v1/departments/${billing}?move_to_department_id=${support}`)).statusCode,
    204,
  );
  // Then the upgrade runs 0012 (its down() first, to run its up() again here).
  await deletedNames.down(ctx.db);
  await deletedNames.up(ctx.db);

  const filtered = await send('GET', `/v1/reports/departments?preset=today&department_id=${billing}`);
  t.equal(filtered.statusCode, 200, 'the id of a department deleted before the upgrade is still a filter');
  t.match(filtered.json().data, [
    { department_id: billing, department_name: 'Deleted department', department_deleted: true },
  ]);
  const agents = await send('GET', `/v1/reports/agents?preset=today&agent_id=${old.agent.id}`);
  t.equal(agents.statusCode, 200, 'and so is the id of an agent deleted before it');
  t.match(agents.json().data, [{ agent_id: old.agent.id, agent_name: 'Deleted agent', agent_deleted: true }]);
});
