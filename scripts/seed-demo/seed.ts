import { randomBytes } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { Db } from '../../src/db/database.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database, DepartmentRole, TokenScope } from '../../src/db/types.ts';
import { generatePassword, hashPassword } from '../../src/domains/auth/passwords.ts';
import * as rules from '../../src/domains/automation-rules/repository.ts';
import { API_TOKEN_PREFIX, hashApiToken } from '../../src/plugins/auth.ts';
import { validateRule } from '../../src/rule-engine/index.ts';
import { Ledger } from './ledger.ts';
import { Random } from './random.ts';
import {
  AGENTS,
  agentEmail,
  DEPARTMENT_NAMES,
  DEPARTMENTS,
  type DepartmentName,
  makePeople,
} from './roster.ts';
import { CHANNEL_LIST, type Desk, type DeskAgent, type Integrations, planTicket } from './stories.ts';

export const DEFAULT_ADMIN_EMAIL = 'admin@deskroute.local';
/** Every seeded agent signs in with this password (a demo, not a production help desk). */
export const DEMO_AGENT_PASSWORD = 'deskroute-demo-agent';

export interface SeedOptions {
  /** How many tickets (default 3000). */
  tickets?: number;
  /** Over how many months before `now` (default 6). */
  months?: number;
  /** The PRNG seed: the same seed gives the same help desk (default 1). */
  seed?: number;
  /** Seed even when the database already has tickets (adds to them). */
  force?: boolean;
  /** The end of the seeded period (default: the current time). */
  now?: Date;
  /** The owner to use or create, from DESKROUTE_ADMIN_EMAIL / DESKROUTE_ADMIN_PASSWORD. */
  admin?: { email: string; password: string } | undefined;
  /** Progress lines; silent by default. */
  log?: (line: string) => void;
}

export interface SeedResult {
  owner: { email: string; created: boolean; generatedPassword: string | null };
  agentPassword: string;
  period: { from: Date; to: Date };
  /** Rows per table after seeding. */
  counts: Record<string, number>;
  /** Seeded tickets per channel and per status. */
  channels: Record<string, number>;
  statuses: Record<string, number>;
}

export class SeedRefused extends Error {
  override name = 'SeedRefused';
}

const TABLES = [
  'departments',
  'agents',
  'department_members',
  'api_tokens',
  'contacts',
  'contact_emails',
  'contact_phones',
  'tickets',
  'ticket_messages',
  'ticket_events',
  'calls',
  'chats',
  'ratings',
  'automation_rules',
] as const;

const INTEGRATION_TOKENS: Record<keyof Integrations, string> = {
  mail: 'Mail gateway',
  telephony: 'Telephony (PBX)',
  chat: 'Chat widget',
  social: 'Social inbox',
  shop: 'Shop backend',
  survey: 'Satisfaction survey',
};

type Trx = Kysely<Database>;

/**
 * Fills the database with a realistic help desk: departments, agents, integration tokens,
 * contacts and tickets on every channel over the last months, with the rows and the history
 * events the API itself would have written (see ledger.ts), in one transaction.
 */
