import { readdir, readlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { sql } from 'kysely';
import pg from 'pg';
import t, { type Test } from 'tap';
import { ExportSlots } from '../src/domains/reports/csv.ts';
import {
  agentWithToken,
  buildTestApp,
  makeDepartment,
  mintApiToken,
  type TestContext,
} from './helpers/app.ts';
import { within } from './helpers/within.ts';

// Slow or stalled CSV readers must not starve the API (issue 12, section 2): exports never hold a
// database connection while they wait for their client, a client that takes no data is cut after
// EXPORT_STALL_TIMEOUT_MS, and at most EXPORT_MAX_CONCURRENT exports read the database at once.

// Every hour of two years for two departments with long names: about 7 MB of CSV, more than the
// socket buffers of both ends hold (here up to 4 MB for sending), so a client that reads nothing
// really blocks the server's writes.
const DEPARTMENTS = 2;
const departmentName = (i: number) => `Export ${i} `.padEnd(100, 'x');
const HOURS = (366 + 365) * 24;
const EXPORT = `/v1/reports/departments.csv?from=2024-01-01&to=2026-01-01&interval=hour&columns=created_tickets,answers`;
const SMALL_EXPORT = '/v1/reports/departments.csv?from=2025-01-01&to=2025-01-02&columns=answers';
// As many stalled exports as the pg pool has connections (10); more than PGlite's one.
const stalledCount = (ctx: TestContext) => (ctx.database.kind === 'pglite' ? 2 : 10);
// "Promptly": generous on a shared machine, but far below a hang (tap's timeout is 120 s).
const PROMPTLY_MS = 5_000;

// On PGlite each of these exports takes seconds (several MB through its one connection), and a
// shared machine makes that worse: more room than the suite's 120 s per file.
t.setTimeout(300_000);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check` holds, polling; false when it still does not after `ms`. */
async function until(ms: number, check: () => Promise<boolean> | boolean): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await sleep(50);
  }
}

interface StalledReader {
  socket: Socket;
  status: string;
  received: () => number;
  closed: Promise<void>;
}

/**
 * A raw TCP client that sends the export request, takes the first chunk of the answer (the status
 * line and headers), then stops reading for good: the socket is paused, so its receive buffer
 * fills and the server's writes block.
 */
function stalledReader(port: number, path: string, token: string): Promise<StalledReader> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let received = 0;
    let head = '';
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => {}); // the server's reset surfaces here; 'close' follows
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (head !== '') return;
      head = chunk.toString('latin1');
      socket.pause();
      const status = head.slice(0, head.indexOf('\r\n'));
      resolve({
        socket,
        status,
        received: () => received,
        closed,
      });
    });
    socket.once('close', () => {
      if (head === '') reject(new Error('the connection closed before any answer'));
    });
    socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n\r\n`);
  });
}

/** A stalled reader of an export that has started, retrying while exports are busy (503). */
async function startedExport(port: number, path: string, token: string): Promise<StalledReader> {
  for (;;) {
    const reader = await stalledReader(port, path, token);
    if (!reader.status.startsWith('HTTP/1.1 503')) return reader;
    reader.socket.destroy();
    await sleep(100);
  }
}

async function setUp(t: Test, env: Record<string, string>) {
  const ctx = await buildTestApp(t, env);
  for (let i = 0; i < DEPARTMENTS; i++) await makeDepartment(ctx.db, departmentName(i));
  const owner = await agentWithToken(ctx, { role: 'owner' });
  // A read-only token is all it takes to export.
  const reader = await mintApiToken(ctx, owner.token, ['read'], 'exports');
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as AddressInfo;
  return { ctx, owner, reader, port };
}

const connections = (ctx: TestContext) =>
  new Promise<number>((resolve, reject) =>
    ctx.app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );

