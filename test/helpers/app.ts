import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance, FastifyServerOptions, InjectOptions, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import type { Principal } from '../../src/access/policy.ts';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Db } from '../../src/db/database.ts';
import { verifyShapedStatements } from '../../src/db/prepared.ts';
import type { AgentRole, DepartmentRole } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
import { insertDepartment, upsertMember } from '../../src/domains/departments/repository.ts';
import { type Jobs, startJobs } from '../../src/jobs/start.ts';
import { RequestLoad } from '../../src/jobs/yield.ts';
import { localDiskStore } from '../../src/storage/blobs.ts';
import { assertMatchesSpec } from './contract.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

// Every shaped statement the suite runs is checked against a fresh build (db/prepared.ts).
verifyShapedStatements(true);

export const PASSWORD = 'correct horse battery staple';
let passwordHash: Promise<string> | undefined;

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestContext {
  app: FastifyInstance;
  db: Db;
  database: TestDatabase;
  /** The folder of the app's blob store (attachments, received mail). */
  blobDir: string;
  /** The job queue and its workers, when the test asked for them. */
  jobs: Jobs | undefined;
  /** app.inject, checked against the committed OpenAPI document on every call. */
  request(options: InjectOptions & { token?: string }): Promise<LightMyRequestResponse>;
}

/** A real app on a fresh database of its own; torn down with the test. */
export async function buildTestApp(
  t: Teardown,
  env: Record<string, string> = {},
  options: { jobs?: boolean; logger?: FastifyServerOptions['logger'] } = {},
): Promise<TestContext> {
  const database = await createTestDatabase();
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    RATE_LIMIT_MAX: '100000',
    RATE_LIMIT_PER_ADDRESS_MAX: '1000000',
    ...env,
  });
  // The queue runs the way the server runs it (src/jobs/start.ts), polling fast for tests.
  const blobDir = await mkdtemp(path.join(tmpdir(), 'deskroute-blobs-'));
  const blobs = localDiskStore(blobDir);
  const load = new RequestLoad();
  const jobs = options.jobs
    ? await startJobs(
        database.db,
        pino({ level: 'silent' }),
        {
          ...config,
          databaseUrl: database.url ?? undefined,
          jobs: { ...config.jobs, pollIntervalMs: 500, superviseIntervalSeconds: 1 },
        },
        blobs,
        load,
      )
    : undefined;
  const app = await buildApp(config, {
    db: database.db,
    ...(database.url !== null && { databaseUrl: database.url }),
    blobs,
    load,
    jwtSecret: 'test-secret-that-is-long-enough-0123456789',
    ...(options.logger && { logger: options.logger }),
    ...(jobs && { jobs: jobs.queue }),
  });
  await app.ready();
  t.teardown(async () => {
    await jobs?.stop();
    await app.close();
    await database.drop();
    await rm(blobDir, { recursive: true, force: true });
  });
  return {
    app,
    db: database.db,
    database,
    blobDir,
    jobs,
    async request({ token, ...options }) {
      const headers = { ...(options.headers ?? {}) } as Record<string, string>;
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await app.inject({ ...options, headers });
      assertMatchesSpec(String(options.method ?? 'GET'), String(options.url), res);
      return res;
    },
  };
}

let counter = 0;
const unique = () => `${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 7)}`;

export async function makeAgent(
  db: Db,
  options: {
    role?: AgentRole;
    name?: string;
    email?: string;
    departments?: [string, DepartmentRole][];
    password?: string | null;
  } = {},
) {
  passwordHash ??= hashPassword(PASSWORD);
  const hash =
    options.password === null
      ? null
      : options.password
        ? await hashPassword(options.password)
        : await passwordHash;
  const id = unique();
  const row = await insertAgent(db, {
    name: options.name ?? `Agent ${id}`,
    email: options.email ?? `agent-${id}@example.com`,
    role: options.role ?? 'agent',
    password_hash: hash,
  });
  for (const [departmentId, role] of options.departments ?? [])
    await upsertMember(db, departmentId, row.id, role);
  return row;
}

export async function makeDepartment(db: Db, name = `Department ${unique()}`) {
  const { id } = await insertDepartment(db, { name });
  return id;
}

/** Signs in through the API and returns the session token. */
export async function signIn(ctx: TestContext, email: string, password = PASSWORD): Promise<string> {
  const res = await ctx.request({ method: 'POST', url: '/v1/auth/token', payload: { email, password } });
  if (res.statusCode !== 200) throw new Error(`sign-in failed: ${res.statusCode} ${res.body}`);
  return res.json().access_token as string;
}

/** An API token minted through the API with a session; returns its secret. */
export async function mintApiToken(
  ctx: TestContext,
  session: string,
  scopes: ('read' | 'write')[] = ['read', 'write'],
  name = 'integration',
): Promise<string> {
  const res = await ctx.request({
    method: 'POST',
    url: '/v1/api-tokens',
    token: session,
    payload: { name, scopes },
  });
  if (res.statusCode !== 201) throw new Error(`token creation failed: ${res.statusCode} ${res.body}`);
  return res.json().secret as string;
}

/** An agent of the given role, signed in. */
export async function agentWithToken(ctx: TestContext, options: Parameters<typeof makeAgent>[1] = {}) {
  const agent = await makeAgent(ctx.db, options);
  return { agent, token: await signIn(ctx, agent.email) };
}

/**
 * The principal a session of this agent has, for tests that call a service function directly
 * (its departments are read from the database, as for a principal without cached credentials).
 */
export function sessionPrincipal(
  agent: { id: string; role: AgentRole },
  scopes: Principal['scopes'] = ['read', 'write'],
): Principal {
  return { agentId: agent.id, role: agent.role, scopes, via: 'session', tokenId: null };
}
