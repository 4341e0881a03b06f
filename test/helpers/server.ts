import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

// Real server processes (node src/server.ts) for the tests that need more than app.inject:
// signals, log output, several instances on one database.

const ROOT = path.resolve(import.meta.dirname, '../..');
const SERVER = path.join(ROOT, 'src/server.ts');
export const TEST_JWT_SECRET = 'test-secret-that-is-long-enough-0123456789';

/**
 * Listens on a free local port until the test ends (then its connections are cut, so a held
 * response never keeps the test open); answers the port.
 */
export async function listenLocal(
  t: { teardown(fn: () => unknown): void },
  server: net.Server & { closeAllConnections(): void },
): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface ServerProcess {
  child: ChildProcess;
  base: string;
  /** What the server wrote to stderr, for failure messages. */
  stderr(): string;
}

/**
 * Spawns the server on 127.0.0.1 and a free port with `env` (DATABASE_URL or DATA_DIR among it)
 * and waits until /healthz answers. Killed with SIGKILL by `teardown` if still running.
 * `viaNpm` runs `npm start` instead, as the leader of a process group of its own.
 */
export async function startServer(
  t: { teardown(fn: () => unknown): void },
  env: Record<string, string>,
  { stdout = 'ignore', viaNpm = false }: { stdout?: 'pipe' | 'ignore'; viaNpm?: boolean } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const [command, args] = viaNpm ? ['npm', ['start', '--silent']] : [process.execPath, [SERVER]];
  const child = spawn(command as string, args as string[], {
    cwd: ROOT,
    detached: viaNpm,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      JWT_SECRET: TEST_JWT_SECRET,
      RATE_LIMIT_MAX: '100000',
      RATE_LIMIT_PER_ADDRESS_MAX: '1000000',
      ...env,
    },
    stdio: ['ignore', stdout, 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8_000);
  });
  t.teardown(() => {
    if (viaNpm && child.pid) {
      if (groupMembers(child.pid).length > 0) process.kill(-child.pid, 'SIGKILL');
    } else if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited early (${child.exitCode}): ${stderr}`);
    if (Date.now() > deadline) throw new Error(`server did not come up within 90 s: ${stderr}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, base, stderr: () => stderr };
}

/** Resolves with how the process ended, or 'timeout' if it is still running after `withinMs`. */
export function exited(child: ChildProcess, withinMs: number) {
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

/**
 * The processes of the process group led by `pid` that still run. Exited ones waiting to be
 * reaped (zombies, state Z) do not count: when npm exits first, its child is reaped by init.
 * Reads /proc (Linux).
 */
export function groupMembers(pid: number): string[] {
  const running: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after it.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pid && state !== 'Z')
      running.push(`${entry} ${stat.slice(0, stat.lastIndexOf(')') + 1)}`);
  }
  return running;
}
