import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { Webhook as Verifier } from 'standardwebhooks';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { isPublicAddress } from '../src/domains/webhooks/address-guard.ts';
import {
  attemptDeliveries,
  dispatchEvents,
  insertDeliveries,
  PRUNE_BATCH,
  pruneDeliveries,
  retryDelayMs,
  reviveDeliveries,
} from '../src/domains/webhooks/delivery.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { startDnsServer } from './helpers/dns.ts';
import { listenLocal } from './helpers/server.ts';
import { makeTicket } from './helpers/tickets.ts';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
  /** Which connection it came on (1 for the receiver's first). */
  connection: number;
}

/** A real HTTP receiver: records every request; the path says how to answer. */
async function startReceiver(t: { teardown(fn: () => unknown): void }) {
  const received: Received[] = [];
  const failuresLeft = new Map<string, number>();
  const connections = new WeakMap<object, { id: number; served: number }>();
  let connectionCount = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const connection = connections.get(req.socket)!;
      received.push({
        path,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
        connection: connection.id,
      });
      connection.served++;
      if (path.startsWith('/hang')) return; // never answers
      // Closes a kept connection when the next request comes on it, unanswered (as a receiver
      // whose idle timeout ends just as the sender writes).
      if (path.startsWith('/drop-kept') && connection.served > 1) {
        req.socket.destroy();
        return;
      }
      // Had the request, began to answer, then died: not a connection closed under the sender.
      if (path.startsWith('/half-kept') && connection.served > 1) {
        req.socket.end('HTTP/1.1 200 OK\r\nContent-Le', () => req.socket.destroy());
        return;
      }
      if (path.startsWith('/redirect')) {
        res.writeHead(302, { location: '/redirected' }).end();
        return;
      }
      if (path.startsWith('/huge')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        // Far more than the cap, and never ending: the client must cut it.
        const chunk = Buffer.alloc(64 * 1024, 'x');
        const pump = () => {
          while (res.write(chunk)) {}
          res.once('drain', pump);
        };
        pump();
        res.on('error', () => {});
        return;
      }
      if (path.startsWith('/flaky')) {
        const left = failuresLeft.get(path) ?? Number(path.split('/')[2] ?? 2);
        failuresLeft.set(path, left - 1);
        res.writeHead(left > 0 ? 500 : 204).end();
        return;
      }
      if (path.startsWith('/fail')) {
        res.writeHead(500).end('nope');
        return;
      }
      res.writeHead(204).end();
    });
  });
  server.on('connection', (socket) => connections.set(socket, { id: ++connectionCount, served: 0 }));
  const port = await listenLocal(t, server);
  return { received, url: (path: string) => `http://127.0.0.1:${port}${path}`, port };
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  ms = 20_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ENV = {
  WEBHOOKS_ALLOW_PRIVATE: 'true',
  WEBHOOK_TIMEOUT_MS: '1000',
  WEBHOOK_RETRY_BASE_MS: '200',
  WEBHOOK_RETRY_MAX_DELAY_MS: '400',
  WEBHOOK_RETRY_WINDOW_MS: '60000',
  WEBHOOK_DISABLE_AFTER_FAILURES: '3',
  WEBHOOK_DISABLE_AFTER_MS: '0',
};

async function create(ctx: TestContext, token: string, payload: object) {
  return ctx.request({ method: 'POST', url: '/v1/webhooks', token, payload });
}

function ticketEvent(type: string, ticketId: string, departmentId: string | null, n: number) {
  return {
    event: {
      // Not te_/se_: the real feed runs alongside and must not collide with these.
      id: `test_${n}`,
      type,
      occurred_at: new Date().toISOString(),
      actor: {
        type: 'system',
        agent_id: null,
        contact_id: null,
        rule_id: null,
        rule_version: null,
        token_id: null,
      },
      department_id: departmentId,
      ticket_id: ticketId,
      payload: { n },
    },
    visibility: { department_id: departmentId, assignee_id: null },
  };
}

const deliveriesOf = (ctx: TestContext, webhookId: string) =>
  ctx.db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('webhook_id', '=', webhookId)
    .orderBy('seq')
    .execute();

// Two apps for the whole file (each costs a database and, here, a queue): one that refuses
// private addresses, and one that allows them, with the job queue running, for a local receiver.
const receiver = await startReceiver(t);
// The guarded app asks this DNS server: rebound.test says loopback, public.test a public
// address, silent.test never answers, any other name does not exist.
const dns = await startDnsServer(t, {
  'rebound.test': { a: ['127.0.0.1'] },
  'public.test': { a: ['93.184.216.34'], aaaa: ['2606:2800:220:1:248:1893:25c8:1946'] },
  'silent.test': 'silent',
});
const guarded = await buildTestApp(t, {
  ...ENV,
  WEBHOOKS_ALLOW_PRIVATE: 'false',
  WEBHOOK_DNS_SERVERS: dns.server,
  WEBHOOK_DNS_TIMEOUT_MS: '600',
  // Longer than the look-up, so a silent name fails on the look-up's own limit.
  WEBHOOK_TIMEOUT_MS: '5000',
});
const ctx = await buildTestApp(t, ENV, { jobs: true });
const allowing = ctx;

t.test('address classification refuses every non-public range', async (t) => {
  for (const a of [
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.100.100.200',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fd00:ec2::254',
    'fe80::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:a9fe:a9fe',
    '64:ff9b::7f00:1',
    // IPv4-compatible (::127.0.0.1, deprecated, ::/96) and the rest of ::/8: ipaddr.js names them 'unicast'.
    '::7f00:1',
    '::a9fe:a9fe',
    '::2',
    '100::1',
    'fec0::1',
    'not an address',
  ]) {
    t.equal(isPublicAddress(a), false, a);
  }
  for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8']) {
    t.equal(isPublicAddress(a), true, a);
  }
});

t.test('backoff: full jitter under a doubling ceiling, capped', async (t) => {
  const config = { retryBaseMs: 30_000, retryMaxDelayMs: 21_600_000 } as Parameters<typeof retryDelayMs>[0];
  t.equal(
    retryDelayMs(config, 1, () => 0.999999),
    29_999,
  );
  t.equal(
    retryDelayMs(config, 3, () => 0.5),
    60_000,
  );
  t.equal(
    retryDelayMs(config, 40, () => 0.999999),
    21_599_978,
  );
  t.equal(
    retryDelayMs(config, 2, () => 0),
    1,
    'never zero',
  );
});

