import { domainToASCII } from 'node:url';
import { type Kysely, sql } from 'kysely';

// Mail in stored a sender's address as its parser gave it, and the parser gives an
// internationalised domain in Unicode even when the mail spelled it in ASCII: a contact made from
// mail by eva@xn--bcher-kva.example held eva@bücher.example, which the API's email format refuses
// (PATCH with the contact's own emails answered 400; an export of it failed to import again).
// Mail in now keeps the ASCII form (src/domains/departments/addresses.ts, normaliseAddress);
// this converts what it stored before, in one statement per table:
// - contacts' emails. One whose ASCII form another row already has (or another Unicode spelling
//   converted first: NFC and NFD, say) stays as it is: merging contacts is not a migration's call.
// - where mail came from and went to (ticket_messages.mail_address, mail_outbox.to_address), for
//   the addresses converted above and for those no contact holds; an address left in Unicode
//   above stays so here too, so a contact's mail and its address keep matching (the customer's
//   last address for replies, bounces).
// No down: the Unicode form is not wanted back.

/** The address with its domain in ASCII, or null when it has none to convert (as of 0052). */
function asciiDomain(address: string): string | null {
  const at = address.lastIndexOf('@');
  if (at < 0) return null;
  const ascii = domainToASCII(address.slice(at + 1));
  const converted = ascii === '' ? null : `${address.slice(0, at).toLowerCase()}@${ascii}`;
  return converted === address ? null : converted;
}

const NOT_ASCII_DOMAIN = (column: string) => sql.raw(`split_part(${column}, '@', -1) !~ '^[ -~]*$'`);

export async function up(db: Kysely<any>): Promise<void> {
  // Contacts' emails: each ASCII form once, and only where no row has it already.
  const emails = await sql<{ email: string }>`
    select email from contact_emails where ${NOT_ASCII_DOMAIN('email')} order by email`.execute(db);
  const candidates = emails.rows.flatMap(({ email }) => {
    const ascii = asciiDomain(email);
    return ascii === null ? [] : [{ from: email, to: ascii }];
  });
  const held = new Set(
    (
      await sql<{ email: string }>`select lower(email) as email from contact_emails
        where lower(email) = any(${candidates.map((c) => c.to.toLowerCase())}::text[])`.execute(db)
    ).rows.map((r) => r.email),
  );
  const converted: { from: string; to: string }[] = [];
  const kept = new Set<string>();
  for (const c of candidates) {
    if (held.has(c.to.toLowerCase())) kept.add(c.from.toLowerCase());
    else {
      held.add(c.to.toLowerCase());
      converted.push(c);
    }
  }
  if (converted.length > 0) {
    await sql`update contact_emails e set email = m.to_email
      from unnest(${converted.map((c) => c.from)}::text[], ${converted.map((c) => c.to)}::text[])
        as m (from_email, to_email)
      where e.email = m.from_email`.execute(db);
  }

  // Where mail came from and went to: every address with a Unicode domain but those kept above.
  for (const [table, column] of [
    ['ticket_messages', 'mail_address'],
    ['mail_outbox', 'to_address'],
  ] as const) {
    const addresses = await sql<{ address: string }>`
      select distinct ${sql.ref(column)} as address from ${sql.table(table)}
      where ${sql.ref(column)} is not null and ${NOT_ASCII_DOMAIN(column)}`.execute(db);
    const pairs = addresses.rows.flatMap(({ address }) => {
      const ascii = asciiDomain(address);
      return ascii === null || kept.has(address.toLowerCase()) ? [] : [{ from: address, to: ascii }];
    });
    if (pairs.length === 0) continue;
    await sql`update ${sql.table(table)} t set ${sql.ref(column)} = m.to_address
      from unnest(${pairs.map((p) => p.from)}::text[], ${pairs.map((p) => p.to)}::text[])
        as m (from_address, to_address)
      where t.${sql.ref(column)} = m.from_address`.execute(db);
  }
}

export async function down(): Promise<void> {}
