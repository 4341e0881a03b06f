import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Principal } from '../../access/policy.ts';
import {
  can,
  loadTicketAccess,
  requireTicket,
  type TicketAbility,
  type TicketAccess,
} from '../../access/tickets.ts';
import type { Channel, Database, DepartmentRole, Priority, TicketStatus } from '../../db/types.ts';
import { DomainError, type FieldError, forbidden, invalid, notFound } from '../../errors.ts';
import { assertIfMatch } from '../../plugins/etag.ts';
import type { Trigger } from '../../rule-engine/index.ts';
import { ruleRunInsert } from '../automation-rules/repository.ts';
import {
  evaluateRules,
  planOpening,
  planRules,
  type RuleRunContext,
  ruleFailure,
} from '../automation-rules/runner.ts';
import { contactIdentity, resolveContact, type SeenByRules } from '../contacts/repository.ts';
import { departmentCalendar } from '../schedules/calendar.ts';
import { NO_POLICIES_KEY } from '../sla-policies/repository.ts';
import { type ScheduleKeys, withBusinessTimes } from './business-times.ts';
import { assertTagsFit, changeEvents, fitTags, normaliseTags, TAG_BYTES, tagBytes } from './changes.ts';
import { escalate } from './escalation.ts';
import { remember, stakeFor } from './one-statement.ts';
import { currentReplay, readOncePerBatch } from './replay.ts';
import type { Actor, ActorEvent, NewEvent, NewMessage, TicketPatch, TicketRecord } from './repository.ts';
import * as repo from './repository.ts';
import type { Ticket } from './schemas.ts';
import { planTicketSla, readSlaSetting, type SlaSetting, type SlaWrite } from './sla.ts';
import { raisesSlaRules, runSlaRules } from './sla-rules.ts';

// The one write path of tickets. Every change to a ticket, from any route, rule, job or script,
// is a command given to writeTicket, which in one transaction (the caller's):
//   1. loads and locks the ticket (or takes the one the caller locked with its own query),
//   2. checks access: the policy returns the ticket or refuses (404 out of reach, 403 not allowed),
//   3. checks If-Match against the ticket's representation,
//   4. asks the command what to change, on the locked ticket,
//   5. writes the change, its messages and its ticket_events rows in one statement,
//   6. asks the rule runner for a plan and writes it the same way, with the rules as actors and
//      the rules' record of the run alongside (rules never trigger rules in one change),
//   7. applies the SLA escalation a warning or breach of this write calls for (escalation.ts).
// Creating a ticket is a command too: its rules' plan travels in the opening statement.

type Trx = Transaction<Database>;

const SYSTEM_ACTOR: Actor = { type: 'system', agentId: null, contactId: null };

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

export function agentActor(principal: Principal): Actor {
  return { type: 'agent', agentId: principal.agentId, contactId: null, tokenId: principal.tokenId };
}

/** One step of a change, in order: a patch (recorded as the events it makes) or an event. */
export type ChangeStep = { patch: TicketPatch; actor: Actor } | { event: NewEvent; actor: Actor };

/** What a command changes, decided on the locked ticket. */
export interface TicketChange<R> {
  steps: ChangeStep[];
  /** Messages written with the change (replies, notes, a chat's messages). */
  messages?: NewMessage[] | undefined;
  /** Words added to the ticket's search vector. */
  search?: string | undefined;
  /** The ticket row is rewritten (updated_at) whenever a patch step, a message or words come. */
  touch?: boolean | undefined;
  /** The rule triggers the change may raise; those it did not really raise are dropped. */
  triggers?: readonly Trigger[] | undefined;
  /** A ticket.idle pass (the idle sweeper): the idle rules whose time has come. */
  idleRules?: readonly string[] | undefined;
  /**
   * Whether the change is activity, which restarts ticket.idle rules' wait (last_activity_at).
   * Default: it touches the ticket and has a message, or a patch by anyone but a rule or the
   * system (the SLA clock, the idle sweeper).
   */
  activity?: boolean | undefined;
  /** The message that caused the change, as the rules see it. */
  ruleMessage?: RuleRunContext['message'];
  /** Events that close the change, after the rules (a call or chat record). */
  closing?: { event: NewEvent; actor: Actor }[] | undefined;
  /**
   * Plan the SLA clock even though nothing else is written: the SLA timer (what is due fires)
   * and the re-plan after a policy changed. The ticket's timer instant is always rewritten.
   */
  clock?: boolean | undefined;
  result: R;
}

