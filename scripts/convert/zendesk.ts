// npm run convert:zendesk -- <export-dir> [--out file.ndjson] [--files files.ndjson]
//
// Converts a Zendesk Support export to Deskroute's import NDJSON (docs/import.md, "From Zendesk").
// The directory holds, one JSON value per line (Zendesk's full JSON export writes one object a
// line; an API list page `{"users":[...]}` a line works too; pretty-printed JSON does not: pass it
// through `jq -c` first):
//   users.json              required: agents/admins become agents, end-users contacts
//   user_fields.json        optional: contact fields, with each user's values
//   organizations.json      optional: a contact field with the name of each user's organization
//   groups.json             optional: departments
//   group_memberships.json  optional: memberships
//   tickets.json            required
//   ticket_audits.json      optional: the timeline; audits (GET /api/v2/tickets/{id}/audits)
//                           grouped by ticket, the tickets in tickets.json's order, which is what
//                           walking tickets.json and saving each ticket's audits gives. A ticket
//                           without audits falls back to its embedded `comments`, if any.
// Every file is streamed line by line; what stays in memory is the agents (few), the user
// fields, the organizations' names and one ticket's audits. Warnings and a summary go to stderr.
import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readJsonLines } from './json-lines.ts';
import {
  agentRecord,
  contactFieldPlan,
  contactRecord,
  departmentRecord,
  type FileSink,
  type ImportFileToUpload,
  type ImportRecord,
  isAgent,
  membershipRecord,
  ticketRecords,
  type ZendeskAudit,
  type ZendeskGroup,
  type ZendeskGroupMembership,
  type ZendeskOrganization,
  type ZendeskTicket,
  type ZendeskUser,
  type ZendeskUserField,
} from './zendesk-map.ts';

/** The objects of a file of JSON lines, each either an object or a page `{ [key]: [...] }`. */
export async function* readObjects<T>(path: string, key: string): AsyncGenerator<T> {
  for await (const value of readJsonLines(path, '; pretty-printed? try jq -c')) {
    const page = (value as Record<string, unknown> | null)?.[key];
    if (Array.isArray(page)) yield* page as T[];
    else yield value as T;
  }
}

export interface ConvertOptions {
  warn?: (message: string) => void;
  /**
   * Takes each file the comments carry (to download and upload before the import, see
   * scripts/convert/upload-files.ts); message records then name them. Without it they name none.
   */
  files?: FileSink;
  /** Told how many files the comments carry when `files` is not given (they are left out). */
  filesLeftOut?: (count: number) => void;
}

