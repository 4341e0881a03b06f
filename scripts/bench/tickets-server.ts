// Started by scripts/bench/tickets.ts as a child process: serves the real app and a bare
// fastify + pg route on 127.0.0.1, in an event loop of their own so that the load generator
// does not share it. Reports both ports over IPC and stops when told to.
import Fastify from 'fastify';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createDatabase } from '../../src/db/database.ts';

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
const app = await buildApp(config, { db, jwtSecret, logger: false });
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
