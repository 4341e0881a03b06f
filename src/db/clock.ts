import { sql } from 'kysely';

/**
 * The application's clock, in SQL: the transaction's time, through deskroute_now() (migration
 * 0021), which production defines as now() and a test database may replace to move time for
 * every process using it (test/helpers/clock.ts). Every instant a ticket change records, and
 * every "is it due yet" of the timers, comes from here, so one change has one time.
 */
export const dbNow = sql<Date>`deskroute_now()`;

/** The same, at the millisecond precision of the stored columns (what JS Dates hold). */
export const dbNowMs = sql<Date>`deskroute_now()::timestamptz(3)`;
