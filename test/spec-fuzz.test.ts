import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { InjectOptions } from 'fastify';
import t from 'tap';
import { upsertMember } from '../src/domains/departments/repository.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment, mintApiToken } from './helpers/app.ts';
import { assertMatchesSpec } from './helpers/contract.ts';

/**
 * A seeded, spec-driven fuzz of every operation in openapi/openapi.json. Each operation gets a
 * bounded set of malformed requests derived from its own parameters and request body: wrong
 * JSON types, unknown fields, huge strings, U+0000 and lone surrogates, bad ids, cursors, enums,
 * dates and numbers, wrong bodies and content types. Whatever the request, the answer is never
 * a 5xx, and every 4xx is an application/problem+json with a string `code`.
 * After the fuzz, the plain reads that answered before it must still answer: what a request
 * leaves behind must not break later ones (a saved view with a year-0 date once did).
 * Deterministic: the same seed picks the same cases in the same order on every run.
 * To explore beyond the budget: FUZZ_CASES=1000 sends every case, FUZZ_SEED=<n> picks others;
 * FUZZ_TRACE=1 prints each answer.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_f022);
/** Cases per operation as the owner; HEAD answers the same as GET, so it gets a few. */
const CASES_PER_OPERATION = Number(process.env.FUZZ_CASES ?? 15);
const CASES_PER_HEAD = Number(process.env.FUZZ_HEAD_CASES ?? 4);
/** Every READ_ONLY_EVERY-th operation is also sent a few cases with a plain agent's read-only token. */
const READ_ONLY_EVERY = 4;
const READ_ONLY_CASES = 3;

type Schema = Record<string, any>;
interface Parameter {
  in: 'path' | 'query' | 'header';
  name: string;
  required?: boolean;
  schema: Schema;
}
interface Media {
  schema?: Schema;
  example?: unknown;
  examples?: Record<string, { value?: unknown }>;
}
interface Operation {
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, Media> };
  responses: Record<string, { content?: Record<string, unknown> }>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

