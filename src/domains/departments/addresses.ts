import { domainToASCII } from 'node:url';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';

type Executor = Kysely<Database>;

/**
 * An address as we store and compare it (support addresses, mailboxes, senders of mail in):
 * trimmed, lower-cased (migrations/0030), its domain in ASCII. Mail parsers hand an
 * internationalised domain back in Unicode, even when the mail spelled it in ASCII
 * (`eva@xn--bcher-kva.example` arrives as `eva@bücher.example`); the API's email format
 * (RFC 5321's) refuses that form, so a contact made from such mail could not be sent back as
 * it was read, nor exported and imported again. The ASCII form (IDNA) is the same mailbox, and
 * the one SMTP needs (migrations/0052 converted the addresses stored before).
 */
export function normaliseAddress(address: string): string {
  const trimmed = address.trim();
  const at = trimmed.lastIndexOf('@');
  const domain = trimmed.slice(at + 1);
  if (at < 0 || !/[^ -~]/.test(domain)) return trimmed.toLowerCase();
  const ascii = domainToASCII(domain);
  return ascii === '' ? trimmed.toLowerCase() : `${trimmed.slice(0, at).toLowerCase()}@${ascii}`;
}

const MAX_ADDRESSES = 50;

/**
 * Serialises every check of an address between support addresses and mailboxes: no constraint
 * spans the two tables, so two admins (one listing a support address, one giving a mailbox the
 * same address in another department) would each find the other's row absent and both commit.
 * Transaction-scoped advisory locks, taken in one order, so two takers cannot deadlock over the
 * addresses. Take them after the department's row lock (a support-address PUT holds it FOR
 * UPDATE; a mailbox takes it FOR KEY SHARE first), or the row and the addresses deadlock.
 */
export async function lockMailAddresses(trx: Transaction<Database>, addresses: readonly string[]) {
  for (const address of [...new Set(addresses.map(normaliseAddress))].sort()) {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`deskroute:mail-address:${address}`}, 0))`.execute(
      trx,
    );
  }
}

/**
 * The department that owns the first of `addresses` (in the order given: To before Cc) that is a
 * support address, or undefined when none is.
 */
export async function departmentOfAddresses(
  db: Executor,
  addresses: readonly string[],
): Promise<{ departmentId: string; address: string } | undefined> {
  // A query takes at most 65,535 parameters: a mail may list more recipients than that.
  const wanted = [...new Set(addresses.map(normaliseAddress))].slice(0, MAX_ADDRESSES);
  if (wanted.length === 0) return undefined;
  const rows = await db
    .selectFrom('department_addresses')
    .select(['address', 'department_id'])
    .where('address', 'in', wanted)
    .execute();
  const owner = new Map(rows.map((row) => [row.address, row.department_id]));
  for (const address of wanted) {
    const departmentId = owner.get(address);
    if (departmentId) return { departmentId, address };
  }
  return undefined;
}

/**
 * A support address (mail out skips them as recipients). Compared without a trailing dot: a
 * fully qualified "sales@acme.test." is the same mailbox.
 */
export async function isSupportAddress(db: Executor, address: string): Promise<boolean> {
  const row = await db
    .selectFrom('department_addresses')
    .select('address')
    .where('address', '=', comparableAddress(address))
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Without its trailing dots, trimmed by hand: /\.+$/ backtracks quadratically over a run of dots
 * that does not end the string, and a sender's From (mail in) may hold 1 MiB of them.
 */
function comparableAddress(address: string): string {
  const normal = normaliseAddress(address);
  let end = normal.length;
  while (end > 0 && normal[end - 1] === '.') end--;
  return normal.slice(0, end);
}

/**
 * Mail from this address is our own (a loop): one of the support addresses, the help desk's
 * from-address (mail settings) or `MAIL_FROM`, whatever its case or a trailing dot.
 */
export async function isOurAddress(
  db: Executor,
  address: string,
  mailFrom: string | undefined,
): Promise<boolean> {
  return (await ourAddresses(db, [address], mailFrom)).size > 0;
}

/** A department's addresses, the reply-from first. */
export function listDepartmentAddresses(db: Executor, departmentId: string) {
  return db
    .selectFrom('department_addresses')
    .select(['address', 'is_reply_from'])
    .where('department_id', '=', departmentId)
    .orderBy('is_reply_from', 'desc')
    .orderBy('address')
    .execute();
}

/**
 * Which of `addresses` are ours, as isOurAddress judges one, in two queries whatever their
 * number (a consumer's batch mails the same agents many times). The answer holds them as given.
 */
export async function ourAddresses(
  db: Executor,
  addresses: readonly string[],
  mailFrom: string | undefined,
): Promise<Set<string>> {
  const wanted = [...new Set(addresses.map(comparableAddress))];
  if (wanted.length === 0) return new Set();
  const ours = new Set<string>();
  if (mailFrom !== undefined) ours.add(comparableAddress(mailFrom));
  const settings = await db.selectFrom('mail_settings').select('from_address').executeTakeFirst();
  if (settings?.from_address != null) ours.add(comparableAddress(settings.from_address));
  // A query takes at most 65,535 parameters.
  for (let i = 0; i < wanted.length; i += 1000) {
    const rows = await db
      .selectFrom('department_addresses')
      .select('address')
      .where('address', 'in', wanted.slice(i, i + 1000))
      .execute();
    for (const row of rows) ours.add(row.address);
  }
  return new Set(addresses.filter((a) => ours.has(comparableAddress(a))));
}
