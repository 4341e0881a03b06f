import { createHash } from 'node:crypto';
import { type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import type { Principal } from '../../access/policy.ts';
import { withNext } from '../../db/prepared.ts';
import type { Database, ImportKeysTable } from '../../db/types.ts';
import { DomainError, forbidden } from '../../errors.ts';
import { createAgent, updateAgent } from '../agents/service.ts';
import { insertAttachmentRows } from '../attachments/store.ts';
import { recordCall } from '../calls/service.ts';
import { recordChat } from '../chats/service.ts';
import { adoptContactField, createContactField } from '../contact-fields/service.ts';
import { createContact, updateContact } from '../contacts/service.ts';
import { createDepartment, setMember } from '../departments/service.ts';
import { replaying } from '../tickets/replay.ts';
import {
  addMessage,
  addRating,
  createTicket,
  transferTicketRecord,
  updateTicketRecord,
} from '../tickets/service.ts';
import { exactInstant, type SetWrites } from '../tickets/set-writes.ts';
import { importFilesNamed } from './files.ts';
import type { ImportRecord, RecordType } from './records.ts';
import * as repo from './repository.ts';

type Trx = Transaction<Database>;
export type Outcome = 'created' | 'updated' | 'skipped';

/** What one import run knows while it applies records: who runs it and the ids seen so far. */
export interface ApplyContext {
  importId: string;
  source: string;
  runRules: boolean;
  /** The admin who started the import: acts where a record names nobody. */
  importer: Principal;
  /** external ids already resolved (committed), per type: saves a look-up per reference. */
  known: Map<string, string>;
  /** Resolved in the batch under way: joins `known` when the batch commits. */
  pending: Map<string, string>;
  /** Batches still to apply record by record, after one that could not be applied in one go. */
  careful: number;
  /** What the record being applied went in without (reported with its line, run.ts). */
  notes: { code: string; message: string }[];
}

/**
 * The import keys of a batch applied in one go (run.ts): those its records had when it began,
 * read in one statement, and those it creates, inserted in one statement when it ends.
 */
export interface BatchKeys {
  found: Map<string, { target_id: string; digest: string | null }>;
  created: Map<string, Selectable<ImportKeysTable>>;
  /** The batch's ticket writes, held and written as a set (absent when rules run). */
  writes?: SetWrites | undefined;
}

/**
 * Records a batch can hold and write as a set (set-writes.ts): changes of tickets through their
 * write path alone. Files name the message rows they belong to, and calls, chats and ratings are
 * written by their own domains: those read what the batch holds, so it is written before them.
 */
function settable(record: ImportRecord): boolean {
  switch (record.type) {
    case 'ticket':
      return (record.message?.attachments ?? []).length === 0;
    case 'message':
      return (record.attachments ?? []).length === 0;
    case 'status':
    case 'transfer':
    case 'assignment':
    case 'tags':
    case 'priority':
    case 'subject':
      return true;
    default:
      return false;
  }
}

const unprocessable = (code: string, message: string) => new DomainError('unprocessable', code, message);

/** A principal acting as an imported agent: history is replayed as it happened, not re-checked. */
function actingAs(ctx: ApplyContext, agentId: string | null): Principal {
  if (agentId === null) return ctx.importer;
  return { agentId, role: 'owner', scopes: ['read', 'write'], via: 'session', tokenId: null };
}

async function resolve(trx: Trx, ctx: ApplyContext, type: RecordType, externalId: string): Promise<string> {
  const k = `${type}\u0000${externalId}`;
  const cached = ctx.pending.get(k) ?? ctx.known.get(k);
  if (cached) return cached;
  const found = await repo.findKey(trx, ctx.source, type, externalId);
  if (!found) {
    throw unprocessable(
      'unknown_reference',
      `No ${type} with external_id ${JSON.stringify(externalId)} was imported from this source (it must come earlier in the file or in an earlier import).`,
    );
  }
  ctx.pending.set(k, found.target_id);
  return found.target_id;
}

const optionalAgent = (trx: Trx, ctx: ApplyContext, ref: string | null | undefined) =>
  ref ? resolve(trx, ctx, 'agent', ref) : Promise.resolve(null);

function digestOf(record: ImportRecord): string {
  return createHash('sha256').update(JSON.stringify(record)).digest('base64url');
}

/**
 * Applies one record inside the caller's transaction (under a savepoint the caller rolls back
 * on failure). Ticket records and timeline records are replayed through the tickets' services at
 * their own time: the transaction's clock (deskroute.now) is set to it, so the rows, their
 * ticket_events and the report counters the trigger keeps are those of a live change then.
 */
export async function applyRecord(
  trx: Trx,
  ctx: ApplyContext,
  record: ImportRecord,
  keys?: BatchKeys,
): Promise<Outcome> {
  const k = `${record.type}\u0000${record.external_id}`;
  const existing = keys
    ? (keys.found.get(k) ?? keys.created.get(k))
    : await repo.findKey(trx, ctx.source, record.type, record.external_id);
  const digest = digestOf(record);
  /** A changed record's digest, on the key's row (or on the key the batch will insert). */
  const newDigest = async () => {
    const created = keys?.created.get(k);
    if (created) created.digest = digest;
    else await repo.updateKeyDigest(trx, ctx.source, record.type, record.external_id, digest);
    const found = keys?.found.get(k);
    if (found) found.digest = digest;
  };
  if (existing) {
    ctx.pending.set(k, existing.target_id);
    if (record.type === 'contact' && existing.digest !== digest) {
      await keys?.writes?.flush(trx);
      await updateContact(trx, ctx.importer, {}, existing.target_id, {
        ...(record.name !== undefined && { name: record.name }),
        ...(record.emails !== undefined && { emails: record.emails }),
        ...(record.phones !== undefined && { phones: record.phones }),
        ...(record.custom_fields !== undefined && { custom_fields: record.custom_fields }),
      });
      await newDigest();
      return 'updated';
    }
    if (record.type === 'contact_field' && existing.digest !== digest) {
      await keys?.writes?.flush(trx);
      // The source's field changed since (an option added, say). One deleted here stays deleted.
      const adopted = await adoptContactField(trx as Kysely<Database>, ctx.importer, existing.target_id, {
        type: record.field_type,
        options: record.options,
      });
      await newDigest();
      return adopted === 'added' ? 'updated' : 'skipped';
    }
    return 'skipped';
  }
  const at = 'at' in record ? record.at : record.type === 'ticket' ? record.created_at : null;
  // Held by the batch and written with it as a set (set-writes.ts) when it may be; else, after
  // what the batch holds so far, as a live change (its time the transaction's clock).
  const instant = keys?.writes && at !== null && settable(record) ? exactInstant(at) : null;
  if (instant) keys!.writes!.now = instant;
  else {
    await keys?.writes?.flush(trx);
    // Its result is not read: it leaves with the record's first statement (db/prepared.ts).
    await withNext(
      sql`select set_config('deskroute.now', ${at ?? ''}, true), set_config('deskroute.import_id', ${ctx.importId}, true)`,
    ).execute(trx);
  }
  const target = await replaying(
    { importId: ctx.importId, runRules: ctx.runRules, batch: instant ? keys!.writes : undefined },
    () => create(trx, ctx, record),
  );
  const key = {
    source: ctx.source,
    type: record.type,
    external_id: record.external_id,
    target_id: target,
    digest,
    import_id: ctx.importId,
  };
  if (keys) keys.created.set(k, key);
  else await repo.insertKey(trx, key);
  ctx.pending.set(k, target);
  return 'created';
}

/**
 * The uploaded files a message record names. One not uploaded is left out and noted: the
 * message goes in without it (a file gone at the source must not cost the message its text and
 * place), and the import says so with the record's line (file_missing).
 */
async function namedFiles(db: Kysely<Database>, ctx: ApplyContext, ids: readonly string[]) {
  const { files, missing } = await importFilesNamed(db, ctx.source, ids);
  if (missing.length > 0) {
    const named = missing
      .slice(0, 5)
      .map((id) => JSON.stringify(id))
      .join(', ');
    ctx.notes.push({
      code: 'file_missing',
      message: `Imported without ${missing.length === 1 ? 'the file' : `${missing.length} files`} ${named}${
        missing.length > 5 ? ' and more' : ''
      }: none was uploaded for source ${JSON.stringify(ctx.source)} (PUT /v1/imports/files/{external_id} before the import).`,
    });
  }
  return files;
}

async function create(trx: Trx, ctx: ApplyContext, r: ImportRecord): Promise<string> {
  const db = trx as Kysely<Database>;
  switch (r.type) {
    case 'agent': {
      // An agent already here under that email (the owner who runs the import, say) is the same person.
      const same = await repo.agentByEmail(trx, r.email);
      if (same) {
        // Acting as an owner (their name on replies and notes) is for owners to decide.
        if (same.role === 'owner' && ctx.importer.role !== 'owner') {
          throw forbidden('Only an owner may import history in the name of an owner.', 'owner_required');
        }
        return same.id;
      }
      const agent = await createAgent(db, ctx.importer, {
        name: r.name,
        email: r.email,
        role: r.role ?? 'agent',
      });
      if (r.status === 'disabled') await updateAgent(db, ctx.importer, {}, agent.id, { status: 'disabled' });
      return agent.id;
    }
    case 'department': {
      const same = await repo.departmentByName(trx, r.name);
      if (same) return same;
      return (await createDepartment(db, ctx.importer, { name: r.name, description: r.description })).id;
    }
    case 'membership': {
      const department = await resolve(trx, ctx, 'department', r.department);
      const agent = await resolve(trx, ctx, 'agent', r.agent);
      await setMember(db, ctx.importer, department, agent, r.role ?? 'solver');
      return agent;
    }
    case 'contact_field': {
      const same = await repo.contactFieldByKey(trx, r.key);
      if (same) {
        const adopted = await adoptContactField(db, ctx.importer, same, {
          type: r.field_type,
          options: r.options,
        });
        if (adopted !== 'gone') return same;
      }
      return (
        await createContactField(db, ctx.importer, {
          key: r.key,
          label: r.label,
          type: r.field_type,
          options: r.options,
        })
      ).id;
    }
    case 'contact': {
      const same = r.emails?.[0] ? await repo.contactByEmail(trx, r.emails[0]) : null;
      if (same) return same;
      return (
        await createContact(db, {
          name: r.name,
          emails: r.emails,
          phones: r.phones,
          custom_fields: r.custom_fields,
        })
      ).id;
    }
    case 'ticket': {
      const files = await namedFiles(db, ctx, r.message?.attachments ?? []);
      const contact = await resolve(trx, ctx, 'contact', r.contact);
      const department = r.department ? await resolve(trx, ctx, 'department', r.department) : null;
      const author =
        r.message?.author === 'agent' ? await optionalAgent(trx, ctx, r.message.agent ?? r.agent) : null;
      const actor = author ?? (await optionalAgent(trx, ctx, r.agent));
      const ticket = await createTicket(
        db,
        actingAs(ctx, actor),
        {
          subject: r.subject,
          channel: r.channel,
          contact: { id: contact },
          department_id: department,
          priority: r.priority,
          tags: r.tags,
          ...(r.message && { message: { body: r.message.body, author: r.message.author ?? 'contact' } }),
        },
        trx,
      );
      if (files.length > 0) {
        const first = await repo.firstMessageOf(trx, ticket.id);
        await insertAttachmentRows(db, files, {
          ticketId: ticket.id,
          messageId: first,
          uploadedByAgentId: author,
        });
      }
      return ticket.id;
    }
    case 'message': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const agent = await optionalAgent(trx, ctx, r.agent);
      const files = await namedFiles(db, ctx, r.attachments ?? []);
      const message = await addMessage(db, actingAs(ctx, agent), ticket, { kind: r.kind, body: r.body });
      // The files the source's message carried: rows on the message, at its time, on the bytes
      // uploaded for the import (migrations/0044).
      await insertAttachmentRows(db, files, {
        ticketId: ticket,
        messageId: message.id,
        uploadedByAgentId: r.kind === 'customer' ? null : agent,
      });
      return message.id;
    }
    case 'status': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const agent = await optionalAgent(trx, ctx, r.agent);
      await updateTicketRecord(db, actingAs(ctx, agent), {}, ticket, {
        status: r.status,
        postponed_until: r.postponed_until,
      });
      return ticket;
    }
    case 'transfer': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const department = await resolve(trx, ctx, 'department', r.department);
      const agent = await optionalAgent(trx, ctx, r.agent);
      await transferTicketRecord(db, actingAs(ctx, agent), ticket, { department_id: department });
      return ticket;
    }
    case 'assignment': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const assignee = r.assignee === null ? null : await resolve(trx, ctx, 'agent', r.assignee);
      const agent = await optionalAgent(trx, ctx, r.agent);
      await updateTicketRecord(db, actingAs(ctx, agent), {}, ticket, { assignee_id: assignee });
      return ticket;
    }
    case 'tags':
    case 'priority':
    case 'subject': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const agent = await optionalAgent(trx, ctx, r.agent);
      const patch =
        r.type === 'tags'
          ? { tags: r.tags }
          : r.type === 'priority'
            ? { priority: r.priority }
            : { subject: r.subject };
      await updateTicketRecord(db, actingAs(ctx, agent), {}, ticket, patch);
      return ticket;
    }
    case 'call': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const agent = await optionalAgent(trx, ctx, r.agent);
      const call = await recordCall(db, actingAs(ctx, agent), {
        ticket_id: ticket,
        direction: r.direction,
        outcome: r.outcome,
        agent_id: agent ?? undefined,
        from_number: r.from_number,
        to_number: r.to_number,
        started_at: r.started_at ?? r.at,
        answered_at: r.answered_at,
        ended_at: r.ended_at,
      });
      return call.id;
    }
    case 'chat': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      const agent = await optionalAgent(trx, ctx, r.agent);
      const chat = await recordChat(db, actingAs(ctx, agent), {
        ticket_id: ticket,
        agent_id: agent ?? undefined,
        started_at: r.started_at ?? r.at,
        picked_up_at: r.picked_up_at,
        missed: r.missed,
        ended_at: r.ended_at,
        messages: r.messages,
      });
      return chat.id;
    }
    case 'rating': {
      const ticket = await resolve(trx, ctx, 'ticket', r.ticket);
      return (await addRating(db, ctx.importer, ticket, { value: r.value, comment: r.comment })).id;
    }
  }
}
