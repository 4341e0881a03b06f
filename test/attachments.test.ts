import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir, readlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import { pino } from 'pino';
import t from 'tap';
import { sweepStagedAttachments } from '../src/domains/attachments/service.ts';
import { cleanFilename, storeAttachment } from '../src/domains/attachments/store.ts';
import { startScheduler } from '../src/scheduler.ts';
import { BlobTooLarge } from '../src/storage/blobs.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { GHOST, makeTicket } from './helpers/tickets.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// Attachments through HTTP on a real database and a real blob folder: uploads streamed to disk,
// types sniffed from the bytes, downloads that never render, limits that store nothing, who may
// do what, replies that send staged files, the contact form's files and housekeeping.

interface FilePart {
  field?: string;
  filename: string;
  content: Buffer | string;
  /** What the client claims; never believed. */
  type?: string;
}

/** A multipart/form-data body, written by hand so every byte of it is the test's choice. */
function multipart(parts: (FilePart | { field: string; value: string })[]) {
  const boundary = `----deskroute${randomBytes(8).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n`));
    if ('value' in part) {
      chunks.push(
        Buffer.from(`Content-Disposition: form-data; name="${part.field}"\r\n\r\n${part.value}\r\n`),
      );
      continue;
    }
    chunks.push(
      Buffer.from(
        `Content-Disposition: form-data; name="${part.field ?? 'file'}"; filename="${part.filename}"\r\n` +
          `Content-Type: ${part.type ?? 'application/octet-stream'}\r\n\r\n`,
      ),
      Buffer.isBuffer(part.content) ? part.content : Buffer.from(part.content),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    payload: Buffer.concat(chunks),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function blobFiles(ctx: TestContext): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(ctx.blobDir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) found.push(path.join(entry.parentPath, entry.name));
  }
  return found;
}