/** This process's open files that are export spools (deleted temporary files), from /proc. */
async function openSpools(): Promise<string[]> {
  const links = await Promise.all(
    (await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')),
  );
  return links.filter((link) => link.includes('deskroute-export-'));
}

const onPglite = (ctx: TestContext) =>
  ctx.database.kind === 'pglite' ? 'pg_stat_activity needs a server (PGlite has no other backends)' : false;

/** Backends of the test database other than ours that are in a transaction or running a query. */
async function busyBackends(ctx: TestContext) {
  const { rows } = await sql<{ state: string; query: string }>`
    select state, query from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
      and state <> 'idle'`.execute(ctx.db);
  return rows;
}

/**
 * A stalled reader of `path` that has started, and its cut by the server after the stall
 * time-out (the clock pauses while the export waits for the database: that time is allowed too).
 */
async function stalledAndCut(
  t: Test,
  ctx: TestContext,
  port: number,
  path: string,
  token: string,
  stallMs: number,
) {
  const stalled = await within(60_000, `stalled export of ${path}`, startedExport(port, path, token));
  t.equal(stalled.status, 'HTTP/1.1 200 OK');
  const since = Date.now();
  t.ok(
    await until(60_000, async () => (await connections(ctx)) === 0),
    'the server dropped the stalled connection',
  );
  const cutAfter = Date.now() - since;
  t.ok(cutAfter >= stallMs - 50, 'not before the stall time-out');
  t.comment(
    `stalled export of ${path} cut ${cutAfter} ms after its first bytes (EXPORT_STALL_TIMEOUT_MS=${stallMs})`,
  );
  stalled.socket.resume();
  await within(PROMPTLY_MS, 'the client seeing the cut', stalled.closed);
  return stalled;
}

t.test('stalled CSV readers leave the API answering', async (t) => {
  // A long stall time-out: every stalled reader is still connected while the API is tried.
  // A long stall time-out: every stalled reader is still connected while the API is tried. One
  // export reads the database at a time, so a small export answering 200 shows none is reading.
  const { ctx, owner, reader, port } = await setUp(t, {
    EXPORT_STALL_TIMEOUT_MS: '600000',
    EXPORT_MAX_CONCURRENT: '1',
  });
  const readers: StalledReader[] = [];
  t.teardown(() => {
    for (const r of readers) r.socket.destroy();
  });
  const stalled = stalledCount(ctx);
  for (let i = 0; i < stalled; i++) {
    readers.push(await within(60_000, `stalled export ${i + 1}`, startedExport(port, EXPORT, reader)));
  }
  t.same(
    readers.map((r) => r.status),
    readers.map(() => 'HTTP/1.1 200 OK'),
    'every export started',
  );
  const small = await within(60_000, 'a small export', startedExport(port, SMALL_EXPORT, reader));
  t.equal(small.status, 'HTTP/1.1 200 OK', 'the stalled exports have all been read from the database');
  small.socket.destroy();
  await small.closed;
  t.ok(
    await until(PROMPTLY_MS, async () => (await connections(ctx)) === stalled),
    'all of them are still connected (and nothing else)',
  );

  const me = await within(
    PROMPTLY_MS,
    'GET /v1/me',
    ctx.request({ method: 'GET', url: '/v1/me', token: owner.token }),
  );
  t.equal(me.statusCode, 200, 'GET /v1/me answers');
  const created = await within(
    PROMPTLY_MS,
    'POST /v1/tickets',
    ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: owner.token,
      payload: {
        subject: 'Still there?',
        channel: 'email',
        contact: { email: 'jo@example.com' },
        message: { body: 'Hi' },
      },
    }),
  );
  t.equal(created.statusCode, 201, 'a ticket is created');
  const ready = await within(PROMPTLY_MS, 'GET /readyz', ctx.request({ method: 'GET', url: '/readyz' }));
  t.equal(ready.statusCode, 200, '/readyz answers ready');

  await t.test(
    'no export holds a database connection while its reader stalls',
    { skip: onPglite(ctx) },
    async (t) => t.same(await busyBackends(ctx), []),
  );
});

t.test(
  'a stalled reader is cut after the stall time-out; readers that read get the whole file',
  async (t) => {
    const stallMs = 1_000;
    const { ctx, reader, port } = await setUp(t, { EXPORT_STALL_TIMEOUT_MS: String(stallMs) });
    const stalled = await stalledAndCut(t, ctx, port, EXPORT, reader, stallMs);

    await t.test('no export query or transaction lingers', { skip: onPglite(ctx) }, async (t) =>
      t.same(await busyBackends(ctx), []),
    );

    // The same export, read by a client that reads: all of it.
    const res = await within(
      60_000,
      'a reading export',
      fetch(`http://127.0.0.1:${port}${EXPORT}`, { headers: { authorization: `Bearer ${reader}` } }),
    );
    t.equal(res.status, 200);
    const body = await res.text();
    t.ok(stalled.received() < Buffer.byteLength(body), 'the stalled reader got a truncated file');
    const lines = body.split('\n');
    t.equal(lines[0], 'Period start,Period end,Department ID,Department,Created tickets,Answers');
    t.equal(lines.length - 1, HOURS * DEPARTMENTS, 'a row for every hour of every department');
    t.match(
      lines[1],
      /^2024-01-01T00:00:00\+00:00,2024-01-01T01:00:00\+00:00,[0-9a-f-]{36},Export \d x+,0,0$/,
    );
    t.match(
      lines.at(-1),
      /^2025-12-31T23:00:00\+00:00,2026-01-01T00:00:00\+00:00,[0-9a-f-]{36},Export \d x+,0,0$/,
      'the last hour of the range, complete',
    );
    t.ok(
      await until(PROMPTLY_MS, async () => (await openSpools()).length === 0),
      'no temporary file is left open, cut or complete',
    );
  },
);

