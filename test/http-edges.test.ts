import net from 'node:net';
import Fastify from 'fastify';
import t, { type Test } from 'tap';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { clientErrorProblem } from '../src/plugins/problem.ts';
import { buildTestApp } from './helpers/app.ts';
import { createTestDatabase } from './helpers/database.ts';
import { within } from './helpers/within.ts';

// app.inject bypasses Node's HTTP parser, so everything here goes over real sockets.

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function parseResponse(raw: string): RawResponse {
  const split = raw.indexOf('\r\n\r\n');
  if (split < 0) throw new Error(`no complete response: ${JSON.stringify(raw.slice(0, 200))}`);
  const [statusLine = '', ...lines] = raw.slice(0, split).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: raw.slice(split + 4) };
}

/** Opens a connection and collects everything the server sends until it closes. */
function connect(port: number) {
  const socket = net.connect({ port, host: '127.0.0.1' });
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    received += chunk;
  });
  // The server may close while we are still writing a request it refused: not our failure.
  socket.on('error', () => {});
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(received)));
  const ready = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, ready, closed, received: () => received };
}

/** Sends raw bytes on a new connection and parses the one response the server sends back. */
async function rawExchange(port: number, request: string): Promise<RawResponse> {
  const conn = connect(port);
  await conn.ready;
  conn.socket.write(request);
  return parseResponse(await conn.closed);
}

function checkProblem(t: Test, res: RawResponse, status: number, code: string, instance: string | RegExp) {
  t.equal(res.status, status, res.body);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const body = JSON.parse(res.body);
  t.equal(body.status, status);
  t.equal(body.code, code);
  t.equal(body.type, 'about:blank');
  t.type(body.title, 'string');
  t.type(body.detail, 'string');
  t.match(body.instance, instance);
  t.match(body.request_id, /^[0-9a-f-]{36}$/);
  t.equal(res.headers['x-request-id'], body.request_id, 'the header names the same request');
  t.equal(Number(res.headers['content-length']), Buffer.byteLength(res.body));
  return body;
}

t.test('what Node refuses before fastify sees a request is problem+json', async (t) => {
  const ctx = await buildTestApp(t);
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as net.AddressInfo;

  await t.test('a 45 KB query string: 431', async (t) => {
    const query = `q=${'x'.repeat(45_000)}`;
    const res = await rawExchange(
      port,
      `GET /v1/tickets?${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer not-logged\r\n\r\n`,
    );
    checkProblem(t, res, 431, 'request_header_fields_too_large', '/v1/tickets');
    t.equal(res.headers.connection, 'close');
  });

  await t.test('a huge header: 431', async (t) => {
    const res = await rawExchange(
      port,
      `GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'y'.repeat(20_000)}\r\n\r\n`,
    );
    checkProblem(t, res, 431, 'request_header_fields_too_large', '/v1/me');
  });

  await t.test('malformed HTTP: 400', async (t) => {
    const res = await rawExchange(port, 'GET /v1/me HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n');
    checkProblem(t, res, 400, 'malformed_request', '/v1/me');
    const garbage = await rawExchange(port, '\u0001\u0002 not http at all\r\n\r\n');
    checkProblem(t, garbage, 400, 'malformed_request', /^urn:uuid:[0-9a-f-]{36}$/);
  });

  await t.test('no Host on HTTP/1.1: 400', async (t) => {
    // Node's own answer was a bare 400 with an empty body.
    const res = await rawExchange(port, 'GET /v1/me HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n');
    checkProblem(t, res, 400, 'malformed_request', '/v1/me');
    t.equal(res.headers.connection, 'close');
    const old = await rawExchange(port, 'GET /healthz HTTP/1.0\r\n\r\n');
    t.equal(old.status, 200, 'HTTP/1.0 needs no Host');
  });

  await t.test('an Expect other than 100-continue: 417', async (t) => {
    // Node's own answer was a bare 417, and the connection stayed open.
    const res = await rawExchange(
      port,
      'POST /v1/auth/token?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: tea\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
    );
    checkProblem(t, res, 417, 'expectation_failed', '/v1/auth/token');
    t.equal(res.headers.connection, 'close');
  });

  await t.test('the server still answers normally afterwards', async (t) => {
    const res = await rawExchange(
      port,
      'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
    );
    t.equal(res.status, 200, res.body);
  });
});