t.test('SSRF: refused at write time unless allowed', async (t) => {
  const { token } = await agentWithToken(guarded, { role: 'admin' });
  for (const [url, code] of [
    ['http://127.0.0.1:9/x', 'webhook_url_not_public'],
    ['http://localhost/x', 'webhook_url_not_public'],
    ['http://10.0.0.5/x', 'webhook_url_not_public'],
    ['http://169.254.169.254/latest/meta-data', 'webhook_url_not_public'],
    ['http://[::ffff:127.0.0.1]/x', 'webhook_url_not_public'],
    ['http://[::127.0.0.1]/x', 'webhook_url_not_public'],
    ['http://[::169.254.169.254]/x', 'webhook_url_not_public'],
    ['http://[fd00:ec2::254]/x', 'webhook_url_not_public'],
    ['http://100.64.0.1/x', 'webhook_url_not_public'],
    ['ftp://example.com/x', 'webhook_url_invalid'],
    ['https://user:pw@example.com/x', 'webhook_url_invalid'],
    ['not a url', 'webhook_url_invalid'],
    ['http://does-not-exist.invalid/x', 'webhook_url_unresolvable'],
    ['http://rebound.test/x', 'webhook_url_not_public'],
    ['http://app.localhost/x', 'webhook_url_not_public'],
  ] as const) {
    const res = await create(guarded, token, { url });
    t.equal(res.statusCode, 422, url);
    t.equal(res.json().code, code, url);
  }
  const tooLong = await create(guarded, token, { url: `https://example.com/${'a'.repeat(3000)}` });
  t.equal(tooLong.statusCode, 400, 'over the length cap');
  const count = await guarded.db
    .selectFrom('webhooks')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  t.equal(Number(count.n), 0, 'nothing was stored');
  t.ok(dns.asked.includes('A rebound.test'), 'the names were asked of the configured DNS server');
  // DNS that does not answer: the URL cannot be checked now, which is not the client's mistake.
  const started = Date.now();
  const silent = await create(guarded, token, { url: 'http://silent.test/x' });
  t.equal(silent.statusCode, 503, 'DNS down: 503');
  t.match(silent.json(), { code: 'webhook_dns_unavailable', detail: /ETIMEOUT/ });
  t.equal(silent.headers['retry-after'], '5');
  t.match(silent.headers['content-type'], /^application\/problem\+json/);
  t.ok(Date.now() - started < 5000, 'the look-up ends on its own limit');
  const ok = await create(guarded, token, { url: 'https://public.test/hook', event_types: ['ticket.rated'] });
  t.equal(ok.statusCode, 201, 'a name with public addresses only is taken');
  await guarded.request({ method: 'DELETE', url: `/v1/webhooks/${ok.json().id}`, token });
});

t.test('SSRF: refused at connect time, after DNS', async (t) => {
  const ctx = guarded;
  const { token, agent } = await agentWithToken(ctx, { role: 'admin' });
  // Stored as if DNS had said "public" at write time (rebinding): the name now resolves to loopback.
  const stored = async (url: string) =>
    ctx.db
      .insertInto('webhooks')
      .values({ url, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', created_by: agent.id })
      .returning('id')
      .executeTakeFirstOrThrow();
  const rebound = await stored(`http://rebound.test:${receiver.port}/rebound`);
  // localhost is loopback whatever DNS says. The app that allows private addresses keeps a
  // connection to that host and port: it is never lent to an attempt that must check the address.
  const local = await stored(`http://localhost:${receiver.port}/rebound`);
  const allowed = await agentWithToken(allowing, { role: 'admin' });
  const warm = await create(allowing, allowed.token, {
    url: `http://localhost:${receiver.port}/warm`,
    event_types: ['ticket.rated'],
  });
  const warmPing = await allowing.request({
    method: 'POST',
    url: `/v1/webhooks/${warm.json().id}/ping`,
    token: allowed.token,
  });
  t.equal(warmPing.json().status, 'delivered', `a connection to localhost is kept: ${warmPing.body}`);
  const askedBefore = dns.asked.length;
  for (const hook of [rebound, local]) {
    const ping = await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/ping`, token });
    t.equal(ping.statusCode, 200);
    t.equal(ping.json().status, 'failed');
    t.match(ping.json().last_error, /refused: .*not a public address/);
  }
  t.ok(
    dns.asked.slice(askedBefore).includes('A rebound.test'),
    'rebound.test was asked of DNS at connect time',
  );
  await allowing.request({ method: 'DELETE', url: `/v1/webhooks/${warm.json().id}`, token: allowed.token });
  t.notOk(
    receiver.received.some((r) => r.path === '/rebound'),
    'nothing reached the receiver',
  );

  // A name whose DNS never answers: the attempt fails on the look-up's own timeout. The name
  // was asked of DNS (c-ares, on the event loop), not of getaddrinfo on Node's worker threads.
  const asked = dns.asked.length;
  const silent = await ctx.db
    .insertInto('webhooks')
    .values({
      url: `http://silent.test:${receiver.port}/silent`,
      secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      created_by: agent.id,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  const unanswered = await ctx.request({ method: 'POST', url: `/v1/webhooks/${silent.id}/ping`, token });
  t.equal(unanswered.json().status, 'failed');
  t.match(unanswered.json().last_error, /ETIMEOUT/, 'the DNS look-up timed out');
  t.ok(dns.asked.slice(asked).filter((q) => q === 'A silent.test').length >= 2, 'asked, and asked again');
});

t.test('connections are kept per receiver; one closed under an attempt is not a failure', async (t) => {
  // A receiver of its own: no other test's deliveries share its connections.
  const own = await startReceiver(t);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const ping = async (path: string) => {
    // Of a type nothing else here sends: the queue delivers nothing to it in the background.
    const hook = (await create(ctx, token, { url: own.url(path), event_types: ['ticket.rated'] })).json();
    const res = await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/ping`, token });
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token });
    return res.json() as { status: string; last_status_code: number | null; last_error: string | null };
  };
  for (let i = 0; i < 3; i++) t.equal((await ping('/kept')).status, 'delivered');
  const kept = own.received.filter((r) => r.path === '/kept').map((r) => r.connection);
  t.same(kept, [kept[0], kept[0], kept[0]], 'three attempts, one connection');

  // The kept connection has served: the receiver closes it when the next attempt comes on it.
  const dropped = await ping('/drop-kept');
  t.match(
    dropped,
    { status: 'delivered', last_status_code: 204, last_error: null },
    'closed under it: sent again',
  );
  const drops = own.received.filter((r) => r.path === '/drop-kept').map((r) => r.connection);
  t.same(drops, [kept[0], drops[1]], 'once on the kept connection, then once more');
  t.not(drops[1], kept[0], 'on a new one');

  // Part of an answer came before the close: the receiver had it, so it is not sent again now.
  t.equal((await ping('/kept')).status, 'delivered');
  const half = await ping('/half-kept');
  t.not(half.status, 'delivered', 'a broken answer is a failed attempt');
  t.equal(
    own.received.filter((r) => r.path === '/half-kept').length,
    1,
    'sent once: retried later with backoff, not at once',
  );
});

t.test('CRUD, secrets and signatures', async (t) => {
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const res = await create(ctx, token, {
    url: receiver.url('/ok'),
    event_types: ['ticket.created'],
    description: 'crm',
  });
  t.equal(res.statusCode, 201, res.body);
  const hook = res.json();
  t.match(hook.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  t.equal(res.headers.location, `/v1/webhooks/${hook.id}`);
  const got = await ctx.request({ method: 'GET', url: `/v1/webhooks/${hook.id}`, token });
  t.equal(got.statusCode, 200);
  t.notOk('secret' in got.json(), 'no secret in a GET');
  t.notOk(
    JSON.stringify((await ctx.request({ method: 'GET', url: '/v1/webhooks', token })).json()).includes(
      hook.secret,
    ),
  );

  const unknown = await create(ctx, token, { url: receiver.url('/ok'), extra: 1 });
  t.equal(unknown.statusCode, 400, 'unknown field');
  const wrongType = await create(ctx, token, { url: receiver.url('/ok'), event_types: 'ticket.created' });
  t.equal(wrongType.statusCode, 400, 'wrong type');

  const ping = await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/ping`, token });
  t.equal(ping.statusCode, 200, ping.body);
  t.equal(ping.json().status, 'delivered');
  t.equal(ping.json().last_status_code, 204);
  const first = receiver.received.at(-1);
  if (!first) throw new Error('nothing received');
  t.equal(first.headers['webhook-id'], ping.json().id);
  const verified = new Verifier(hook.secret).verify(first.body, first.headers as Record<string, string>) as {
    type: string;
  };
  t.equal(verified.type, 'webhook.ping', 'verifies with standardwebhooks');
  t.throws(
    () =>
      new Verifier(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(
        first.body,
        first.headers as Record<string, string>,
      ),
    'another secret does not verify',
  );

  const rotated = await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/rotate-secret`, token });
  t.equal(rotated.statusCode, 200);
  t.not(rotated.json().secret, hook.secret);
  t.ok(rotated.json().previous_secret_expires_at);
  await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/ping`, token });
  const second = receiver.received.at(-1);
  if (!second) throw new Error('nothing received');
  const headers = second.headers as Record<string, string>;
  t.equal(headers['webhook-signature']?.split(' ').length, 2, 'two signatures during the overlap');
  t.ok(new Verifier(rotated.json().secret).verify(second.body, headers), 'the new secret verifies');
  t.ok(new Verifier(hook.secret).verify(second.body, headers), 'the old secret still verifies');

  const patched = await ctx.request({
    method: 'PATCH',
    url: `/v1/webhooks/${hook.id}`,
    token,
    payload: { active: false },
  });
  t.equal(patched.json().active, false);
  const list = await ctx.request({ method: 'GET', url: `/v1/webhooks/${hook.id}/deliveries`, token });
  t.equal(list.json().data.length, 2);
  t.equal(list.json().data[0].id, receiver.received.at(-1)?.headers['webhook-id'], 'newest first');
  const del = await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token });
  t.equal(del.statusCode, 204);
  t.equal((await ctx.request({ method: 'GET', url: `/v1/webhooks/${hook.id}`, token })).statusCode, 404);
});

