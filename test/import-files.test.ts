import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { filenameOf, uploadFiles } from '../scripts/convert/upload-files.ts';
import { convertZendesk } from '../scripts/convert/zendesk.ts';
import type { ImportFileToUpload } from '../scripts/convert/zendesk-map.ts';
import { contentDisposition } from '../src/domains/attachments/routes.ts';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { agentWithToken, buildTestApp, type TestContext } from './helpers/app.ts';

// Files for imported messages (docs/import.md "Attachments"): uploaded first with
// PUT /v1/imports/files/{external_id}, named by message records, linked as the messages'
// attachments at the messages' own time. Through HTTP on a real database and blob folder.

const log = pino({ level: 'silent' });
const ctx = await buildTestApp(t, { ATTACHMENT_MAX_BYTES: '4096' });
const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
const { token: agent } = await agentWithToken(ctx, { role: 'agent' });

// A real 1x1 PNG (file-type reads its chunks).
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);
const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');
const LOG = Buffer.from('crash at 0x0042\nstack: main -> run\n');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const put = (
  externalId: string,
  body: Buffer | string,
  query: string,
  options: { token?: string; type?: string } = {},
) =>
  ctx.request({
    method: 'PUT',
    url: `/v1/imports/files/${encodeURIComponent(externalId)}?${query}`,
    token: options.token ?? admin,
    headers: { 'content-type': options.type ?? 'application/octet-stream' },
    payload: body,
  });

