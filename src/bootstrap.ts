import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { Config } from './config.ts';
import type { Db } from './db/database.ts';
import { countAgents, findAgent, insertAgent } from './domains/agents/repository.ts';
import { generatePassword, hashPassword } from './domains/auth/passwords.ts';
import { recordSettingsChange } from './domains/events/settings.ts';

export const DEFAULT_ADMIN_EMAIL = 'admin@deskroute.local';

export type FirstAdmin =
  | { created: true; email: string; generatedPassword: string | null }
  | { created: false };

/**
 * Creates the first owner when the help desk has no agent yet: from DESKROUTE_ADMIN_EMAIL and
 * DESKROUTE_ADMIN_PASSWORD when given, else with a generated password that the caller prints
 * once. An advisory lock keeps two instances starting together from creating two.
 */
export async function ensureFirstAdmin(db: Db, config: Config): Promise<FirstAdmin> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext('deskroute:first-admin'))`.execute(trx);
    if ((await countAgents(trx)) > 0) return { created: false };
    const email = config.admin.email ?? DEFAULT_ADMIN_EMAIL;
    const generatedPassword = config.admin.password ? null : generatePassword();
    const { id } = await insertAgent(trx, {
      name: 'Owner',
      email,
      role: 'owner',
      password_hash: await hashPassword(config.admin.password ?? generatedPassword!),
    });
    await recordSettingsChange(
      trx,
      null,
      'agent.created',
      { subjectId: id },
      { agent: await findAgent(trx, id) },
    );
    return { created: true, email, generatedPassword };
  });
}

/**
 * JWT_SECRET when set; otherwise a secret generated once and kept in the data folder, so
 * sessions survive restarts of the zero-setup server. Production refuses to start without one
 * (see config.ts).
 */
export async function resolveJwtSecret(config: Config): Promise<string> {
  if (config.jwtSecret) return config.jwtSecret;
  const file = path.resolve(config.dataDir, 'jwt-secret');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 32) return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(config.dataDir, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