export async function seedDemo(db: Db, options: SeedOptions = {}): Promise<SeedResult> {
  const ticketCount = options.tickets ?? 3000;
  const months = options.months ?? 6;
  const seed = options.seed ?? 1;
  const log = options.log ?? (() => {});
  const now = options.now ?? new Date();
  const start = new Date(now);
  start.setUTCMonth(start.getUTCMonth() - months);
  const setupAt = new Date(start.getTime() - 30 * 86_400_000);

  await migrateToLatest(db);
  // scrypt is slow on purpose: hash before the transaction, once for every demo agent.
  const agentHash = await hashPassword(DEMO_AGENT_PASSWORD);
  const ownerPassword = options.admin?.password ?? generatePassword();
  const ownerHash = await hashPassword(ownerPassword);

  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext('deskroute:seed-demo'))`.execute(trx);
    const existingTickets = await countRows(trx, 'tickets');
    if (existingTickets > 0 && !options.force) {
      throw new SeedRefused(
        `The database already has ${existingTickets} tickets; run with --force to add the demo help desk anyway.`,
      );
    }
    const random = new Random(seed);
    // Ids come from the seed too, offset by what is there, so a --force run never reuses one.
    const ledgerIds = new Random(seed).fork(`ids:${existingTickets}`);

    const owner = await ensureOwner(
      trx,
      options.admin,
      ownerHash,
      options.admin ? null : ownerPassword,
      setupAt,
    );
    log(`owner: ${owner.email}${owner.created ? ' (created)' : ''}`);
    const departments = await ensureDepartments(trx, setupAt);
    const agents = await ensureAgents(trx, departments, agentHash, start, now, setupAt);
    agents.push({
      id: owner.id,
      name: 'Owner',
      role: 'owner',
      memberships: new Map(),
      from: start,
      until: null,
    });
    const integrations = await ensureIntegrationTokens(trx, owner.id, setupAt);
    await ensureMarketingRule(trx, departments.Marketing, owner.id, new Random(seed).fork('rules'));
    log(`${DEPARTMENT_NAMES.length} departments, ${agents.length} agents`);

    const people = makePeople(random.fork('people'), Math.max(40, Math.round(ticketCount * 0.55)));
    const peopleCumulative: number[] = [];
    let total = 0;
    for (const p of people) {
      total += p.weight;
      peopleCumulative.push(total);
    }
    const ledger = new Ledger(ledgerIds, new Map(agents.map((a) => [a.id, a.memberships])));
    await knowExistingContacts(trx, ledger, people);

    const desk: Desk = {
      now,
      start,
      departments,
      agents,
      integrations,
      people,
      peopleCumulative,
      socialContacts: new Map(),
      companyPhone: '+420222000111',
      ledger,
    };
    const ticketsRandom = random.fork(`tickets:${existingTickets}`);
    // The first ten tickets take one channel each, so even a tiny help desk has every channel.
    const plans = Array.from({ length: ticketCount }, (_, i) =>
      planTicket(desk, ticketsRandom.fork(`ticket:${i}`), CHANNEL_LIST[i]),
    );
    // Contacts are found or created when a ticket opens, so tickets open in time order.
    plans.sort((a, b) => a.openAt.getTime() - b.openAt.getTime());
    for (const plan of plans) plan.run();
    log(
      `simulated ${ledger.tickets.length} tickets, ${ledger.messages.length} messages, ${ledger.events.length} events`,
    );

    await writeLedger(trx, ledger);
    for (const [tokenId, lastUsed] of ledger.tokenUse) {
      await trx.updateTable('api_tokens').set({ last_used_at: lastUsed }).where('id', '=', tokenId).execute();
    }

    const counts: Record<string, number> = {};
    for (const table of TABLES) counts[table] = await countRows(trx, table);
    const tally = (key: (t: (typeof ledger.tickets)[number]) => string) => {
      const out: Record<string, number> = {};
      for (const t of ledger.tickets) out[key(t)] = (out[key(t)] ?? 0) + 1;
      return out;
    };
    return {
      owner: { email: owner.email, created: owner.created, generatedPassword: owner.generatedPassword },
      agentPassword: DEMO_AGENT_PASSWORD,
      period: { from: start, to: now },
      counts,
      channels: tally((t) => t.channel),
      statuses: tally((t) => t.status),
    };
  });
}

/**
 * The owner the integrations act as: the one with DESKROUTE_ADMIN_EMAIL when given (created with
 * DESKROUTE_ADMIN_PASSWORD if missing), else the first owner, else admin@deskroute.local with a
 * generated password that the caller prints once.
 */
async function ensureOwner(
  trx: Trx,
  admin: SeedOptions['admin'],
  hash: string,
  generatedPassword: string | null,
  at: Date,
): Promise<{ id: string; email: string; created: boolean; generatedPassword: string | null }> {
  const byEmail = (email: string) =>
    trx
      .selectFrom('agents')
      .select(['id', 'email'])
      .where(sql<string>`lower(email)`, '=', email.toLowerCase())
      .executeTakeFirst();
  const insertOwner = (email: string) =>
    trx
      .insertInto('agents')
      .values({
        name: 'Owner',
        email,
        role: 'owner',
        password_hash: hash,
        password_changed_at: at,
        created_at: at,
        updated_at: at,
      })
      .returning(['id', 'email'])
      .executeTakeFirstOrThrow();
  if (admin) {
    const found = await byEmail(admin.email);
    if (found) return { ...found, created: false, generatedPassword: null };
    return { ...(await insertOwner(admin.email)), created: true, generatedPassword: null };
  }
  const first = await trx
    .selectFrom('agents')
    .select(['id', 'email'])
    .where('role', '=', 'owner')
    .orderBy('created_at')
    .orderBy('id')
    .executeTakeFirst();
  if (first) return { ...first, created: false, generatedPassword: null };
  const taken = await byEmail(DEFAULT_ADMIN_EMAIL);
  if (taken) return { ...taken, created: false, generatedPassword: null };
  return { ...(await insertOwner(DEFAULT_ADMIN_EMAIL)), created: true, generatedPassword };
}

async function countRows(db: Trx, table: (typeof TABLES)[number]): Promise<number> {
  const row = await db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

async function ensureDepartments(trx: Trx, at: Date): Promise<Record<DepartmentName, string>> {
  const ids = {} as Record<DepartmentName, string>;
  for (const name of DEPARTMENT_NAMES) {
    const found = await trx
      .selectFrom('departments')
      .select('id')
      .where(sql<string>`lower(name)`, '=', name.toLowerCase())
      .executeTakeFirst();
    if (found) {
      ids[name] = found.id;
      continue;
    }
    const plan = DEPARTMENTS[name];
    const row = await trx
      .insertInto('departments')
      .values({
        name,
        description: plan.description,
        to_solve_enabled: plan.toSolve,
        selectable_on_contact_form: plan.onContactForm,
        created_at: at,
        updated_at: at,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    ids[name] = row.id;
  }
  return ids;
}

/**
 * The routing rule of the README: social-media conversations go to Marketing, unassigned. The
 * seeded history predates it (it is written as it happened), but every ticket created from now
 * on passes through it.
 */
async function ensureMarketingRule(
  trx: Transaction<Database>,
  marketing: string,
  ownerId: string,
  random: Random,
) {
  const name = 'Marketing ticket routing';
  const found = await trx
    .selectFrom('automation_rules')
    .select('id')
    .where('name', '=', name)
    .executeTakeFirst();
  if (found) return;
  const id = random.uuid();
  const values: rules.RuleValues = {
    name,
    note: 'Social media conversations belong to Marketing, who pick them up themselves.',
    active: true,
    position: await rules.nextPosition(trx),
    stop_processing: false,
    department_id: null,
    triggers: ['ticket.created'],
    idle: null,
    conditions: {
      any: [
        {
          all: [
            { field: 'channel', operator: 'is_one_of', value: ['facebook', 'twitter', 'instagram', 'viber'] },
          ],
        },
      ],
    },
    actions: [
      { type: 'transfer', department_id: marketing },
      { type: 'assign', to: 'nobody' },
    ],
  };
  const errors = validateRule({ id, ...values }, await rules.loadCatalog(trx));
  if (errors.length > 0) throw new Error(`the demo rule is invalid: ${JSON.stringify(errors)}`);
  const rulesVersion = await rules.bumpRulesVersion(trx);
  const row = await rules.insertRuleRow(trx, id, values, ownerId);
  await rules.insertVersions(trx, [row], 'created', ownerId, rulesVersion);
}

async function ensureAgents(
  trx: Trx,
  departments: Record<DepartmentName, string>,
  passwordHash: string,
  start: Date,
  now: Date,
  setupAt: Date,
): Promise<DeskAgent[]> {
  const span = now.getTime() - start.getTime();
  const agents: DeskAgent[] = [];
  for (const plan of AGENTS) {
    const email = agentEmail(plan.name);
    const from = plan.joinedAt ? new Date(start.getTime() + plan.joinedAt * span) : start;
    const until = plan.leftAt ? new Date(start.getTime() + plan.leftAt * span) : null;
    const createdAt = plan.joinedAt ? new Date(from.getTime() - 2 * 86_400_000) : setupAt;
    let row = await trx
      .selectFrom('agents')
      .select(['id', 'role'])
      .where(sql<string>`lower(email)`, '=', email)
      .executeTakeFirst();
    row ??= await trx
      .insertInto('agents')
      .values({
        name: plan.name,
        email,
        role: plan.role,
        status: until ? 'disabled' : 'active',
        password_hash: passwordHash,
        password_changed_at: createdAt,
        created_at: createdAt,
        updated_at: until ?? createdAt,
      })
      .returning(['id', 'role'])
      .executeTakeFirstOrThrow();
    for (const [name, role] of Object.entries(plan.departments) as [DepartmentName, DepartmentRole][]) {
      await trx
        .insertInto('department_members')
        .values({
          department_id: departments[name],
          agent_id: row.id,
          role,
          created_at: createdAt,
          updated_at: createdAt,
        })
        .onConflict((oc) => oc.columns(['department_id', 'agent_id']).doNothing())
        .execute();
    }
    const memberships = await trx
      .selectFrom('department_members')
      .select(['department_id', 'role'])
      .where('agent_id', '=', row.id)
      .execute();
    agents.push({
      id: row.id,
      name: plan.name,
      role: row.role,
      memberships: new Map(memberships.map((m) => [m.department_id, m.role])),
      from,
      until,
    });
  }
  return agents;
}

/**
 * The integrations that feed the help desk act as the owner through API tokens of their own,
 * as they would in production. Their secrets are random and thrown away: the demo never uses them.
 */
async function ensureIntegrationTokens(trx: Trx, ownerId: string, at: Date): Promise<Integrations> {
  const integrations = {} as Integrations;
  for (const [key, name] of Object.entries(INTEGRATION_TOKENS) as [keyof Integrations, string][]) {
    let token = await trx
      .selectFrom('api_tokens')
      .select('id')
      .where('agent_id', '=', ownerId)
      .where('name', '=', name)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (!token) {
      const secret = `${API_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      token = await trx
        .insertInto('api_tokens')
        .values({
          agent_id: ownerId,
          name,
          token_hash: hashApiToken(secret),
          token_prefix: secret.slice(0, API_TOKEN_PREFIX.length + 8),
          scopes: sql<TokenScope[]>`${['read', 'write']}::text[]`,
          expires_at: null,
          created_at: at,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
    }
    integrations[key] = { type: 'agent', agentId: ownerId, contactId: null, tokenId: token.id };
  }
  return integrations;
}