export interface ChangeCommand<R> {
  kind: 'change';
  /** The ticket to lock by id, or one the caller's own query locked already (queue, scheduler). */
  target: { id: string } | { locked: TicketRecord; sla?: repo.SlaRead | undefined };
  /** Who acts and what they need; null when the caller's query decided it (queue, scheduler). */
  access: { access: TicketAccess; ability: TicketAbility } | null;
  ifMatch?: string | undefined;
  /** `at` is the transaction's time: the instant the change is recorded at. */
  decide(ticket: TicketRecord, at: Date): Promise<TicketChange<R>> | TicketChange<R>;
}

export interface CreateTicketInput {
  subject: string;
  channel?: Channel | undefined;
  contact: {
    id?: string | undefined;
    name?: string | undefined;
    email?: string | undefined;
    phone?: string | undefined;
  };
  /** The first message; calls and chats open tickets without one and add their own. */
  message?: { body: string; author?: 'contact' | 'agent' | undefined } | undefined;
  department_id?: string | null | undefined;
  assignee_id?: string | null | undefined;
  priority?: Priority | undefined;
  tags?: string[] | undefined;
  support_address?: string | undefined;
}

export interface CreateCommand {
  kind: 'create';
  input: CreateTicketInput;
  actor: Actor;
  /** The author of an agent's first message. */
  authorAgentId: string | null;
  /**
   * Whose creation it is, for the checks (references exist, may assign): a principal, null for
   * an anonymous sender (the contact form), or 'unchecked' for a caller that vouches for the
   * input (test factories).
   */
  by: Principal | null | 'unchecked';
  /** The opening statement is the last of the transaction and takes COMMIT along. */
  final?: boolean;
  /**
   * A final opening may find or make its contact in the same statement (one-statement.ts); the
   * caller runs the creation again without it when that fails with DR001 (stakeLost).
   */
  oneStatement?: boolean;
}

export interface Opened {
  ticket: TicketRecord;
  contact: Ticket['contact'];
  /** What the creation read for the SLA clock, for a change that follows in the same transaction. */
  sla: repo.SlaRead;
}

export interface Changed<R> {
  ticket: TicketRecord;
  result: R;
  /** The transaction's time, when the change's messages were made (null: nothing was written). */
  at: Date | null;
}

export function writeTicket(trx: Trx, command: CreateCommand): Promise<Opened>;
export function writeTicket<R>(trx: Trx, command: ChangeCommand<R>): Promise<Changed<R>>;
export function writeTicket<R>(trx: Trx, command: CreateCommand | ChangeCommand<R>) {
  return command.kind === 'create' ? create(trx, command) : change(trx, command);
}

