import { type Kysely, sql } from 'kysely';

// A token has scopes ["read"] or ["read", "write"] (README, Authentication); nothing else.
// The API always stored one of the two (a request for ["write"] became ["read", "write"], and is
// refused with 400 since), but the column took any text[] and the auth check only asks for
// "write" before a write: a row written by hand as {write} could read while saying it could not.
// Such rows become what they could already do, {read,write} (nobody loses access, the stored
// value stops lying); anything else without "write" becomes {read}. The check keeps it so.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`update api_tokens
    set scopes = case when 'write' = any(scopes) then '{read,write}'::text[] else '{read}'::text[] end
    where scopes is distinct from '{read}'::text[] and scopes is distinct from '{read,write}'::text[]`.execute(
    db,
  );
  await sql`alter table api_tokens add constraint api_tokens_scopes_check
    check (scopes = '{read}'::text[] or scopes = '{read,write}'::text[])`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table api_tokens drop constraint api_tokens_scopes_check`.execute(db);
}
