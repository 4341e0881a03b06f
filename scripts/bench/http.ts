// What the HTTP benchmarks (tickets.ts, rules.ts) share: a JSON request, an autocannon load of
// POSTs with a fresh body per request, and the number of statements one ticket creation sends.
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/types.ts';

/** One JSON request; throws on any status from 300 up. */
export async function http(method: string, url: string, token: string | null, body?: unknown) {
  const res = await fetch(url, {
    method,
    headers: {
      ...(token && { authorization: `Bearer ${token}` }),
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export interface Load {
  rps: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
  statuses: string;
}

/** POSTs `body()` to `url` + `path` over `connections` connections for `duration` seconds. */
export async function postLoad(options: {
  url: string;
  path: string;
  headers: Record<string, string>;
  body: () => string;
  duration: number;
  connections: number;
}): Promise<Load> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.duration,
    requests: [
      {
        method: 'POST',
        path: options.path,
        headers: { 'content-type': 'application/json', ...options.headers },
        setupRequest: (request) => ({ ...request, body: options.body() }),
      },
    ],
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    statuses: Object.entries(result.statusCodeStats ?? {})
      .map(([code, stat]) => `${code}: ${stat.count ?? 0}`)
      .join(', '),
  };
}

/**
 * Statements (round trips to PostgreSQL) of one POST /v1/tickets, counted on an app in this
 * process: the mean over `samples` creations after one unmeasured.
 */
export async function queriesPerCreation(
  databaseUrl: string,
  authorization: string,
  payload: () => string | object,
  samples: number,
): Promise<number> {
  let count = 0;
  const counted = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl, max: 1 }) }),
    log: (event) => {
      if (event.level === 'query') count++;
    },
  });
  const secret = randomBytes(32).toString('base64url');
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', JWT_SECRET: secret }), {
    db: counted,
    jwtSecret: secret,
  });
  try {
    const send = () =>
      app.inject({
        method: 'POST',
        url: '/v1/tickets',
        headers: { authorization, 'content-type': 'application/json' },
        payload: payload(),
      });
    await send();
    const counts: number[] = [];
    for (let i = 0; i < samples; i++) {
      count = 0;
      const res = await send();
      if (res.statusCode !== 201) throw new Error(`POST /v1/tickets: ${res.statusCode} ${res.body}`);
      counts.push(count);
    }
    return counts.reduce((a, b) => a + b, 0) / counts.length;
  } finally {
    await app.close();
    await counted.destroy();
  }
}
