// Started by scripts/bench/tickets.ts as a child process: serves the real app and a bare
// fastify + pg route on 127.0.0.1, in an event loop of their own so that the load generator
// does not share it. Reports both ports over IPC and stops when told to.
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createDatabase } from '../../src/db/database.ts';
import { hashApiToken } from '../../src/plugins/auth.ts';

const [databaseUrl, jwtSecret] = process.argv.slice(2);
if (!databaseUrl || !jwtSecret || !process.send) {
  process.stderr.write('usage: started by scripts/bench/tickets.ts\n');
  process.exit(2);
}

// The rate limiter stays on (it is part of the request path) but far above what the bench sends.
const config = loadConfig({
  DATABASE_URL: databaseUrl,
  JWT_SECRET: jwtSecret,
  LOG_LEVEL: 'silent',
  RATE_LIMIT_MAX: '1000000000',
  RATE_LIMIT_PER_ADDRESS_MAX: '1000000000',
});
const db = await createDatabase({ databaseUrl });
const app = await buildApp(config, { db, databaseUrl, jwtSecret, logger: false });
await app.listen({ host: '127.0.0.1', port: 0 });

// The baseline: one insert per request, no validation, no auth, the same pool size as the app.
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
const bare = Fastify({ logger: false });
bare.post('/bare', async (request, reply) => {
  const { rows } = await pool.query('insert into bench_bare (payload) values ($1) returning id', [
    JSON.stringify(request.body),
  ]);
  return reply.code(201).send({ id: rows[0].id });
});
// A probe: the bare route again, but with as many round trips to PostgreSQL as a ticket creation
// makes (?n=: BEGIN, one insert, trivial selects, COMMIT), to tell round trips from work.
bare.post('/bare-round-trips', async (request, reply) => {
  const n = Number((request.query as { n?: string }).n ?? 15);
  const client = await pool.connect();
  try {
    await client.query('begin');
    const { rows } = await client.query('insert into bench_bare (payload) values ($1) returning id', [
      JSON.stringify(request.body),
    ]);
    for (let i = 3; i < n; i++) await client.query('select $1::int as n', [i]);
    await client.query('commit');
    return reply.code(201).send({ id: rows[0].id });
  } finally {
    client.release();
  }
});

