import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createTestDatabase } from './helpers/database.ts';
import { exited, groupMembers, startServer } from './helpers/server.ts';

// The real server process (node src/server.ts), stopped with SIGTERM while its stdout is a pipe
// that nobody reads: log writes then answer EAGAIN. It must still exit within its grace period.

const GRACE_MS = 2_000;
// Generous: the machine is shared. The old code never exited at all.
const EXIT_BOUND_MS = GRACE_MS + 8_000;

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
  const storage: Record<string, string> = database.url
    ? { DATABASE_URL: database.url }
    : { DATA_DIR: dataDir };
  t.comment(`server storage: ${database.url ? 'postgresql' : 'pglite (temporary folder)'}`);

  // The last run as the issue saw it: `npm start`, stopped through its process group.
  for (const [run, viaNpm] of [
    [1, false],
    [2, false],
    [3, true],
  ] as const) {
    await t.test(`run ${run}${viaNpm ? ' (npm start, SIGTERM to its process group)' : ''}`, async (t) => {
      const spawned = Date.now();
      const server = await startServer(
        t,
        { ...storage, LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: String(GRACE_MS) },
        { stdout: 'pipe', viaNpm },
      );
      // Never read: once the pipe and the stream's buffer are full, every write gets EAGAIN.
      server.child.stdout?.pause();
      t.comment(`up after ${Date.now() - spawned} ms`);

      // Each request logs two lines with its long URL: about 2 MB of output nobody reads.
      const url = `${server.base}/v1/me?padding=${'p'.repeat(4_000)}`;
      for (let i = 0; i < 8; i++) {
        const batch = Array.from({ length: 25 }, () => fetch(url).then((r) => r.arrayBuffer()));
        await Promise.all(batch);
      }

      const signalled = Date.now();
      const pid = server.child.pid as number;
      if (viaNpm) process.kill(-pid, 'SIGTERM');
      else server.child.kill('SIGTERM');
      const result = await exited(server.child, EXIT_BOUND_MS);
      t.comment(`exited ${Date.now() - signalled} ms after SIGTERM`);
      t.not(result, 'timeout', `the server exits within ${EXIT_BOUND_MS} ms of SIGTERM`);
      if (viaNpm) {
        // npm may exit before the server does: what counts is that the whole group is gone.
        let left = groupMembers(pid);
        while (left.length > 0 && Date.now() < signalled + EXIT_BOUND_MS) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          left = groupMembers(pid);
        }
        t.comment(`the process group was gone ${Date.now() - signalled} ms after SIGTERM`);
        t.same(left, [], `no process of the group runs ${EXIT_BOUND_MS} ms after SIGTERM`);
      } else if (result !== 'timeout') {
        t.equal(result.signal, null, 'it exits by itself, not by a signal');
      }
    });
  }
});
