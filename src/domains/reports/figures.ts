/**
 * The report figures, defined once: the additive figures the counter tables keep (one column
 * each, in every counter table), the durations the histograms keep, and the ticket statuses the
 * current counts keep. Report columns (metrics.ts) are formulas over these; the counter tables'
 * upkeep (counters.ts) and the report queries read these lists.
 *
 * The migrations that made the tables (0004-0007: report_event_facts(), the counter tables, the
 * trigger and the pending-event counter; 0018 added the resolution, 0019 the business-hours
 * variants, 0022 the SLA verdicts) spell the same list themselves, as frozen migrations must.
 * test/report-figures.test.ts checks the migrated database against this one: a figure added
 * here needs a migration that adds its column everywhere and computes it.
 */

/** count: an integer count; seconds: a sum of durations in seconds (double precision). */
export type FigureKind = 'count' | 'seconds';

/** The additive figures, in the order of report_event_facts()'s columns after its four keys. */
export const REPORT_FIGURES = [
  { column: 'created_tickets', kind: 'count' },
  { column: 'answers', kind: 'count' },
  { column: 'first_answers', kind: 'count' },
  { column: 'incoming_messages', kind: 'count' },
  { column: 'next_answers', kind: 'count' },
  { column: 'calls', kind: 'count' },
  { column: 'missed_calls', kind: 'count' },
  { column: 'incoming_calls', kind: 'count' },
  { column: 'finished_calls', kind: 'count' },
  { column: 'chats', kind: 'count' },
  { column: 'missed_chats', kind: 'count' },
  { column: 'incoming_chats', kind: 'count' },
  { column: 'finished_chats', kind: 'count' },
  { column: 'chat_messages', kind: 'count' },
  { column: 'chat_pickups', kind: 'count' },
  { column: 'resolved_tickets', kind: 'count' },
  { column: 'reopened_tickets', kind: 'count' },
  { column: 'transfers_in', kind: 'count' },
  { column: 'transfers_out', kind: 'count' },
  { column: 'positive_ratings', kind: 'count' },
  { column: 'negative_ratings', kind: 'count' },
  { column: 'not_rated', kind: 'count' },
  { column: 'first_answer_seconds', kind: 'seconds' },
  { column: 'next_answer_seconds', kind: 'seconds' },
  { column: 'call_seconds', kind: 'seconds' },
  { column: 'chat_pickup_seconds', kind: 'seconds' },
  { column: 'chat_seconds', kind: 'seconds' },
  // migrations/0018: appended to report_event_facts()'s columns, hence after the sums.
  { column: 'first_resolutions', kind: 'count' },
  { column: 'resolution_seconds', kind: 'seconds' },
  // migrations/0019: the business-hours variants, each with its own count (events older than
  // 0019 carry no business value, so the calendar counts would be the wrong divisor).
  { column: 'first_answers_business', kind: 'count' },
  { column: 'first_answer_business_seconds', kind: 'seconds' },
  { column: 'next_answers_business', kind: 'count' },
  { column: 'next_answer_business_seconds', kind: 'seconds' },
  { column: 'chat_pickups_business', kind: 'count' },
  { column: 'chat_pickup_business_seconds', kind: 'seconds' },
  { column: 'first_resolutions_business', kind: 'count' },
  { column: 'resolution_business_seconds', kind: 'seconds' },
  // migrations/0022: the SLA clock's verdicts per target kind: targets met in time
  // (`sla.fulfilled`, not late) and targets breached (`sla.breached`, counted at the due).
  { column: 'sla_first_answer_achieved', kind: 'count' },
  { column: 'sla_first_answer_breached', kind: 'count' },
  { column: 'sla_next_answer_achieved', kind: 'count' },
  { column: 'sla_next_answer_breached', kind: 'count' },
  { column: 'sla_first_assignment_achieved', kind: 'count' },
  { column: 'sla_first_assignment_breached', kind: 'count' },
  { column: 'sla_resolution_achieved', kind: 'count' },
  { column: 'sla_resolution_breached', kind: 'count' },
] as const satisfies readonly { column: string; kind: FigureKind }[];

export type Figure = (typeof REPORT_FIGURES)[number]['column'];

/** The figures' column names, in the same order. */
export const FIGURES: readonly Figure[] = REPORT_FIGURES.map((f) => f.column);

/** The column type each kind of figure has in the counter tables and report_event_facts(). */
export const FIGURE_COLUMN_TYPE: Record<FigureKind, 'integer' | 'double precision'> = {
  count: 'integer',
  seconds: 'double precision',
};

/** The durations behind the percentiles, by their code in the histogram tables' metric column. */
export const SAMPLE_METRICS = {
  first_answer: 1,
  next_answer: 2,
  chat_pickup: 3,
  chat_time: 4,
  resolution: 5,
  // migrations/0019: the same durations in the business minutes of the department's calendar.
  first_answer_business: 6,
  next_answer_business: 7,
  chat_pickup_business: 8,
  resolution_business: 9,
} as const;

/** The event types report_event_samples() takes durations from: the others have none. */
export const SAMPLE_EVENT_TYPES = ['message_added', 'chat_recorded', 'status_changed'] as const;
export type SampleMetric = keyof typeof SAMPLE_METRICS;

/** The statuses report_current_counts keeps (migrations/0009): tickets still being worked. */
export const CURRENT_STATUSES = ['new', 'open', 'answered', 'postponed'] as const;
export type CurrentStatus = (typeof CURRENT_STATUSES)[number];
