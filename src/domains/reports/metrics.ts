/**
 * Every report column, defined once: the JSON metadata, the CSV header, the contract's list of
 * columns, the query and docs/metrics.md all read this table. Each column is a formula over the
 * figures of figures.ts: counts and sums from the counters that the `report_count_events`
 * trigger keeps (migrations/0005_report_sketches.ts), percentiles from the duration histograms
 * kept beside them, and the current_* columns from the tickets as they are now.
 */

import { SLA_KINDS, type SlaKind } from '../../sla/types.ts';
import { CURRENT_STATUSES, type CurrentStatus, type Figure, type SampleMetric } from './figures.ts';

/** How a column is computed from the figures of its group. */
export type Formula =
  | { count: Figure }
  | { sum: readonly Figure[] }
  | { total: Figure; divideBy: number }
  | { average: Figure; over: Figure }
  | { percentile: SampleMetric; quantile: 0.5 | 0.9 }
  | { share: Figure | readonly Figure[]; of: readonly Figure[] }
  | { current: CurrentStatus }
  | { goal: GoalFigure };

/** What a goal column counts (see GOAL_METRICS): samples that met it, that missed it, the share met. */
export type GoalFigure = 'met' | 'missed' | 'pct';

export type Unit = 'count' | 'seconds' | 'minutes' | 'percent';

export interface Metric {
  key: string;
  label: string;
  unit: Unit;
  /** count: additive across groups (a pie makes sense); the others are not. */
  kind: 'count' | 'duration' | 'percentage' | 'current';
  description: string;
  formula: Formula;
}

const ANSWER = 'an agent reply to the customer (message_added with kind agent)';

const time = (
  key: string,
  label: string,
  sample: SampleMetric,
  average: [Figure, Figure],
  what: string,
): Metric[] => [
  {
    key: `avg_${key}`,
    label: `Avg ${label}`,
    unit: 'seconds',
    kind: 'duration',
    description: `Average ${what}. Null when there is none.`,
    formula: { average: average[0], over: average[1] },
  },
  {
    key: `median_${key}`,
    label: `Median ${label}`,
    unit: 'seconds',
    kind: 'duration',
    description: `Median of the same durations (linear interpolation between the two middle values), from log histograms: within 0.5 % of the exact value.`,
    formula: { percentile: sample, quantile: 0.5 },
  },
  {
    key: `p90_${key}`,
    label: `90th percentile ${label}`,
    unit: 'seconds',
    kind: 'duration',
    description: `90th percentile of the same durations (linear interpolation, as PostgreSQL percentile_cont), from log histograms: within 0.5 % of the exact value.`,
    formula: { percentile: sample, quantile: 0.9 },
  },
];

const BUSINESS =
  'counted only in the business minutes of the calendar of the ticket’s department when the sample was recorded (its schedule, else the default schedule, else always open), between the same two instants; samples recorded before business times existed are not in it';

/** The calendar-time column's business-hours variant: the same two instants, business minutes only. */
const businessTime = (
  key: string,
  label: string,
  sample: SampleMetric,
  average: [Figure, Figure],
  what: string,
): Metric[] =>
  time(`${key}_business_time`, `${label} business time`, sample, average, `${what}, ${BUSINESS}`);

const RATED: readonly Figure[] = ['positive_ratings', 'negative_ratings', 'not_rated'];

const SLA_LABEL: Record<SlaKind, string> = {
  first_answer: 'First answer',
  next_answer: 'Next answer',
  first_assignment: 'First assignment',
  resolution: 'Resolution',
};

/** What a target of each kind waits for (docs/sla.md, "Kinds"). */
const SLA_TARGET: Record<SlaKind, string> = {
  first_answer: 'first-answer targets (creation until the first agent reply)',
  next_answer:
    'next-answer targets (a customer message after an answer until the next agent reply; one per cycle)',
  first_assignment: 'first-assignment targets (creation until the first assignee)',
  resolution: 'resolution targets (until resolved; a new one after each reopen)',
};

const achieved = (kind: SlaKind): Figure => `sla_${kind}_achieved`;
const breached = (kind: SlaKind): Figure => `sla_${kind}_breached`;
const ALL_ACHIEVED = SLA_KINDS.map(achieved);
const ALL_BREACHED = SLA_KINDS.map(breached);

const SLA_COUNTED =
  'A target met in time (sla.fulfilled, not late) counts when it is met; a breached one (sla.breached) at its due, whenever the breach was recorded; both credited to the ticket’s department, assignee and channel at that moment. Targets removed without a verdict (sla.removed) count for neither, and a breached target met later stays breached';

