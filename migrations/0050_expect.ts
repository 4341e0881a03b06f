import { type Kysely, sql } from 'kysely';

// deskroute_expect(ok, reason): true when ok, else it raises SQLSTATE DR001 with the reason. A
// statement that stakes something this process remembered (a cache key, an email nobody had)
// checks it where it stands and fails whole when it no longer holds, so its caller can run the
// same work the long way (src/domains/tickets/one-statement.ts). Volatile, so the planner never
// folds it. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create function deskroute_expect(ok boolean, reason text) returns boolean
    language plpgsql volatile as $$
    begin
      if ok then
        return true;
      end if;
      raise exception 'deskroute: %', reason using errcode = 'DR001';
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function deskroute_expect(boolean, text)`.execute(db);
}
