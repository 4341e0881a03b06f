import type { TicketStatus } from '../../db/types.ts';
import { invalid } from '../../errors.ts';
import { fittingTags, LIMITS, tagBytes } from '../../rule-engine/index.ts';
import {
  type BusinessSpan,
  type NewEvent,
  normaliseTag,
  type TicketPatch,
  type TicketRecord,
} from './repository.ts';

// What a change to a ticket means, worked out in memory: the history events a patch makes and
// the patch a status move needs. Pure, so the write path and the rule runner share it without
// importing each other.

export function normaliseTags(tags: string[]): string[] {
  return [...new Set(tags.map(normaliseTag))];
}

/**
 * The most a ticket's tags may take together, in UTF-8 bytes. They are in a btree index
 * (tickets_views_unfinished_idx, migrations/0036), whose rows hold at most 2,704 bytes: 50 tags
 * of 50 random characters (2,500 bytes, over 2,800 as an array) failed the insert, a 500. Two
 * thousand leaves room for the array's own bytes and the index's other columns.
 */
export const TAG_BYTES = LIMITS.maxTicketTagBytes;

/**
 * The first tags that fit TAG_BYTES together, for tags no caller typed (a rule's, a canned
 * response's): those are dropped past the budget rather than failing the write.
 */
export const fitTags: (tags: readonly string[]) => string[] = fittingTags;

export { tagBytes };

/** 400 tags_too_long when the (normalised) tags take more than TAG_BYTES together. */
export function assertTagsFit(tags: string[], field: string) {
  const bytes = tagBytes(tags);
  if (bytes > TAG_BYTES) {
    throw invalid(
      'tags_too_long',
      `A ticket's tags take at most ${TAG_BYTES} bytes together (UTF-8); these take ${bytes}.`,
      [{ field, message: `more than ${TAG_BYTES} bytes together` }],
    );
  }
}

/** What the history tells about a ticket's state. */
export type TicketState = Pick<
  TicketRecord,
  | 'subject'
  | 'priority'
  | 'department_id'
  | 'assignee_id'
  | 'status'
  | 'postponed_until'
  | 'tags'
  | 'created_at'
  | 'first_resolved_at'
>;

/** The history events that tell what changed between two states of a ticket. */
export function changeEvents(before: TicketState, after: TicketState): NewEvent[] {
  const events: NewEvent[] = [];
  if (after.subject !== before.subject)
    events.push({ type: 'subject_changed', data: { from: before.subject, to: after.subject } });
  if (after.priority !== before.priority) {
    events.push({ type: 'priority_changed', data: { from: before.priority, to: after.priority } });
  }
  if (after.department_id !== before.department_id) {
    events.push({
      type: 'transferred',
      data: { from_department_id: before.department_id, to_department_id: after.department_id },
    });
  }
  if (after.assignee_id !== before.assignee_id) {
    events.push({ type: 'assigned', data: { from: before.assignee_id, to: after.assignee_id } });
  }
  if (after.status !== before.status) {
    const data: Record<string, unknown> = { from: before.status, to: after.status };
    if (after.status === 'postponed') data.postponed_until = after.postponed_until?.toISOString();
    if (before.status === 'resolved' && after.status === 'open') data.reopened = true;
    // The ticket's first resolve carries its resolution time for the reports (docs/metrics.md);
    // a resolve after a reopen, or a restore of a resolved ticket, finds it set already.
    if (
      after.status === 'resolved' &&
      before.first_resolved_at === null &&
      after.first_resolved_at !== null
    ) {
      data.first_resolution = true;
      data.resolution_seconds = Math.max(
        0,
        (after.first_resolved_at.getTime() - after.created_at.getTime()) / 1000,
      );
    }
    const business: BusinessSpan[] =
      data.first_resolution === true
        ? [{ field: 'resolution_business_seconds', from: after.created_at, to: after.first_resolved_at! }]
        : [];
    events.push({ type: 'status_changed', data, ...(business.length > 0 && { business }) });
  }
  const added = after.tags.filter((t) => !before.tags.includes(t));
  const removed = before.tags.filter((t) => !after.tags.includes(t));
  if (added.length > 0 || removed.length > 0) events.push({ type: 'tags_changed', data: { added, removed } });
  return events;
}

/** The patch that moves a ticket to a status, with the timestamps the lifecycle keeps. */
export function statusPatch(
  before: Pick<TicketRecord, 'status' | 'postponed_until' | 'first_resolved_at'>,
  status: TicketStatus,
  /** The transaction's time: when the ticket was resolved, or began to wait again. */
  at: Date,
  postponedUntil?: Date,
): TicketPatch {
  if (status === before.status && status !== 'postponed') return {};
  const patch: TicketPatch = { status };
  if (status === 'resolved') {
    patch.resolved_at = at;
    if (before.first_resolved_at === null) patch.first_resolved_at = patch.resolved_at;
  }
  if (status === 'postponed') patch.postponed_until = postponedUntil ?? null;
  else if (before.postponed_until) patch.postponed_until = null;
  if (status === 'open' && before.status !== 'new') patch.waiting_since = at;
  return patch;
}