/** The SLA columns: over every kind, then per kind: the share achieved, achieved, breached. */
function slaMetrics(): Metric[] {
  const columns = (
    key: string,
    label: string,
    what: string,
    met: readonly Figure[],
    missed: readonly Figure[],
  ): Metric[] => [
    {
      key: `${key}_achieved_pct`,
      label: `${label} achieved %`,
      unit: 'percent',
      kind: 'percentage',
      description: `Share of the ${what} decided in the period that were met in time: achieved / (achieved + breached) × 100, two decimals. Null when none was decided.`,
      formula: { share: met, of: [...met, ...missed] },
    },
    {
      key: `${key}_achieved`,
      label: `${label} achieved`,
      unit: 'count',
      kind: 'count',
      description: `${what[0]!.toUpperCase()}${what.slice(1)} met in time. ${SLA_COUNTED}.`,
      formula: { sum: met },
    },
    {
      key: `${key}_breached`,
      label: `${label} breached`,
      unit: 'count',
      kind: 'count',
      description: `${what[0]!.toUpperCase()}${what.slice(1)} breached: their due passed before they were met. Counted at the due.`,
      formula: { sum: missed },
    },
  ];
  return [
    ...columns('sla', 'SLA', 'SLA targets of every kind', ALL_ACHIEVED, ALL_BREACHED),
    ...SLA_KINDS.flatMap((kind) =>
      columns(`sla_${kind}`, `${SLA_LABEL[kind]} SLA`, SLA_TARGET[kind], [achieved(kind)], [breached(kind)]),
    ),
  ];
}

