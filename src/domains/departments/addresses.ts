import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';

type Executor = Kysely<Database>;

/** Support addresses are compared lower-cased (migrations/0030). */
export const normaliseAddress = (address: string) => address.trim().toLowerCase();

const MAX_ADDRESSES = 50;

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

/** Every support address (for loop checks: mail from one of them is ours). */
export async function isSupportAddress(db: Executor, address: string): Promise<boolean> {
  const row = await db
    .selectFrom('department_addresses')
    .select('address')
    .where('address', '=', normaliseAddress(address))
    .executeTakeFirst();
  return row !== undefined;
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