async function blobCount(c: TestContext) {
  let n = 0;
  for (const entry of await readdir(c.blobDir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) n++;
  return n;
}

const fileRows = async () =>
  Number(
    (
      await ctx.db
        .selectFrom('import_files')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

t.test('an upload is kept once, its type read from its bytes, its name cleaned', async (t) => {
  const first = await put('900', PNG, 'source=zendesk&filename=..%2F..%2Fetc%2Fscreen%20shot.png');
  t.equal(first.statusCode, 201, first.body);
  const file = first.json();
  t.same(
    { ...file, created_at: undefined },
    {
      source: 'zendesk',
      external_id: '900',
      filename: 'screen shot.png',
      content_type: 'image/png',
      size_bytes: PNG.length,
      sha256: sha256(PNG),
      created_at: undefined,
    },
  );
  t.equal(first.headers.location, '/v1/imports/files/900?source=zendesk');
  const blobs = await blobCount(ctx);

  const again = await put('900', PNG, 'source=zendesk&filename=other-name.png');
  t.equal(again.statusCode, 200, 'the same bytes again: nothing changes');
  t.same(again.json(), file, 'the file as it was, first name and time');
  t.equal(await blobCount(ctx), blobs, 'no second copy kept');

  const other = await put('900', PDF, 'source=zendesk&filename=screen.png');
  t.equal(other.statusCode, 409);
  t.equal(other.json().code, 'import_file_exists');
  t.equal(await blobCount(ctx), blobs, 'the refused bytes are not kept');
  const got = await ctx.request({ method: 'GET', url: '/v1/imports/files/900?source=zendesk', token: admin });
  t.equal(got.statusCode, 200);
  t.same(got.json(), file, 'unchanged');

  // Another source has its own ids.
  t.equal((await put('900', PDF, 'source=freshdesk&filename=a.pdf')).statusCode, 201);
  const missing = await ctx.request({
    method: 'GET',
    url: '/v1/imports/files/901?source=zendesk',
    token: admin,
  });
  t.equal(missing.statusCode, 404);
  t.equal(missing.json().code, 'import_file_not_found');
});

t.test('what the upload refuses leaves nothing behind', async (t) => {
  const rows = await fileRows();
  const blobs = await blobCount(ctx);
  const check = async (
    label: string,
    res: Awaited<ReturnType<typeof put>>,
    status: number,
    code?: string,
  ) => {
    t.equal(res.statusCode, status, `${label}: ${res.body.slice(0, 200)}`);
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`);
    if (code) t.equal(res.json().code, code, label);
  };
  await check('an agent', await put('a1', LOG, 'source=zendesk&filename=a.log', { token: agent }), 403);
  await check(
    'JSON',
    await put('a2', '{"a":1}', 'source=zendesk&filename=a.json', { type: 'application/json' }),
    415,
  );
  await check('text', await put('a3', 'hello', 'source=zendesk&filename=a.txt', { type: 'text/plain' }), 415);
  await check('no filename', await put('a4', LOG, 'source=zendesk'), 400);
  await check('an unknown parameter', await put('a5', LOG, 'source=zendesk&filename=a.log&x=1'), 400);
  await check('a bad source', await put('a6', LOG, 'source=Zen%20Desk&filename=a.log'), 400);
  await check('an id too long', await put('x'.repeat(201), LOG, 'source=zendesk&filename=a.log'), 400);
  await check(
    'too large',
    await put('a7', Buffer.alloc(5000, 1), 'source=zendesk&filename=big.bin'),
    413,
    'attachment_too_large',
  );
  t.equal(await fileRows(), rows, 'no row');
  t.equal(await blobCount(ctx), blobs, 'no blob');
  const unauthenticated = await ctx.app.inject({
    method: 'PUT',
    url: '/v1/imports/files/a8?source=zendesk&filename=a.log',
    headers: { 'content-type': 'application/octet-stream' },
    payload: LOG,
  });
  t.equal(unauthenticated.statusCode, 401);
  t.equal(
    (await ctx.request({ method: 'GET', url: '/v1/imports/files/900?source=zendesk', token: agent }))
      .statusCode,
    403,
  );
});

t.test('a client gone mid-upload leaves nothing; a declared oversize is refused unread', async (t) => {
  const logged: string[] = [];
  const c = await buildTestApp(
    t,
    { ATTACHMENT_MAX_BYTES: '100000' },
    {
      logger: {
        level: 'info',
        stream: new Writable({
          write(chunk, _encoding, done) {
            logged.push(String(chunk));
            done();
          },
        }),
      },
    },
  );
  const { token } = await agentWithToken(c, { role: 'admin' });
  await c.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = c.app.server.address() as AddressInfo;
  const head = (length: number) =>
    `PUT /v1/imports/files/cut?source=zendesk&filename=cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `Authorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`;

  // Half of the body, then the connection drops.
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(head(50_000));
  socket.write(Buffer.alloc(20_000, 7));
  await new Promise((resolve) => setTimeout(resolve, 200));
  socket.destroy();
  let left = -1;
  for (let i = 0; i < 50 && left !== 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = await blobCount(c);
  }
  t.equal(left, 0, 'the partial file is removed');
  t.notOk(
    logged.some((line) => /database unavailable/.test(line)),
    'a client gone is not taken for the database gone',
  );
  t.equal(
    Number(
      (
        await c.db
          .selectFrom('import_files')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    ),
    0,
    'no row',
  );

  // A body declared larger than allowed: 413 before any byte of it is sent.
  const big = connect(port, '127.0.0.1');
  await once(big, 'connect');
  big.write(head(10_000_000));
  const [answer] = (await once(big, 'data')) as [Buffer];
  big.destroy();
  t.match(answer.toString('latin1'), /^HTTP\/1\.1 413 /, '413 at once');
  t.match(answer.toString('latin1'), /application\/problem\+json/);
  t.match(
    answer.toString('latin1'),
    /\r\nconnection: close\r\n/i,
    'and the connection closed: the body is not read',
  );
  t.equal(await blobCount(c), 0, 'nothing stored');
});

t.test('message records attach the uploaded files at their own time', async (t) => {
  t.equal((await put('f-log', LOG, 'source=oldesk&filename=crash.log')).statusCode, 201);
  t.equal((await put('f-pdf', PDF, 'source=oldesk&filename=invoice.pdf')).statusCode, 201);
  t.equal((await put('f-png', PNG, 'source=oldesk&filename=photo.png')).statusCode, 201);
  const lines = [
    { type: 'agent', external_id: 'a1', email: 'ann@files.test', name: 'Ann' },
    { type: 'contact', external_id: 'c1', name: 'Jane', emails: ['jane@files.test'] },
    {
      type: 'ticket',
      external_id: 't1',
      created_at: '2025-03-01T09:00:00Z',
      subject: 'It crashed',
      contact: 'c1',
      message: { body: 'See the log.', attachments: ['f-log'] },
    },
    {
      type: 'message',
      external_id: 'm2',
      ticket: 't1',
      at: '2025-03-01T10:00:00Z',
      kind: 'reply',
      agent: 'a1',
      body: 'Your invoice and a photo.',
      attachments: ['f-pdf', 'f-png'],
    },
    // Not uploaded: the message goes in without it, and the import says so with its line.
    {
      type: 'message',
      external_id: 'm3',
      ticket: 't1',
      at: '2025-03-01T11:00:00Z',
      kind: 'customer',
      body: 'Here is the other file.',
      attachments: ['f-late'],
    },
    {
      type: 'message',
      external_id: 'm4',
      ticket: 't1',
      at: '2025-03-01T12:00:00Z',
      kind: 'note',
      body: 'Done.',
    },
  ];
  const runImport = async (records: object[]) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/imports?source=oldesk',
      token: admin,
      headers: { 'content-type': 'application/x-ndjson' },
      payload: `${records.map((r) => JSON.stringify(r)).join('\n')}\n`,
    });
    t.equal(res.statusCode, 202, res.body);
    await processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log });
    return (await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token: admin })).json();
  };
  const first = await runImport(lines);
  t.same(first.counts, { read: 6, created: 6, updated: 0, skipped: 0, failed: 0 });
  const errors = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${first.id}/errors`, token: admin })
  ).json().data;
  t.same(
    errors.map((e: { line: number; code: string; external_id: string }) => [e.line, e.code, e.external_id]),
    [[5, 'file_missing', 'm3']],
  );
  t.match(errors[0].message, /f-late/, 'names the missing file');

  const ticket = (
    await ctx.db
      .selectFrom('tickets')
      .select('id')
      .where('subject', '=', 'It crashed')
      .executeTakeFirstOrThrow()
  ).id;
  const messages = async () =>
    (await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket}/messages`, token: admin })).json()
      .data as {
      body: string;
      created_at: string;
      attachments: { id: string; filename: string; content_type: string; size_bytes: number }[];
    }[];
  const conversation = await messages();
  t.same(
    conversation.map((m) => [
      m.body,
      m.created_at,
      m.attachments.map((a) => [a.filename, a.content_type, a.size_bytes]),
    ]),
    [
      ['See the log.', '2025-03-01T09:00:00.000Z', [['crash.log', 'text/plain', LOG.length]]],
      [
        'Your invoice and a photo.',
        '2025-03-01T10:00:00.000Z',
        [
          ['invoice.pdf', 'application/pdf', PDF.length],
          ['photo.png', 'image/png', PNG.length],
        ],
      ],
      ['Here is the other file.', '2025-03-01T11:00:00.000Z', []],
      ['Done.', '2025-03-01T12:00:00.000Z', []],
    ],
    'every message in its place; the one whose file was not uploaded without it',
  );
  const attached = conversation[1]!.attachments[1]!;
  const download = await ctx.request({ method: 'GET', url: `/v1/attachments/${attached.id}`, token: admin });
  t.equal(download.statusCode, 200);
  t.same(download.rawPayload, PNG, 'the uploaded bytes');
  const stamped = await ctx.db
    .selectFrom('attachments')
    .select(['created_at', 'message_id'])
    .where('id', '=', attached.id)
    .executeTakeFirstOrThrow();
  t.equal(stamped.created_at.toISOString(), '2025-03-01T10:00:00.000Z', 'at the message’s time');

  const attachmentRows = async () =>
    Number(
      (
        await ctx.db
          .selectFrom('attachments')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('ticket_id', '=', ticket)
          .executeTakeFirstOrThrow()
      ).n,
    );
  t.equal(await attachmentRows(), 3);
  const again = await runImport(lines);
  t.same(
    again.counts,
    { read: 6, created: 0, updated: 0, skipped: 6, failed: 0 },
    'a re-run changes nothing',
  );
  t.equal(await attachmentRows(), 3, 'no attachment twice');
  t.same(
    (await ctx.request({ method: 'GET', url: `/v1/imports/${again.id}/errors`, token: admin })).json().data,
    [],
    'and notes nothing',
  );
});