async function change<R>(trx: Trx, command: ChangeCommand<R>): Promise<Changed<R>> {
  // The SLA policies' key and the transaction's time come with the statement that locks the
  // ticket (ours, or the caller's when it says so); otherwise they are read with the calendars.
  // Ours also reads the schedule key of the ticket's department, for business times.
  // A replayed batch holds its tickets and writes them as a set (set-writes.ts), its schedule
  // keys read once for the batch.
  const batch = currentReplay()?.batch;
  const keys: ScheduleKeys = batch?.scheduleKeys ?? new Map();
  let locked: TicketRecord | undefined;
  let sla: repo.SlaRead | undefined;
  if ('locked' in command.target) ({ locked, sla } = command.target);
  else if (batch) ({ ticket: locked, sla } = (await batch.lock(trx, command.target.id)) ?? {});
  else {
    const row = await repo.lockTicketForChange(trx, command.target.id);
    if (row) keys.set(row.ticket.department_id, row.scheduleKey);
    ({ ticket: locked, sla } = row ?? {});
  }
  const write = (ticket: TicketRecord, change: repo.TicketWrite) =>
    batch ? batch.write(ticket, change) : repo.writeTicketChanges(trx, ticket, change);
  const before = command.access
    ? requireTicket(command.access.access, locked, command.access.ability)
    : locked;
  if (!before) throw notFound('ticket');
  if (command.ifMatch !== undefined) {
    assertIfMatch(command.ifMatch, (await repo.withContacts(trx, [before]))[0]);
  }
  // The transaction's time, read with the lock (a caller's lock without it: this process's).
  const txAt = sla?.now ?? new Date();
  const decided = await command.decide(before, txAt);

  let working = before;
  let patched = false;
  const patch: TicketPatch = {};
  const events: ActorEvent[] = [];
  for (const step of decided.steps) {
    if ('event' in step) {
      events.push({ ...step.event, actor: step.actor, ticket: working });
      continue;
    }
    patched = true;
    // Tags stored before their budget existed (TAG_BYTES; possible on a finished ticket) are
    // trimmed by the next change, in its history: reopened, they would not fit the index of
    // unfinished tickets (0036), and the write would fail.
    const stepPatch =
      tagBytes(working.tags) > TAG_BYTES ? { tags: fitTags(working.tags), ...step.patch } : step.patch;
    const next = { ...working, ...stepPatch };
    for (const e of changeEvents(working, next)) events.push({ ...e, actor: step.actor, ticket: next });
    Object.assign(patch, stepPatch);
    working = next;
  }
  const messages = decided.messages ?? [];
  const touch = decided.touch ?? (patched || messages.length > 0 || decided.search !== undefined);
  const activity =
    decided.activity ??
    (messages.length > 0 ||
      decided.steps.some((s) => 'patch' in s && s.actor.type !== 'rule' && s.actor.type !== 'system'));
  // The SLA clock follows every write that touches the ticket, planned on the locked ticket and
  // written with the same statement (docs/sla.md). Nothing to plan and nothing read when no
  // policy is active and none ever applied to this ticket.
  let setting: SlaSetting | null = null;
  let planned: SlaWrite | null = null;
  const replay = currentReplay();
  const clock = touch || decided.clock === true;
  if (!replay && clock && (sla === undefined || sla.key !== null || before.sla_state !== null)) {
    setting = await readSlaSetting(trx, [
      before.department_id,
      working.department_id,
      ...(before.sla_state ? [before.sla_state.calendar_department_id] : []),
    ]);
    const lastActor =
      [...decided.steps].reverse().find((s) => 'patch' in s)?.actor ?? decided.steps.at(-1)?.actor;
    const actor = lastActor ?? SYSTEM_ACTOR;
    planned = await planTicketSla(
      trx,
      setting,
      before.sla_state,
      before,
      working,
      {
        agent: messages.some((m) => m.kind === 'agent'),
        customer: messages.some((m) => m.kind === 'customer'),
      },
      actor,
    );
    if (planned) {
      Object.assign(patch, planned.patch);
      events.push(...planned.events);
    }
  }
  // A timer that finds nothing to plan (no policy, none applied) is not needed any more.
  if (decided.clock && patch.sla_next_at === undefined) patch.sla_next_at = null;
  let ticket = before;
  let at: Date | null = null;
  if (touch || events.length > 0 || messages.length > 0 || Object.keys(patch).length > 0) {
    ({ ticket, at } = await write(before, {
      patch,
      touch,
      activity,
      search: decided.search,
      events: await withBusinessTimes(trx, events, keys),
      messages,
    }));
  }

  const closing = decided.closing ?? [];
  // Replayed history runs no rules unless its import asked for them (replay.ts).
  const triggers = replay && !replay.runRules ? [] : (decided.triggers ?? []);
  let slaByRules: SlaWrite | null = null;
  const evaluation =
    triggers.length > 0
      ? await evaluateRules(trx, ticket, triggers, {
          before,
          message: decided.ruleMessage ?? null,
          at: txAt,
          idleRules: decided.idleRules,
        })
      : null;
  if (evaluation) {
    const plan = await planRules(trx, ticket, evaluation);
    const ruled = { ...ticket, ...plan.patch };
    // A change that planned no SLA clock (a ticket.idle pass) still moves it with what its
    // rules change.
    if (
      !replay &&
      !setting &&
      !clock &&
      Object.keys(plan.patch).length > 0 &&
      (sla?.key !== null || ticket.sla_state !== null)
    ) {
      setting = await readSlaSetting(trx, [
        ticket.department_id,
        ruled.department_id,
        ...(ticket.sla_state ? [ticket.sla_state.calendar_department_id] : []),
      ]);
    }
    // What the rules changed moves the clock too, in the rules' own statement.
    if (setting && Object.keys(plan.patch).length > 0) {
      slaByRules = await planTicketSla(
        trx,
        setting,
        ticket.sla_state,
        ticket,
        ruled,
        { agent: false, customer: false },
        plan.events[0]?.actor ?? SYSTEM_ACTOR,
      );
    }
    try {
      ({ ticket } = await write(ticket, {
        patch: { ...plan.patch, ...slaByRules?.patch },
        touch: Object.keys(plan.patch).length > 0 || plan.notes.length > 0,
        search: plan.notes.length > 0 ? plan.notes.map((n) => n.body).join('\n') : undefined,
        events: await withBusinessTimes(
          trx,
          [
            ...plan.events,
            ...(slaByRules?.events ?? []),
            ...closing.map((c) => ({ ...c.event, actor: c.actor, ticket: ruled })),
          ],
          keys,
        ),
        messages: plan.notes,
        alongside: { statement: ruleRunInsert(plan.run) },
      }));
    } catch (error) {
      throw ruleFailure(plan, error) ?? error;
    }
  } else if (closing.length > 0) {
    await write(ticket, {
      patch: {},
      touch: false,
      changedAlready: at !== null && (touch || events.length > 0 || messages.length > 0),
      events: await withBusinessTimes(
        trx,
        closing.map((c) => ({ ...c.event, actor: c.actor, ticket })),
        keys,
      ),
      messages: [],
    });
  }
  // A warning or breach fired by this write may hand the ticket on (its policy's escalations).
  if (setting) {
    ticket = await escalate(trx, setting, ticket, [...(planned?.fired ?? []), ...(slaByRules?.fired ?? [])]);
  }
  // Then the rules on the warnings and breaches it fired run, each its own pass (docs/rules.md).
  ticket = await runSlaRules(trx, ticket, planned?.events ?? [], setting, keys);
  return { ticket, result: decided.result, at };
}

