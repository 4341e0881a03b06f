import type { Principal } from '../../access/policy.ts';
import { loadTicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { normaliseTag } from '../tickets/repository.ts';
import { countTags } from './repository.ts';
import type { TagListQueryType } from './schemas.ts';

/**
 * Tags for pickers, counted over the tickets the caller may see (src/access/tickets.ts): an
 * agent never learns the tags, or the counts, of tickets outside their reach.
 */
export async function listTags(db: Db, principal: Principal, query: TagListQueryType) {
  const access = await loadTicketAccess(db, principal);
  const prefix = query.q === undefined ? null : normaliseTag(query.q);
  return { data: await countTags(db, access, { prefix: prefix || null, limit: query.limit ?? 100 }) };
}
