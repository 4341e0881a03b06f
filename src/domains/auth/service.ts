import type { Db } from '../../db/database.ts';
import type { AgentRow } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { findAgentRowByEmail, recordSignIn } from '../agents/repository.ts';
import { verifyPassword } from './passwords.ts';
import * as throttle from './repository.ts';

const wrongCredentials = () =>
  new DomainError(
    'unauthenticated',
    'invalid_credentials',
    'The email or password is wrong, or the account is disabled.',
  );

/**
 * Checks email and password. Unknown emails, wrong passwords and disabled agents all answer the
 * same 401 after the same scrypt work, and failures per email are throttled for every instance
 * alike (the counter lives in the database), whether or not the email exists.
 */
export async function signIn(
  db: Db,
  input: { email: string; password: string },
  limits: { maxFailures: number; lockSeconds: number },
): Promise<AgentRow> {
  const email = input.email.trim().toLowerCase();
  // Prefixed: the throttle's keys share one table, and a made-up "email" must not be able to
  // name another counter (an agent's password-change counter, say) and lock it.
  const key = `sign-in:${email}`;
  // Counted before the password is checked: guesses sent together are limited like guesses in turn.
  const blocked = await throttle.takeAttempt(db, key, limits.maxFailures, limits.lockSeconds);
  if (blocked > 0) {
    const error = new DomainError(
      'throttled',
      'too_many_sign_in_attempts',
      'Too many failed sign-ins; try again later.',
    );
    error.retryAfterSeconds = blocked;
    throw error;
  }
  const agent = await findAgentRowByEmail(db, email);
  const passwordOk = await verifyPassword(input.password, agent?.password_hash ?? null);
  if (!agent || !passwordOk || agent.status !== 'active') throw wrongCredentials();
  await throttle.clearFailures(db, key);
  await recordSignIn(db, agent.id);
  return agent;
}