t.test(
  'exports over the budget answer 503 export_busy',
  {
    skip: process.env.TEST_DATABASE_URL
      ? false
      : 'needs two connections to hold exports in their query (PGlite has one)',
  },
  async (t) => {
    const { ctx, reader, port } = await setUp(t, { EXPORT_MAX_CONCURRENT: '2' });
    const url = `http://127.0.0.1:${port}/v1/reports/departments.csv?from=2025-01-01&to=2025-01-02&interval=hour&columns=answers`;
    const headers = { authorization: `Bearer ${reader}` };
    // Another session holds the table every report reads first: the exports wait in their query.
    const blocker = new pg.Client({ connectionString: ctx.database.url! });
    await blocker.connect();
    t.teardown(() => blocker.end());
    await blocker.query('begin');
    await blocker.query('lock table report_pending_events in access exclusive mode');
    const held = [fetch(url, { headers }), fetch(url, { headers })];
    const waiting = async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'`.execute(ctx.db);
      return rows[0]?.n === 2;
    };
    t.ok(await until(30_000, waiting), 'two exports wait in their query');

    const refused = await within(PROMPTLY_MS, 'a third export', fetch(url, { headers }));
    t.equal(refused.status, 503);
    t.match(refused.headers.get('content-type'), /^application\/problem\+json/);
    t.equal(refused.headers.get('retry-after'), '5');
    t.match(await refused.json(), { status: 503, code: 'export_busy' });
    const me = await within(
      PROMPTLY_MS,
      'GET /v1/me',
      ctx.request({ method: 'GET', url: '/v1/me', token: reader }),
    );
    t.equal(me.statusCode, 200, 'the rest of the API is not refused');
    // HEAD computes nothing and takes no slot, and says what the GET would: refused for now.
    const headOf = () =>
      within(
        PROMPTLY_MS,
        'HEAD of the report CSV',
        ctx.request({ method: 'HEAD', url: new URL(url).pathname + new URL(url).search, token: reader }),
      );
    const busy = await headOf();
    t.equal(busy.statusCode, 503, 'as the GET');
    t.equal(busy.headers['retry-after'], '5');
    t.equal(busy.body, '', 'no body');

    await blocker.query('rollback');
    for (const res of await Promise.all(held)) {
      t.equal(res.status, 200, 'the held exports finish');
      t.equal(
        (await res.text()).split('\n').length,
        1 + 24 * DEPARTMENTS,
        'header and 24 hours of each department',
      );
    }
    const again = await within(60_000, 'an export after the others', fetch(url, { headers }));
    t.equal(again.status, 200, 'their slots came back');
    await again.text();
    const head = await headOf();
    t.equal(head.statusCode, 200);
    t.match(head.headers['content-type'], /^text\/csv/);
    t.match(head.headers['content-disposition'], /^attachment; filename="deskroute-.*\.csv"$/);
    t.equal(head.body, '', 'no body');
  },
);

t.test('slots are given in order of asking; a waiter that leaves holds no place', async (t) => {
  const slots = new ExportSlots(1);
  const first = await slots.take();
  const order: string[] = [];
  const granted = (name: string) => (done: () => void) => {
    order.push(name);
    return done;
  };
  const left = new AbortController();
  const waits = [
    slots.take().then(granted('batch 1')),
    slots.take(left.signal).then(granted('gone'), () => null),
    slots.take().then(granted('report')),
    slots.take().then(granted('batch 2')),
  ];
  t.same(slots.usage, { taken: 1, waiting: 4 });
  left.abort(new Error('the client went away'));
  await sleep(0);
  t.same(slots.usage, { taken: 1, waiting: 3 }, 'the waiter that left is out of the queue');
  first();
  for (const [i, waiter] of [0, 2, 3].entries()) {
    await sleep(0);
    t.equal(order.length, i + 1, 'one waiter granted at a time');
    t.same(slots.usage, { taken: 1, waiting: 2 - i }, 'never more than the budget');
    (await waits[waiter]!)!();
  }
  t.same(order, ['batch 1', 'report', 'batch 2']);
  t.same(slots.usage, { taken: 0, waiting: 0 }, 'every slot back');
  await t.rejects(slots.take(AbortSignal.abort()), 'an aborted signal takes nothing');
  t.same(slots.usage, { taken: 0, waiting: 0 });
});

