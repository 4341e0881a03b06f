import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import t from 'tap';
import { closedPort, relayTo } from './helpers/network.ts';

// The real server (`node src/server.ts`) started before PostgreSQL is up waits for it with
// logged backoff instead of exiting (docs/architecture.md, "Faults"). Its own file: a child
// process that starts, waits and migrates is the slowest part of the outage tests.

const serverUrl = process.env.TEST_DATABASE_URL;
const needsServerToRelay = serverUrl ? false : 'needs a PostgreSQL server to relay to (PGlite has no port)';
const JWT_SECRET = 'test-secret-that-is-long-enough-0123456789';

t.test(
  'a server started before its database waits with backoff, then serves',
  {
    skip: needsServerToRelay,
  },
  async (t) => {
    // The database is reached through a port that refuses until the test opens a relay on it to
    // the real server: PostgreSQL "comes up" later than the process.
    const port = await closedPort();
    const target = new URL(serverUrl!);
    const relay = relayTo(target.hostname, Number(target.port || 5432));
    const admin = new pg.Client({ connectionString: serverUrl! });
    await admin.connect();
    const database = `deskroute_wait_${process.pid}`;
    await admin.query(`create database ${database}`);
    t.teardown(async () => {
      relay.close();
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
    });
    const url = new URL(serverUrl!);
    url.port = String(port);
    url.pathname = `/${database}`;
    const child = spawn(process.execPath, ['src/server.ts'], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: url.toString(),
        PORT: '0',
        LOG_LEVEL: 'warn',
        JWT_SECRET,
        DESKROUTE_ADMIN_EMAIL: 'owner@example.com',
        DESKROUTE_ADMIN_PASSWORD: 'correct horse battery staple',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    let exited: number | null | undefined;
    child.on('exit', (code) => {
      exited = code;
    });
    t.teardown(() => {
      if (exited === undefined) child.kill('SIGKILL');
    });
    const until = async (what: RegExp, seconds: number) => {
      for (let i = 0; i < seconds * 20 && !what.test(output) && exited === undefined; i++) await sleep(50);
      return what.test(output);
    };
    t.ok(await until(/"attempt":2,.*database unreachable while migrating; retrying/, 40), 'retries, logged');
    t.equal(exited, undefined, 'the process waits instead of exiting');
    await relay.listen(port);
    t.ok(
      await until(/Deskroute listening on (http:\/\/\S+)/, 60),
      `serves once the database is there:\n${output}`,
    );
    const base = /Deskroute listening on (http:\/\/\S+)/.exec(output)![1]!;
    t.equal((await fetch(`${base}/readyz`)).status, 200, '/readyz 200');
    const signIn = await fetch(`${base}/v1/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@example.com', password: 'correct horse battery staple' }),
    });
    t.equal(signIn.status, 200, 'migrated, first owner created, signs in');
    child.kill('SIGTERM');
    await once(child, 'exit');
  },
);
