import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';

type Executor = Kysely<Database>;

export interface CsatSetting {
  enabled: boolean;
  delay_minutes: number;
  source: 'department' | 'default';
}

/** A department's survey setting, or the help-desk default (config) when it set none. */
export async function csatSettingOf(
  db: Executor,
  departmentId: string | null,
  defaults: { enabled: boolean; delayMinutes: number },
): Promise<CsatSetting> {
  const row = departmentId
    ? await db
        .selectFrom('csat_settings')
        .select(['enabled', 'delay_minutes'])
        .where('department_id', '=', departmentId)
        .executeTakeFirst()
    : undefined;
  return row
    ? { ...row, source: 'department' }
    : { enabled: defaults.enabled, delay_minutes: defaults.delayMinutes, source: 'default' };
}

export async function writeCsatSetting(
  db: Executor,
  departmentId: string,
  setting: { enabled: boolean; delay_minutes: number },
): Promise<void> {
  await db
    .insertInto('csat_settings')
    .values({ department_id: departmentId, ...setting })
    .onConflict((oc) => oc.column('department_id').doUpdateSet({ ...setting, updated_at: new Date() }))
    .execute();
}

/** Tokens are 32 random bytes; only their SHA-256 is stored, so a leaked table rates nothing. */
export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * Whether the ticket has a survey link still open (unused, unexpired, its mail on its way or
 * sent): no second one then. A survey cancelled (reopened before the delay) or never delivered
 * does not count: its link reached nobody.
 */
export async function hasOpenSurvey(db: Executor, ticketId: string): Promise<boolean> {
  const row = await db
    .selectFrom('csat_surveys as s')
    .innerJoin('mail_outbox as o', 'o.id', 's.outbox_id')
    .select('s.id')
    .where('s.ticket_id', '=', ticketId)
    .where('s.used_at', 'is', null)
    .where('s.expires_at', '>', new Date())
    .where('o.state', 'in', ['queued', 'sent'])
    .executeTakeFirst();
  return row !== undefined;
}

/** A new survey link for the ticket; returns the token (shown only in the mail). */
export async function insertSurvey(
  db: Executor,
  values: { ticketId: string; expiresAt: Date },
): Promise<{ id: string; token: string }> {
  const token = randomBytes(32).toString('base64url');
  const row = await db
    .insertInto('csat_surveys')
    .values({ ticket_id: values.ticketId, token_hash: hashToken(token), expires_at: values.expiresAt })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, token };
}

export async function linkSurveyToOutbox(db: Executor, surveyId: string, outboxId: string): Promise<void> {
  await db.updateTable('csat_surveys').set({ outbox_id: outboxId }).where('id', '=', surveyId).execute();
}