/**
 * An agent may hold a ticket when active and, for a ticket in a department, a member of it
 * who may work tickets there (solver or more).
 */
export async function requireAssignable(
  trx: Trx,
  agentId: string,
  departmentId: string | null,
  field: string,
) {
  const agent = await readOncePerBatch(`agent:${agentId}`, () => repo.agentStatus(trx, agentId));
  if (!agent)
    throw unprocessable('agent_not_found', 'The agent does not exist.', [
      { field, message: 'no such agent' },
    ]);
  // Replayed history is not judged by today's team: an agent who has left (disabled) or moved
  // department since held the ticket then. The agent must still exist.
  if (currentReplay()) return;
  if (agent.status !== 'active') {
    throw unprocessable('agent_disabled', 'A disabled agent cannot take tickets.', [
      { field, message: 'is disabled' },
    ]);
  }
  if (departmentId !== null && !(await canHoldIn(trx, agentId, departmentId))) {
    throw unprocessable(
      'assignee_not_member',
      'The agent is not a solver (or more) in the ticket’s department.',
      [{ field, message: 'is not a solver, supervisor or manager of the department' }],
    );
  }
}

export async function canHoldIn(trx: Trx, agentId: string, departmentId: string) {
  const role = await readOncePerBatch(`member:${agentId}:${departmentId}`, () =>
    repo.memberRole(trx, agentId, departmentId),
  );
  return role !== undefined && (['solver', 'supervisor', 'manager'] as DepartmentRole[]).includes(role);
}

/** The checks of a new ticket: references exist, the caller may assign. */
async function checkNewTicket(trx: Trx, principal: Principal | null, input: CreateTicketInput) {
  // An unknown department needs no look-up of its own: the foreign key refuses it (plugins/problem.ts
  // turns that into 422 department_not_found), which saves a round trip on every creation.
  const departmentId = input.department_id ?? null;
  if (input.assignee_id) {
    await requireAssignable(trx, input.assignee_id, departmentId, 'body/assignee_id');
    if (principal) {
      const access = await loadTicketAccess(trx, principal);
      const ability: TicketAbility = input.assignee_id === principal.agentId ? 'work' : 'manage';
      const draft = { department_id: departmentId, assignee_id: null };
      if (!can(access, draft, ability)) {
        throw forbidden('You may not assign tickets of this department to others.', 'supervisor_required');
      }
    }
  }
  if (input.contact.id === undefined && !input.contact.email && !input.contact.phone) {
    throw invalid('contact_required', 'Give the contact’s id, email or phone.', [
      { field: 'body/contact', message: 'needs id, email or phone' },
    ]);
  }
}