const spec = JSON.parse(readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8')) as Spec;
const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete'];

/** mulberry32: small, fast, and the same sequence everywhere. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function resolve(schema: Schema | undefined): Schema {
  let s = schema ?? {};
  for (let i = 0; s.$ref && i < 10; i++) {
    const name = String(s.$ref).replace('#/components/schemas/', '');
    s = spec.components?.schemas?.[name] ?? {};
  }
  return s;
}

/** The first non-null branch of a union, for what a field mostly is. */
function main(schema: Schema | undefined): Schema {
  const s = resolve(schema);
  const branches = s.anyOf ?? s.oneOf;
  if (Array.isArray(branches)) {
    const branch = branches.find((b: Schema) => resolve(b).type !== 'null') ?? branches[0];
    return main(branch);
  }
  return s;
}

function typeOf(s: Schema): string {
  if (s.enum) return 'enum';
  if (s.const !== undefined) return 'enum';
  if (Array.isArray(s.type)) return s.type.find((x: string) => x !== 'null') ?? 'string';
  return s.type ?? (s.properties ? 'object' : 'string');
}

interface Ids {
  department: string;
  uuid: string;
}

/** A value the schema accepts, as far as a field on its own goes. */
function valid(schema: Schema | undefined, ids: Ids, depth = 0): unknown {
  const s = main(schema);
  if (s.example !== undefined) return s.example;
  if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  if (s.const !== undefined) return s.const;
  switch (typeOf(s)) {
    case 'integer':
    case 'number':
      return s.minimum ?? 1;
    case 'boolean':
      return true;
    case 'array':
      return depth > 3 ? [] : Array.from({ length: s.minItems ?? 1 }, () => valid(s.items, ids, depth + 1));
    case 'object': {
      const out: Record<string, unknown> = {};
      if (depth > 3) return out;
      for (const name of s.required ?? []) out[name] = valid(s.properties?.[name], ids, depth + 1);
      return out;
    }
    default:
      if (s.format === 'uuid') return ids.department;
      if (s.format === 'date-time') return '2026-01-01T00:00:00Z';
      if (s.format === 'date') return '2026-01-01';
      if (s.format === 'email') return 'fuzz@example.com';
      if (s.format === 'uri') return 'https://example.com/';
      return 'x'.repeat(Math.max(1, s.minLength ?? 1));
  }
}

/** The request body example of a media type: its example, else the first of its examples. */
const exampleOf = (media: Media): unknown => media.example ?? Object.values(media.examples ?? {})[0]?.value;

const MB = 'm'.repeat(1024 * 1024);
const NONEXISTENT = '00000000-0000-4000-8000-00000000f022';

/**
 * Malformed values for one field, by what its schema says it is. `edge` marks values of the
 * field's own JSON type (they pass the type check and go deeper: to the handler, to PostgreSQL);
 * the rest are wrong types and shapes, which the schema should refuse.
 */
function malformed(schema: Schema | undefined, inQuery: boolean): [string, unknown, boolean][] {
  const s = main(schema);
  const type = typeOf(s);
  const out: [string, unknown, boolean][] = [];
  const edge = (label: string, value: unknown) => out.push([label, value, true]);
  const wrong = (label: string, value: unknown) => out.push([label, value, false]);
  if (!inQuery) wrong('null', null);
  if (type === 'string' || type === 'enum') {
    if (!inQuery) {
      wrong('number', 12345);
      wrong('boolean', true);
      wrong('object', { a: 1 });
      wrong('array', ['x']);
      wrong('1 MB', MB);
    }
    wrong('empty', '');
    edge('NUL', 'a\u0000b');
    edge('lone surrogate', '\ud800x');
    if (typeof s.maxLength === 'number' && s.maxLength < 200_000) {
      wrong(`maxLength+1 (${s.maxLength + 1})`, 'a'.repeat(s.maxLength + 1));
      edge(`maxLength (${s.maxLength}) of 4-byte characters`, '\u{1F600}'.repeat(s.maxLength));
    }
    if (type === 'enum') {
      wrong('bad enum', 'not-a-member');
      wrong('enum, other case', String(s.enum?.[0] ?? '').toUpperCase());
    }
    if (s.format === 'uuid') {
      wrong('bad uuid', 'not-a-uuid');
      wrong('uuid+1', `${NONEXISTENT}0`);
      edge('nonexistent uuid', NONEXISTENT);
      edge('nil uuid', '00000000-0000-0000-0000-000000000000');
    }
    if (s.format === 'date-time') {
      wrong('bad date-time', '2024-13-45T99:99:99Z');
      wrong('not a date', 'yesterday');
      edge('date-time year 0', '0000-01-01T00:00:00Z');
      edge('date-time leap second', '2016-12-31T23:59:60Z');
      edge('date-time 9999', '9999-12-31T23:59:59.999Z');
      edge('date-time offset +14:00', '2026-01-01T00:00:00+14:00');
    }
    if (s.format === 'date') {
      wrong('bad date', '2024-02-30');
      edge('date year 0', '0000-01-01');
      edge('date 9999', '9999-12-31');
    }
    if (s.format === 'email') {
      wrong('bad email', 'not an email');
      edge('email with NUL', 'a\u0000@example.com');
    }
    if (s.format === 'uri') {
      wrong('bad uri', 'not a uri');
      edge('uri ftp', 'ftp://example.com/');
    }
    if (s.pattern) wrong('pattern miss', ' ');
  } else if (type === 'integer' || type === 'number') {
    if (inQuery) wrong('not a number', 'abc');
    else {
      wrong('string', 'abc');
      wrong('numeric string', '5');
      wrong('boolean', false);
    }
    if (type === 'integer') wrong('float', 1.5);
    if (inQuery) {
      wrong('20 digits', '99999999999999999999');
      wrong('exponent', '1e400');
      wrong('hex', '0x10');
    }
    if (typeof s.minimum === 'number') wrong('minimum-1', s.minimum - 1);
    else edge('negative', -1);
    if (typeof s.maximum === 'number') wrong('maximum+1', s.maximum + 1);
    else {
      edge('2^31', 2 ** 31);
      edge('2^53+2', 2 ** 53 + 2);
      edge(type === 'number' ? '1e308' : '1e20', type === 'number' ? 1e308 : 1e20);
    }
    if (s.maximum === undefined || s.maximum >= 0) edge('zero', 0);
  } else if (type === 'boolean') {
    wrong('string', 'yes');
    wrong('number', 2);
  } else if (type === 'array') {
    if (!inQuery) {
      wrong('object', { a: 1 });
      wrong('string', 'x');
      edge('empty', []);
    }
    const items = malformed(s.items, inQuery);
    for (const [label, value, isEdge] of [
      ...items.filter((i) => i[2]).slice(0, 4),
      ...items.filter((i) => !i[2]).slice(0, 3),
    ])
      out.push([`item ${label}`, [value], isEdge]);
    const one = valid(s.items, { department: NONEXISTENT, uuid: NONEXISTENT });
    edge('duplicate items', [one, one]);
    if (typeof s.maxItems === 'number' && s.maxItems < 5000)
      wrong(
        `maxItems+1 (${s.maxItems + 1})`,
        Array.from({ length: s.maxItems + 1 }, () => one),
      );
  } else if (type === 'object') {
    wrong('array', []);
    wrong('string', 'x');
    wrong('unknown field', { zzz_unknown: 1 });
    edge('empty object', {});
  }
  return out;
}

/** Fields of a body, three levels into nested objects and arrays' first items, with their schemas. */
function fields(schema: Schema | undefined, prefix: string[] = [], depth = 0): [string[], Schema][] {
  const s = main(schema);
  const out: [string[], Schema][] = [];
  if (depth > 3) return out;
  if (typeOf(s) === 'array') return fields(s.items, [...prefix, '0'], depth + 1);
  for (const [name, sub] of Object.entries<Schema>(s.properties ?? {})) {
    out.push([[...prefix, name], sub]);
    if (['object', 'array'].includes(typeOf(main(sub))))
      out.push(...fields(sub, [...prefix, name], depth + 1));
  }
  return out;
}

function setAt(base: unknown, path: string[], value: unknown): unknown {
  const root = structuredClone(base ?? {}) as Record<string, any>;
  let node = root;
  for (const [i, key] of path.slice(0, -1).entries()) {
    const wantArray = /^\d+$/.test(path[i + 1]!);
    if (typeof node[key] !== 'object' || node[key] === null || Array.isArray(node[key]) !== wantArray)
      node[key] = wantArray ? [] : {};
    node = node[key];
  }
  node[path.at(-1)!] = value;
  return root;
}

/** encodeURIComponent, except that a lone surrogate goes as the bytes of its (invalid) UTF-8. */
function encode(value: string): string {
  return value
    .split(/([\ud800-\udfff])/)
    .map((part) => {
      if (part.length === 1 && /[\ud800-\udfff]/.test(part)) {
        const c = part.charCodeAt(0);
        return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)]
          .map((b) => `%${b.toString(16).toUpperCase()}`)
          .join('');
      }
      return encodeURIComponent(part);
    })
    .join('');
}

