// STAND-IN: replaced at merge
// The mail-in engineer's mailboxes hold per-department SMTP settings; until they are merged no
// department has any, and mail goes through SMTP_URL.
import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';

export interface SmtpSettings {
  host: string;
  port: number;
  secure: boolean;
  user: string | null;
  password: string | null;
}

export async function smtpSettingsOfDepartment(
  _db: Kysely<Database>,
  _departmentId: string,
): Promise<SmtpSettings | undefined> {
  return undefined;
}
