import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createTestDatabase } from './helpers/database.ts';

// The real server process (node src/server.ts), stopped with SIGTERM while its stdout is a pipe
// that nobody reads: log writes then answer EAGAIN. It must still exit within its grace period.

const SERVER = path.resolve(import.meta.dirname, '../src/server.ts');
const GRACE_MS = 2_000;
// Generous: the machine is shared. The old code never exited at all.
const EXIT_BOUND_MS = GRACE_MS + 8_000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function exited(child: ChildProcess, withinMs: number) {
  return new Promise<{ code: number | null; signal: string | null } | 'timeout'>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return resolve({ code: child.exitCode, signal: child.signalCode });
    const timer = setTimeout(() => resolve('timeout'), withinMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

async function waitUntilUp(child: ChildProcess, base: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited early with ${child.exitCode}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('server did not come up within 60 s');
}

// Three real server start-ups take a while on a busy machine; tell tap's runner.
t.setTimeout(300_000);

t.test('SIGTERM ends the server even when nobody reads its log output', async (t) => {
  const database = await createTestDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'deskroute-shutdown-'));
  t.teardown(async () => {
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  });
  // PGlite holds its data folder alone: the test's own in-memory database is not shared, the
  // server gets a folder of its own.
  const storage = database.url ? { DATABASE_URL: database.url } : { DATA_DIR: dataDir };
  t.comment(`server storage: ${database.url ? 'postgresql' : 'pglite (temporary folder)'}`);

  for (const run of [1, 2, 3]) {
    await t.test(`run ${run}`, async (t) => {
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      const child = spawn(process.execPath, [SERVER], {
        env: {
          PATH: process.env.PATH,
          ...storage,
          PORT: String(port),
          HOST: '127.0.0.1',
          LOG_LEVEL: 'info',
          SHUTDOWN_GRACE_MS: String(GRACE_MS),
          JWT_SECRET: 'test-secret-that-is-long-enough-0123456789',
          RATE_LIMIT_PER_ADDRESS_MAX: '100000',
        },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      // Never read: once the pipe and the stream's buffer are full, every write gets EAGAIN.
      child.stdout?.pause();
      t.teardown(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
      const spawned = Date.now();
      await waitUntilUp(child, base);
      t.comment(`up after ${Date.now() - spawned} ms`);

      // Each request logs two lines with its long URL: a few MB of output nobody reads.
      const url = `${base}/v1/me?padding=${'p'.repeat(4_000)}`;
      for (let i = 0; i < 8; i++) {
        const batch = Array.from({ length: 25 }, () => fetch(url).then((r) => r.arrayBuffer()));
        await Promise.all(batch);
      }

      const signalled = Date.now();
      child.kill('SIGTERM');
      const result = await exited(child, EXIT_BOUND_MS);
      t.comment(`exited ${Date.now() - signalled} ms after SIGTERM`);
      t.not(result, 'timeout', `the server exits within ${EXIT_BOUND_MS} ms of SIGTERM`);
      if (result !== 'timeout') t.equal(result.signal, null, 'it exits by itself, not by a signal');
    });
  }
});