/** Contacts already stored with the demo customers' emails or phones are found, as the API would. */
async function knowExistingContacts(
  trx: Trx,
  ledger: Ledger,
  people: { email: string | null; phone: string | null }[],
) {
  const emails = people.flatMap((p) => (p.email ? [p.email.toLowerCase()] : []));
  const phones = people.flatMap((p) => (p.phone ? [p.phone] : []));
  for (let i = 0; i < emails.length; i += 5000) {
    const rows = await trx
      .selectFrom('contact_emails')
      .select(['contact_id', 'email'])
      .where(sql<boolean>`lower(email) = any(${emails.slice(i, i + 5000)}::text[])`)
      .execute();
    for (const r of rows) ledger.knowContact(r.contact_id, [r.email], []);
  }
  for (let i = 0; i < phones.length; i += 5000) {
    const rows = await trx
      .selectFrom('contact_phones')
      .select(['contact_id', 'phone'])
      .where(sql<boolean>`phone = any(${phones.slice(i, i + 5000)}::text[])`)
      .execute();
    for (const r of rows) ledger.knowContact(r.contact_id, [], [r.phone]);
  }
}

async function inBatches<T>(rows: T[], size: number, write: (batch: T[]) => Promise<unknown>) {
  for (let i = 0; i < rows.length; i += size) await write(rows.slice(i, i + size));
}

