// Live-stream fan-out: N subscribers on one server process, tickets created one after another;
// for every (subscriber, ticket) pair, the time from the creation's response (its commit) to the
// message's arrival at the subscriber. Subscribers are real HTTP connections in this process, so
// their parsing shares the event loop with the server (the figure is pessimistic).
//   SUBSCRIBERS=1000 TICKETS=40 TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//     node scripts/bench/stream-fanout.ts
// Without TEST_DATABASE_URL it runs on embedded PGlite. Uses the test suite's scratch databases.
import http from 'node:http';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { verifyShapedStatements } from '../../src/db/prepared.ts';
import { makeAgent, PASSWORD } from '../../test/helpers/app.ts';
import { createTestDatabase } from '../../test/helpers/database.ts';

// The test helpers check every shaped statement against a fresh build; a bench measures the
// server as it runs in production.
verifyShapedStatements(false);

const SUBSCRIBERS = Number(process.env.SUBSCRIBERS ?? 1000);
const TICKETS = Number(process.env.TICKETS ?? 40);
const GAP_MS = Number(process.env.GAP_MS ?? 100);

const database = await createTestDatabase();
const app = await buildApp(
  loadConfig({
    LOG_LEVEL: 'silent',
    RATE_LIMIT_MAX: '1000000',
    RATE_LIMIT_PER_ADDRESS_MAX: '1000000',
    STREAM_MAX_SUBSCRIBERS: String(SUBSCRIBERS + 10),
  }),
  { db: database.db, jwtSecret: 'bench-secret-that-is-long-enough-0123456789' },
);
await app.listen({ host: '127.0.0.1', port: 0 });
const { port } = app.server.address() as { port: number };
const admin = await makeAgent(database.db, { role: 'admin' });
const token = (
  await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { email: admin.email, password: PASSWORD },
  })
).json().access_token as string;

const arrivals = new Map<string, number[]>();
const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
const requests: http.ClientRequest[] = [];
let open = 0;
await new Promise<void>((resolve, reject) => {
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const req = http.get(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/events/stream?types=ticket.created',
        agent,
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`subscriber ${i}: ${res.statusCode}`));
        if (++open === SUBSCRIBERS) resolve();
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          const now = performance.now();
          buffer += chunk;
          for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (!data) continue;
            const ticketId = (JSON.parse(data.slice(6)) as { ticket_id: string }).ticket_id;
            const list = arrivals.get(ticketId) ?? [];
            list.push(now);
            arrivals.set(ticketId, list);
          }
        });
      },
    );
    req.on('error', reject);
    requests.push(req);
  }
});
process.stdout.write(`${SUBSCRIBERS} subscribers connected on ${database.kind}\n`);

const committed = new Map<string, number>();
for (let i = 0; i < TICKETS; i++) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/tickets',
    headers: { authorization: `Bearer ${token}` },
    payload: {
      subject: `Fan-out ${i}`,
      contact: { email: `fanout-${i}@example.com` },
      message: { body: 'Hi' },
    },
  });
  committed.set(res.json().id as string, performance.now());
  await new Promise((r) => setTimeout(r, GAP_MS));
}
const deadline = Date.now() + 30_000;
while (
  Date.now() < deadline &&
  [...committed.keys()].some((id) => (arrivals.get(id)?.length ?? 0) < SUBSCRIBERS)
) {
  await new Promise((r) => setTimeout(r, 50));
}
const latencies: number[] = [];
let missing = 0;
for (const [id, at] of committed) {
  const got = arrivals.get(id) ?? [];
  missing += SUBSCRIBERS - got.length;
  for (const t of got) latencies.push(t - at);
}
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
process.stdout.write(
  `${TICKETS} tickets x ${SUBSCRIBERS} subscribers: ${latencies.length} deliveries, ${missing} missing; ` +
    `commit-to-arrival p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${pct(100).toFixed(1)} ms\n`,
);
for (const r of requests) r.destroy();
await app.close();
await database.drop();