t.test(
  'data exports waiting for the database never get a report CSV refused',
  {
    skip: process.env.TEST_DATABASE_URL
      ? false
      : 'needs a second connection to hold the exports in their reads (PGlite has one)',
  },
  async (t) => {
    // A report CSV found both read slots held by data exports' batches, and every slot freed
    // went to the next waiting batch: with three exports streaming, report CSVs answered 503.
    const { ctx, reader, port } = await setUp(t, { EXPORT_MAX_CONCURRENT: '2' });
    const headers = { authorization: `Bearer ${reader}` };
    const blocker = new pg.Client({ connectionString: ctx.database.url! });
    await blocker.connect();
    t.teardown(() => blocker.end());
    await blocker.query('begin');
    await blocker.query('lock table tickets in access exclusive mode');
    const reads = ctx.app.exportReads;
    const startExport = () => {
      const gone = new AbortController();
      const res = fetch(`http://127.0.0.1:${port}/v1/exports/tickets?format=csv`, {
        headers,
        signal: gone.signal,
      }).catch(() => null);
      return { gone, res };
    };
    // Two take the slots and wait for the lock, then the third waits for a slot (in that order,
    // so that the one whose client leaves below is the one queued).
    const exports = [startExport(), startExport()];
    t.ok(await until(30_000, () => reads.usage.taken === 2), 'two exports read (waiting for the lock)');
    exports.push(startExport());
    t.ok(await until(30_000, () => reads.usage.waiting === 1), 'the third waits for a slot');

    const report = fetch(`http://127.0.0.1:${port}${SMALL_EXPORT}`, { headers });
    const leaving = new AbortController();
    const leaver = fetch(`http://127.0.0.1:${port}${SMALL_EXPORT}`, {
      headers,
      signal: leaving.signal,
    }).catch(() => null);
    t.ok(await until(30_000, () => reads.usage.waiting === 3), 'the report CSVs wait, not refused');
    leaving.abort();
    exports[2]!.gone.abort();
    await leaver;
    t.ok(
      await until(PROMPTLY_MS, () => reads.usage.waiting === 1),
      'a report and an export whose clients left are out of the queue',
    );

    await blocker.query('rollback');
    const answer = await within(60_000, 'the report CSV', report);
    t.equal(answer.status, 200, 'the report CSV is answered');
    t.equal(
      (await answer.text()).trimEnd().split('\n').length,
      1 + DEPARTMENTS,
      'header and each department',
    );
    for (const { res } of exports.slice(0, 2)) {
      const done = await within(60_000, 'a held export', res);
      t.equal(done?.status, 200, 'the held exports finish');
      await done?.text();
    }
    t.ok(await until(PROMPTLY_MS, () => reads.usage.taken === 0), 'every read slot is back');
  },
);

t.test(
  'exports in flight are capped: a slow reader holds its temporary file, not an unbounded pile',
  async (t) => {
    const { ctx, reader, port } = await setUp(t, { EXPORT_MAX_OPEN: '1' });
    // Its query done, this export only waits for a client that reads nothing (or a byte now and then).
    const slow = await startedExport(port, EXPORT, reader);
    t.match(slow.status, /^HTTP\/1\.1 200/);
    t.ok(
      await until(60_000, async () => (await openSpools()).length === 1),
      'the slow export holds one temporary file',
    );
    const refused = await ctx.request({ method: 'GET', url: SMALL_EXPORT, token: reader });
    t.equal(refused.statusCode, 503, 'one more export is refused while it is in flight');
    t.equal(refused.json().code, 'export_busy');
    t.equal(refused.headers['retry-after'], '5');
    t.equal((await openSpools()).length, 1, 'and made no temporary file');

    slow.socket.destroy();
    await slow.closed;
    t.ok(
      await until(PROMPTLY_MS * 4, async () => {
        const res = await ctx.request({ method: 'GET', url: SMALL_EXPORT, token: reader });
        return res.statusCode === 200;
      }),
      'once its client is gone, exports are taken again',
    );
    t.ok(
      await until(PROMPTLY_MS, async () => (await openSpools()).length === 0),
      'no temporary file is left',
    );
  },
);