/**
 * Opens a ticket with its first message: the contact is found or created, and the history starts
 * with `created` (and `message_added`, and `assigned` when an assignee is given), then what the
 * rules did, all in the opening statement.
 */
async function create(trx: Trx, command: CreateCommand): Promise<Opened> {
  const { input, actor, authorAgentId } = command;
  if (command.by !== 'unchecked') await checkNewTicket(trx, command.by, input);
  const replay = currentReplay();
  const departmentId = input.department_id ?? null;
  const contactInput = {
    ...(input.contact.id !== undefined && { id: input.contact.id }),
    ...(input.contact.name !== undefined && { name: input.contact.name }),
    ...(input.contact.email !== undefined && { email: input.contact.email }),
    ...(input.contact.phone !== undefined && { phone: input.contact.phone }),
  };
  const single =
    command.final && command.oneStatement && !replay && contactInput.id === undefined
      ? oneStatementContact(contactInput, departmentId)
      : null;
  const {
    id: contactId,
    seen,
    sla: heldSla,
  } = single ?? (await resolveContact(trx, contactInput, departmentId));
  if (!single && seen) remember(departmentId, seen);
  const fromAgent = input.message?.author === 'agent';
  const tags = normaliseTags(input.tags ?? []);
  assertTagsFit(tags, 'body/tags');
  const subject = input.subject.trim();
  const status: TicketStatus = fromAgent ? 'answered' : 'new';
  const message = input.message
    ? {
        id: randomUUID(),
        kind: fromAgent ? ('agent' as const) : ('customer' as const),
        author_agent_id: fromAgent ? authorAgentId : null,
        author_contact_id: fromAgent ? null : contactId,
        body: input.message.body,
      }
    : null;
  // Working hours are decided once, by the department the ticket comes in with and the instant it
  // comes in (the transaction's time, read with the contact): rules on ticket.created read them
  // before any of them transfers it.
  const read = seen?.sla ?? heldSla;
  // A replayed batch's record (set-writes.ts) is at its own time, the batch's schedule keys read once.
  const batch = replay?.batch;
  const at = batch?.now ?? read?.now ?? new Date();
  const { calendar } = await departmentCalendar(
    trx,
    departmentId,
    batch ? await batch.scheduleKeyOf(trx, departmentId) : seen?.scheduleKey,
  );
  const createdInWorkingHours = calendar.isOpen(at.getTime());
  const values = {
    id: randomUUID(),
    subject,
    channel: input.channel ?? 'api',
    status,
    priority: input.priority ?? 'normal',
    department_id: input.department_id ?? null,
    assignee_id: input.assignee_id ?? null,
    contact_id: contactId,
    tags,
    support_address: input.support_address ?? null,
    created_in_working_hours: createdInWorkingHours,
  };
  // The customer opened the ticket when it starts with their message; whoever created it
  // through the API chose the assignee. The opening events carry the department and assignee
  // the ticket came in with, whatever the rules do next.
  const opener: Actor =
    message && !fromAgent ? { ...actor, type: 'contact', agentId: null, contactId } : actor;
  const events: ActorEvent[] = [
    {
      type: 'created',
      actor: opener,
      ticket: values,
      data: { subject, status, priority: values.priority, department_id: values.department_id, tags },
    },
  ];
  if (message) {
    events.push({
      type: 'message_added',
      actor: opener,
      ticket: values,
      data: { message_id: message.id, kind: message.kind },
    });
  }
  if (input.assignee_id) {
    events.push({ type: 'assigned', actor, ticket: values, data: { from: null, to: input.assignee_id } });
  }
  // Created at the transaction's time, which the row's created_at takes too: a rule that resolves
  // the ticket at once records a resolution time of 0.
  const snapshot = { ...values, postponed_until: null, created_at: at, first_resolved_at: null };
  const evaluation = await evaluateRules(
    trx,
    snapshot,
    replay && !replay.runRules ? [] : ['ticket.created'],
    {
      seen,
      at,
      outsideWorkingHours: !createdInWorkingHours,
      message: message && {
        id: message.id,
        body: message.body,
        ...(fromAgent
          ? { senderAgentId: authorAgentId }
          : input.contact.email !== undefined && { senderEmail: input.contact.email }),
      },
    },
  );
  const plan = evaluation ? await planOpening(trx, snapshot, evaluation) : null;
  // A rule that resolves the new ticket records its (first) resolution time, business time too.
  const keys: ScheduleKeys = new Map(
    seen?.scheduleKey !== undefined ? [[values.department_id, seen.scheduleKey]] : [],
  );
  const planned = plan ? await withBusinessTimes(trx, plan.events, keys) : [];
  const opened: OpeningValues = plan ? openedValues(values, plan.patch) : values;
  // The SLA clock starts with the ticket as it opens (after its rules), at the transaction's time,
  // which the contact's statement read along with the policies' key.
  const setting: SlaSetting = read
    ? { ...read, calendars: new Map([[values.department_id, calendar]]), contact: seen?.contact }
    : await readSlaSetting(trx, [opened.department_id]);
  const sla = replay
    ? null
    : await planTicketSla(
        trx,
        setting,
        null,
        null,
        {
          ...opened,
          created_at: setting.now,
          first_resolved_at: opened.first_resolved_at ?? null,
          postponed_until: opened.postponed_until ?? null,
        },
        { agent: fromAgent && message !== null, customer: false },
        opener,
      );
  // A replayed ticket is history: no clock, but planned under today's policies, so the SLA timers
  // do not plan it again (and fire its old dues as breaches today).
  const slaValues = sla
    ? { ...opened, ...sla.patch, sla_state: sla.patch.sla_state ?? null }
    : replay
      ? { ...opened, sla_planned_key: setting.key ?? NO_POLICIES_KEY }
      : opened;
  const slaEvents = sla?.events ?? [];
  // The opening statement takes COMMIT along unless SLA rules still have to run after it.
  const final = (command.final ?? false) && !raisesSlaRules(slaEvents);
  if (batch && !plan && !raisesSlaRules(slaEvents)) {
    // The contact's summary is the flush's to read: the importer takes only the id.
    const ticket = batch.open(slaValues, message, [...events, ...slaEvents]);
    const contact = { id: contactId, name: '', email: null, phone: null };
    return { ticket, contact, sla: { key: setting.key, now: at } };
  }
  const inserted = plan
    ? await repo.insertOpenedTicket(trx, slaValues, message, [...events, ...planned, ...slaEvents], {
        notes: plan.notes,
        alongside: { statement: ruleRunInsert(plan.run) },
        final,
        contact: single?.opening,
      })
    : await repo.insertOpenedTicket(trx, slaValues, message, [...events, ...slaEvents], {
        final,
        contact: single?.opening,
      });
  if (raisesSlaRules(slaEvents)) {
    inserted.ticket = await runSlaRules(trx, inserted.ticket, slaEvents, setting, keys);
  }
  // In one statement the transaction's time was not read before: it is the row's.
  return { ...inserted, sla: { key: setting.key, now: single ? inserted.ticket.created_at : setting.now } };
}

