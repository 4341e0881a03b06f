import { gzipSync } from 'node:zlib';
import pino from 'pino';
import t from 'tap';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';

/**
 * Values and encodings the spec-driven fuzz (test/spec-fuzz.test.ts) does not generate: each
 * case here was once answered wrongly.
 */

t.test('a body with a content coding is refused with 415, not read as its bytes', async (t) => {
  const ctx = await buildTestApp(t);
  const { token } = await agentWithToken(ctx, { role: 'owner' });
  const departments = async () =>
    (await ctx.request({ method: 'GET', url: '/v1/departments?limit=200', token })).json().data.length;
  const before = await departments();

  for (const [label, coding, payload] of [
    ['gzip JSON', 'gzip', gzipSync(JSON.stringify({ name: 'Gzipped' }))],
    ['plain JSON labelled gzip', 'gzip', Buffer.from(JSON.stringify({ name: 'Labelled' }))],
    ['gzip after identity', 'identity, gzip', gzipSync(JSON.stringify({ name: 'Listed' }))],
  ] as const) {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/departments',
      token,
      headers: { 'content-type': 'application/json', 'content-encoding': coding },
      payload,
    });
    t.equal(res.statusCode, 415, label);
    t.match(res.headers['content-type'], /^application\/problem\+json/, label);
    t.equal(res.json().code, 'unsupported_content_encoding', label);
    t.equal(res.headers['accept-encoding'], 'identity', label);
  }
  t.equal(await departments(), before, 'no department was created');

  const identity = await ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token,
    headers: { 'content-type': 'application/json', 'content-encoding': 'identity' },
    payload: JSON.stringify({ name: 'Identity' }),
  });
  t.equal(identity.statusCode, 201, 'identity is the body as sent');
  const read = await ctx.request({
    method: 'GET',
    url: '/v1/departments',
    token,
    headers: { 'content-encoding': 'gzip' },
  });
  t.equal(read.statusCode, 200, 'a request without a body is not refused for its header');
  const ignored = await ctx.request({
    method: 'GET',
    url: '/v1/departments',
    token,
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    payload: gzipSync('{}'),
  });
  t.equal(ignored.statusCode, 200, 'a GET, whose body is not read, is not refused either');
});

t.test(
  'imports: text that is not UTF-8 or holds a lone surrogate fails, it is not stored as U+FFFD',
  async (t) => {
    const ctx = await buildTestApp(t);
    const { token } = await agentWithToken(ctx, { role: 'owner' });
    const work = () =>
      processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log: pino({ level: 'silent' }) });
    const upload = async (payload: Buffer, type: string, source: string) => {
      const res = await ctx.request({
        method: 'POST',
        url: `/v1/imports?source=${source}`,
        token,
        headers: { 'content-type': type },
        payload,
      });
      t.equal(res.statusCode, 202, res.body);
      await work();
      const id = res.json().id as string;
      const done = (await ctx.request({ method: 'GET', url: `/v1/imports/${id}`, token })).json();
      const errors = (await ctx.request({ method: 'GET', url: `/v1/imports/${id}/errors`, token })).json()
        .data;
      return { done, errors };
    };
    const contactNames = async () =>
      (await ctx.request({ method: 'GET', url: '/v1/contacts?limit=200', token }))
        .json()
        .data.map((c: { name: string }) => c.name)
        .sort();

    const latin1 = Buffer.from(
      '{"type":"contact","external_id":"l1","name":"Caf\xe9","emails":[],"phones":[]}\n',
      'latin1',
    );
    const ndjson = Buffer.concat([
      latin1,
      Buffer.from('{"type":"contact","external_id":"s1","name":"a\\ud800b","emails":[],"phones":[]}\n'),
      Buffer.from('\ufeff{"type":"contact","external_id":"ok","name":"Fine","emails":[],"phones":[]}\r\n'),
    ]);
    const { done, errors } = await upload(ndjson, 'application/x-ndjson', 'ndjson');
    t.equal(done.state, 'finished');
    t.match(done.counts, { read: 3, created: 1, failed: 2 });
    t.same(
      errors.map((e: { line: number; code: string }) => [e.line, e.code]),
      [
        [1, 'invalid_text'],
        [2, 'invalid_text'],
      ],
    );
    t.match(errors[1].message, /^\/name holds half of a UTF-16 surrogate pair/);

    const csv = Buffer.from('external_id,name\r\nc1,Good\r\nc2,Caf\xe9\r\n', 'latin1');
    const file = await upload(csv, 'text/csv', 'csv');
    t.equal(file.done.state, 'failed');
    t.equal(file.done.failure, 'The file is not valid UTF-8.');
    t.same(await contactNames(), ['Fine'], 'only the valid record went in, as written');
  },
);

t.test('mailbox names: the name check folds case as the unique index does', async (t) => {
  const ctx = await buildTestApp(t);
  const { token } = await agentWithToken(ctx, { role: 'owner' });
  const department = await makeDepartment(ctx.db);
  const create = (name: string, address: string) =>
    ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token,
      payload: { name, department_id: department, kind: 'inbound', address },
    });
  t.equal((await create('istanbul', 'one@desk.example')).statusCode, 201);
  // PostgreSQL lower-cases 'İ' to 'i' (the index sees the same name); JavaScript to 'i' and U+0307.
  const clash = await create('İstanbul', 'two@desk.example');
  t.equal(clash.statusCode, 409);
  t.equal(clash.json().code, 'mailbox_name_taken');
  const list = await ctx.request({ method: 'GET', url: '/v1/mailboxes', token });
  t.equal(list.json().data.length, 1, 'no second mailbox');
});