t.test('a request that does not arrive in time: 408 problem+json', async (t) => {
  // The same handler as the app's, on a server whose timeouts are checked every 100 ms (the
  // app's own: headers within 10 s, checked every 30 s, too slow for a test).
  const app = Fastify({
    clientErrorHandler: clientErrorProblem,
    requestTimeout: 1_000,
    http: { connectionsCheckingInterval: 100 },
  });
  t.teardown(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  app.server.headersTimeout = 500;
  const { port } = app.server.address() as net.AddressInfo;
  const conn = connect(port);
  await conn.ready;
  conn.socket.write('GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  const res = parseResponse(await conn.closed);
  // Node hands over no bytes with a timeout, so the occurrence is named by its request id.
  checkProblem(t, res, 408, 'request_timeout', /^urn:uuid:[0-9a-f-]{36}$/);
});

t.test('headers that do not arrive within headersTimeout are cut soon after it', async (t) => {
  // Node checks its time-outs every connectionsCheckingInterval, 30 s by default: the server's
  // 10 s for headers (server.ts) became 30-40 s.
  const ctx = await buildTestApp(t);
  ctx.app.server.headersTimeout = 1_000;
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as net.AddressInfo;
  const conn = connect(port);
  await conn.ready;
  conn.socket.write('GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  const res = parseResponse(await within(10_000, 'the 408', conn.closed));
  checkProblem(t, res, 408, 'request_timeout', /^urn:uuid:[0-9a-f-]{36}$/);
});

t.test('a draining server answers new requests 503 problem+json with Retry-After', async (t) => {
  const database = await createTestDatabase();
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', CORS_ORIGINS: 'https://desk.example' }), {
    db: database.db,
    jwtSecret: 'test-secret-that-is-long-enough-0123456789',
  });
  // A request that stays in flight until the test lets it go, so close() has to wait for it.
  let entered!: () => void;
  const slowEntered = new Promise<void>((resolve) => {
    entered = resolve;
  });
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  app.get('/test/slow', async () => {
    entered();
    await released;
    return { finished: true };
  });
  let closing!: () => void;
  const closeBegun = new Promise<void>((resolve) => {
    closing = resolve;
  });
  app.addHook('preClose', async () => closing());
  t.teardown(async () => {
    release();
    await app.close();
    await database.drop();
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as net.AddressInfo;

  const slow = connect(port);
  await slow.ready;
  slow.socket.write('GET /test/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  await slowEntered;

  // A kept-alive client: one answered request, then the next one begun before close() starts
  // (a connection in the middle of a request is not idle, so close() leaves it open).
  const accepted = new Promise<net.Socket>((resolve) => app.server.once('connection', resolve));
  const client = connect(port);
  await client.ready;
  const serverSide = await accepted;
  client.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  while (!/\r\n\r\n\{.*\}$/s.test(client.received())) {
    await new Promise((resolve) => client.socket.once('data', resolve));
  }
  t.equal(parseResponse(client.received()).status, 200, 'the first request is served');
  const before = client.received().length;
  client.socket.write('GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://desk.example\r\n');
  // Only bytes the server has read make the connection busy; wait until it has them all.
  while (serverSide.bytesRead < client.socket.bytesWritten) await new Promise(setImmediate);

  const closed = app.close();
  await closeBegun;
  client.socket.write('\r\n');
  const res = parseResponse((await client.closed).slice(before));
  checkProblem(t, res, 503, 'server_draining', '/v1/me');
  t.equal(res.headers['retry-after'], '5');
  t.equal(res.headers.connection, 'close');
  t.equal(res.headers['access-control-allow-origin'], 'https://desk.example', 'a browser may read it');

  release();
  const finished = parseResponse(await slow.closed);
  t.equal(finished.status, 200, 'the request in flight still finishes');
  t.same(JSON.parse(finished.body), { finished: true });
  await closed;
});

/** The app on a real port, on a database of its own, with the server's side of each connection. */
async function listeningApp(t: Test) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), {
    db: database.db,
    jwtSecret: 'test-secret-that-is-long-enough-0123456789',
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as net.AddressInfo;
  const serverSides: net.Socket[] = [];
  app.server.on('connection', (socket: net.Socket) => serverSides.push(socket));
  return { app, port, serverSides };
}

t.test('close() does not wait for a connection that has sent nothing', async (t) => {
  // A browser's preconnect or a balancer's spare connection, open but silent, is a request under
  // way to Node (its headers time-out runs), not an idle connection: close() waited for it past
  // SHUTDOWN_GRACE_MS, so the server exited 1 after the whole grace period.
  const { app, port, serverSides } = await listeningApp(t);
  const silent = connect(port);
  await silent.ready;
  // One that has begun a request keeps its connection and still gets its answer.
  const begun = connect(port);
  await begun.ready;
  begun.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  t.teardown(async () => {
    silent.socket.destroy();
    begun.socket.destroy();
    await app.close();
  });
  // Only bytes the server has read make the connection busy; wait until it has them all.
  while (serverSides.length < 2 || serverSides.every((s) => s.bytesRead < begun.socket.bytesWritten)) {
    await new Promise(setImmediate);
  }

  const closing = app.close();
  t.equal(await within(5_000, 'the silent connection closing', silent.closed), '', 'closed, nothing sent');
  begun.socket.write('\r\n');
  const res = parseResponse(await within(5_000, 'the answer to the request begun', begun.closed));
  t.equal(res.status, 503, 'the request begun is answered');
  await within(5_000, 'app.close()', closing);
});

t.test('close() does not wait out the headers time-out for a head that stalls', async (t) => {
  // A client that sent part of a request's head and then nothing more (slow, stalled, or a
  // slowloris) held close() until Node's headers time-out, past SHUTDOWN_GRACE_MS: exit 1.
  const { app, port, serverSides } = await listeningApp(t);
  app.server.headersTimeout = 60_000;
  // One kept alive after a whole exchange, idle: closed without a word.
  const kept = connect(port);
  await kept.ready;
  kept.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  while (!kept.received().includes('\r\n\r\n')) await new Promise(setImmediate);
  const keptAnswered = kept.received().length;
  const stalled = connect(port);
  await stalled.ready;
  stalled.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  t.teardown(async () => {
    stalled.socket.destroy();
    kept.socket.destroy();
    await app.close();
  });
  while (serverSides.length < 2 || serverSides[1]!.bytesRead < stalled.socket.bytesWritten) {
    await new Promise(setImmediate);
  }

  const closing = app.close();
  const res = parseResponse(await within(8_000, 'the stalled head answered and closed', stalled.closed));
  checkProblem(t, res, 503, 'server_draining', /^urn:uuid:/);
  t.equal(res.headers['retry-after'], '5');
  await within(8_000, 'app.close()', closing);
  await within(2_000, 'the kept-alive connection closed', kept.closed);
  t.equal(kept.received().length, keptAnswered, 'nothing more sent on the idle kept-alive connection');
});

/** A sign-in request whose body stops after 10 bytes: under way until SIGN_IN_REST is sent. */
const SIGN_IN_BODY = JSON.stringify({ email: 'nobody@example.com', password: 'not-the-password' });
const SIGN_IN_BEGUN =
  'POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
  `Content-Length: ${Buffer.byteLength(SIGN_IN_BODY)}\r\n\r\n${SIGN_IN_BODY.slice(0, 10)}`;
const SIGN_IN_REST = SIGN_IN_BODY.slice(10);

function closeAtTeardown(t: Test, conn: ReturnType<typeof connect>, app: { close(): Promise<unknown> }) {
  t.teardown(async () => {
    conn.socket.destroy();
    await app.close();
  });
}

t.test('close() lets a pipelined request still arriving finish, after the one before it', async (t) => {
  // Node hands a pipelined request to the app while the one before it is still answered: the end
  // of that first answer left the connection counted idle with the second under way, whose body
  // then got the stalled head's 503 (or nothing) 2 s into the shutdown.
  const { app, port, serverSides } = await listeningApp(t);
  const conn = connect(port);
  await conn.ready;
  conn.socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${SIGN_IN_BEGUN}`);
  closeAtTeardown(t, conn, app);
  while (!conn.received().includes('\r\n\r\n')) await new Promise(setImmediate);
  while (serverSides.length < 1 || serverSides[0]!.bytesRead < conn.socket.bytesWritten) {
    await new Promise(setImmediate);
  }
  const firstAnswer = conn.received().length;

  const closing = app.close();
  conn.socket.write(SIGN_IN_REST.slice(0, 5));
  // Past the 2 s a stalled head gets: these bytes are no head but the body of a request under way.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  conn.socket.write(SIGN_IN_REST.slice(5));
  const answered = async () => {
    while (!conn.received().slice(firstAnswer).includes('}')) {
      if (conn.socket.destroyed) return;
      await new Promise(setImmediate);
    }
  };
  await within(8_000, 'the pipelined request answered', answered());
  checkProblem(
    t,
    parseResponse(conn.received().slice(firstAnswer)),
    401,
    'invalid_credentials',
    '/v1/auth/token',
  );
  conn.socket.destroy();
  await within(8_000, 'app.close()', closing);
});

t.test('close() closes a kept-alive connection once its request under way is answered', async (t) => {
  // A request still under way 2 s into a shutdown (a slow upload, a long report) was answered
  // Connection: keep-alive and its connection kept for the keep-alive time-out (72 s): close()
  // waited for it past SHUTDOWN_GRACE_MS, and the process exited 1.
  const { app, port, serverSides } = await listeningApp(t);
  const conn = connect(port);
  await conn.ready;
  conn.socket.write(SIGN_IN_BEGUN);
  closeAtTeardown(t, conn, app);
  while (serverSides.length < 1 || serverSides[0]!.bytesRead < conn.socket.bytesWritten) {
    await new Promise(setImmediate);
  }

  const closing = app.close();
  // Still under way past the 2 s a stalled head gets.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  conn.socket.write(SIGN_IN_REST);
  const res = parseResponse(await within(8_000, 'the answer, then the connection closed', conn.closed));
  checkProblem(t, res, 401, 'invalid_credentials', '/v1/auth/token');
  await within(8_000, 'app.close()', closing);
});