async function attachmentCount(ctx: TestContext) {
  const row = await ctx.db
    .selectFrom('attachments')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

// A real 1x1 PNG: file-type reads its chunks, so a signature followed by noise is not one.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);
const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');
const HTML = Buffer.from('<!doctype html><html><body><script>alert(document.cookie)</script>é</body></html>');

t.test('attachments', async (t) => {
  const ctx = await buildTestApp(t, { ATTACHMENT_MAX_BYTES: '100000', ATTACHMENT_MAX_FILES: '3' });
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const { agent: solver, token: solverToken } = await agentWithToken(ctx, {
    departments: [[sales, 'solver']],
  });
  const { token: colleague } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const { token: supervisor } = await agentWithToken(ctx, { departments: [[sales, 'supervisor']] });
  const { token: reader } = await agentWithToken(ctx, { departments: [[sales, 'reader']] });
  const { token: outsider } = await agentWithToken(ctx, { departments: [[support, 'manager']] });
  const ticket = await makeTicket(ctx.db, { department_id: sales });
  const other = await makeTicket(ctx.db, { department_id: sales });

  const upload = (ticketId: string, token: string, parts: Parameters<typeof multipart>[0]) =>
    ctx.request({ method: 'POST', url: `/v1/tickets/${ticketId}/attachments`, token, ...multipart(parts) });
  const download = (id: string, token: string) =>
    ctx.request({ method: 'GET', url: `/v1/attachments/${id}`, token });

  await t.test('upload then download gives the same bytes, typed by what they are', async (t) => {
    const binary = randomBytes(70_000);
    const res = await upload(ticket.id, solverToken, [
      { filename: 'blob.bin', content: binary, type: 'image/jpeg' },
      { filename: 'logo.png', content: PNG, type: 'text/html' },
      { filename: 'Résumé 日本 (1).pdf', content: PDF, type: 'text/plain' },
    ]);
    t.equal(res.statusCode, 201, res.body);
    const [bin, png, pdf] = res.json().data;
    t.match(bin, {
      ticket_id: ticket.id,
      message_id: null,
      filename: 'blob.bin',
      content_type: 'application/octet-stream',
      size_bytes: binary.length,
      sha256: sha256(binary),
      uploaded_by_agent_id: solver.id,
      download_url: `/v1/attachments/${bin.id}`,
    });
    t.equal(png.content_type, 'image/png', 'the declared text/html is not believed');
    t.equal(pdf.content_type, 'application/pdf');
    t.equal(pdf.filename, 'Résumé 日本 (1).pdf');

    for (const [item, bytes] of [
      [bin, binary],
      [png, PNG],
      [pdf, PDF],
    ] as const) {
      const got = await download(item.id, solverToken);
      t.equal(got.statusCode, 200);
      t.ok(got.rawPayload.equals(bytes), `${item.filename} comes back byte for byte`);
      t.equal(got.headers['content-type'], item.content_type);
      t.equal(got.headers['x-content-type-options'], 'nosniff');
      t.match(got.headers['content-security-policy'], /^sandbox/);
      t.equal(got.headers.etag, `"${sha256(bytes)}"`);
      t.match(got.headers['content-disposition'], /^attachment; filename="/);
    }
    const named = await download(pdf.id, solverToken);
    t.equal(
      named.headers['content-disposition'],
      `attachment; filename="R_sum_ __ (1).pdf"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC%20%281%29.pdf`,
      'an ASCII fallback and the exact UTF-8 name (RFC 5987)',
    );

    const html = await upload(ticket.id, solverToken, [
      { filename: 'page.html', content: HTML, type: 'text/html' },
    ]);
    t.equal(html.statusCode, 201);
    const page = html.json().data[0];
    t.equal(page.content_type, 'text/plain', 'HTML is text, never text/html');
    const served = await download(page.id, solverToken);
    t.ok(served.rawPayload.equals(HTML));
    t.equal(served.headers['content-type'], 'text/plain; charset=utf-8');
    t.match(served.headers['content-disposition'], /^attachment;/, 'a download, not a page');
    t.equal(served.headers['x-content-type-options'], 'nosniff');

    const list = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}/attachments`,
      token: reader,
    });
    t.equal(list.statusCode, 200);
    t.same(
      list.json().data.map((a: { id: string }) => a.id),
      [bin.id, png.id, pdf.id, page.id],
      'a reader lists them, oldest first',
    );
    t.equal((await blobFiles(ctx)).length, 4, 'one blob per file');
  });

  await t.test('names are cleaned', async (t) => {
    t.equal(cleanFilename('../../etc/passwd'), 'passwd');
    t.equal(cleanFilename('C:\\Users\\me\\report.docx'), 'report.docx');
    t.equal(cleanFilename('a\u0000b\u202Ecod.exe\r\n'), 'abcod.exe', 'control and bidi characters go');
    t.equal(cleanFilename('...'), 'attachment');
    t.equal(cleanFilename(''), 'attachment');
    const long = `${'x'.repeat(500)}.pdf`;
    t.equal(cleanFilename(long), `${'x'.repeat(196)}.pdf`, 'at most 200 characters, the extension kept');
    const res = await upload(ticket.id, solverToken, [
      { filename: '../../../secret\u0007.txt', content: 'hi' },
    ]);
    t.equal(res.statusCode, 201);
    t.equal(res.json().data[0].filename, 'secret.txt');
    t.equal(res.json().data[0].content_type, 'text/plain');
  });

  await t.test('past the limits: 413 and nothing stored', async (t) => {
    const rows = await attachmentCount(ctx);
    const blobs = (await blobFiles(ctx)).length;
    const exact = await upload(other.id, solverToken, [
      { filename: 'max.bin', content: randomBytes(100_000) },
    ]);
    t.equal(exact.statusCode, 201, 'exactly ATTACHMENT_MAX_BYTES is fine');
    const big = await upload(other.id, solverToken, [
      { filename: 'ok.bin', content: randomBytes(1000) },
      { filename: 'big.bin', content: randomBytes(100_001) },
    ]);
    t.equal(big.statusCode, 413);
    t.match(big.headers['content-type'], /^application\/problem\+json/);
    t.equal(big.json().code, 'attachment_too_large');
    const many = await upload(other.id, solverToken, [
      { filename: 'a.txt', content: 'a' },
      { filename: 'b.txt', content: 'b' },
      { filename: 'c.txt', content: 'c' },
      { filename: 'd.txt', content: 'd' },
    ]);
    t.equal(many.statusCode, 413);
    t.equal(many.json().code, 'too_many_attachments');
    t.equal(await attachmentCount(ctx), rows + 1, 'no row from the refused uploads');
    t.equal((await blobFiles(ctx)).length, blobs + 1, 'no blob (nor temporary file) left behind');
  });

  await t.test('bad requests answer 4xx and store nothing', async (t) => {
    const rows = await attachmentCount(ctx);
    const blobs = (await blobFiles(ctx)).length;
    const json = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/attachments`,
      token: solverToken,
      payload: { file: 'not a file' },
    });
    t.equal(json.statusCode, 415);
    const field = await upload(ticket.id, solverToken, [
      { filename: 'a.txt', content: 'a' },
      { field: 'note', value: 'hello' },
    ]);
    t.equal(field.statusCode, 400);
    t.equal(field.json().code, 'unexpected_field');
    const none = await upload(ticket.id, solverToken, []);
    t.equal(none.statusCode, 400);
    t.equal(none.json().code, 'attachment_required');
    const broken = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/attachments`,
      token: solverToken,
      headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
      payload: '--xyz\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\nunfinished',
    });
    t.equal(broken.statusCode, 400, 'a cut body');
    t.equal(broken.json().code, 'malformed_multipart');
    const noBoundary = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/attachments`,
      token: solverToken,
      headers: { 'content-type': 'multipart/form-data' },
      payload: 'whatever',
    });
    t.equal(noBoundary.statusCode, 400, 'no boundary');
    t.equal(noBoundary.json().code, 'malformed_multipart');
    const badId = await upload('not-a-uuid', solverToken, [{ filename: 'a.txt', content: 'a' }]);
    t.equal(badId.statusCode, 400);
    const ghost = await upload(GHOST, solverToken, [{ filename: 'a.txt', content: 'a' }]);
    t.equal(ghost.statusCode, 404);
    t.equal((await download(GHOST, solverToken)).statusCode, 404);
    t.equal(await attachmentCount(ctx), rows);
    t.equal((await blobFiles(ctx)).length, blobs);
  });

  await t.test('who may upload, see, download and delete', async (t) => {
    const rows = await attachmentCount(ctx);
    t.equal((await upload(ticket.id, reader, [{ filename: 'a.txt', content: 'a' }])).statusCode, 403);
    t.equal((await upload(ticket.id, outsider, [{ filename: 'a.txt', content: 'a' }])).statusCode, 404);
    const anonymous = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/attachments`,
      ...multipart([{ filename: 'a.txt', content: 'a' }]),
    });
    t.equal(anonymous.statusCode, 401);
    t.equal(await attachmentCount(ctx), rows, 'the refused uploads stored nothing');

    const mine = (await upload(ticket.id, solverToken, [{ filename: 'mine.txt', content: 'mine' }])).json()
      .data[0];
    t.equal((await download(mine.id, reader)).statusCode, 200, 'a reader of the ticket downloads');
    const hidden = await download(mine.id, outsider);
    t.equal(hidden.statusCode, 404, 'another department’s agent: 404, like no attachment at all');
    t.equal(hidden.json().code, 'attachment_not_found');
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}/attachments`, token: outsider }))
        .statusCode,
      404,
    );
    const del = (id: string, token: string) =>
      ctx.request({ method: 'DELETE', url: `/v1/attachments/${id}`, token });
    t.equal((await del(mine.id, outsider)).statusCode, 404);
    t.equal((await del(mine.id, reader)).statusCode, 403);
    t.equal(
      (await del(mine.id, colleague)).statusCode,
      403,
      'a colleague’s staged file is not theirs to delete',
    );
    const before = (await blobFiles(ctx)).length;
    t.equal((await del(mine.id, solverToken)).statusCode, 204);
    t.equal((await download(mine.id, solverToken)).statusCode, 404);
    t.equal((await blobFiles(ctx)).length, before - 1, 'its blob is gone too');
    const theirs = (await upload(ticket.id, colleague, [{ filename: 't.txt', content: 't' }])).json().data[0];
    t.equal((await del(theirs.id, supervisor)).statusCode, 204, 'a supervisor tidies up');
  });

  await t.test('a reply sends staged attachments, and they are listed with it', async (t) => {
    const staged = (
      await upload(ticket.id, solverToken, [
        { filename: 'invoice.pdf', content: PDF },
        { filename: 'photo.png', content: PNG },
      ])
    ).json().data;
    const ids = staged.map((a: { id: string }) => a.id);
    const reply = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: solverToken,
      payload: { kind: 'reply', body: 'Here are the files.', attachment_ids: ids },
    });
    t.equal(reply.statusCode, 201, reply.body);
    const message = reply.json();
    t.same(message.attachments, [
      { id: ids[0], filename: 'invoice.pdf', content_type: 'application/pdf', size_bytes: PDF.length },
      { id: ids[1], filename: 'photo.png', content_type: 'image/png', size_bytes: PNG.length },
    ]);
    const messages = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: reader,
    });
    const listed = messages.json().data;
    t.same(listed.find((m: { id: string }) => m.id === message.id).attachments, message.attachments);
    t.same(listed[0].attachments, [], 'the opening message has none');
    const row = await ctx.db
      .selectFrom('attachments')
      .select('message_id')
      .where('id', '=', ids[0])
      .executeTakeFirst();
    t.equal(row?.message_id, message.id);

    const count = async () =>
      Number(
        (
          await ctx.db
            .selectFrom('ticket_messages')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const messagesBefore = await count();
    const send = (ticketId: string, token: string, attachment_ids: string[]) =>
      ctx.request({
        method: 'POST',
        url: `/v1/tickets/${ticketId}/messages`,
        token,
        payload: { kind: 'reply', body: 'Again', attachment_ids },
      });
    const again = await send(ticket.id, solverToken, [ids[0]]);
    t.equal(again.statusCode, 409);
    t.equal(again.json().code, 'attachment_already_linked');
    t.equal(
      (await ctx.request({ method: 'DELETE', url: `/v1/attachments/${ids[0]}`, token: solverToken }))
        .statusCode,
      409,
      'a sent file stays',
    );

    const elsewhere = (await upload(other.id, solverToken, [{ filename: 'x.txt', content: 'x' }])).json()
      .data[0];
    const wrongTicket = await send(ticket.id, solverToken, [elsewhere.id]);
    t.equal(wrongTicket.statusCode, 422);
    t.equal(wrongTicket.json().code, 'attachment_not_found');
    t.same(wrongTicket.json().errors, [
      { field: 'body/attachment_ids/0', message: 'is not an attachment of this ticket' },
    ]);
    t.equal((await send(ticket.id, solverToken, [GHOST])).statusCode, 422);
    const colleagues = (await upload(ticket.id, colleague, [{ filename: 'c.txt', content: 'c' }])).json()
      .data[0];
    const notMine = await send(ticket.id, solverToken, [colleagues.id]);
    t.equal(notMine.statusCode, 422);
    t.equal(notMine.json().code, 'attachment_not_yours');
    const mixed = await send(ticket.id, solverToken, [elsewhere.id, ids[1]]);
    t.equal(mixed.statusCode, 422, 'a wrong id among others refuses the whole message');
    const invalid = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: solverToken,
      payload: { kind: 'reply', body: 'x', attachment_ids: ['nope'] },
    });
    t.equal(invalid.statusCode, 400);
    t.equal(await count(), messagesBefore, 'no refused reply left a message');
    const stillStaged = await ctx.db
      .selectFrom('attachments')
      .select('message_id')
      .where('id', 'in', [elsewhere.id, colleagues.id])
      .execute();
    t.same(stillStaged, [{ message_id: null }, { message_id: null }]);
    const note = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${other.id}/messages`,
      token: solverToken,
      payload: { kind: 'note', body: 'for the team', attachment_ids: [elsewhere.id] },
    });
    t.equal(note.statusCode, 201, 'a note carries files too');
    t.equal(note.json().attachments[0].id, elsewhere.id);
  });

  await t.test('storeAttachment, for mail in', async (t) => {
    const content = randomBytes(5000);
    const stored = await storeAttachment(ctx.db, ctx.app.blobs, {
      ticketId: ticket.id,
      messageId: null,
      filename: 'folder/scan.bin',
      content: Readable.from([content.subarray(0, 10), content.subarray(10)]),
      maxBytes: 5000,
    });
    t.match(stored, { filename: 'scan.bin', content_type: 'application/octet-stream', size_bytes: 5000 });
    t.equal(stored.sha256, sha256(content));
    const fromBuffer = await storeAttachment(ctx.db, ctx.app.blobs, {
      ticketId: ticket.id,
      messageId: null,
      filename: 'a.png',
      content: PNG,
      maxBytes: 5000,
    });
    t.equal(fromBuffer.content_type, 'image/png');
    const rows = await attachmentCount(ctx);
    const blobs = (await blobFiles(ctx)).length;
    const tooLarge = await storeAttachment(ctx.db, ctx.app.blobs, {
      ticketId: ticket.id,
      messageId: null,
      filename: 'big',
      content: Readable.from([randomBytes(3000), randomBytes(3000)]),
      maxBytes: 5000,
    }).catch((error: unknown) => error);
    t.ok(tooLarge instanceof BlobTooLarge, 'past maxBytes: BlobTooLarge');
    await t.rejects(
      storeAttachment(ctx.db, ctx.app.blobs, {
        ticketId: GHOST,
        messageId: null,
        filename: 'orphan',
        content: Buffer.from('x'),
        maxBytes: 5000,
      }),
      'a row that cannot be written (no such ticket) fails',
    );
    t.equal(await attachmentCount(ctx), rows);
    t.equal((await blobFiles(ctx)).length, blobs, 'neither failure left a blob');
  });
});

t.test('the contact form takes files', async (t) => {
  const ctx = await buildTestApp(t, {
    PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: '100000',
    ATTACHMENT_MAX_BYTES: '50000',
    ATTACHMENT_MAX_FILES: '2',
  });
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const billing = await makeDepartment(ctx.db, 'Billing');
  const hidden = await makeDepartment(ctx.db, 'Hidden');
  await ctx.db
    .updateTable('departments')
    .set({ selectable_on_contact_form: true })
    .where('id', '=', billing)
    .execute();
  const fields = {
    name: 'Jane Doe',
    email: 'jane@example.com',
    subject: 'Broken parcel',
    message: 'Photos attached.',
    department_id: billing,
  };
  const form = (parts: Parameters<typeof multipart>[0]) =>
    ctx.request({ method: 'POST', url: '/v1/public/tickets', ...multipart(parts) });
  const asFields = (values: Record<string, string>) =>
    Object.entries(values).map(([field, value]) => ({ field, value }));
  const tickets = async () =>
    Number(
      (
        await ctx.db
          .selectFrom('tickets')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  await t.test('fields and files open a ticket; the files are on the opening message', async (t) => {
    const photo = PNG;
    const res = await form([
      { filename: 'photo.png', content: photo, type: 'text/html' },
      ...asFields(fields),
      { field: 'receipt', filename: 'receipt.pdf', content: PDF },
    ]);
    t.equal(res.statusCode, 202, res.body);
    const reference = res.json().reference as string;
    const ticket = await ctx.db
      .selectFrom('tickets')
      .select(['id', 'channel', 'department_id'])
      .where('number', '=', Number(reference.slice(2)))
      .executeTakeFirstOrThrow();
    t.match(ticket, { channel: 'contact_form', department_id: billing });
    const messages = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: admin,
    });
    const [opening] = messages.json().data;
    t.equal(opening.kind, 'customer');
    t.equal(opening.body, 'Photos attached.');
    t.match(opening.attachments, [
      { filename: 'photo.png', content_type: 'image/png', size_bytes: photo.length },
      { filename: 'receipt.pdf', content_type: 'application/pdf', size_bytes: PDF.length },
    ]);
    const got = await ctx.request({
      method: 'GET',
      url: `/v1/attachments/${opening.attachments[0].id}`,
      token: admin,
    });
    t.ok(got.rawPayload.equals(photo), 'byte-identical');
  });

  await t.test('a refused form stores nothing', async (t) => {
    const before = { tickets: await tickets(), blobs: (await blobFiles(ctx)).length };
    const file = { filename: 'a.txt', content: 'hello' };
    const badEmail = await form([...asFields({ ...fields, email: 'not an email' }), file]);
    t.equal(badEmail.statusCode, 400);
    t.equal(badEmail.json().code, 'validation_failed');
    t.same(badEmail.json().errors, [{ field: 'body/email', message: 'must match format "email"' }]);
    const missing = await form([...asFields({ name: 'x', email: 'x@example.com', subject: 's' }), file]);
    t.equal(missing.statusCode, 400);
    t.same(missing.json().errors, [{ field: 'body/message', message: 'is required' }]);
    const unknown = await form([...asFields({ ...fields, admin: 'true' }), file]);
    t.equal(unknown.statusCode, 400);
    const twice = await form([...asFields(fields), { field: 'name', value: 'again' }, file]);
    t.equal(twice.statusCode, 400);
    t.equal(twice.json().code, 'duplicate_field');
    const notOffered = await form([...asFields({ ...fields, department_id: hidden }), file]);
    t.equal(notOffered.statusCode, 422);
    t.equal(notOffered.json().code, 'department_not_selectable');
    const big = await form([...asFields(fields), { filename: 'big.bin', content: randomBytes(50_001) }]);
    t.equal(big.statusCode, 413);
    t.equal(big.json().code, 'attachment_too_large');
    const many = await form([...asFields(fields), file, file, file]);
    t.equal(many.statusCode, 413);
    t.equal(many.json().code, 'too_many_attachments');
    const longField = await form([...asFields({ ...fields, message: 'x'.repeat(200_000) }), file]);
    t.equal(longField.statusCode, 413);
    t.equal(longField.json().code, 'field_too_large');
    t.equal(await tickets(), before.tickets, 'no ticket');
    t.equal((await blobFiles(ctx)).length, before.blobs, 'no blob');
  });

  await t.test('JSON still works, and other routes still refuse multipart', async (t) => {
    const res = await ctx.request({ method: 'POST', url: '/v1/public/tickets', payload: fields });
    t.equal(res.statusCode, 202);
    const refused = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: admin,
      ...multipart([{ field: 'subject', value: 'x' }]),
    });
    t.equal(refused.statusCode, 415);
  });
});

t.test('staged attachments nobody sent are removed after a day', async (t) => {
  const ctx = await buildTestApp(t);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const live = await makeTicket(ctx.db);
  const deleted = await makeTicket(ctx.db);
  const upload = async (ticketId: string, name: string) =>
    (
      await ctx.request({
        method: 'POST',
        url: `/v1/tickets/${ticketId}/attachments`,
        token,
        ...multipart([{ filename: name, content: randomBytes(100) }]),
      })
    ).json().data[0].id as string;
  const stale = await upload(live.id, 'stale.bin');
  const fresh = await upload(live.id, 'fresh.bin');
  const sent = await upload(live.id, 'sent.bin');
  const kept = await upload(deleted.id, 'kept.bin');
  const reply = await ctx.request({
    method: 'POST',
    url: `/v1/tickets/${live.id}/messages`,
    token,
    payload: { kind: 'reply', body: 'attached', attachment_ids: [sent] },
  });
  t.equal(reply.statusCode, 201);
  t.equal((await ctx.request({ method: 'DELETE', url: `/v1/tickets/${deleted.id}`, token })).statusCode, 204);
  await sql`update attachments set created_at = created_at - interval '25 hours' where id in (${stale}, ${sent}, ${kept})`.execute(
    ctx.db,
  );
  t.equal((await blobFiles(ctx)).length, 4);

  t.equal(await sweepStagedAttachments(ctx.db, ctx.app.blobs), 1);
  const left = await ctx.db.selectFrom('attachments').select('id').orderBy('id').execute();
  t.same(
    left.map((r) => r.id).sort(),
    [fresh, sent, kept].sort(),
    'the stale staged one went; fresh, sent and a deleted ticket’s stayed',
  );
  t.equal((await blobFiles(ctx)).length, 3, 'its blob went with it');
  t.equal(await sweepStagedAttachments(ctx.db, ctx.app.blobs), 0, 'a second pass finds nothing');

  // The server's housekeeping runs the same sweep.
  await sql`update attachments set created_at = created_at - interval '25 hours' where id = ${fresh}`.execute(
    ctx.db,
  );
  const stop = startScheduler(ctx.db, pino({ level: 'silent' }), 100, 3_600_000, 3_600_000, ctx.app.blobs);
  t.teardown(stop);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const row = await ctx.db
      .selectFrom('attachments')
      .select('id')
      .where('id', '=', fresh)
      .executeTakeFirst();
    if (!row) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  t.notOk(
    await ctx.db.selectFrom('attachments').select('id').where('id', '=', fresh).executeTakeFirst(),
    'housekeeping removed it',
  );
  t.equal((await blobFiles(ctx)).length, 2);
});

t.test('over a real socket: a refused upload is answered, a dropped one leaves nothing', async (t) => {
  const ctx = await buildTestApp(t, { ATTACHMENT_MAX_BYTES: '100000' });
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const ticket = await makeTicket(ctx.db);
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const url = `${address}/v1/tickets/${ticket.id}/attachments`;
  const headers = { authorization: `Bearer ${token}` };

  const body = new FormData();
  body.append('file', new Blob([randomBytes(2_000_000)]), 'huge.bin');
  const refused = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(20_000) });
  t.equal(refused.status, 413, 'answered before the client finished sending');
  t.equal(((await refused.json()) as { code: string }).code, 'attachment_too_large');

  // A client that goes away half-way through a file.
  const { hostname, port } = new URL(address);
  const boundary = 'dropped-boundary';
  const socket = net.connect(Number(port), hostname);
  await once(socket, 'connect');
  socket.write(
    `POST /v1/tickets/${ticket.id}/attachments HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 90000\r\n\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.bin"\r\n\r\n`,
  );
  socket.write(randomBytes(40_000));
  await new Promise((resolve) => setTimeout(resolve, 300));
  socket.destroy();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && (await blobFiles(ctx)).length > 0) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.same(await blobFiles(ctx), [], 'no blob and no temporary file');
  t.equal(await attachmentCount(ctx), 0, 'no row');

  const fine = new FormData();
  fine.append('file', new Blob([PDF]), 'after.pdf');
  const after = await fetch(url, { method: 'POST', headers, body: fine });
  t.equal(after.status, 201, 'the server carries on');
  const [stored] = ((await after.json()) as { data: { id: string }[] }).data;
  const back = await fetch(`${address}/v1/attachments/${stored?.id}`, { headers });
  t.ok(Buffer.from(await back.arrayBuffer()).equals(PDF), 'byte-identical over HTTP too');
  t.equal(
    back.headers.get('content-disposition'),
    `attachment; filename="after.pdf"; filename*=UTF-8''after.pdf`,
  );
});