// Floor probes: not the app, but the least a creation of the bench's ticket must do on this
// schema, to tell what the app's design costs from what the work costs. The API token is looked
// up, then one statement writes a new contact, its email, the ticket (its 14 indexes and the
// report triggers), the customer's message and the two first events, and returns the ticket.
// No validation, no contact look-up, no rules, no idempotency, no actor details in the history.
// /floor does it per request; /floor-batched gathers the requests that arrive while earlier
// ones are with PostgreSQL into one token statement and one writing statement (group commit):
// a bound on what batching concurrent creations could gain.
interface FloorTicket {
  id: string;
  contact_id: string;
  message_id: string;
  subject: string;
  body: string;
  name: string;
  email: string;
  department_id: string;
}
const FLOOR_TOKENS = {
  name: 'floor_tokens',
  text: `select t.token_hash from api_tokens t join agents a on a.id = t.agent_id
    where t.token_hash = any($1) and t.revoked_at is null and a.status = 'active'`,
};
const FLOOR_CREATE = {
  name: 'floor_create',
  text: `
    with x as (
      select * from jsonb_to_recordset($1::jsonb) as x(id uuid, contact_id uuid, message_id uuid,
        subject text, body text, name text, email text, department_id uuid)
    ), c as (
      insert into contacts (id, name) select contact_id, name from x
    ), ce as (
      insert into contact_emails (contact_id, email, position) select contact_id, email, 0 from x
    ), t as (
      insert into tickets (id, subject, channel, status, priority, department_id, contact_id, search,
        last_customer_message_at)
      select id, subject, 'email', 'new', 'normal', department_id, contact_id,
        to_tsvector('simple', subject || ' ' || body), now()
      from x
      returning id, number, subject, channel, status, priority, department_id, assignee_id, contact_id,
        tags, created_at, updated_at
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_contact_id, body, department_id, created_at)
      select x.message_id, t.id, 'customer', t.channel, t.contact_id, x.body, t.department_id, t.created_at
      from t join x using (id)
    ), e as (
      insert into ticket_events (ticket_id, type, actor_type, actor_contact_id, channel, data, occurred_at, department_id)
      select t.id, type, 'contact', t.contact_id, t.channel, '{}', t.created_at, t.department_id
      from t, unnest(array['created', 'message_added']) type
    )
    select * from t`,
};
async function floorTokens(hashes: string[]): Promise<boolean[]> {
  const { rows } = await pool.query({ ...FLOOR_TOKENS, values: [hashes] });
  const known = new Set(rows.map((r) => r.token_hash as string));
  return hashes.map((h) => known.has(h));
}
async function floorCreate(tickets: FloorTicket[]): Promise<Record<string, unknown>[]> {
  const { rows } = await pool.query({ ...FLOOR_CREATE, values: [JSON.stringify(tickets)] });
  const byId = new Map(rows.map((r) => [r.id as string, r]));
  return tickets.map((t) => byId.get(t.id)!);
}
/** Runs `run` over the items that queue while up to `inFlight` earlier batches are out. */
function gathered<I, O>(run: (items: I[]) => Promise<O[]>, sizes: number[], inFlight = 4) {
  let queue: { item: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  let out = 0;
  let scheduled = false;
  const schedule = () => {
    if (scheduled || queue.length === 0 || out >= inFlight) return;
    scheduled = true;
    // setImmediate: after the requests that this turn of the event loop read.
    setImmediate(flush);
  };
  const flush = async () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    out++;
    sizes.push(batch.length);
    try {
      const results = await run(batch.map((b) => b.item));
      for (const [i, b] of batch.entries()) b.resolve(results[i]!);
    } catch (error) {
      for (const b of batch) b.reject(error);
    } finally {
      out--;
      schedule();
    }
  };
  return (item: I) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      schedule();
    });
}
const batchSizes: number[] = [];
const floorTokensBatched = gathered(floorTokens, []);
const floorCreateBatched = gathered(floorCreate, batchSizes);
for (const [path, tokens, create] of [
  [
    '/floor',
    (h: string) => floorTokens([h]).then((r) => r[0]!),
    (t: FloorTicket) => floorCreate([t]).then((r) => r[0]!),
  ],
  ['/floor-batched', floorTokensBatched, floorCreateBatched],
] as const) {
  bare.post(path, async (request, reply) => {
    const secret = request.headers.authorization?.replace(/^Bearer /, '') ?? '';
    if (!(await tokens(hashApiToken(secret)))) return reply.code(401).send({});
    const body = request.body as {
      subject: string;
      department_id: string;
      contact: { email: string; name: string };
      message: { body: string };
    };
    const ticket = await create({
      id: randomUUID(),
      contact_id: randomUUID(),
      message_id: randomUUID(),
      subject: body.subject,
      body: body.message.body,
      name: body.contact.name,
      email: body.contact.email,
      department_id: body.department_id,
    });
    return reply.code(201).send({ ...ticket, contact: body.contact });
  });
}
bare.get('/floor-batches', async () => {
  const sizes = batchSizes.splice(0);
  return { batches: sizes.length, mean: sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length) };
});
await bare.listen({ host: '127.0.0.1', port: 0 });

const port = (server: { server: { address(): unknown } }) =>
  (server.server.address() as { port: number }).port;
process.send({ app: port(app), bare: port(bare) });

process.on('message', async (message) => {
  if (message !== 'stop') return;
  await Promise.allSettled([app.close(), bare.close()]);
  await Promise.allSettled([db.destroy(), pool.end()]);
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));
