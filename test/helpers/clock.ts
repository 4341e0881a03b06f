import { sql } from 'kysely';
import type { Db } from '../../src/db/database.ts';

// A controllable clock for tests: the application's clock is the SQL function deskroute_now()
// (migration 0021, src/db/clock.ts), now() in production. A test database replaces it with one
// that reads a frozen instant from a table of its own, so every transaction of every process on
// that database (in-process apps, spawned servers) sees the instant the test set. Nothing sleeps.

/** Replaces the database's clock with a settable one, frozen at `at` (or the real time: null). */
export async function installClock(db: Db, at: Date | string | null = null): Promise<void> {
  await sql`create table test_clock (id boolean primary key default true check (id), at timestamptz)`.execute(
    db,
  );
  await sql`insert into test_clock (at) values (${at === null ? null : new Date(at).toISOString()}::timestamptz)`.execute(
    db,
  );
  await sql`create or replace function deskroute_now() returns timestamptz language sql stable
    as $$ select coalesce(nullif(current_setting('deskroute.now', true), '')::timestamptz, (select at from test_clock), now()) $$`.execute(
    db,
  );
}

/** Sets the instant every transaction sees from now on (null: the real time again). */
export async function setClock(db: Db, at: Date | string | null): Promise<void> {
  await sql`update test_clock set at = ${at === null ? null : new Date(at).toISOString()}::timestamptz`.execute(
    db,
  );
}
