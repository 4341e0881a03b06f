import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import t from 'tap';
import { agentWithToken, buildTestApp } from './helpers/app.ts';

// When a request must have arrived (src/plugins/arrival.ts): every request within
// REQUEST_TIMEOUT_MS, an upload (an import file, attachments) for as long as it keeps coming.
// Before, every request had Node's 30 s, so a big import file could not arrive at all.

const TIMEOUT_MS = 2_000;

interface Exchange {
  status: number;
  headers: string;
  body: string;
  /** Milliseconds from the first byte sent to the connection's close. */
  took: number;
}

/**
 * Sends `head` then `body` in `chunk`-byte pieces every `everyMs` (stopping after `stopAfter`
 * bytes when given), and resolves with the answer once the server closes or answers.
 */
function dribble(
  port: number,
  head: string,
  body: Buffer,
  chunk: number,
  everyMs: number,
  stopAfter = body.length,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const started = Date.now();
    let received = '';
    let stopped = false;
    socket.on('data', (data: Buffer) => {
      received += data.toString('utf8');
    });
    socket.on('error', () => {}); // a reset after the answer: 'close' follows
    socket.on('close', () => {
      stopped = true;
      const [headers = '', rest = ''] = received.split('\r\n\r\n', 2);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1] ?? 0);
      if (status === 0) reject(new Error(`no answer: ${JSON.stringify(received.slice(0, 200))}`));
      else resolve({ status, headers, body: rest, took: Date.now() - started });
    });
    socket.write(head);
    void (async () => {
      for (let sent = 0; sent < stopAfter && !stopped; sent += chunk) {
        socket.write(body.subarray(sent, Math.min(sent + chunk, stopAfter)));
        await sleep(everyMs);
      }
      // Whole: wait for the answer, then close our side so 'close' comes.
      while (!stopped && !received.includes('\r\n\r\n')) await sleep(50);
      await sleep(100);
      socket.end();
    })();
  });
}

t.test('requests must arrive in time; uploads may take longer while they keep coming', async (t) => {
  const ctx = await buildTestApp(t, { REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) });
  const owner = await agentWithToken(ctx, { role: 'owner' });
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as AddressInfo;
  const head = (method: string, path: string, type: string, length: number) =>
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${owner.token}\r\n` +
    `Content-Type: ${type}\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`;
  const count = async (table: 'tickets' | 'imports') =>
    (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(ctx.db)).rows[0]!.n;

  await t.test('a JSON body dribbled past REQUEST_TIMEOUT_MS: 408 problem+json, nothing made', async (t) => {
    const before = await count('tickets');
    const payload = Buffer.from(
      JSON.stringify({
        subject: 'Slow',
        contact: { email: 'slow@example.com' },
        message: { body: 'x'.repeat(4000) },
      }),
    );
    const res = await dribble(
      port,
      head('POST', '/v1/tickets', 'application/json', payload.length),
      payload,
      100,
      200,
    );
    t.equal(res.status, 408, res.body);
    t.match(res.headers, /content-type: application\/problem\+json/i);
    t.match(JSON.parse(res.body), { status: 408, code: 'request_timeout', instance: '/v1/tickets' });
    t.ok(res.took >= TIMEOUT_MS - 100, `not before the time-out (${res.took} ms)`);
    t.equal(await count('tickets'), before, 'nothing created');
  });

  await t.test('an import file that keeps coming for longer is taken whole', async (t) => {
    const before = await count('imports');
    const records = Array.from({ length: 600 }, (_, i) =>
      JSON.stringify({
        type: 'contact',
        external_id: `slow-${i}`,
        name: `Slow contact ${i}`,
        emails: [`slow-${i}@example.com`],
      }),
    );
    const file = Buffer.from(`${records.join('\n')}\n`);
    // About 50 KB in 2 KB pieces every 200 ms: some 5 s, more than twice REQUEST_TIMEOUT_MS.
    const res = await dribble(
      port,
      head('POST', '/v1/imports', 'application/x-ndjson', file.length),
      file,
      2048,
      200,
    );
    t.equal(res.status, 202, res.body);
    t.ok(res.took > 2 * TIMEOUT_MS, `it took ${res.took} ms`);
    t.equal(JSON.parse(res.body).size_bytes, file.length, 'every byte kept');
    t.equal(await count('imports'), before + 1);
  });

  await t.test('an import file that stops coming: 408, and no import', async (t) => {
    const before = await count('imports');
    const file = Buffer.alloc(200_000, '{"type":"contact"}\n');
    const res = await dribble(
      port,
      head('POST', '/v1/imports', 'application/x-ndjson', file.length),
      file,
      4096,
      50,
      16_384,
    );
    t.equal(res.status, 408, res.body);
    t.match(JSON.parse(res.body), { code: 'request_timeout', instance: '/v1/imports' });
    t.equal(await count('imports'), before, 'no import queued');
  });

  await t.test('the server answers normally afterwards', async (t) => {
    const me = await ctx.request({ method: 'GET', url: '/v1/me', token: owner.token });
    t.equal(me.statusCode, 200);
  });
});
