import { type Kysely, sql } from 'kysely';

// Each process caches who a credential is (src/plugins/auth-cache.ts) and drops that cache when
// anything it holds may have changed: a token revoked or re-scoped, an agent's role, status or
// password, a membership, a department deleted (its memberships go with it). These triggers
// tell every process through NOTIFY deskroute_auth, sent when the change commits (a rolled back
// change sends nothing). Statement-level: one notification per statement, however many rows.
// A token's last_used_at (its use, recorded once a minute) is not among the columns: using a
// token does not empty every cache.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create function deskroute_auth_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('deskroute_auth', '');
      return null;
    end $$`.execute(db);
  await sql`create trigger auth_changed after update of token_hash, agent_id, scopes, expires_at, revoked_at
    or delete or truncate on api_tokens for each statement execute function deskroute_auth_changed()`.execute(
    db,
  );
  await sql`create trigger auth_changed after update of role, status, password_changed_at
    or delete or truncate on agents for each statement execute function deskroute_auth_changed()`.execute(db);
  await sql`create trigger auth_changed after insert or update or delete or truncate
    on department_members for each statement execute function deskroute_auth_changed()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger auth_changed on department_members`.execute(db);
  await sql`drop trigger auth_changed on agents`.execute(db);
  await sql`drop trigger auth_changed on api_tokens`.execute(db);
  await sql`drop function deskroute_auth_changed()`.execute(db);
}