t.test('a record naming the same file twice, or too many, is refused by its schema', async (t) => {
  const res = await ctx.request({
    method: 'POST',
    url: '/v1/imports?source=oldesk',
    token: admin,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: `${JSON.stringify({
      type: 'message',
      external_id: 'twice',
      ticket: 't1',
      at: '2025-03-02T10:00:00Z',
      kind: 'note',
      body: 'x',
      attachments: ['f-log', 'f-log'],
    })}\n`,
  });
  await processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log });
  const errors = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}/errors`, token: admin })
  ).json().data;
  t.same(
    errors.map((e: { code: string }) => e.code),
    ['invalid_record'],
  );
});

t.test(
  'a Zendesk export’s files: listed by the converter, fetched with the account’s credentials, uploaded, attached',
  async (t) => {
    const desk = await buildTestApp(t);
    const { token } = await agentWithToken(desk, { role: 'admin' });
    // Zendesk's side: the attachment URLs need the account's credentials; one answers with a
    // redirect to a signed storage URL elsewhere, which must not receive them.
    const bytes: Record<string, Buffer> = { aa1: PNG, aa2: PDF, aa3: Buffer.from('Return label #4471\n') };
    const seen: { path: string; authorization: string | undefined }[] = [];
    const storage = createServer((req, res) => {
      seen.push({ path: `storage${req.url}`, authorization: req.headers.authorization });
      res.end(bytes.aa2);
    });
    const zendesk = createServer((req, res) => {
      const token = /^\/attachments\/token\/(\w+)\//.exec(req.url ?? '')?.[1] ?? '';
      seen.push({ path: `zendesk/${token}`, authorization: req.headers.authorization });
      if (req.headers.authorization !== 'Basic c2VjcmV0') {
        res.statusCode = 401;
        res.end();
      } else if (token === 'aa2') {
        res.writeHead(302, { location: `${origin(storage)}/signed/refund.pdf?sig=1` }).end();
      } else res.end(bytes[token]);
    });
    await Promise.all([listen(storage), listen(zendesk)]);
    await desk.app.listen({ port: 0, host: '127.0.0.1' });
    t.teardown(() => {
      storage.close();
      zendesk.close();
    });

    const dir = new URL('./fixtures/zendesk/', import.meta.url).pathname;
    const files: ImportFileToUpload[] = [];
    const records: object[] = [];
    for await (const r of convertZendesk(dir, { files: (f) => files.push(f) })) records.push(r);
    t.same(
      files.map((f) => [f.external_id, f.filename]),
      [
        ['8801', 'crushed-box.png'],
        ['8802', 'refund.pdf'],
        ['8803', 'label.txt'],
      ],
    );
    // The fixture's URLs are Zendesk's; here they point at the stand-in.
    const local = files.map((f) => ({
      ...f,
      url: f.url.replace('https://acme.zendesk.com', origin(zendesk)),
    }));
    const upload = () =>
      uploadFiles(local, {
        deskroute: origin(desk.app.server),
        token,
        source: 'zendesk',
        authorization: { origin: origin(zendesk), header: 'Basic c2VjcmV0' },
        concurrency: 2,
      });
    t.same(await upload(), { uploaded: 3, present: 0, failed: [] });
    t.same(
      seen.filter((s) => s.path.startsWith('storage')).map((s) => s.authorization),
      [undefined],
      'the redirect to storage carried no credentials',
    );
    const fetched = seen.length;
    t.same(await upload(), { uploaded: 0, present: 3, failed: [] }, 'a second run skips what is there');
    t.equal(seen.length, fetched, 'and downloads nothing');
    const wrong = await uploadFiles(
      [
        {
          external_id: '9999',
          filename: 'x.txt',
          url: `${origin(zendesk)}/attachments/token/aa3/`,
          size: null,
        },
      ],
      { deskroute: origin(desk.app.server), token, source: 'zendesk' },
    );
    t.equal(wrong.failed.length, 1, 'without the credentials the download fails');
    t.match(wrong.failed[0]!.reason, /HTTP 401/);
    // A listed URL of another origin never gets the source's credentials.
    const elsewhere = await uploadFiles(
      [{ external_id: '9998', filename: 'y.pdf', url: `${origin(storage)}/direct/y.pdf`, size: null }],
      {
        deskroute: origin(desk.app.server),
        token,
        source: 'zendesk',
        authorization: { origin: origin(zendesk), header: 'Basic c2VjcmV0' },
      },
    );
    t.same(elsewhere, { uploaded: 1, present: 0, failed: [] });
    t.same(
      seen.filter((s) => s.path.startsWith('storage/direct')).map((s) => s.authorization),
      [undefined],
      'no credentials to another origin',
    );
    // A source that stops answering, before its headers or half-way through the bytes, fails
    // that file once nothing has moved for the stall timeout; the others go on.
    const hung = createServer((req, res) => {
      if (req.url === '/half') {
        res.writeHead(200, { 'content-length': '1000' });
        res.write(Buffer.alloc(500, 'x'));
      }
      // '/never': no answer at all
    });
    await listen(hung);
    t.teardown(() => {
      hung.closeAllConnections();
      hung.close();
    });
    const stalled = await uploadFiles(
      [
        { external_id: '9997', filename: 'never.txt', url: `${origin(hung)}/never`, size: null },
        { external_id: '9996', filename: 'half.txt', url: `${origin(hung)}/half`, size: null },
        { external_id: '9995', filename: 'z.pdf', url: `${origin(storage)}/direct/z.pdf`, size: null },
      ],
      { deskroute: origin(desk.app.server), token, source: 'zendesk', stallMs: 300, concurrency: 3 },
    );
    t.same(stalled.failed.map((f) => [f.external_id, f.reason]).sort(), [
      ['9996', 'nothing moved for 0.3 s'],
      ['9997', 'nothing moved for 0.3 s'],
    ]);
    t.equal(stalled.uploaded, 1, 'the file whose source answers is uploaded');
    const half = await desk.request({
      method: 'GET',
      url: '/v1/imports/files/9996?source=zendesk',
      token,
    });
    t.equal(half.statusCode, 404, 'nothing is kept of the file cut half-way');

    const res = await desk.request({
      method: 'POST',
      url: '/v1/imports?source=zendesk',
      token,
      headers: { 'content-type': 'application/x-ndjson' },
      payload: records.map((r) => JSON.stringify(r)).join('\n'),
    });
    t.equal(res.statusCode, 202);
    await processPendingImports({ db: desk.db, blobs: desk.app.blobs, log });
    const errors = (
      await desk.request({ method: 'GET', url: `/v1/imports/${res.json().id}/errors`, token })
    ).json();
    t.same(errors.data, [], 'no line refused');
    const ticket = (
      await desk.db
        .selectFrom('tickets')
        .select('id')
        .where('subject', '=', 'Parcel arrived damaged: refunded')
        .executeTakeFirstOrThrow()
    ).id;
    const conversation = (
      await desk.request({ method: 'GET', url: `/v1/tickets/${ticket}/messages`, token })
    ).json().data as {
      body: string;
      attachments: { id: string; filename: string; content_type: string }[];
    }[];
    const withFiles = conversation.filter((m) => m.attachments.length > 0);
    t.same(
      withFiles.map((m) => [m.body, m.attachments.map((a) => [a.filename, a.content_type])]),
      [
        ['The box was crushed.', [['crushed-box.png', 'image/png']]],
        [
          'Sorry! A refund is on its way.',
          [
            ['refund.pdf', 'application/pdf'],
            ['label.txt', 'text/plain'],
          ],
        ],
      ],
    );
    const pdf = await desk.request({
      method: 'GET',
      url: `/v1/attachments/${withFiles[1]!.attachments[0]!.id}`,
      token,
    });
    t.same(pdf.rawPayload, PDF, 'the bytes that came through the redirect');
  },
);

function listen(server: Server) {
  return new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
}

function origin(server: Server) {
  const address = server.address() as AddressInfo;
  return `http://127.0.0.1:${address.port}`;
}

t.test('the uploader reads back the names our downloads give, whatever they hold', async (t) => {
  for (const name of [
    'invoice.pdf',
    'tracking ü.csv',
    'quote".txt',
    "a; filename*=UTF-8''evil.exe",
    'x"; filename="evil.exe',
    '100% done (final).txt',
  ]) {
    t.equal(filenameOf(contentDisposition(name)), name, JSON.stringify(name));
  }
  t.equal(filenameOf('attachment; filename="plain.txt"'), 'plain.txt', 'a plain name alone');
  t.equal(filenameOf('attachment'), null);
  t.equal(filenameOf(null), null);
});