export const METRICS: readonly Metric[] = [
  {
    key: 'answers',
    label: 'Answers',
    unit: 'count',
    kind: 'count',
    description: `Agent replies sent to customers: each ${ANSWER}. Notes and chat messages are not answers.`,
    formula: { count: 'answers' },
  },
  ...time(
    'first_answer_time',
    'first answer time',
    'first_answer',
    ['first_answer_seconds', 'first_answers'],
    'time from a new ticket to its first agent answer (the wait_seconds of the first answer), counted when the answer is sent',
  ),
  ...time(
    'next_answer_time',
    'next answer time',
    'next_answer',
    ['next_answer_seconds', 'next_answers'],
    "time from a customer's follow-up (the ticket reopened or waiting again) to the agent answer after it, counted when the answer is sent",
  ),
  ...businessTime(
    'first_answer',
    'first answer',
    'first_answer_business',
    ['first_answer_business_seconds', 'first_answers_business'],
    'time from a new ticket to its first agent answer (wait_business_seconds of the first answer)',
  ),
  ...businessTime(
    'next_answer',
    'next answer',
    'next_answer_business',
    ['next_answer_business_seconds', 'next_answers_business'],
    "time from a customer's follow-up to the agent answer after it (wait_business_seconds of later answers)",
  ),
  {
    key: 'calls',
    label: 'Calls',
    unit: 'count',
    kind: 'count',
    description: 'Answered calls, inbound and outbound (call_recorded with outcome answered).',
    formula: { count: 'calls' },
  },
  {
    key: 'missed_calls',
    label: 'Missed calls',
    unit: 'count',
    kind: 'count',
    description: 'Inbound calls nobody answered (call_recorded, inbound, outcome missed).',
    formula: { count: 'missed_calls' },
  },
  {
    key: 'call_minutes',
    label: 'Call minutes',
    unit: 'minutes',
    kind: 'count',
    description: 'Talk time of answered calls (answer to hang-up), in minutes with two decimals.',
    formula: { total: 'call_seconds', divideBy: 60 },
  },
  {
    key: 'incoming_calls',
    label: 'Incoming calls',
    unit: 'count',
    kind: 'count',
    description: 'Inbound calls, answered or missed.',
    formula: { count: 'incoming_calls' },
  },
  {
    key: 'finished_calls',
    label: 'Finished calls',
    unit: 'count',
    kind: 'count',
    description: 'Answered calls that ended with some talk time (duration over 0 s).',
    formula: { count: 'finished_calls' },
  },
  {
    key: 'chats',
    label: 'Chats',
    unit: 'count',
    kind: 'count',
    description: 'Chats an agent picked up (chat_recorded, not missed).',
    formula: { count: 'chats' },
  },
  {
    key: 'chat_messages',
    label: 'Chat messages',
    unit: 'count',
    kind: 'count',
    description: 'Messages agents wrote in chats.',
    formula: { count: 'chat_messages' },
  },
  {
    key: 'missed_chats',
    label: 'Missed chats',
    unit: 'count',
    kind: 'count',
    description: 'Chats no agent picked up.',
    formula: { count: 'missed_chats' },
  },
  {
    key: 'incoming_chats',
    label: 'Incoming chats',
    unit: 'count',
    kind: 'count',
    description: 'Chats customers started, picked up or missed.',
    formula: { count: 'incoming_chats' },
  },
  {
    key: 'finished_chats',
    label: 'Finished chats',
    unit: 'count',
    kind: 'count',
    description: 'Picked-up chats that have an end time.',
    formula: { count: 'finished_chats' },
  },
  ...time(
    'chat_pickup_time',
    'chat pickup time',
    'chat_pickup',
    ['chat_pickup_seconds', 'chat_pickups'],
    'time from a chat starting to an agent picking it up, over picked-up chats',
  ),
  ...businessTime(
    'chat_pickup',
    'chat pickup',
    'chat_pickup_business',
    ['chat_pickup_business_seconds', 'chat_pickups_business'],
    'time from a chat starting to an agent picking it up (pickup_business_seconds)',
  ),
  ...time(
    'chat_time',
    'chat time',
    'chat_time',
    ['chat_seconds', 'finished_chats'],
    'duration of finished chats, from start to end',
  ),
  {
    key: 'incoming_messages',
    label: 'Incoming messages',
    unit: 'count',
    kind: 'count',
    description:
      'Customer messages on any channel: new tickets and follow-ups from customers, and customer messages in chats.',
    formula: { count: 'incoming_messages' },
  },
  {
    key: 'created_tickets',
    label: 'Created tickets',
    unit: 'count',
    kind: 'count',
    description: 'Tickets created.',
    formula: { count: 'created_tickets' },
  },
  {
    key: 'resolved_tickets',
    label: 'Resolved tickets',
    unit: 'count',
    kind: 'count',
    description: 'Resolve actions: a ticket resolved, reopened and resolved again counts twice.',
    formula: { count: 'resolved_tickets' },
  },
  ...time(
    'resolution_time',
    'resolution time',
    'resolution',
    ['resolution_seconds', 'first_resolutions'],
    "time from a ticket's creation to its first resolve, counted when it is resolved (a resolve after a reopen adds none)",
  ),
  ...businessTime(
    'resolution',
    'resolution',
    'resolution_business',
    ['resolution_business_seconds', 'first_resolutions_business'],
    "time from a ticket's creation to its first resolve (resolution_business_seconds)",
  ),
  {
    key: 'reopened_tickets',
    label: 'Reopened tickets',
    unit: 'count',
    kind: 'count',
    description: 'Resolved tickets that a customer message (or an agent) opened again.',
    formula: { count: 'reopened_tickets' },
  },
  {
    key: 'transfers_in',
    label: 'Transfers in',
    unit: 'count',
    kind: 'count',
    description: 'Tickets transferred into the department.',
    formula: { count: 'transfers_in' },
  },
  {
    key: 'transfers_out',
    label: 'Transfers out',
    unit: 'count',
    kind: 'count',
    description: 'Tickets transferred out of the department.',
    formula: { count: 'transfers_out' },
  },
  {
    key: 'positive_ratings',
    label: 'Positive ratings',
    unit: 'count',
    kind: 'count',
    description: 'Positive ratings given.',
    formula: { count: 'positive_ratings' },
  },
  {
    key: 'negative_ratings',
    label: 'Negative ratings',
    unit: 'count',
    kind: 'count',
    description: 'Negative ratings given.',
    formula: { count: 'negative_ratings' },
  },
  {
    key: 'not_rated',
    label: 'Not rated',
    unit: 'count',
    kind: 'count',
    description:
      'Conversations that ended without a rating: resolve actions whose conversation got no rating, counted at the resolve.',
    formula: { count: 'not_rated' },
  },
  {
    key: 'positive_ratings_pct',
    label: 'Positive ratings %',
    unit: 'percent',
    kind: 'percentage',
    description: 'positive_ratings / (positive_ratings + negative_ratings + not_rated) × 100, two decimals.',
    formula: { share: 'positive_ratings', of: RATED },
  },
  {
    key: 'negative_ratings_pct',
    label: 'Negative ratings %',
    unit: 'percent',
    kind: 'percentage',
    description: 'negative_ratings / (positive_ratings + negative_ratings + not_rated) × 100, two decimals.',
    formula: { share: 'negative_ratings', of: RATED },
  },
  {
    key: 'not_rated_pct',
    label: 'Not rated %',
    unit: 'percent',
    kind: 'percentage',
    description: 'not_rated / (positive_ratings + negative_ratings + not_rated) × 100, two decimals.',
    formula: { share: 'not_rated', of: RATED },
  },
  ...slaMetrics(),
  ...CURRENT_STATUSES.map(
    (status): Metric => ({
      key: `current_${status}_tickets`,
      label: `${status[0]!.toUpperCase()}${status.slice(1)} tickets now`,
      unit: 'count',
      kind: 'current',
      description: `Tickets whose status is ${status} right now, by their current department, assignee and channel. Not tied to the period: null in rows grouped by time, present in totals.`,
      formula: { current: status },
    }),
  ),
];

