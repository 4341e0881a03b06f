import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { closedPort } from './network.ts';

export const DOVECOT = '/usr/sbin/dovecot';

export interface Dovecot {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Stops the instance and removes its folder. */
  stop(): Promise<void>;
}

/** Why Dovecot cannot run here, or undefined when it can. */
export function dovecotMissing(): string | undefined {
  return existsSync(DOVECOT) ? undefined : `${DOVECOT} is not installed (apt-get install dovecot-imapd)`;
}

async function uidOf(name: string): Promise<{ uid: number; gid: number } | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function waitForPort(port: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`dovecot did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopMaster(config: string) {
  return new Promise<void>((resolve) => {
    const child = spawn(DOVECOT, ['-c', config, 'stop'], { stdio: 'ignore' });
    child.once('error', () => resolve());
    child.once('exit', () => resolve());
  });
}

/**
 * A private Dovecot: its own config, base and state folders and maildirs in a temporary folder, a
 * free loopback port, no TLS, one passwd-file user with a plaintext password, no system logins.
 */
export async function startDovecot(): Promise<Dovecot> {
  const dir = await mkdtemp(path.join(tmpdir(), 'deskroute-dovecot-'));
  const port = await closedPort();
  const user = 'sales@acme.test';
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  const me = userInfo();
  // Dovecot refuses to keep mail as root: as root the mail belongs to its own dovecot user.
  const owner =
    me.uid === 0 ? ((await uidOf('dovecot')) ?? { uid: 0, gid: 0 }) : { uid: me.uid, gid: me.gid };
  const internalUser = me.uid === 0 ? 'dovecot' : me.username;
  const loginUser = me.uid === 0 ? 'dovenull' : me.username;
  // Dovecot's auth and mail processes run as its own users and must reach the files below.
  await chmod(dir, 0o755);
  for (const sub of ['run', 'state', 'mail']) await mkdir(path.join(dir, sub), { recursive: true });
  await chown(path.join(dir, 'mail'), owner.uid, owner.gid);
  await writeFile(path.join(dir, 'users'), `${user}:{PLAIN}${password}\n`);
  const config = path.join(dir, 'dovecot.conf');
  await writeFile(
    config,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = deskroute-${port}
log_path = ${dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = ${internalUser}
default_login_user = ${loginUser}
first_valid_uid = ${owner.uid}
first_valid_gid = ${owner.gid}
mail_location = maildir:${dir}/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=${owner.uid} gid=${owner.gid} home=${dir}/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
`,
  );
  // The master daemonises and its children keep inherited pipes open: no stdio, wait for its exit.
  await new Promise<void>((resolve, reject) => {
    const child = spawn(DOVECOT, ['-c', config], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`dovecot exited with ${code}`))));
  });
  try {
    await waitForPort(port, 10_000);
  } catch (error) {
    const log = await readFile(path.join(dir, 'dovecot.log'), 'utf8').catch(() => '');
    await stopMaster(config);
    throw new Error(`${(error as Error).message}\n${log}`);
  }
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    async stop() {
      await stopMaster(config);
      // The master removes its pid file when all of it is gone.
      const deadline = Date.now() + 5_000;
      while (existsSync(path.join(dir, 'run', 'master.pid')) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