/** Writes the ledger in batches (parameters per statement stay far below PostgreSQL's 65535). */
async function writeLedger(trx: Trx, ledger: Ledger) {
  await inBatches(ledger.contacts, 2000, (batch) =>
    trx
      .insertInto('contacts')
      .values(
        batch.map((c) => ({ id: c.id, name: c.name, created_at: c.created_at, updated_at: c.created_at })),
      )
      .execute(),
  );
  const emails = ledger.contacts.flatMap((c) =>
    c.emails.map((email, position) => ({ contact_id: c.id, email, position })),
  );
  await inBatches(emails, 5000, (batch) => trx.insertInto('contact_emails').values(batch).execute());
  const phones = ledger.contacts.flatMap((c) =>
    c.phones.map((phone, position) => ({ contact_id: c.id, phone, position })),
  );
  await inBatches(phones, 5000, (batch) => trx.insertInto('contact_phones').values(batch).execute());

  // In opening order, so ticket numbers grow with time as they would have.
  const tickets = [...ledger.tickets].sort((a, b) => a.created_at.getTime() - b.created_at.getTime());
  await inBatches(tickets, 1000, (batch) =>
    trx
      .insertInto('tickets')
      .values(
        batch.map(({ search, tags, ...t }) => ({
          ...t,
          tags: sql<string[]>`${tags}::text[]`,
          // As insertTicket and the updates that append to it: the subject and every message.
          search: sql`to_tsvector('simple', ${search.join(' ')})`,
        })),
      )
      .execute(),
  );
  await inBatches(ledger.messages, 3000, (batch) =>
    trx.insertInto('ticket_messages').values(batch).execute(),
  );
  await inBatches(ledger.calls, 3000, (batch) => trx.insertInto('calls').values(batch).execute());
  await inBatches(ledger.chats, 3000, (batch) => trx.insertInto('chats').values(batch).execute());
  await inBatches(ledger.ratings, 3000, (batch) => trx.insertInto('ratings').values(batch).execute());
  // Event ids grow with time across the help desk, as they do when the API writes them.
  const events = [...ledger.events].sort(
    (a, b) => a.occurred_at.getTime() - b.occurred_at.getTime() || a.seq - b.seq,
  );
  await inBatches(events, 3000, (batch) =>
    trx
      .insertInto('ticket_events')
      .values(
        batch.map(({ seq: _seq, data, ...e }) => ({
          ...e,
          actor_rule_id: null,
          actor_rule_version: null,
          data: JSON.stringify(data),
        })),
      )
      .execute(),
  );
}