/** The whole conversion of one export directory, as an async sequence of import records. */
export async function* convertZendesk(
  dir: string,
  options: ConvertOptions = {},
): AsyncGenerator<ImportRecord> {
  const warn = options.warn ?? (() => {});
  const file = (name: string) => join(dir, name);
  const optional = (name: string) => (existsSync(file(name)) ? file(name) : null);
  for (const required of ['users.json', 'tickets.json']) {
    if (!existsSync(file(required))) throw new Error(`${file(required)}: missing`);
  }

  // Agents first: every later record may name them. Kept in memory (a help desk has few).
  const agents = new Map<string, 'agent' | 'admin'>();
  const agentUsers = new Map<string, ZendeskUser>();
  for await (const user of readObjects<ZendeskUser>(file('users.json'), 'users')) {
    if (!isAgent(user)) continue;
    const record = agentRecord(user);
    if (!record) {
      warn(`user ${user.id}: ${user.role} without an email; imported as a contact only`);
      continue;
    }
    agents.set(String(user.id), record.role as 'agent' | 'admin');
    agentUsers.set(String(user.id), user);
    yield record;
  }
  const groups = optional('groups.json');
  if (groups) {
    for await (const group of readObjects<ZendeskGroup>(groups, 'groups')) yield departmentRecord(group);
  }
  const memberships = optional('group_memberships.json');
  if (memberships) {
    for await (const m of readObjects<ZendeskGroupMembership>(memberships, 'group_memberships')) {
      const record = membershipRecord(m, agents);
      if (record) yield record;
    }
  }
  // Contact fields before the contacts that carry them.
  const userFields: ZendeskUserField[] = [];
  const userFieldsPath = optional('user_fields.json');
  if (userFieldsPath) {
    for await (const field of readObjects<ZendeskUserField>(userFieldsPath, 'user_fields'))
      userFields.push(field);
  }
  const organizationsPath = optional('organizations.json');
  let organizations: Map<string, string> | null = null;
  if (organizationsPath) {
    organizations = new Map();
    for await (const o of readObjects<ZendeskOrganization>(organizationsPath, 'organizations')) {
      if (o.name?.trim()) organizations.set(String(o.id), o.name.trim().slice(0, 10_000));
    }
  }
  const { records: fieldRecords, plan } = contactFieldPlan(userFields, organizations, warn);
  yield* fieldRecords;
  // End-users, in a second pass over users.json, so that none is held in memory.
  for await (const user of readObjects<ZendeskUser>(file('users.json'), 'users')) {
    if (!agents.has(String(user.id))) yield contactRecord(user, plan, warn);
  }

  // Tickets, each followed by its timeline: a merge of tickets.json with ticket_audits.json,
  // both in the same ticket order.
  const auditsPath = optional('ticket_audits.json');
  const audits = auditsPath ? readObjects<ZendeskAudit>(auditsPath, 'audits')[Symbol.asyncIterator]() : null;
  let next: ZendeskAudit | null = audits ? ((await audits.next()).value ?? null) : null;
  const agentContacts = new Set<string>();
  let leftOut = 0;
  for await (const ticket of readObjects<ZendeskTicket>(file('tickets.json'), 'tickets')) {
    const own: ZendeskAudit[] = [];
    while (audits && next && String(next.ticket_id) === String(ticket.id)) {
      own.push(next);
      next = (await audits.next()).value ?? null;
    }
    // A ticket an agent asked: its requester must exist as a contact too.
    const requester =
      ticket.requester_id === null || ticket.requester_id === undefined ? null : String(ticket.requester_id);
    if (requester && agentUsers.has(requester) && !agentContacts.has(requester)) {
      agentContacts.add(requester);
      yield contactRecord(agentUsers.get(requester)!, plan, warn);
    }
    if (!requester) warn(`ticket ${ticket.id}: no requester_id; the import will refuse it`);
    yield* ticketRecords(ticket, own, agents, warn, options.files);
    if (!options.files) {
      for (const comment of [...own.flatMap((a) => a.events ?? []), ...(ticket.comments ?? [])]) {
        leftOut += comment.attachments?.length ?? 0;
      }
    }
  }
  if (leftOut > 0) options.filesLeftOut?.(leftOut);
  if (next) {
    throw new Error(
      `${auditsPath}: audits of ticket ${next.ticket_id} were left over: audits must be grouped by ticket, ` +
        'in the order of tickets.json (see the header of scripts/convert/zendesk.ts)',
    );
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      files: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length !== 1) {
    process.stderr.write(
      'usage: npm run convert:zendesk -- <export-dir> [--out file.ndjson] [--files files.ndjson]\n',
    );
    process.exit(values.help ? 0 : 2);
  }
  const out = values.out ? createWriteStream(values.out) : process.stdout;
  // The comments' files, one JSON line each, for scripts/convert/upload-files.ts.
  const filesOut = values.files ? createWriteStream(values.files) : null;
  let fileCount = 0;
  const pendingFiles: string[] = [];
  const files = filesOut
    ? (file: ImportFileToUpload) => {
        fileCount++;
        pendingFiles.push(`${JSON.stringify(file)}\n`);
      }
    : undefined;
  let leftOut = 0;
  const counts = new Map<string, number>();
  let warnings = 0;
  const warn = (message: string) => {
    warnings++;
    process.stderr.write(`warning: ${message}\n`);
  };
  const write = async (stream: NodeJS.WritableStream, text: string) => {
    if (!stream.write(text)) await new Promise((resolve) => stream.once('drain', resolve));
  };
  for await (const record of convertZendesk(positionals[0]!, {
    warn,
    files,
    filesLeftOut: (n) => {
      leftOut = n;
    },
  })) {
    counts.set(record.type, (counts.get(record.type) ?? 0) + 1);
    await write(out, `${JSON.stringify(record)}\n`);
    if (filesOut) for (const line of pendingFiles.splice(0)) await write(filesOut, line);
  }
  const end = (stream: NodeJS.WritableStream) =>
    new Promise<void>((resolve, reject) =>
      stream.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
  if (values.out) await end(out);
  if (filesOut) await end(filesOut);
  const summary = [...counts].map(([type, n]) => `${n} ${type}`).join(', ');
  process.stderr.write(`converted: ${summary || 'nothing'}; ${warnings} warning(s)\n`);
  if (filesOut) {
    process.stderr.write(
      `files: ${fileCount} to upload before the import (npm run upload:import-files -- --files ${values.files} ...)\n`,
    );
  } else if (leftOut > 0) {
    process.stderr.write(`files: ${leftOut} on comments left out; pass --files to keep them\n`);
  }
}

if (import.meta.main) {
  main().catch((error) => {
    process.stderr.write(`convert:zendesk: ${(error as Error).message}\n`);
    process.exit(1);
  });
}
