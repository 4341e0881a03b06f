import { canManageDepartment, isAdmin, type Principal } from '../../access/policy.ts';
import type { MailConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import { DomainError, forbidden, notFound } from '../../errors.ts';
import { departmentsExist, lockDepartment, roleInDepartment } from '../departments/repository.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import { insertRating } from '../tickets/repository.ts';
import { writeTicket } from '../tickets/write.ts';
import { csatSettingOf, hashToken, writeCsatSetting } from './repository.ts';

async function readable(db: Db, principal: Principal, departmentId: string) {
  if (!(await departmentsExist(db, [departmentId])).has(departmentId)) throw notFound('department');
  const role = isAdmin(principal) ? null : await roleInDepartment(db, principal.agentId, departmentId);
  // Members and admins may read it; others do not learn the department exists.
  if (!isAdmin(principal) && role === null) throw notFound('department');
  return role;
}

export async function departmentCsat(db: Db, config: MailConfig, principal: Principal, departmentId: string) {
  await readable(db, principal, departmentId);
  return { department_id: departmentId, ...(await csatSettingOf(db, departmentId, config.csat)) };
}

export async function setDepartmentCsat(
  db: Db,
  config: MailConfig,
  principal: Principal,
  departmentId: string,
  body: { enabled: boolean; delay_minutes: number },
) {
  const role = await readable(db, principal, departmentId);
  if (!canManageDepartment(principal, role))
    throw forbidden('Only the department’s managers (or admins) set its surveys.', 'manager_required');
  await db.transaction().execute(async (trx) => {
    if (!(await lockDepartment(trx, departmentId))) throw notFound('department');
    const before = await csatSettingOf(trx, departmentId, config.csat);
    await writeCsatSetting(trx, departmentId, body);
    const changes = changesBetween(
      { enabled: before.enabled, delay_minutes: before.delay_minutes },
      { enabled: body.enabled, delay_minutes: body.delay_minutes },
    );
    if (before.source === 'department' && Object.keys(changes).length === 0) return;
    await recordSettingsChange(
      trx,
      principal,
      'csat_settings.updated',
      { departmentId, subjectId: departmentId },
      { department_id: departmentId, ...body, changes },
    );
  });
  return departmentCsat(db, config, principal, departmentId);
}

const gone = () => new DomainError('gone', 'survey_expired', 'This survey link has expired.');

function findSurvey(db: Db, token: string) {
  return db
    .selectFrom('csat_surveys as s')
    .innerJoin('tickets as t', 't.id', 's.ticket_id')
    .leftJoin('departments as d', 'd.id', 't.department_id')
    .select([
      's.id',
      's.ticket_id',
      's.expires_at',
      's.used_at',
      't.number',
      't.subject',
      't.status',
      'd.name as department',
    ])
    .where('s.token_hash', '=', hashToken(token));
}

/** What the survey page shows: the ticket's reference, subject and department; nothing private. */
export async function publicSurvey(db: Db, token: string) {
  const survey = await findSurvey(db, token).executeTakeFirst();
  if (!survey || survey.status === 'deleted' || survey.status === 'spam') throw notFound('survey');
  if (survey.used_at === null && survey.expires_at <= new Date()) throw gone();
  return {
    reference: `[Ticket#${survey.number}]`,
    subject: survey.subject,
    department: survey.department,
    expires_at: survey.expires_at.toISOString(),
    rated: survey.used_at !== null,
  };
}

/**
 * Records the survey's rating through the ratings path (a ratings row and the ticket's `rated`
 * event by its contact, so it reaches the reports), once: the link is locked, checked and spent
 * in the rating's transaction.
 */
export async function rateBySurvey(
  db: Db,
  token: string,
  body: { rating: 'positive' | 'negative'; comment?: string | undefined },
) {
  return db.transaction().execute(async (trx) => {
    const survey = await findSurvey(trx, token).forUpdate('s').executeTakeFirst();
    if (!survey || survey.status === 'deleted' || survey.status === 'spam') throw notFound('survey');
    if (survey.used_at !== null)
      throw new DomainError('conflict', 'survey_used', 'This survey link was used already.');
    if (survey.expires_at <= new Date()) throw gone();
    const { result } = await writeTicket(trx, {
      kind: 'change',
      target: { id: survey.ticket_id },
      access: null,
      decide: async (ticket) => {
        const row = await insertRating(trx, {
          ticket_id: ticket.id,
          message_id: null,
          agent_id: ticket.assignee_id,
          department_id: ticket.department_id,
          value: body.rating,
          comment: body.comment ?? null,
        });
        const data = { rating_id: row.id, value: row.value, rated_agent_id: row.agent_id, message_id: null };
        return {
          steps: [
            {
              event: { type: 'rated' as const, data },
              actor: { type: 'contact' as const, agentId: null, contactId: ticket.contact_id, tokenId: null },
            },
          ],
          result: row,
        };
      },
    });
    await trx
      .updateTable('csat_surveys')
      .set({ used_at: result.created_at, rating_id: result.id })
      .where('id', '=', survey.id)
      .execute();
    return {
      reference: `[Ticket#${survey.number}]`,
      rating: result.value,
      comment: result.comment,
      created_at: result.created_at.toISOString(),
    };
  });
}
