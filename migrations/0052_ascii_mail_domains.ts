import { domainToASCII } from 'node:url';
import { type Kysely, sql } from 'kysely';

// Mail in stored a sender's address as its parser gave it, and the parser gives an
// internationalised domain in Unicode even when the mail spelled it in ASCII: a contact made from
// mail by eva@xn--bcher-kva.example held eva@bücher.example, which the API's email format refuses
// (PATCH with the contact's own emails answered 400; an export of it failed to import again).
// Mail in now keeps the ASCII form (src/domains/departments/addresses.ts, normaliseAddress);
// this converts what it stored before: contacts' emails, and the address each message came from.
// An email whose ASCII form another contact already has stays as it is (merging contacts is not
// a migration's call). No down: the Unicode form is not wanted back.

/** The address with its domain in ASCII, or null when it has none to convert (as of 0052). */
function asciiDomain(address: string): string | null {
  const at = address.lastIndexOf('@');
  if (at < 0) return null;
  const ascii = domainToASCII(address.slice(at + 1));
  return ascii === '' ? null : `${address.slice(0, at).toLowerCase()}@${ascii}`;
}

export async function up(db: Kysely<any>): Promise<void> {
  const emails = await sql<{ email: string }>`
    select email from contact_emails where split_part(email, '@', -1) !~ '^[ -~]*$'`.execute(db);
  for (const { email } of emails.rows) {
    const ascii = asciiDomain(email);
    if (ascii === null || ascii === email) continue;
    await sql`update contact_emails set email = ${ascii}
      where email = ${email}
        and not exists (select 1 from contact_emails o where lower(o.email) = lower(${ascii}))`.execute(db);
  }
  const senders = await sql<{ mail_address: string }>`
    select distinct mail_address from ticket_messages
    where mail_address is not null and split_part(mail_address, '@', -1) !~ '^[ -~]*$'`.execute(db);
  for (const { mail_address } of senders.rows) {
    const ascii = asciiDomain(mail_address);
    if (ascii === null || ascii === mail_address) continue;
    await sql`update ticket_messages set mail_address = ${ascii} where mail_address = ${mail_address}`.execute(
      db,
    );
  }
}

export async function down(): Promise<void> {}