function queryString(query: [string, unknown][]): string {
  const parts: string[] = [];
  for (const [name, value] of query) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values)
      parts.push(`${encode(name)}=${encode(typeof v === 'string' ? v : JSON.stringify(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

interface Case {
  label: string;
  params?: Record<string, string>;
  query?: [string, unknown][];
  headers?: Record<string, string>;
  /** A body: a value sent as JSON, or raw text with its own content type. */
  body?: { json: unknown } | { raw: string; type: string | undefined };
}

function pick<T>(items: T[], n: number, random: () => number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (out.length < n && pool.length) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]!);
  return out;
}

/** Collections whose items the setup creates, by the path the {id} follows. */
const CREATE_FROM_EXAMPLE = [
  '/v1/api-tokens',
  '/v1/schedules',
  '/v1/sla-policies',
  '/v1/contact-fields',
  '/v1/contacts',
  '/v1/automation-rules',
  '/v1/webhooks',
  '/v1/canned-responses',
  '/v1/mailboxes',
  '/v1/views',
  '/v1/imports',
];

t.test('every operation answers malformed requests with a 4xx problem, never a 5xx', async (t) => {
  const started = performance.now();
  const ctx = await buildTestApp(t, {
    WEBHOOKS_ALLOW_PRIVATE: 'true',
    // The public form's own limit (10 a minute) would answer most of its cases 429 unread.
    PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: '100000',
  });
  const { agent: owner, token } = await agentWithToken(ctx, { role: 'owner' });
  const department = await makeDepartment(ctx.db);
  await upsertMember(ctx.db, department, owner.id, 'manager');
  const member = await makeAgent(ctx.db, { departments: [[department, 'solver']] });
  const otherAgent = await makeAgent(ctx.db);
  const reader = await agentWithToken(ctx, { role: 'agent', departments: [[department, 'reader']] });
  const readOnly = await mintApiToken(ctx, reader.token, ['read'], 'fuzz read-only');
  const ids: Ids = { department, uuid: NONEXISTENT };

  // Real items, so that a request with a good id reaches the handler behind the route.
  const real: Record<string, string> = {
    '/v1/departments': department,
    '/v1/agents': otherAgent.id,
  };
  const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  // The examples' ids become real ones (an agent's, else the department's); their webhook URL
  // one that needs no DNS.
  const realIds = (value: unknown, key = ''): unknown =>
    typeof value === 'string' && uuidPattern.test(value)
      ? /agent|assignee|owner/.test(key)
        ? owner.id
        : department
      : typeof value === 'string' && value.startsWith('https://example.com/hooks/')
        ? 'http://127.0.0.1:9/fuzz'
        : Array.isArray(value)
          ? value.map((item) => realIds(item, key))
          : value && typeof value === 'object'
            ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, realIds(v, k)]))
            : value;
  const ticket = await ctx.app.inject({
    method: 'POST',
    url: '/v1/tickets',
    headers: { authorization: `Bearer ${token}` },
    payload: {
      subject: 'Fuzz',
      channel: 'api',
      department_id: department,
      contact: { email: 'fuzz-contact@example.com' },
      message: { body: 'Hello' },
    },
  });
  t.equal(ticket.statusCode, 201, 'setup: a ticket', { body: ticket.body });
  real['/v1/tickets'] = ticket.json().id;
  const contactId = ticket.json().contact_id ?? ticket.json().contact?.id;
  for (const collection of CREATE_FROM_EXAMPLE) {
    const media = Object.entries(spec.paths[collection]?.post?.requestBody?.content ?? {})[0];
    if (!media) continue;
    const [type, mediaType] = media;
    const example = exampleOf(mediaType);
    const res = await ctx.app.inject({
      method: 'POST',
      url: collection,
      headers: { authorization: `Bearer ${token}`, 'content-type': type },
      payload: type === 'application/json' ? JSON.stringify(realIds(example)) : String(example),
    });
    if (res.statusCode < 300) real[collection] = res.json().id ?? res.json().token?.id;
  }
  // The contacts example names custom fields this help desk lacks: the ticket's contact will do.
  real['/v1/contacts'] ??= contactId;
  for (const collection of CREATE_FROM_EXAMPLE)
    if (!real[collection]) t.comment(`setup: no ${collection} item; its {id} routes get a random id`);
  const messages = await ctx.app.inject({
    method: 'GET',
    url: `/v1/tickets/${real['/v1/tickets']}/messages`,
    headers: { authorization: `Bearer ${token}` },
  });
  const messageId: string = messages.json().items?.[0]?.id ?? NONEXISTENT;

  function paramValue(template: string, param: Parameter): string {
    const before = template.slice(0, template.indexOf(`{${param.name}}`) - 1);
    if (param.name === 'agent_id') return member.id;
    if (param.name === 'message_id') return messageId;
    if (param.name === 'delivery_id') return randomUUID();
    if (param.name === 'id') return real[before] ?? randomUUID();
    // The examples of the template routes are an agent reply's.
    if (param.name === 'kind') return 'agent_reply';
    return String(valid(param.schema, ids));
  }

  // Destructive operations last, so the rest still find their items.
  const operations = Object.entries(spec.paths)
    .flatMap(([path, item]) =>
      METHODS.filter((m) => item[m]).map((method) => ({ path, method, op: item[method]! })),
    )
    .sort(
      (a, b) =>
        Number(a.method === 'delete' || a.path === '/v1/me/password') -
        Number(b.method === 'delete' || b.path === '/v1/me/password'),
    );

  const random = rng(SEED);
  const failures: string[] = [];
  const undocumented: string[] = [];
  const summary: string[] = [];
  let sent = 0;

  async function send(path: string, method: string, op: Operation, c: Case, bearer: string) {
    const params = { ...c.params };
    const url =
      path.replace(/\{([^}]+)\}/g, (_, name: string) => {
        const value = params[name]!;
        return value.startsWith('%') ? value : encode(value);
      }) + queryString(c.query ?? []);
    const headers: Record<string, string> = { ...c.headers, authorization: `Bearer ${bearer}` };
    let payload: string | undefined;
    if (c.body && 'json' in c.body) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(c.body.json);
    } else if (c.body) {
      if (c.body.type !== undefined) headers['content-type'] = c.body.type;
      payload = c.body.raw;
    }
    const streams = Object.values(op.responses).some((r) => r.content?.['text/event-stream']);
    const options: InjectOptions = { method: method.toUpperCase() as 'GET', url, headers, payload };
    const res = await ctx.app.inject(streams ? { ...options, payloadAsStream: true } : options);
    let body = '';
    if (streams) {
      const stream = res.stream() as Readable;
      if (res.statusCode >= 300) for await (const chunk of stream) body += chunk;
      else stream.destroy();
    } else body = res.body;
    sent++;
    const where = `${method.toUpperCase()} ${url.slice(0, 160)} [${c.label}]`;
    if (process.env.FUZZ_TRACE) t.comment(`${where} -> ${res.statusCode} ${body.slice(0, 160)}`);
    const type = String(res.headers['content-type'] ?? '');
    if (res.statusCode >= 500) failures.push(`${where} -> ${res.statusCode} ${body.slice(0, 300)}`);
    else if (res.statusCode >= 400) {
      if (!type.startsWith('application/problem+json'))
        failures.push(`${where} -> ${res.statusCode} with content-type ${type}: ${body.slice(0, 200)}`);
      else if (method !== 'head') {
        let code: unknown;
        try {
          code = (JSON.parse(body) as { code?: unknown }).code;
        } catch {}
        if (typeof code !== 'string')
          failures.push(`${where} -> ${res.statusCode} without a string code: ${body.slice(0, 200)}`);
      }
    }
    if (!streams) {
      try {
        assertMatchesSpec(method, url, { statusCode: res.statusCode, headers: res.headers, body });
      } catch (error) {
        undocumented.push(`${where}: ${(error as Error).message.slice(0, 200)}`);
      }
    }
    return res.statusCode;
  }

  // The plain reads (no ids, no query) that answer now must still answer after the fuzz: a
  // malformed request may be refused, but what it leaves behind must not break later reads.
  const plainReads = operations.filter(
    ({ path, method, op }) =>
      method === 'get' &&
      !path.includes('{') &&
      !(op.parameters ?? []).some((p) => p.required) &&
      !Object.values(op.responses).some((r) => r.content?.['text/event-stream']),
  );
  const readable: string[] = [];
  for (const { path } of plainReads) {
    const res = await ctx.app.inject({
      method: 'GET',
      url: path,
      headers: { authorization: `Bearer ${token}` },
    });
    if (res.statusCode < 300) readable.push(path);
  }

  for (const [index, { path, method, op }] of operations.entries()) {
    const parameters = op.parameters ?? [];
    const pathParams = parameters.filter((p) => p.in === 'path');
    const queryParams = parameters.filter((p) => p.in === 'query');
    const goodParams = Object.fromEntries(pathParams.map((p) => [p.name, paramValue(path, p)]));
    const goodQuery: [string, unknown][] = queryParams
      .filter((p) => p.required)
      .map((p) => [p.name, valid(p.schema, ids)]);
    const media = Object.entries(op.requestBody?.content ?? {});
    const jsonMedia = op.requestBody?.content['application/json'];
    const baseBody = jsonMedia ? realIds(exampleOf(jsonMedia) ?? valid(jsonMedia.schema, ids)) : undefined;
    const goodBody: Case['body'] = jsonMedia
      ? { json: baseBody }
      : media[0]
        ? { raw: String(exampleOf(media[0][1]) ?? ''), type: media[0][0] }
        : undefined;
    const base = (label: string, change: Partial<Case> = {}): Case => ({
      label,
      params: goodParams,
      query: goodQuery,
      ...(goodBody && { body: goodBody }),
      ...change,
    });

    // Always: the structural cases of the body, and the ids of the path.
    // The request as the spec's example has it, with real ids: the others change one thing of it.
    const fixed: Case[] = [base('the example')];
    /** Values of the right JSON type that probe edges: these get most of the budget. */
    const edges: Case[] = [];
    /** Wrong types and shapes: the schema's job, so a sample. */
    const pool: Case[] = [];
    for (const p of pathParams) {
      const s = main(p.schema);
      if (s.format === 'uuid') {
        fixed.push(
          base(`${p.name}: nonexistent uuid`, { params: { ...goodParams, [p.name]: randomUUID() } }),
        );
        pool.push(base(`${p.name}: not a uuid`, { params: { ...goodParams, [p.name]: 'not-a-uuid' } }));
      } else {
        fixed.push(base(`${p.name}: unknown`, { params: { ...goodParams, [p.name]: 'zz-unknown' } }));
      }
      pool.push(
        base(`${p.name}: NUL`, { params: { ...goodParams, [p.name]: 'a\u0000b' } }),
        base(`${p.name}: lone surrogate`, { params: { ...goodParams, [p.name]: '%ED%A0%80' } }),
        base(`${p.name}: uppercase uuid`, { params: { ...goodParams, [p.name]: NONEXISTENT.toUpperCase() } }),
      );
    }
    if (op.requestBody) {
      fixed.push(
        base('empty body, JSON content type', { body: { raw: '', type: 'application/json' } }),
        base('non-JSON body, JSON content type', { body: { raw: '{"a": ', type: 'application/json' } }),
        base('wrong content type', { body: { raw: 'hello', type: 'application/x-fuzz' } }),
      );
      pool.push(
        base('no content type', { body: { raw: 'hello', type: undefined } }),
        base('JSON null body', { body: { raw: 'null', type: 'application/json' } }),
        base('JSON string body', { body: { raw: '"x"', type: 'application/json' } }),
      );
      for (const [type] of media) {
        if (type === 'application/json') continue;
        pool.push(
          base(`garbage ${type}`, { body: { raw: '\u0000\ud800garbage\r\n--x--', type } }),
          base(`empty ${type}`, { body: { raw: '', type } }),
        );
        if (type.startsWith('multipart/'))
          pool.push(
            base('multipart without boundary', { body: { raw: 'x', type: 'multipart/form-data' } }),
            base('multipart, empty part list', {
              body: { raw: '--b\r\n\r\n--b--\r\n', type: 'multipart/form-data; boundary=b' },
            }),
          );
      }
    }
    if (jsonMedia) {
      fixed.push(base('array where an object is expected', { body: { json: [baseBody] } }));
      pool.push(
        base('unknown field', { body: { json: setAt(baseBody, ['zz_unknown_field'], 1) } }),
        base('empty object', { body: { json: {} } }),
      );
      for (const [path, schema] of fields(jsonMedia.schema))
        for (const [label, value, isEdge] of malformed(schema, false))
          (isEdge ? edges : pool).push(
            base(`body ${path.join('.')}: ${label}`, { body: { json: setAt(baseBody, path, value) } }),
          );
    }
    for (const p of queryParams) {
      for (const [label, value, isEdge] of malformed(p.schema, true))
        (isEdge ? edges : pool).push(
          base(`query ${p.name}: ${label}`, {
            query: [...goodQuery.filter(([n]) => n !== p.name), [p.name, value]],
          }),
        );
      if (p.name === 'cursor')
        for (const [label, value] of [
          ['garbage cursor', 'garbage!!'],
          ['cursor of JSON object', Buffer.from('{"a":1}').toString('base64url')],
          ['cursor of strange array', Buffer.from('["x",[1],{"b":null},1e400]').toString('base64url')],
          [
            'cursor of another list',
            Buffer.from('["tickets",["2024-01-01T00:00:00Z","x"]]').toString('base64url'),
          ],
        ] as const)
          fixed.push(base(`query cursor: ${label}`, { query: [...goodQuery, ['cursor', value]] }));
    }
    for (const p of parameters.filter((p) => p.in === 'header')) {
      const max = main(p.schema).maxLength ?? 1000;
      for (const [label, value] of [
        ['garbage', 'garbage'],
        ['empty quotes', '""'],
        ['unbalanced quote', '"abc'],
        ['weak, empty', 'W/'],
        ['star', '*'],
        ['commas', ', , ,'],
        [`maxLength+1 (${max + 1})`, `"${'a'.repeat(max - 1)}"`],
        ['base64 JSON', Buffer.from('{"a":[1e400]}').toString('base64url')],
        ['latin-1', 'caf\u00e9'],
      ] as const)
        (label === 'garbage' ? fixed : edges).push(
          base(`header ${p.name}: ${label}`, { headers: { [p.name]: value } }),
        );
    }
    pool.push(base('unknown query parameter', { query: [...goodQuery, ['zz_unknown', 'x']] }));
    if (queryParams.length)
      pool.push(
        base('query parameter repeated', {
          query: [
            ...goodQuery,
            ...queryParams.slice(0, 1).flatMap(
              (p) =>
                [
                  [p.name, valid(p.schema, ids)],
                  [p.name, valid(p.schema, ids)],
                ] as [string, unknown][],
            ),
          ],
        }),
      );

    const cap = method === 'head' ? CASES_PER_HEAD : CASES_PER_OPERATION;
    const chosen = pick(fixed, cap, random);
    const deep = pick(edges, Math.max(0, Math.ceil(((cap - chosen.length) * 2) / 3)), random);
    const cases = [...chosen, ...deep, ...pick(pool, Math.max(0, cap - chosen.length - deep.length), random)];
    const statuses = new Map<number, number>();
    for (const c of cases) {
      const status = await send(path, method, op, c, token);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    if (index % READ_ONLY_EVERY === 0) {
      for (const c of [base('read-only agent, good ids'), ...pick(cases, READ_ONLY_CASES - 1, random)]) {
        const status = await send(path, method, op, { ...c, label: `read-only: ${c.label}` }, readOnly);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }
    summary.push(
      `${method.toUpperCase()} ${path}: ${[...statuses]
        .sort(([a], [b]) => a - b)
        .map(([s, n]) => `${s}x${n}`)
        .join(' ')}`,
    );
  }

  const broken: string[] = [];
  for (const path of readable) {
    const res = await ctx.app.inject({
      method: 'GET',
      url: path,
      headers: { authorization: `Bearer ${token}` },
    });
    if (res.statusCode >= 300) broken.push(`GET ${path} -> ${res.statusCode} ${res.body.slice(0, 200)}`);
  }
  t.ok(readable.length >= 20, `${readable.length} plain reads to check after the fuzz`);
  t.same(broken, [], 'the plain reads that answered before the fuzz still answer after it');

  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  for (const line of summary) t.comment(line);
  if (undocumented.length) {
    t.comment(`${undocumented.length} answers the spec does not document (not failures here):`);
    for (const line of undocumented.slice(0, 40)) t.comment(`  ${line}`);
  }
  t.comment(`${operations.length} operations, ${sent} requests, ${seconds} s (seed ${SEED})`);
  t.equal(
    operations.length,
    Object.values(spec.paths).flatMap((item) => METHODS.filter((m) => item[m])).length,
  );
  t.ok(sent >= operations.length * CASES_PER_HEAD, 'every operation was sent its cases');
  t.same(failures, [], 'no 5xx, and every 4xx is a problem+json with a code');
});
