import { randomBytes } from 'node:crypto';
import net from 'node:net';
import t from 'tap';
import { agentWithToken, buildTestApp } from './helpers/app.ts';
import { makeTicket } from './helpers/tickets.ts';
import { within } from './helpers/within.ts';

// HEAD of a GET: the status and headers the GET would answer, no body, answered at once for
// streamed answers (nothing read, computed or held), documented in the spec (ctx.request checks
// every answer against it), with the GET's 4xx for a bad request.

t.setTimeout(300_000);

const PROMPTLY_MS = 5_000;

const range = 'preset=last_7_days';

t.test('HEAD of streamed answers', async (t) => {
  const ctx = await buildTestApp(t, { STREAM_MAX_SUBSCRIBERS: '1' });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = ctx.app.server.address() as { port: number };
  const base = `http://127.0.0.1:${port}`;
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  for (let i = 0; i < 3; i++) await makeTicket(ctx.db);
  const head = (url: string, headers: Record<string, string> = {}) =>
    within(PROMPTLY_MS, `HEAD ${url}`, ctx.request({ method: 'HEAD', url, token, headers }));
  const get = (url: string, headers: Record<string, string> = {}) =>
    ctx.request({ method: 'GET', url, token, headers });

  await t.test('an export answers its headers without reading a row or taking a slot', async (t) => {
    // Every read slot taken, as by other exports' batches: a HEAD that read a batch would wait.
    const reads = ctx.app.exportReads;
    const held = await Promise.all(Array.from({ length: reads.max }, () => reads.take()));
    try {
      for (const url of ['/v1/exports/tickets', '/v1/exports/contacts?format=csv']) {
        const res = await head(url);
        t.equal(res.statusCode, 200, url);
        t.equal(res.body, '', 'no body');
        t.notOk(res.headers['content-length'], 'no length: the GET streams one it does not know');
        t.match(res.headers['content-disposition'], /^attachment; filename="deskroute-(tickets|contacts)-/);
        t.ok(res.headers['export-next-cursor'], 'the cursor a GET would send now');
        t.same(reads.usage, { taken: reads.max, waiting: 0 }, 'no batch read, none waiting');
      }
    } finally {
      for (const release of held) release();
    }
    const heads = await head('/v1/exports/tickets?format=csv');
    const gets = await get('/v1/exports/tickets?format=csv');
    t.equal(gets.statusCode, 200);
    t.equal(heads.headers['content-type'], gets.headers['content-type'], 'the GET type');
    const file = (h: unknown) => String(h).replace(/-\d{4}-\d\d-\d\dT[\d-]+Z/, '-<horizon>');
    t.equal(file(heads.headers['content-disposition']), file(gets.headers['content-disposition']));
    t.equal(gets.body.trimEnd().split('\r\n').length, 4, 'the GET has the header row and 3 tickets');
    t.same(reads.usage, { taken: 0, waiting: 0 }, 'every slot back');
  });

  await t.test('a report CSV answers its headers, with no Content-Length: 0', async (t) => {
    for (const [url, headers] of [
      [`/v1/reports/departments.csv?${range}`, {}],
      [`/v1/reports/agents?${range}`, { accept: 'text/csv' }],
    ] as const) {
      const res = await head(url, headers);
      t.equal(res.statusCode, 200, url);
      t.match(res.headers['content-type'], /^text\/csv/);
      t.match(res.headers['content-disposition'], /^attachment; filename="deskroute-.*\.csv"$/);
      t.notOk(res.headers['content-length'], 'the GET streams: no length, not a length of 0');
      t.equal(res.body, '');
    }
    // A JSON answer is computed: its HEAD says the length the GET's body has.
    const json = await head(`/v1/reports/channels?${range}`);
    const body = await get(`/v1/reports/channels?${range}`);
    t.equal(json.statusCode, 200);
    t.equal(json.body, '');
    t.equal(Number(json.headers['content-length']), Buffer.byteLength(body.body));
  });

  await t.test('the event stream answers its headers at once and holds no place', async (t) => {
    const res = await head('/v1/events/stream');
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^text\/event-stream/);
    t.equal(res.headers['cache-control'], 'no-cache, no-transform');
    t.notOk(res.headers['content-length']);
    t.equal(res.body, '');
    // A client keeps its connection for the next request (curl, a proxy's health check): each
    // answer must end there, and the connection left open must hold no stream.
    const socket = net.connect(port, '127.0.0.1');
    t.teardown(() => socket.destroy());
    let received = '';
    const answers = () => received.match(/^HTTP\/1\.1 200 /gm)?.length ?? 0;
    const more = (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (answers() < n) return;
          socket.off('data', check);
          resolve();
        };
        socket.on('data', check);
      });
    socket.on('data', (chunk) => {
      received += chunk;
    });
    for (let i = 1; i <= 3; i++) {
      const answered = more(i);
      socket.write(
        `HEAD /v1/events/stream HTTP/1.1\r\nHost: deskroute\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      );
      await within(PROMPTLY_MS, `HEAD ${i} of the event stream on one kept-alive connection`, answered);
    }
    t.equal(answers(), 3, 'each HEAD answered on the one connection');
    t.notMatch(received, /heartbeat|\ndata:/, 'no message, no heartbeat');
    // One place (STREAM_MAX_SUBSCRIBERS=1), and the HEADs' connection still open: it is free.
    const stream = new AbortController();
    t.teardown(() => stream.abort());
    const live = await within(
      PROMPTLY_MS,
      'GET of the event stream',
      fetch(`${base}/v1/events/stream`, {
        headers: { authorization: `Bearer ${token}` },
        signal: stream.signal,
      }),
    );
    t.equal(live.status, 200, 'the only place is free');
    // Taken now: HEAD answers what the GET would, 503 stream_busy, and no body.
    const busy = await head('/v1/events/stream');
    t.equal(busy.statusCode, 503);
    t.ok(Number(busy.headers['retry-after']) > 0);
    t.equal(busy.body, '');
    t.equal((await get('/v1/events/stream')).statusCode, 503, 'as the GET');
    stream.abort();
  });

  await t.test('a download answers its headers and length, not its bytes', async (t) => {
    const ticket = await makeTicket(ctx.db);
    const bytes = randomBytes(50_000);
    const boundary = 'deskroute-head';
    const uploaded = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/attachments`,
      token,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      payload: Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="data.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
        ),
        bytes,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]),
    });
    t.equal(uploaded.statusCode, 201, uploaded.body);
    const url = `/v1/attachments/${uploaded.json().data[0].id}`;
    const res = await head(url);
    const full = await get(url);
    t.equal(res.statusCode, 200);
    t.equal(res.body, '');
    t.equal(res.headers['content-length'], String(bytes.length), 'the length of the GET body');
    for (const name of ['content-type', 'content-disposition', 'etag', 'content-security-policy']) {
      t.equal(res.headers[name], full.headers[name], name);
    }
    t.equal(full.rawPayload.length, bytes.length);
  });

  await t.test('a bad request gets the GET status, without a body', async (t) => {
    for (const url of [
      '/v1/exports/tickets?format=xml',
      '/v1/exports/contacts?cursor=not-a-cursor',
      // U+0000 passes the schemas; only the database refuses it (400 invalid_text) on the GET.
      '/v1/exports/tickets?q=a%00b',
      '/v1/exports/tickets?format=csv&tag=%00',
      '/v1/exports/contacts?q=%00',
      `/v1/reports/departments.csv?${range}&columns=no_such_column`,
      '/v1/reports/departments.csv?from=yesterday&to=today',
      `/v1/reports/agents?${range}&department_id=00000000-0000-4000-8000-000000000000`,
      '/v1/events/stream?types=no.such.event',
      '/v1/attachments/not-a-uuid',
      '/v1/attachments/00000000-0000-4000-8000-000000000000',
    ]) {
      const res = await head(url);
      const got = await get(url);
      t.ok(got.statusCode >= 400 && got.statusCode < 500, `${url}: GET ${got.statusCode}`);
      t.equal(res.statusCode, got.statusCode, `${url}: HEAD as GET`);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
      t.equal(res.body, '', 'no body');
    }
    const anonymous = await within(
      PROMPTLY_MS,
      'anonymous HEAD',
      ctx.request({ method: 'HEAD', url: '/v1/exports/tickets' }),
    );
    t.equal(anonymous.statusCode, 401, 'credentials are checked');
    t.equal(anonymous.body, '');
  });
});
