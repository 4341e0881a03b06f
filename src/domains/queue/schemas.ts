import { Type } from 'typebox';

/** The answer when the caller's to-solve queue has nothing to hand out. */
export const QueueEmptyResponse = Type.Null({
  description:
    'Nothing to hand out: no new or open ticket, unassigned or yours, in a department where you solve and the to-solve queue is on.',
});