/**
 * The contact of a creation that may be one statement (one-statement.ts): a new id that the
 * opening statement takes when no contact has the email, what the rules would see (no rule acts,
 * nothing reads the time), and the statement's contact part; null when it may not.
 */
function oneStatementContact(
  input: { name?: string; email?: string; phone?: string },
  departmentId: string | null,
) {
  const { name, email, phone } = contactIdentity(input);
  if (email === undefined || phone !== undefined) return null;
  const rulesKey = stakeFor(departmentId);
  if (rulesKey === null) return null;
  const id = randomUUID();
  const seen: SeenByRules = {
    rulesKey,
    contact: { name, email, custom: {} },
    scheduleKey: null,
    sla: { key: null, now: new Date() },
  };
  return { id, seen, sla: seen.sla, opening: { name, email, rulesKey, departmentId } };
}

type OpeningValues = Parameters<typeof repo.insertOpenedTicket>[1];

/** The new ticket's values with what its rules changed. */
function openedValues(values: OpeningValues, patch: TicketPatch): OpeningValues {
  const {
    status: s,
    priority,
    department_id,
    assignee_id,
    tags: t,
    postponed_until,
    resolved_at,
    first_resolved_at,
  } = patch;
  return {
    ...values,
    ...(s !== undefined && { status: s }),
    ...(priority !== undefined && { priority }),
    ...(department_id !== undefined && { department_id }),
    ...(assignee_id !== undefined && { assignee_id }),
    ...(t !== undefined && { tags: t }),
    ...(postponed_until !== undefined && { postponed_until }),
    ...(resolved_at !== undefined && { resolved_at }),
    ...(first_resolved_at !== undefined && { first_resolved_at }),
  };
}