/** This process's open files in the blob store (downloads being sent), from /proc. */
async function openBlobs(ctx: TestContext): Promise<number> {
  const links = await Promise.all(
    (await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')),
  );
  return links.filter((link) => link.startsWith(ctx.blobDir)).length;
}

t.test('a download whose client takes no data is cut, and its file closed', async (t) => {
  // A download held its socket and an open file for as long as a stalled client stayed connected
  // (for ever): a few thousand such clients and the process ran out of file descriptors.
  const ctx = await buildTestApp(t, { EXPORT_STALL_TIMEOUT_MS: '1000' });
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const ticket = await makeTicket(ctx.db);
  // More than the socket buffers of both ends hold: the server's writes really wait.
  const bytes = randomBytes(16_000_000);
  const stored = await storeAttachment(ctx.db, ctx.app.blobs, {
    ticketId: ticket.id,
    messageId: null,
    filename: 'big.bin',
    content: bytes,
    maxBytes: 20_000_000,
  });
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const connections = () =>
    new Promise<number>((resolve, reject) =>
      ctx.app.server.getConnections((error, n) => (error ? reject(error) : resolve(n))),
    );
  const stalled = net.connect(Number(new URL(address).port), '127.0.0.1');
  t.teardown(() => stalled.destroy());
  stalled.on('error', () => {}); // the server's reset
  const head = new Promise<string>((resolve) =>
    stalled.once('data', (chunk: Buffer) => {
      stalled.pause(); // reads nothing more, for good
      resolve(chunk.toString('latin1'));
    }),
  );
  stalled.write(
    `GET /v1/attachments/${stored.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`,
  );
  t.match(await head, /^HTTP\/1\.1 200 /);
  t.equal(await openBlobs(ctx), 1, 'the download has its file open');
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && ((await connections()) > 0 || (await openBlobs(ctx)) > 0)) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.equal(await connections(), 0, 'the stalled client was cut');
  t.equal(await openBlobs(ctx), 0, 'and its file closed');
  stalled.destroy();

  const whole = await fetch(`${address}/v1/attachments/${stored.id}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  t.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes), 'a client that reads gets every byte');
});