// Ticket and contact exports (/v1/exports/*) read a batch at a time and hold no connection
// between batches; they are capped in flight and cut when stalled like the report CSVs.
const CONTACTS = 8_000;
const CONTACT_EXPORT = '/v1/exports/contacts';

/** Contacts with long names: about 9 MB of NDJSON, more than both ends' socket buffers hold. */
async function manyContacts(ctx: TestContext) {
  await sql`insert into contacts (name)
    select 'Contact ' || g || ' ' || repeat('y', 1000) from generate_series(1, ${CONTACTS}) g`.execute(
    ctx.db,
  );
}

t.test('data exports in flight are capped: one more answers 503 export_busy', async (t) => {
  const { ctx, reader, port } = await setUp(t, {
    EXPORT_MAX_OPEN: '1',
    EXPORT_STALL_TIMEOUT_MS: '600000',
  });
  await manyContacts(ctx);
  const slow = await within(60_000, 'stalled contact export', startedExport(port, CONTACT_EXPORT, reader));
  t.teardown(() => slow.socket.destroy());
  t.match(slow.status, /^HTTP\/1\.1 200/);
  for (const url of ['/v1/exports/tickets', '/v1/exports/contacts?format=csv']) {
    const refused = await ctx.request({ method: 'GET', url, token: reader });
    t.equal(refused.statusCode, 503, `${url}: refused while the other is in flight`);
    t.match(refused.headers['content-type'], /^application\/problem\+json/);
    t.equal(refused.headers['retry-after'], '5');
    t.equal(refused.json().code, 'export_busy');
  }
  // A report CSV counts apart.
  const report = await ctx.request({ method: 'GET', url: SMALL_EXPORT, token: reader });
  t.equal(report.statusCode, 200, 'report CSVs have their own budget');
  const me = await ctx.request({ method: 'GET', url: '/v1/me', token: reader });
  t.equal(me.statusCode, 200, 'the rest of the API answers');
  // It reads ahead until the socket buffers are full, then waits for its client holding nothing.
  await t.test('the stalled export holds no database connection', { skip: onPglite(ctx) }, async (t) =>
    t.ok(await until(PROMPTLY_MS * 4, async () => (await busyBackends(ctx)).length === 0)),
  );

  slow.socket.destroy();
  await slow.closed;
  t.ok(
    await until(PROMPTLY_MS * 4, async () => {
      const res = await ctx.request({ method: 'GET', url: '/v1/exports/tickets', token: reader });
      return res.statusCode === 200;
    }),
    'once its client is gone, exports are taken again',
  );

  // HEAD: the headers, no body read, and the slot back at once (one slot: the GETs after it pass).
  for (let i = 0; i < 3; i++) {
    const head = await ctx.request({ method: 'HEAD', url: CONTACT_EXPORT, token: reader });
    t.equal(head.statusCode, 200);
    t.ok(head.headers['export-next-cursor'], 'the cursor is in the headers');
    t.equal(head.body, '', 'no body');
  }
  const after = await ctx.request({ method: 'GET', url: CONTACT_EXPORT, token: reader });
  t.equal(after.statusCode, 200, 'HEADs left no slot taken');
  t.equal(after.body.trimEnd().split('\n').length, CONTACTS);
});

t.test(
  'a stalled data export is cut after the stall time-out; a reader that reads gets it all',
  async (t) => {
    const stallMs = 1_000;
    const { ctx, reader, port } = await setUp(t, { EXPORT_STALL_TIMEOUT_MS: String(stallMs) });
    await manyContacts(ctx);
    const stalled = await stalledAndCut(t, ctx, port, CONTACT_EXPORT, reader, stallMs);

    const res = await within(
      60_000,
      'a reading export',
      fetch(`http://127.0.0.1:${port}${CONTACT_EXPORT}`, { headers: { authorization: `Bearer ${reader}` } }),
    );
    t.equal(res.status, 200);
    const body = await res.text();
    t.ok(stalled.received() < Buffer.byteLength(body), 'the stalled reader got a truncated file');
    const names = body
      .trimEnd()
      .split('\n')
      .map((line) => (JSON.parse(line) as { name: string }).name);
    t.equal(names.length, CONTACTS, 'every contact, once');
    t.equal(new Set(names).size, CONTACTS);
  },
);