export const METRIC_KEYS = METRICS.map((m) => m.key);

/** The durations a goal can be about (`goal=resolution:24h`): their samples' histograms. */
export const GOAL_KINDS = [
  'resolution',
  'first_answer',
  'next_answer',
] as const satisfies readonly SampleMetric[];
export type GoalKind = (typeof GOAL_KINDS)[number];

/** Which clock a goal's durations run on: all elapsed time, or the department's business minutes. */
export const GOAL_CLOCKS = ['calendar', 'business'] as const;
export type GoalClock = (typeof GOAL_CLOCKS)[number];

/** A goal a report measures: at most `seconds` for each sample of `kind` on `clock`. */
export interface Goal {
  kind: GoalKind;
  clock: GoalClock;
  /** The histogram the goal counts: `kind`, or its business-hours variant. */
  sample: SampleMetric;
  /** As the caller wrote it: 24h, 30m, 2d. */
  within: string;
  seconds: number;
  /**
   * The histogram bin edge samples are counted against: the largest γ^i not above `seconds`
   * (bins hold (γ^(i−1), γ^i]). A sample counts as met when its bin is at most `bin`.
   */
  bin: number;
  countedWithinSeconds: number;
}

const GOAL_LABEL: Record<GoalKind, string> = {
  resolution: 'Resolution',
  first_answer: 'First answer',
  next_answer: 'Next answer',
};

/**
 * The goal columns: fixed keys, so a client generated from the contract has one field for
 * each whatever the goal; the report's `goal` metadata and each column's label say which goal
 * (the CSV header is the labels). Only with `goal=`; generic labels without one (the catalogue).
 */
export function goalMetrics(goal: Goal | null): Metric[] {
  const clock = goal?.clock === 'business' ? ' business time' : '';
  const what = goal ? `${GOAL_LABEL[goal.kind]} within ${goal.within}${clock}` : 'Goal';
  const samples = goal
    ? `${GOAL_LABEL[goal.kind].toLowerCase()}${goal.clock === 'business' ? ' business' : ''} times in the period (the samples of its median and 90th percentile)`
    : 'durations of the goal’s kind in the period (goal=resolution:24h: resolution times)';
  const bound = goal
    ? `at most ${goal.countedWithinSeconds} s, the histogram bin edge at or below the goal (${goal.seconds} s)`
    : 'at most the histogram bin edge at or below the goal (less than 1 % below it)';
  return [
    {
      key: 'goal_met_pct',
      label: `${what} %`,
      unit: 'percent',
      kind: 'percentage',
      description: `Share of the ${samples} that met the goal, ${bound}: goal_met / (goal_met + goal_missed) × 100, two decimals. Null when there is none.`,
      formula: { goal: 'pct' },
    },
    {
      key: 'goal_met',
      label: `${what}: met`,
      unit: 'count',
      kind: 'count',
      description: `How many ${samples} met the goal, ${bound}. Never more than the exact count.`,
      formula: { goal: 'met' },
    },
    {
      key: 'goal_missed',
      label: `${what}: missed`,
      unit: 'count',
      kind: 'count',
      description: `How many ${samples} did not meet it.`,
      formula: { goal: 'missed' },
    },
  ];
}

export const GOAL_KEYS = goalMetrics(null).map((m) => m.key);

/** Every key a report's columns may name: the columns, then the goal columns. */
export const REPORT_COLUMN_KEYS = [...METRIC_KEYS, ...GOAL_KEYS];

/** The counter figures a column is computed from (none for percentiles and current counts). */
export function figuresOf(formula: Formula): Figure[] {
  if ('count' in formula) return [formula.count];
  if ('sum' in formula) return [...formula.sum];
  if ('total' in formula) return [formula.total];
  if ('average' in formula) return [formula.average, formula.over];
  if ('share' in formula) return [...shareOf(formula.share), ...formula.of];
  return [];
}

/** A share's numerator as a list of figures (one figure, or a sum of several). */
export function shareOf(share: Figure | readonly Figure[]): readonly Figure[] {
  return typeof share === 'string' ? [share] : share;
}

const BY_KEY = new Map(METRICS.map((m) => [m.key, m]));

export function findMetric(key: string): Metric | undefined {
  return BY_KEY.get(key);
}

/** Chart types a column suits: counts add up across groups, so they also make a pie. */
export function chartTypes(metric: Metric): string[] {
  return metric.kind === 'count' ? ['line', 'area', 'bar', 'pie'] : ['line', 'bar'];
}

/** How values of each unit are rounded: seconds to the millisecond, the rest to two decimals. */
export const DECIMALS: Record<Unit, number> = { count: 0, seconds: 3, minutes: 2, percent: 2 };
