import { gzipSync } from 'node:zlib';
import t from 'tap';
import { agentWithToken, buildTestApp } from './helpers/app.ts';

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