t.test('department managers manage only their department’s webhooks', async (t) => {
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: managerA } = await agentWithToken(ctx, { departments: [[a, 'manager']] });
  const { token: solverA } = await agentWithToken(ctx, { departments: [[a, 'solver']] });
  const hookB = (await create(ctx, admin, { url: receiver.url('/ok'), department_id: b })).json();
  const wide = (await create(ctx, admin, { url: receiver.url('/ok') })).json();

  const mine = await create(ctx, managerA, { url: receiver.url('/ok'), department_id: a });
  t.equal(mine.statusCode, 201);
  t.equal(
    (await create(ctx, managerA, { url: receiver.url('/ok') })).statusCode,
    403,
    'help-desk wide: admins only',
  );
  t.equal((await create(ctx, managerA, { url: receiver.url('/ok'), department_id: b })).statusCode, 403);
  t.equal((await create(ctx, solverA, { url: receiver.url('/ok'), department_id: a })).statusCode, 403);
  for (const id of [hookB.id, wide.id]) {
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/webhooks/${id}`, token: managerA })).statusCode,
      404,
    );
    t.equal(
      (
        await ctx.request({
          method: 'PATCH',
          url: `/v1/webhooks/${id}`,
          token: managerA,
          payload: { active: false },
        })
      ).statusCode,
      404,
    );
    t.equal(
      (await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${id}`, token: managerA })).statusCode,
      404,
    );
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/webhooks/${id}/deliveries`, token: managerA }))
        .statusCode,
      404,
    );
  }
  t.equal(
    (await ctx.request({ method: 'GET', url: `/v1/webhooks/${mine.json().id}`, token: solverA })).statusCode,
    403,
    'a member who is not a manager',
  );
  const list = (await ctx.request({ method: 'GET', url: '/v1/webhooks', token: managerA })).json();
  t.same(
    list.data.map((w: { id: string }) => w.id),
    [mine.json().id],
  );
  const moved = await ctx.request({
    method: 'PATCH',
    url: `/v1/webhooks/${mine.json().id}`,
    token: managerA,
    payload: { department_id: b },
  });
  t.equal(moved.statusCode, 403, 'cannot move it to another department');
  t.equal(
    (await ctx.request({ method: 'GET', url: `/v1/webhooks/${hookB.id}`, token: admin })).json()
      .department_id,
    b,
  );
});

t.test(
  'a webhook handed to a department keeps none of the deliveries made for its former scope',
  async (t) => {
    // The app without a job queue: deliveries stay pending, as during a receiver's outage.
    const ctx = guarded;
    const a = await makeDepartment(ctx.db);
    const b = await makeDepartment(ctx.db);
    const { token: admin, agent } = await agentWithToken(ctx, { role: 'admin' });
    const { token: managerA } = await agentWithToken(ctx, { departments: [[a, 'manager']] });
    const insertHook = (departmentId: string | null) =>
      ctx.db
        .insertInto('webhooks')
        .values({
          url: 'https://receiver.example/hook',
          department_id: departmentId,
          secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
          created_by: agent.id,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
    const wide = await insertHook(null);
    const ofB = await insertHook(b);
    const settings = {
      event: { id: 'se_moved', type: 'agent.created', department_id: null, ticket_id: null },
      visibility: null,
    };
    await ctx.db
      .transaction()
      .execute((trx) =>
        dispatchEvents({ queue: undefined }, trx, [
          ticketEvent('ticket.note_added', randomUUID(), b, 900),
          settings,
        ]),
      );
    t.equal(
      (await deliveriesOf(ctx, wide.id)).length,
      2,
      'the help-desk-wide one has a B event and a settings event',
    );
    t.equal((await deliveriesOf(ctx, ofB.id)).length, 1, "B's has B's event");

    for (const hook of [wide, ofB]) {
      const moved = await ctx.request({
        method: 'PATCH',
        url: `/v1/webhooks/${hook.id}`,
        token: admin,
        payload: { department_id: a },
      });
      t.equal(moved.statusCode, 200);
      t.same(
        await deliveriesOf(ctx, hook.id),
        [],
        'its deliveries so far are gone: none goes out to A’s URL',
      );
      const list = await ctx.request({
        method: 'GET',
        url: `/v1/webhooks/${hook.id}/deliveries`,
        token: managerA,
      });
      t.same(list.json().data, [], 'A’s manager sees none of them');
    }

    // Changes that keep the scope keep the deliveries.
    const ofA = await insertHook(a);
    await ctx.db
      .transaction()
      .execute((trx) =>
        dispatchEvents({ queue: undefined }, trx, [ticketEvent('ticket.created', randomUUID(), a, 901)]),
      );
    await ctx.request({
      method: 'PATCH',
      url: `/v1/webhooks/${ofA.id}`,
      token: managerA,
      payload: { department_id: a, description: 'same department' },
    });
    t.equal((await deliveriesOf(ctx, ofA.id)).length, 1, 'the same department: deliveries stay');
  },
);

t.test('dispatch, retries, timeouts, redirects, caps, order, disabling', async (t) => {
  const queue = ctx.app.jobs;
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const mk = async (path: string, extra: object = {}) =>
    (await create(ctx, admin, { url: receiver.url(path), ...extra })).json() as {
      id: string;
      secret: string;
    };

  await t.test('department scope and types', async (t) => {
    const scopedA = await mk('/scoped-a', { department_id: a });
    const onlyCreated = await mk('/only-created', { event_types: ['ticket.created'] });
    const ticketA = randomUUID();
    const ticketB = randomUUID();
    const settings = {
      event: { id: 'se_1', type: 'department.updated', department_id: a, ticket_id: null },
      visibility: null,
    };
    await ctx.db.transaction().execute((trx) =>
      dispatchEvents({ queue }, trx, [
        ticketEvent('ticket.created', ticketA, a, 1),
        ticketEvent('ticket.created', ticketB, b, 2),
        ticketEvent('ticket.note_added', ticketA, a, 3),
        settings,
        // An A-era event of a ticket that is in B by the time it is dispatched: its body shows
        // the ticket as it is now, in B, so A's subscription does not get it.
        {
          ...ticketEvent('ticket.updated', randomUUID(), a, 4),
          visibility: { department_id: b, assignee_id: null },
        },
      ]),
    );
    const toA = await until('department A deliveries', async () => {
      const rows = await deliveriesOf(ctx, scopedA.id);
      return rows.length === 2 && rows.every((r) => r.status === 'delivered') && rows;
    });
    t.same(
      toA.map((r) => r.event_id),
      ['test_1', 'test_3'],
      "A's subscription got A's ticket events only, no settings event",
    );
    t.notOk(
      receiver.received.some((r) => r.path === '/scoped-a' && r.body.includes(ticketB)),
      "no B event reached A's receiver",
    );
    const created = await deliveriesOf(ctx, onlyCreated.id);
    t.same(
      created.map((r) => r.event_id),
      ['test_1', 'test_2'],
    );
    // Dispatch is idempotent per subscription and event.
    await ctx.db
      .transaction()
      .execute((trx) => dispatchEvents({ queue }, trx, [ticketEvent('ticket.created', ticketA, a, 1)]));
    t.equal((await deliveriesOf(ctx, scopedA.id)).length, 2);
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${scopedA.id}`, token: admin });
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${onlyCreated.id}`, token: admin });
  });

  await t.test('retried with backoff after 500s, then delivered; ordered per ticket', async (t) => {
    const hook = await mk('/flaky/2', { event_types: ['ticket.created', 'ticket.updated'] });
    const ticket = randomUUID();
    await ctx.db
      .transaction()
      .execute((trx) =>
        dispatchEvents({ queue }, trx, [
          ticketEvent('ticket.created', ticket, null, 10),
          ticketEvent('ticket.updated', ticket, null, 11),
        ]),
      );
    const rows = await until('both delivered', async () => {
      const r = await deliveriesOf(ctx, hook.id);
      return r.length === 2 && r.every((d) => d.status === 'delivered') && r;
    });
    t.equal(rows[0]?.attempts, 3, 'two 500s, then a 204');
    t.equal(rows[1]?.attempts, 1);
    const hits = receiver.received.filter((r) => r.path === '/flaky/2');
    t.same(
      hits.map((h) => (JSON.parse(h.body) as { id: string }).id),
      ['test_10', 'test_10', 'test_10', 'test_11'],
      'the second event waited for the first',
    );
    t.equal(
      new Set(hits.slice(0, 3).map((h) => h.headers['webhook-id'])).size,
      1,
      'same webhook-id on every attempt',
    );
    const attempts = await ctx.db
      .selectFrom('webhook_delivery_attempts')
      .selectAll()
      .where('delivery_id', '=', rows[0]?.id ?? '')
      .orderBy('attempt')
      .execute();
    t.same(
      attempts.map((x) => x.status_code),
      [500, 500, 204],
    );

    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
  });

  await t.test('a delivery shows the event it sends and every attempt; only to its managers', async (t) => {
    // One 500, then a 204; a real ticket's creation through the feed.
    const hook = await mk('/flaky/1/detail', { event_types: ['ticket.created'], department_id: a });
    const ticket = await makeTicket(ctx.db, { department_id: a });
    const [delivery] = await until('delivered on the second attempt', async () => {
      const r = await deliveriesOf(ctx, hook.id);
      return r.length === 1 && r[0]?.status === 'delivered' && r;
    });
    const hits = receiver.received.filter((r) => r.path === '/flaky/1/detail');
    const detail = await ctx.request({
      method: 'GET',
      url: `/v1/webhooks/${hook.id}/deliveries/${delivery?.id}`,
      token: admin,
    });
    // ctx.request checks every answer against the committed spec, the event's oneOf included.
    t.equal(detail.statusCode, 200, detail.body);
    const shown = detail.json();
    t.match(shown, { id: delivery?.id, status: 'delivered', attempts: 2, last_status_code: 204 });
    t.match(shown.event, { type: 'ticket.created', ticket_id: ticket.id });
    t.same(shown.event, JSON.parse(hits[0]?.body ?? 'null'), 'the event the receiver got');
    t.same(JSON.stringify(shown.event), hits[1]?.body, 'byte for byte');
    t.same(
      shown.attempt_log.map((a: { attempt: number; status_code: number; error: string | null }) => [
        a.attempt,
        a.status_code,
        a.error === null,
      ]),
      [
        [1, 500, false],
        [2, 204, true],
      ],
    );
    t.ok(shown.attempt_log.every((a: { started_at: string }) => !Number.isNaN(Date.parse(a.started_at))));
    // The department's manager reads the event while the ticket is theirs; once it moved to
    // another department, no longer (the feed's rule), while an admin still does.
    const { token: managerA } = await agentWithToken(ctx, { departments: [[a, 'manager']] });
    const asManager = async () =>
      (
        await ctx.request({
          method: 'GET',
          url: `/v1/webhooks/${hook.id}/deliveries/${delivery?.id}`,
          token: managerA,
        })
      ).json();
    t.match((await asManager()).event, { ticket_id: ticket.id }, 'the manager reads their ticket’s event');
    await ctx.db.updateTable('tickets').set({ department_id: b }).where('id', '=', ticket.id).execute();
    const moved = await asManager();
    t.equal(moved.event, null, 'not once the ticket left the department');
    t.equal(moved.attempt_log.length, 2, 'the attempts still show');
    t.match(
      (
        await ctx.request({
          method: 'GET',
          url: `/v1/webhooks/${hook.id}/deliveries/${delivery?.id}`,
          token: admin,
        })
      ).json().event,
      { ticket_id: ticket.id },
      'an admin still reads it',
    );
    // A ping's delivery shows the test event.
    const ping = await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/ping`, token: admin });
    const pinged = (
      await ctx.request({
        method: 'GET',
        url: `/v1/webhooks/${hook.id}/deliveries/${ping.json().id}`,
        token: admin,
      })
    ).json();
    t.match(pinged.event, { type: 'webhook.ping', ticket_id: null, payload: { webhook_id: hook.id } });
    t.equal(pinged.attempt_log.length, 1);
    // Another webhook's delivery, an unknown one, a malformed id: 404, 404, 400, as problems.
    const other = await mk('/detail-other', { event_types: ['ticket.rated'] });
    for (const [url, code] of [
      [`/v1/webhooks/${other.id}/deliveries/${delivery?.id}`, 404],
      [`/v1/webhooks/${hook.id}/deliveries/${randomUUID()}`, 404],
      [`/v1/webhooks/${hook.id}/deliveries/not-a-uuid`, 400],
    ] as const) {
      const res = await ctx.request({ method: 'GET', url, token: admin });
      t.equal(res.statusCode, code, url);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
    }
    // Whoever may not list the webhook's deliveries may not read one either.
    const { token: agent } = await agentWithToken(ctx, { role: 'agent' });
    const listed = await ctx.request({
      method: 'GET',
      url: `/v1/webhooks/${hook.id}/deliveries`,
      token: agent,
    });
    const read = await ctx.request({
      method: 'GET',
      url: `/v1/webhooks/${hook.id}/deliveries/${delivery?.id}`,
      token: agent,
    });
    t.ok(listed.statusCode >= 400, 'a plain agent may not list them');
    t.equal(read.statusCode, listed.statusCode, 'nor read one');
    t.notOk(read.body.includes(ticket.id), 'and sees nothing of the event');
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${other.id}`, token: admin });
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
  });

  await t.test('a manager cannot retry the event of a ticket that left their department', async (t) => {
    const { token: managerA } = await agentWithToken(ctx, { departments: [[a, 'manager']] });
    const hook = (
      await create(ctx, managerA, {
        url: receiver.url('/retry-moved'),
        department_id: a,
        event_types: ['ticket.created'],
      })
    ).json() as { id: string };
    const ticket = await makeTicket(ctx.db, { department_id: a, subject: 'Confidential acquisition' });
    const [sent] = await until('delivered once', async () => {
      const rows = await deliveriesOf(ctx, hook.id);
      return rows[0]?.status === 'delivered' && rows;
    });
    // As if every attempt had failed (the retry window would take a minute here), the ticket
    // then moved to B.
    const failedInB = async () => {
      await ctx.db
        .updateTable('webhook_deliveries')
        .set({ status: 'failed' })
        .where('id', '=', sent!.id)
        .execute();
      await ctx.db.updateTable('tickets').set({ department_id: b }).where('id', '=', ticket.id).execute();
    };
    const retriedBy = async (token: string, what: string) => {
      const res = await ctx.request({
        method: 'POST',
        url: `/v1/webhooks/${hook.id}/deliveries/${sent!.id}/retry`,
        token,
      });
      t.equal(res.statusCode, 200, res.body);
      await until(what, async () => {
        const [d] = await deliveriesOf(ctx, hook.id);
        return d?.status === 'delivered' && d;
      });
    };
    await failedInB();
    // The manager may point the webhook at any collector, so a retry would hand them the event.
    const before = await ctx.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('id', '=', sent!.id)
      .executeTakeFirstOrThrow();
    const refused = await ctx.request({
      method: 'POST',
      url: `/v1/webhooks/${hook.id}/deliveries/${sent!.id}/retry`,
      token: managerA,
    });
    t.equal(refused.statusCode, 404, refused.body);
    t.match(refused.headers['content-type'], /application\/problem\+json/);
    t.equal(refused.json().code, 'delivery_not_found');
    t.same(
      await ctx.db
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('id', '=', sent!.id)
        .executeTakeFirstOrThrow(),
      before,
      'the delivery did not change',
    );
    // Back in the manager's department, the manager may retry it; an admin always may.
    await ctx.db.updateTable('tickets').set({ department_id: a }).where('id', '=', ticket.id).execute();
    await retriedBy(managerA, 'delivered again');
    await failedInB();
    await retriedBy(admin, 'delivered by the admin’s retry');
    t.equal(receiver.received.filter((r) => r.path === '/retry-moved').length, 3, 'sent, retried twice');
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
  });

  await t.test('a hanging receiver is a failed attempt; redirects and huge bodies', async (t) => {
    for (const [path, check] of [
      [
        '/hang',
        (d: { last_error: string | null; last_latency_ms: number | null }) =>
          /timed out/.test(d.last_error ?? '') && (d.last_latency_ms ?? 0) < 3000,
      ],
      [
        '/redirect',
        (d: { last_status_code: number | null; last_error: string | null }) =>
          d.last_status_code === 302 && /redirect 302 not followed/.test(d.last_error ?? ''),
      ],
    ] as const) {
      const hook = await mk(path, { event_types: ['ticket.rated'] });
      const started = Date.now();
      const ping = await ctx.request({ method: 'POST', url: `/v1/webhooks/${hook.id}/ping`, token: admin });
      t.equal(ping.json().status, 'failed', path);
      t.ok(check(ping.json()), `${path}: ${ping.body}`);
      t.ok(Date.now() - started < 5000, `${path}: bounded in time`);
      await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
    }
    t.notOk(
      receiver.received.some((r) => r.path === '/redirected'),
      'the redirect was not followed',
    );
    const huge = await mk('/huge', { event_types: ['ticket.rated'] });
    const ping = await ctx.request({ method: 'POST', url: `/v1/webhooks/${huge.id}/ping`, token: admin });
    t.equal(ping.json().status, 'delivered', 'a 200 with an endless body: read up to the cap, then cut');
    t.ok(ping.json().last_latency_ms < 1000);
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${huge.id}`, token: admin });
  });

  await t.test('keeps failing: failed, disabled, retried by hand', async (t) => {
    const hook = await mk('/fail', { event_types: ['ticket.created'] });
    await ctx.db.updateTable('webhooks').set({ consecutive_failures: 0 }).where('id', '=', hook.id).execute();
    // A short window: fails after a few attempts.
    await ctx.db
      .transaction()
      .execute((trx) =>
        dispatchEvents({ queue }, trx, [ticketEvent('ticket.created', randomUUID(), null, 20)]),
      );
    const webhook = await until('disabled', async () => {
      const w = await ctx.db
        .selectFrom('webhooks')
        .selectAll()
        .where('id', '=', hook.id)
        .executeTakeFirstOrThrow();
      return !w.active && w;
    });
    t.match(webhook.disabled_reason, /3 delivery attempts in a row failed/);
    const delivery = await until('failed delivery', async () => {
      const [d] = await deliveriesOf(ctx, hook.id);
      return d?.status === 'failed' && d;
    });
    t.match(delivery.last_error, /not active|HTTP 500/);
    const got = (await ctx.request({ method: 'GET', url: `/v1/webhooks/${hook.id}`, token: admin })).json();
    t.equal(got.active, false);
    t.ok(got.disabled_reason);
    // Back on, and the failed delivery retried by hand: its attempts are kept.
    await ctx.request({
      method: 'PATCH',
      url: `/v1/webhooks/${hook.id}`,
      token: admin,
      payload: { active: true, url: receiver.url('/ok') },
    });
    const retried = await ctx.request({
      method: 'POST',
      url: `/v1/webhooks/${hook.id}/deliveries/${delivery.id}/retry`,
      token: admin,
    });
    t.equal(retried.statusCode, 200, retried.body);
    t.equal(retried.json().status, 'pending');
    const done = await until('delivered after retry', async () => {
      const [d] = await deliveriesOf(ctx, hook.id);
      return d?.status === 'delivered' && d;
    });
    t.equal(done.attempts, delivery.attempts + 1, 'attempts kept');
    const again = await ctx.request({
      method: 'POST',
      url: `/v1/webhooks/${hook.id}/deliveries/${delivery.id}/retry`,
      token: admin,
    });
    t.equal(again.statusCode, 409, 'only failed deliveries are retried');
    const page = await ctx.request({
      method: 'GET',
      url: `/v1/webhooks/${hook.id}/deliveries?status=delivered`,
      token: admin,
    });
    t.equal(page.json().data.length, 1);
    await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
  });

  await t.test('end to end: tickets and settings changes reach receivers through the feed', async (t) => {
    const wide = await mk('/e2e-wide');
    const scoped = await mk('/e2e-a', { department_id: a });
    const ticketA = await makeTicket(ctx.db, { department_id: a });
    const ticketB = await makeTicket(ctx.db, { department_id: b });
    type Sent = { id: string; type: string; ticket_id: string | null; payload: Record<string, unknown> };
    const bodies = (path: string) =>
      receiver.received.filter((r) => r.path === path).map((r) => ({ r, event: JSON.parse(r.body) as Sent }));
    await until('both tickets at the wide receiver', async () => {
      const ids = bodies('/e2e-wide').map((b) => b.event.ticket_id);
      return ids.includes(ticketA.id) && ids.includes(ticketB.id);
    });
    await until("A's ticket at A's receiver", async () =>
      bodies('/e2e-a').some((b) => b.event.ticket_id === ticketA.id),
    );
    // Only a ticket's own events are ordered; a settings event may arrive after later tickets'.
    await until('the settings event at the wide receiver', async () =>
      bodies('/e2e-wide').some(
        (b) =>
          b.event.type === 'webhook.created' && (b.event.payload.webhook as { id: string }).id === scoped.id,
      ),
    ).catch(() => undefined);
    const wideEvents = bodies('/e2e-wide');
    const createdA = wideEvents.find(
      (b) => b.event.ticket_id === ticketA.id && b.event.type === 'ticket.created',
    );
    t.ok(createdA, 'ticket.created delivered');
    t.match(createdA?.event.id, /^te_\d+$/);
    t.ok(
      new Verifier(wide.secret).verify(createdA?.r.body ?? '', createdA?.r.headers as Record<string, string>),
      'signed: verifies with standardwebhooks',
    );
    t.ok(
      wideEvents.some(
        (b) =>
          b.event.type === 'webhook.created' && (b.event.payload.webhook as { id: string }).id === scoped.id,
      ),
      'settings events go to help-desk-wide subscriptions',
    );
    t.notOk(JSON.stringify(wideEvents.map((b) => b.event)).includes(scoped.secret), 'no secret in any event');
    // Give B's event time to arrive where it must not.
    await new Promise((r) => setTimeout(r, 1000));
    const toA = bodies('/e2e-a');
    t.notOk(
      toA.some((b) => b.event.ticket_id === ticketB.id),
      "B's ticket never reaches A's subscription",
    );
    t.notOk(
      toA.some((b) => b.event.type.startsWith('webhook.')),
      'no settings events to a department subscription',
    );
  });

  await t.test('a subscription disabled for failing is itself an event', async (t) => {
    const failing = await mk('/fail', { event_types: ['ticket.created'] });
    await ctx.db
      .transaction()
      .execute((trx) =>
        dispatchEvents({ queue }, trx, [ticketEvent('ticket.created', randomUUID(), null, 30)]),
      );
    const event = await until('webhook.disabled in the settings events', async () =>
      ctx.db
        .selectFrom('settings_events')
        .selectAll()
        .where('type', '=', 'webhook.disabled')
        .where('subject_id', '=', failing.id)
        .executeTakeFirst(),
    );
    t.equal(event.actor_type, 'system');
    t.notOk(JSON.stringify(event.payload).includes(failing.secret));
  });

  await t.test('many deliveries share jobs; each lane still goes in order, each once', async (t) => {
    const hooks = [await mk('/bulk-1'), await mk('/bulk-2')];
    const tickets = [randomUUID(), randomUUID(), randomUUID()];
    // 90 events over 3 tickets, interleaved: 180 deliveries, a few jobs of up to 25.
    const events = Array.from({ length: 90 }, (_, i) =>
      ticketEvent('ticket.updated', tickets[i % 3] as string, null, 1000 + i),
    );
    await ctx.db.transaction().execute((trx) => dispatchEvents({ queue }, trx, events));
    for (const hook of hooks) {
      await until(`every delivery of ${hook.id}`, async () => {
        // The feed's own settings events (the webhooks' creation) come too: count ours.
        const rows = (await deliveriesOf(ctx, hook.id)).filter((r) => r.event_id.startsWith('test_'));
        return rows.length === 90 && rows.every((r) => r.status === 'delivered');
      });
    }
    for (const path of ['/bulk-1', '/bulk-2']) {
      const hits = receiver.received.filter(
        (r) => r.path === path && (JSON.parse(r.body) as { id: string }).id.startsWith('test_'),
      );
      t.equal(hits.length, 90, `${path}: one request per delivery`);
      t.equal(new Set(hits.map((h) => h.headers['webhook-id'])).size, 90, `${path}: none twice`);
      for (const ticket of tickets) {
        const order = hits
          .map((h) => JSON.parse(h.body) as { ticket_id: string; payload: { n: number } })
          .filter((b) => b.ticket_id === ticket)
          .map((b) => b.payload.n);
        t.same(
          order,
          [...order].sort((x, y) => x - y),
          `${path}: ticket ${ticket.slice(0, 8)} in feed order`,
        );
      }
    }
    const jobs = await sql<{ n: number }>`
      select count(*)::int as n from pgboss.job
       where name = 'webhook-delivery' and data->'deliveryIds' ? ${(await deliveriesOf(ctx, hooks[0]!.id))[0]!.id}`.execute(
      ctx.db,
    );
    t.equal(jobs.rows[0]?.n, 1, 'the first delivery travelled in one job');
    for (const hook of hooks)
      await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
  });

  await t.test(
    'a job out of crash retries: its delivery is revived, or failed past its window',
    async (t) => {
      const hook = await mk('/revived', { event_types: ['ticket.updated'] });
      const ticket = randomUUID();
      const insert = async (n: number, firstAttemptAgoMs: number | null, nextAttemptInMs: number) => {
        await ctx.db
          .insertInto('webhook_bodies')
          .values({ event_id: `revive_${n}`, body: JSON.stringify({ id: `revive_${n}`, ticket_id: ticket }) })
          .execute();
        return ctx.db
          .insertInto('webhook_deliveries')
          .values({
            id: randomUUID(),
            webhook_id: hook.id,
            event_id: `revive_${n}`,
            event_type: 'ticket.updated',
            ticket_id: ticket,
            attempts: firstAttemptAgoMs === null ? 0 : 1,
            first_attempt_at: firstAttemptAgoMs === null ? null : new Date(Date.now() - firstAttemptAgoMs),
            next_attempt_at: new Date(Date.now() + nextAttemptInMs),
          })
          .returning('id')
          .executeTakeFirstOrThrow();
      };
      // No jobs: as if the first one's job had spent its retries while the database was away.
      const stale = await insert(1, 120_000, 0); // first tried 2 min ago; the window is 60 s
      const behind = await insert(2, null, 0); // waits behind it in the ticket's lane
      const fresh = await insert(3, 1_000, 0);
      await ctx.db
        .updateTable('webhook_deliveries')
        .set({ ticket_id: null })
        .where('id', '=', fresh.id)
        .execute();
      const config = loadConfig(ENV);
      const deps = { db: ctx.db, log: pino({ level: 'silent' }), config: config.webhooks, queue };
      await reviveDeliveries(deps, [stale.id, fresh.id, randomUUID()]);

      const after = await deliveriesOf(ctx, hook.id);
      const byId = new Map(after.map((d) => [d.id, d]));
      t.equal(byId.get(stale.id)?.status, 'failed', 'past its retry window: failed');
      t.equal(byId.get(stale.id)?.last_error, 'retries exhausted');
      const delivered = await until('the delivery behind it, woken', async () => {
        const d = (await deliveriesOf(ctx, hook.id)).find((r) => r.id === behind.id);
        return d?.status === 'delivered' && d;
      });
      t.equal(delivered.attempts, 1);
      const job = await sql<{ start_after: Date }>`
      select start_after from pgboss.job
       where name = 'webhook-delivery' and data->'deliveryIds' ? ${fresh.id}`.execute(ctx.db);
      t.equal(job.rows.length, 1, 'within its window: a new job');
      t.ok(
        (job.rows[0]?.start_after.getTime() ?? 0) > Date.now() + 30_000,
        'not before a minute from now (the database was away: no hurry)',
      );
      t.equal(byId.get(fresh.id)?.status, 'pending');
      await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
    },
  );

  await t.test(
    'a retry racing the deletion of its delivery answers 404, not 409',
    {
      skip: process.env.TEST_DATABASE_URL
        ? false
        : 'needs a second connection to hold and delete the delivery (PGlite has one)',
    },
    async (t) => {
      const hook = await mk('/fail/race', { event_types: ['ticket.rated'] });
      const id = randomUUID();
      await insertDeliveries(ctx.db, [
        {
          id,
          webhook_id: hook.id,
          event_id: `race_${id}`,
          event_type: 'ticket.rated',
          ticket_id: null,
          body: '{}',
        },
      ]);
      await sql`update webhook_deliveries set status = 'failed' where id = ${id}`.execute(ctx.db);
      // Another session (the retention, a subscription's deletion) holds the row and deletes it.
      const holder = new pg.Client({ connectionString: ctx.database.url! });
      await holder.connect();
      t.teardown(() => holder.end());
      const holderPid = (await holder.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      await holder.query('begin');
      await holder.query('select id from webhook_deliveries where id = $1 for update', [id]);
      const retry = ctx.request({
        method: 'POST',
        url: `/v1/webhooks/${hook.id}/deliveries/${id}/retry`,
        token: admin,
      });
      await until('the retry waiting for the row', async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
           where ${holderPid}::int = any(pg_blocking_pids(pid))`.execute(ctx.db);
        return (rows[0]?.n ?? 0) > 0;
      });
      await holder.query('delete from webhook_deliveries where id = $1', [id]);
      await holder.query('commit');
      const res = await retry;
      t.equal(res.statusCode, 404, res.body);
      t.match(res.json(), { code: 'delivery_not_found' });
      await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
    },
  );

  await t.test(
    'a subscription deleted while its attempt runs: the attempt ends, nothing is recorded',
    async (t) => {
      const hook = await mk('/hang/inflight', { event_types: ['ticket.rated'] });
      const id = randomUUID();
      await insertDeliveries(ctx.db, [
        {
          id,
          webhook_id: hook.id,
          event_id: `inflight_${id}`,
          event_type: 'ticket.rated',
          ticket_id: null,
          body: '{}',
        },
      ]);
      const config = loadConfig(ENV);
      const attempt = attemptDeliveries(
        { db: ctx.db, log: pino({ level: 'silent' }), config: config.webhooks, queue },
        [id],
      );
      await until('the attempt under way', async () =>
        receiver.received.some((r) => r.path === '/hang/inflight') ? true : undefined,
      );
      const deleted = await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
      t.equal(deleted.statusCode, 204);
      // Its outcome (a timeout) finds no delivery to record: no foreign-key failure, no throw.
      await attempt;
      const left = await ctx.db
        .selectFrom('webhook_delivery_attempts')
        .select('delivery_id')
        .where('delivery_id', '=', id)
        .execute();
      t.same(left, [], 'no attempt row for a delivery that is gone');
    },
  );

  await t.test(
    'retention: settled deliveries past it go with their attempts, bodies once nothing needs them; pending ones stay',
    async (t) => {
      // Made here without jobs, of a type nothing else here sends: no worker touches them.
      const one = await mk('/retained-1', { event_types: ['ticket.rated'] });
      const two = await mk('/retained-2', { event_types: ['ticket.rated'] });
      const made = new Map<string, string>();
      const make = async (webhookId: string, eventId: string, status: string, ageDays: number) => {
        const id = randomUUID();
        made.set(`${webhookId === one.id ? 'one' : 'two'} ${eventId}`, id);
        await insertDeliveries(ctx.db, [
          {
            id,
            webhook_id: webhookId,
            event_id: eventId,
            event_type: 'ticket.rated',
            ticket_id: null,
            body: JSON.stringify({ id: eventId }),
          },
        ]);
        await sql`
          update webhook_deliveries
             set status = ${status}, created_at = now() - ${ageDays} * interval '1 day',
                 settled_at = case when ${status} <> 'pending' then now() - ${ageDays} * interval '1 day' end
           where id = ${id}`.execute(ctx.db);
        await sql`
          update webhook_bodies set created_at = now() - ${ageDays} * interval '1 day'
           where event_id = ${eventId}`.execute(ctx.db);
        await sql`
          insert into webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms)
          values (${id}, 1, now() - ${ageDays} * interval '1 day', 5)`.execute(ctx.db);
      };
      const gone = `retain_gone_${randomUUID()}`; // both deliveries settled 40 days ago
      const half = `retain_half_${randomUUID()}`; // one settled 40 days ago, one still pending
      const young = `retain_young_${randomUUID()}`; // settled 29 days ago
      await make(one.id, gone, 'delivered', 40);
      await make(two.id, gone, 'failed', 40);
      await make(one.id, half, 'delivered', 40);
      await make(two.id, half, 'pending', 40);
      await make(one.id, young, 'delivered', 29);
      // Made 40 days ago, failed yesterday (retried by hand late): settled yesterday, so kept.
      const late = `retain_late_${randomUUID()}`;
      await make(two.id, late, 'failed', 40);
      await sql`
        update webhook_deliveries set last_attempt_at = now() - interval '1 day', settled_at = now() - interval '1 day'
         where id = ${made.get(`two ${late}`)}`.execute(ctx.db);
      // More than one batch of old ones.
      const bulk = Array.from({ length: PRUNE_BATCH + 1 }, () => ({
        id: randomUUID(),
        webhook_id: two.id,
        event_id: `retain_bulk_${randomUUID()}`,
        event_type: 'ticket.rated',
        ticket_id: null,
        body: '{}',
      }));
      await insertDeliveries(ctx.db, bulk);
      await sql`
        update webhook_deliveries
           set status = 'delivered', created_at = now() - interval '31 days', settled_at = now() - interval '31 days'
         where id = any(${bulk.map((d) => d.id)}::uuid[])`.execute(ctx.db);
      await sql`
        update webhook_bodies set created_at = now() - interval '31 days'
         where event_id = any(${bulk.map((d) => d.event_id)}::text[])`.execute(ctx.db);
      // A subscription deleted (or moved) takes its deliveries, not their bodies: an old body
      // of its events is left for the retention.
      const dropped = await mk('/retained-3', { event_types: ['ticket.rated'] });
      const orphan = `retain_orphan_${randomUUID()}`;
      await insertDeliveries(ctx.db, [
        {
          id: randomUUID(),
          webhook_id: dropped.id,
          event_id: orphan,
          event_type: 'ticket.rated',
          ticket_id: null,
          body: '{}',
        },
      ]);
      await sql`update webhook_bodies set created_at = now() - interval '40 days' where event_id = ${orphan}`.execute(
        ctx.db,
      );
      await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${dropped.id}`, token: admin });

      t.same(
        await pruneDeliveries(ctx.db, 30),
        { deliveries: PRUNE_BATCH + 4, bodies: PRUNE_BATCH + 3 },
        'the old settled deliveries in two batches, then the old bodies nothing needs',
      );

      const left = new Set([
        ...(await deliveriesOf(ctx, one.id)).map((d) => d.id),
        ...(await deliveriesOf(ctx, two.id)).map((d) => d.id),
      ]);
      t.same(
        [...made].filter(([, id]) => left.has(id)).map(([name]) => name),
        [`two ${half}`, `one ${young}`, `two ${late}`],
        'the pending one, the young one and the one that failed yesterday are left',
      );
      const bodies = await ctx.db
        .selectFrom('webhook_bodies')
        .select('event_id')
        .where('event_id', 'in', [gone, half, young, late, orphan, ...bulk.map((d) => d.event_id)])
        .orderBy('event_id')
        .execute();
      t.same(
        bodies.map((b) => b.event_id),
        [half, young, late].sort(),
        'a body goes once no delivery of its event is left',
      );
      const attempts = await ctx.db
        .selectFrom('webhook_delivery_attempts')
        .select('delivery_id')
        .where('delivery_id', 'in', [...made.values()])
        .execute();
      t.same(
        attempts.map((a) => a.delivery_id).sort(),
        [made.get(`two ${half}`), made.get(`one ${young}`), made.get(`two ${late}`)].sort(),
        'attempts go with their delivery',
      );
      t.same(await pruneDeliveries(ctx.db, 30), { deliveries: 0, bodies: 0 }, 'nothing more to do');
      t.same(
        await pruneDeliveries(ctx.db, 28),
        { deliveries: 1, bodies: 1 },
        'a shorter retention takes the young one too',
      );

      // A delivery whose body is gone (never, while a delivery of its event is left) fails at
      // once, sent nowhere, rather than waiting forever.
      await ctx.db.deleteFrom('webhook_bodies').where('event_id', '=', half).execute();
      await sql`update webhook_deliveries set next_attempt_at = now() where id = ${made.get(`two ${half}`)}`.execute(
        ctx.db,
      );
      const config = loadConfig(ENV);
      await attemptDeliveries(
        { db: ctx.db, log: pino({ level: 'silent' }), config: config.webhooks, queue },
        [made.get(`two ${half}`) as string],
      );
      const bodiless = (await deliveriesOf(ctx, two.id)).find((d) => d.id === made.get(`two ${half}`));
      t.match(bodiless, { status: 'failed', last_error: 'the event body is gone', attempts: 1 });
      const health = await ctx.db
        .selectFrom('webhooks')
        .select(['consecutive_failures', 'failing_since'])
        .where('id', '=', two.id)
        .executeTakeFirstOrThrow();
      t.same(health, { consecutive_failures: 0, failing_since: null }, 'not counted against the receiver');
      t.notOk(
        receiver.received.some((r) => r.path === '/retained-2'),
        'nothing reached the receiver',
      );
      for (const hook of [one, two])
        await ctx.request({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: admin });
    },
  );
});
