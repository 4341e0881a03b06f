import { isAdmin } from '../../access/policy.ts';
import { can, type TicketAccess } from '../../access/tickets.ts';
import type { FeedRow } from './repository.ts';

/**
 * The ticket visibility policy applied to one feed row (the stream and webhooks filter rows one
 * by one; the feed filters in SQL with visibleTickets, the same rule). Settings events are for
 * owners and admins only.
 */
export function canSeeEvent(access: TicketAccess, row: FeedRow): boolean {
  if (row.visibility === null) return isAdmin(access.principal);
  return can(access, row.visibility, 'read');
}
