// How the list benches (tickets.ts, sla.ts) time GET /v1/tickets: the pages of a few queries
// collected once, then timed requests over them one at a time; and the exact statement
// listTickets sends for each page, to time the database's share alone and to EXPLAIN it.
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Principal } from '../../src/access/policy.ts';
import { loadTicketAccess } from '../../src/access/tickets.ts';
import type { Database } from '../../src/db/types.ts';
import { listTickets } from '../../src/domains/tickets/repository.ts';
import type { TicketListQueryType } from '../../src/domains/tickets/schemas.ts';
import type { Random } from '../seed-demo/random.ts';
import { http } from './http.ts';

/** Query parameters of GET /v1/tickets; an array repeats the parameter. */
export type ListQuery = Record<string, string | string[]>;

/** The parameters the list takes as arrays (repeatable), as its schema says. */
const REPEATABLE = new Set(['department_id', 'status', 'channel', 'assignee_id', 'tag', 'priority']);

const PAGE = 50;

/** The URLs of the first `pages` pages of each query, following the cursors once. */
export async function listPages(
  base: string,
  token: string,
  queries: ListQuery[],
  pages = 8,
): Promise<string[]> {
  const urls: string[] = [];
  for (const query of queries) {
    let cursor: string | null = null;
    for (let page = 0; page < pages; page++) {
      const params = new URLSearchParams({ limit: String(PAGE) });
      for (const [k, v] of Object.entries(query)) for (const one of [v].flat()) params.append(k, one);
      if (cursor) params.set('cursor', cursor);
      const url = `${base}/v1/tickets?${params}`;
      urls.push(url);
      cursor = (await http('GET', url, token)).next_cursor;
      if (!cursor) break;
    }
  }
  return urls;
}

/** Latencies in ms (ascending) of `iterations` GETs of random `urls`, one at a time, after `warmUp` untimed. */
export async function timeGets(
  urls: string[],
  token: string,
  options: { warmUp: number; iterations: number; random: Random },
): Promise<number[]> {
  for (let i = 0; i < options.warmUp; i++) await http('GET', options.random.pick(urls), token);
  const times: number[] = [];
  for (let i = 0; i < options.iterations; i++) {
    const url = options.random.pick(urls);
    const t0 = performance.now();
    await http('GET', url, token);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b);
}

export interface Statement {
  sql: string;
  parameters: unknown[];
}

/** Runs a page's statements one after the other on `client`; the time in ms. */
export async function timePage(client: pg.Client, page: Statement[]): Promise<number> {
  const t0 = performance.now();
  for (const statement of page) await client.query(statement.sql, statement.parameters);
  return performance.now() - t0;
}

/**
 * The list statements listTickets sends for each of the first `pages` pages of each query (one
 * array per page), for `principal`, captured from Kysely's log on a connection of its own.
 */
export async function listStatements(
  databaseUrl: string,
  principal: Principal,
  queries: ListQuery[],
  pages = 8,
): Promise<Statement[][]> {
  const captured: Statement[] = [];
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl, max: 1 }) }),
    log: (event) => {
      if (event.level === 'query')
        captured.push({ sql: event.query.sql, parameters: [...event.query.parameters] });
    },
  });
  const statements: Statement[][] = [];
  try {
    const access = await loadTicketAccess(db, principal);
    for (const query of queries) {
      let cursor: string | null = null;
      for (let page = 0; page < pages; page++) {
        captured.length = 0;
        const listQuery = {
          limit: PAGE,
          sort: '-created_at',
          ...Object.fromEntries(
            Object.entries(query).map(([k, v]) => [k, REPEATABLE.has(k) ? [v].flat() : v]),
          ),
          ...(cursor && { cursor }),
        } as TicketListQueryType;
        cursor = (await listTickets(db, access, listQuery)).next_cursor;
        // The access look-up aside, what one page sends (the contact summaries travel within it).
        statements.push(captured.filter((q) => q.sql.includes('from "tickets" as "t"')));
        if (!cursor) break;
      }
    }
  } finally {
    await db.destroy();
  }
  return statements;
}

/** EXPLAIN (ANALYZE, BUFFERS) of one statement: the statement, its select list shortened, then the plan. */
export async function explainLines(client: pg.Client, statement: Statement): Promise<string[]> {
  const plan = await client.query(`explain (analyze, buffers) ${statement.sql}`, statement.parameters);
  return [
    statement.sql
      .replace(/\s+/g, ' ')
      .replace(/select .* from "tickets"/, 'select <ticket columns> from "tickets"'),
    ...plan.rows.map((row) => row['QUERY PLAN'] as string),
  ];
}
