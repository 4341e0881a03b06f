import { atLeast } from '../../src/access/policy.ts';
import type { AgentRole, Channel, DepartmentRole, Priority } from '../../src/db/types.ts';
import type { Actor } from '../../src/domains/tickets/repository.ts';
import { type Ledger, TicketStory } from './ledger.ts';
import type { Random } from './random.ts';
import {
  AGENT_REPLIES,
  CHAT_LINES,
  CUSTOMER_FOLLOW_UPS,
  DEPARTMENTS,
  type DepartmentName,
  fill,
  NOTES,
  type Person,
  RATING_COMMENTS,
  TOPICS,
  type Topic,
  TRANSFER_NOTES,
} from './roster.ts';

// How tickets come in and what people do with them. Each plan draws its opening first (so
// tickets can be opened in time order, which is when contacts are found or created), then
// plays the rest of the ticket's life, stopping at `now`: whatever would happen later has not
// happened yet, which leaves a realistic backlog of new, open and postponed tickets.

export interface DeskAgent {
  id: string;
  name: string;
  role: AgentRole;
  memberships: Map<string, DepartmentRole>;
  from: Date;
  until: Date | null;
}

export interface Integrations {
  mail: Actor;
  telephony: Actor;
  chat: Actor;
  social: Actor;
  shop: Actor;
  survey: Actor;
}

export interface Desk {
  now: Date;
  start: Date;
  departments: Record<DepartmentName, string>;
  agents: DeskAgent[];
  integrations: Integrations;
  people: Person[];
  /** Cumulative weights of `people`, for picking returning customers more often. */
  peopleCumulative: number[];
  /** Contacts the social inbox created, by person index (it remembers the handle). */
  socialContacts: Map<number, string>;
  companyPhone: string;
  ledger: Ledger;
}

export interface Plan {
  openAt: Date;
  run(): void;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const CHANNELS: readonly (readonly [Channel, number])[] = [
  ['email', 28],
  ['contact_form', 9],
  ['chat', 17],
  ['call', 14],
  ['facebook', 5],
  ['twitter', 2],
  ['instagram', 4],
  ['viber', 3],
  ['whatsapp', 9],
  ['api', 9],
];

const TOPIC_WEIGHTS: Record<DepartmentName, number> = {
  Support: 45,
  Sales: 15,
  Returns: 18,
  Wholesale: 4,
  Billing: 10,
  Marketing: 8,
};

const addMs = (d: Date, ms: number) => new Date(d.getTime() + Math.round(ms));
const later = (d: Date, ms: number) => addMs(d, Math.max(1000, ms));

export const agentActor = (agent: DeskAgent): Actor => ({
  type: 'agent',
  agentId: agent.id,
  contactId: null,
  tokenId: null,
});

/** Opening hours of the help desk (UTC): weekdays 07-19, Saturdays 09-13. */
function openingHours(day: number): [number, number] | null {
  if (day === 0) return null;
  if (day === 6) return [9, 13];
  return [7, 19];
}

export function isOpen(at: Date): boolean {
  const hours = openingHours(at.getUTCDay());
  const h = at.getUTCHours() + at.getUTCMinutes() / 60;
  return hours !== null && h >= hours[0] && h < hours[1];
}

/** The first moment at or after `at` when agents work; a little after opening when it was closed. */
function workTime(r: Random, at: Date): Date {
  if (isOpen(at)) return at;
  const d = new Date(at);
  for (let i = 0; i < 8; i++) {
    const hours = openingHours(d.getUTCDay());
    const h = d.getUTCHours() + d.getUTCMinutes() / 60;
    if (hours && h < hours[0]) {
      d.setUTCHours(hours[0], 0, 0, 0);
      return addMs(d, r.between(0, 40 * MINUTE));
    }
    d.setUTCDate(d.getUTCDate() + 1);
    d.setUTCHours(0, 0, 0, 0);
  }
  return d;
}

/** Customers write at any time, but rarely at night. */
function customerTime(r: Random, at: Date): Date {
  const h = at.getUTCHours();
  if (h >= 6) return at;
  const d = new Date(at);
  d.setUTCHours(6, 0, 0, 0);
  return addMs(d, r.between(0, 4 * HOUR));
}

function arrivalWeight(desk: Desk, at: Date): number {
  const day = at.getUTCDay();
  const h = at.getUTCHours() + at.getUTCMinutes() / 60;
  const dayWeight = day === 0 ? 0.35 : day === 6 ? 0.5 : 1;
  const hourWeight = h < 6 ? 0.08 : h < 8 ? 0.4 : h < 17 ? 1 : h < 21 ? 0.6 : 0.25;
  // The shop grows: a third more tickets at the end of the period than at its start.
  const progress = (at.getTime() - desk.start.getTime()) / (desk.now.getTime() - desk.start.getTime());
  return dayWeight * hourWeight * (0.85 + 0.3 * progress);
}

function sampleArrival(desk: Desk, r: Random): Date {
  const span = desk.now.getTime() - desk.start.getTime();
  for (;;) {
    const at = new Date(desk.start.getTime() + Math.floor(r.next() * span));
    if (r.next() * 1.15 < arrivalWeight(desk, at)) return at;
  }
}

function active(agent: DeskAgent, at: Date) {
  return agent.from <= at && (agent.until === null || at < agent.until);
}

function membersAt(desk: Desk, departmentId: string, at: Date, min: DepartmentRole) {
  return desk.agents.filter((a) => active(a, at) && atLeast(a.memberships.get(departmentId), min));
}

/** An agent who may work tickets of the department (solver or more) and is employed at `at`. */
function pickWorker(desk: Desk, r: Random, departmentId: string, at: Date): DeskAgent {
  const workers = membersAt(desk, departmentId, at, 'solver');
  if (workers.length === 0) throw new Error(`no agent can work tickets of department ${departmentId}`);
  return r.pick(workers);
}

/** A supervisor or manager of the department; transfers and reassignments need one. */
function pickSupervisor(desk: Desk, r: Random, departmentId: string, at: Date): DeskAgent {
  const supervisors = membersAt(desk, departmentId, at, 'supervisor');
  if (supervisors.length > 0) return r.pick(supervisors);
  const admins = desk.agents.filter((a) => active(a, at) && a.role !== 'agent');
  return r.pick(admins);
}

function pickPerson(desk: Desk, r: Random, needs: (p: Person) => boolean): number {
  const total = desk.peopleCumulative[desk.peopleCumulative.length - 1]!;
  for (let attempt = 0; attempt < 50; attempt++) {
    const x = r.next() * total;
    let lo = 0;
    let hi = desk.peopleCumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (desk.peopleCumulative[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    if (needs(desk.people[lo]!)) return lo;
  }
  const index = desk.people.findIndex(needs);
  if (index < 0) throw new Error('no customer fits');
  return index;
}

function pickTopic(r: Random, channel: Channel, person: Person): Topic {
  if (person.reseller && r.chance(0.7)) return TOPICS.find((t) => t.department === 'Wholesale')!;
  const social = channel === 'facebook' || channel === 'instagram' || channel === 'twitter';
  const weights = TOPICS.map((t) => {
    let w = TOPIC_WEIGHTS[t.department];
    if (social && t.department === 'Marketing') w *= 5;
    if (channel === 'api' && t.department === 'Returns') w *= 3;
    if ((channel === 'chat' || channel === 'call') && t.department === 'Sales') w *= 2;
    return [t, w] as const;
  });
  return r.weighted(weights);
}

function firstResponseMinutes(priority: Priority, channel: Channel): number {
  const base = { urgent: 25, high: 60, normal: 180, low: 480 }[priority];
  return ['facebook', 'twitter', 'instagram', 'viber', 'whatsapp'].includes(channel) ? base / 2 : base;
}

/** The life of one ticket after it opened; every step checks the clock first. */
class Script {
  readonly desk: Desk;
  readonly r: Random;
  readonly story: TicketStory;
  readonly topic: Topic;
  /** Records what the customer sends on this ticket's channel. */
  readonly integration: Actor;

  constructor(desk: Desk, r: Random, story: TicketStory, topic: Topic, integration: Actor) {
    this.desk = desk;
    this.r = r;
    this.story = story;
    this.topic = topic;
    this.integration = integration;
  }

  get ticket() {
    return this.story.ticket;
  }

  /** False once `at` is past now: the rest has not happened yet. */
  happened(at: Date) {
    return at <= this.desk.now;
  }

  agentAt(medianMinutes: number, sigma = 0.9): Date {
    return workTime(this.r, later(this.story.last, this.r.logNormal(medianMinutes * MINUTE, sigma)));
  }

  soon(minMinutes: number, maxMinutes: number): Date {
    return later(this.story.last, this.r.between(minMinutes * MINUTE, maxMinutes * MINUTE));
  }

  customerAt(medianHours: number): Date {
    return customerTime(this.r, later(this.story.last, this.r.logNormal(medianHours * HOUR, 1.1)));
  }

  byId(id: string) {
    return this.desk.agents.find((a) => a.id === id)!;
  }

  /**
   * Who works the ticket at `at`: its assignee while they are still employed (a supervisor
   * hands the ticket on when they left), else `preferred` when they may, else a colleague.
   */
  worker(at: Date, preferred?: DeskAgent): DeskAgent {
    const departmentId = this.ticket.department_id!;
    if (this.ticket.assignee_id) {
      const assignee = this.byId(this.ticket.assignee_id);
      if (active(assignee, at)) return assignee;
      const supervisor = pickSupervisor(this.desk, this.r, departmentId, at);
      const next = pickWorker(this.desk, this.r, departmentId, at);
      this.story.patch(at, agentActor(supervisor), { assignee_id: next.id });
      return next;
    }
    if (preferred && active(preferred, at) && atLeast(preferred.memberships.get(departmentId), 'solver')) {
      return preferred;
    }
    return pickWorker(this.desk, this.r, departmentId, at);
  }

  replyText(): string {
    const department = this.departmentName();
    return fill(this.r.pick(AGENT_REPLIES[department]), this.r, this.story.last);
  }

  departmentName(): DepartmentName {
    const id = this.ticket.department_id;
    const entry = Object.entries(this.desk.departments).find(([, v]) => v === id);
    return (entry?.[0] as DepartmentName | undefined) ?? 'Support';
  }

  /** Moves the ticket to the department its topic belongs to, as triage or a supervisor would. */
  route(): boolean {
    const target = this.desk.departments[this.topic.department];
    if (this.ticket.department_id === target) return true;
    const at = this.agentAt(this.ticket.department_id ? 90 : 45);
    if (!this.happened(at)) return false;
    // A ticket in no department may be transferred by any agent; otherwise a supervisor does it.
    const who = this.ticket.department_id
      ? pickSupervisor(this.desk, this.r, this.ticket.department_id, at)
      : pickWorker(this.desk, this.r, this.desk.departments.Support, at);
    const note = this.r.chance(0.4) ? this.r.pick(TRANSFER_NOTES) : undefined;
    this.story.transfer(at, agentActor(who), target, note ? { note } : {});
    return true;
  }

  /** Marks the ticket as spam soon after it came in; some are deleted later. */
  spam() {
    let at = this.agentAt(60);
    if (!this.happened(at)) return;
    const departmentId = this.ticket.department_id ?? this.desk.departments.Support;
    const who = pickWorker(this.desk, this.r, departmentId, at);
    this.story.patch(at, agentActor(who), { status: 'spam' });
    if (this.r.chance(0.3)) {
      at = this.agentAt(3 * 24 * 60);
      if (!this.happened(at)) return;
      this.story.remove(at, agentActor(pickSupervisor(this.desk, this.r, departmentId, at)));
    }
  }

  /** Takes the ticket (or has it assigned), maybe notes, tags or escalates, then answers. */
  firstAnswer(): DeskAgent | null {
    let at = this.agentAt(firstResponseMinutes(this.ticket.priority, this.ticket.channel));
    if (!this.happened(at)) return null;
    const departmentId = this.ticket.department_id!;
    let agent = this.worker(at);
    const mode = this.ticket.assignee_id
      ? 'direct'
      : this.r.weighted([
          ['take', 70],
          ['assign', 12],
          ['direct', 18],
        ] as const);
    if (mode === 'take') {
      this.story.patch(at, agentActor(agent), { assignee_id: agent.id });
      at = this.soon(1, 15);
    } else if (mode === 'assign') {
      this.story.patch(at, agentActor(pickSupervisor(this.desk, this.r, departmentId, at)), {
        assignee_id: agent.id,
      });
      at = this.agentAt(45);
      if (!this.happened(at)) return null;
      agent = this.worker(at, agent);
    }
    if (!this.happened(at)) return null;
    if (this.r.chance(0.1) && this.ticket.priority !== 'urgent') {
      this.story.patch(at, agentActor(agent), { priority: this.r.chance(0.7) ? 'high' : 'urgent' });
      at = this.soon(0.5, 3);
    }
    // Each step moves `at` on: one near now may pass it before the reply (seen: a note 28 s
    // after now, which the seed must never write).
    if (this.r.chance(0.12)) {
      if (!this.happened(at)) return null;
      const colleague = pickWorker(this.desk, this.r, departmentId, at);
      this.story.note(at, agentActor(colleague), this.r.pick(NOTES));
      at = this.soon(2, 30);
    }
    if (this.r.chance(0.3)) {
      if (!this.happened(at)) return null;
      this.story.addTags(at, agentActor(agent), [this.r.pick(this.topic.tags)]);
      at = this.soon(0.5, 5);
    }
    if (!this.happened(at)) return null;
    this.story.reply(at, agentActor(this.worker(at, agent)), this.replyText());
    return agent;
  }

  /** Rounds of customer follow-ups and answers, the odd postponement, then resolution and rating. */
  conversation(handler: DeskAgent, options: { followUp?: number } = {}) {
    let agent = handler;
    let followUp = options.followUp ?? 0.45;
    let postponed = this.r.chance(0.05);
    if (postponed && !this.postpone(agent)) return;
    while (this.r.chance(followUp)) {
      followUp *= 0.55;
      let at = this.customerAt(5);
      if (!this.happened(at)) return;
      this.story.customerMessage(at, this.integration, fill(this.r.pick(CUSTOMER_FOLLOW_UPS), this.r, at));
      at = this.agentAt(firstResponseMinutes(this.ticket.priority, this.ticket.channel) * 0.8);
      if (!this.happened(at)) return;
      agent = this.worker(at, agent);
      this.story.reply(at, agentActor(agent), this.replyText());
      if (!postponed && this.r.chance(0.12)) {
        postponed = true;
        if (!this.postpone(agent)) return;
      }
    }
    this.resolve(agent);
  }

  /** Postpones for a few days; the scheduler wakes the ticket and the agent follows up. */
  postpone(agent: DeskAgent): boolean {
    let at = this.soon(1, 10);
    if (!this.happened(at)) return false;
    const until = new Date(at.getTime() + (this.r.chance(0.8) ? this.r.int(1, 6) : this.r.int(10, 40)) * DAY);
    until.setUTCHours(8, 0, 0, 0);
    this.story.patch(at, agentActor(this.worker(at, agent)), { status: 'postponed', postponed_until: until });
    // The scheduler runs every 30 s.
    at = addMs(until, this.r.between(0, 30_000));
    if (!this.happened(at)) return false;
    this.story.wake(at);
    at = this.agentAt(60);
    if (!this.happened(at)) return false;
    this.story.reply(at, agentActor(this.worker(at, agent)), this.replyText());
    return true;
  }

  resolve(agent: DeskAgent, probability = 0.82) {
    if (!this.r.chance(probability)) return;
    let at = this.agentAt(120);
    if (!this.happened(at)) return;
    this.story.patch(at, agentActor(this.worker(at, agent)), { status: 'resolved' });
    if (this.r.chance(0.3)) {
      at = this.customerAt(3);
      if (!this.happened(at)) return;
      const value = this.r.chance(0.82) ? 'positive' : 'negative';
      const last = this.story.replies[this.story.replies.length - 1];
      const comment = this.r.chance(0.4) ? this.r.pick(RATING_COMMENTS[value]) : undefined;
      this.story.rate(at, this.desk.integrations.survey, {
        value,
        ...(comment !== undefined && { comment }),
        ...(last && this.r.chance(0.5) && { message: last }),
      });
    }
    if (this.r.chance(0.06)) {
      at = this.customerAt(30);
      if (!this.happened(at)) return;
      this.story.customerMessage(at, this.integration, fill(this.r.pick(CUSTOMER_FOLLOW_UPS), this.r, at));
      at = this.agentAt(120);
      if (!this.happened(at)) return;
      agent = this.worker(at, agent);
      this.story.reply(at, agentActor(agent), this.replyText());
      this.resolve(agent, 0.9);
    }
  }

  /** An agent calls the customer back about this ticket (recorded by the telephony system). */
  callBack(agent: DeskAgent, phone: string) {
    const started = this.agentAt(40);
    const answered = this.r.chance(0.8);
    const answeredAt = answered ? addMs(started, this.r.between(5_000, 30_000)) : null;
    const ended = answeredAt
      ? addMs(answeredAt, Math.min(1800_000, this.r.logNormal(180_000, 0.7)))
      : addMs(started, this.r.between(20_000, 45_000));
    const at = addMs(ended, this.r.between(1000, 8000));
    if (!this.happened(at)) return false;
    const caller = this.worker(started, agent);
    this.story.recordCall(at, this.desk.integrations.telephony, {
      external_id: `pbx-${this.r.int(10_000_000, 99_999_999)}`,
      direction: 'outbound',
      outcome: answered ? 'answered' : 'missed',
      agent_id: caller.id,
      from_number: this.desk.companyPhone,
      to_number: phone,
      started_at: started,
      answered_at: answeredAt,
      ended_at: ended,
    });
    return true;
  }
}

const INTEGRATION_OF: Record<Channel, keyof Integrations> = {
  email: 'mail',
  contact_form: 'mail',
  chat: 'chat',
  call: 'telephony',
  facebook: 'social',
  twitter: 'social',
  instagram: 'social',
  viber: 'social',
  whatsapp: 'social',
  api: 'shop',
};

const priorityAtIntake = (r: Random): Priority =>
  r.weighted([
    ['normal', 77],
    ['high', 12],
    ['low', 8],
    ['urgent', 3],
  ] as const);

export const CHANNEL_LIST = CHANNELS.map(([channel]) => channel);

/** One ticket: when it opens and how its life goes; on the channel given, else on a likely one. */
export function planTicket(desk: Desk, r: Random, only?: Channel): Plan {
  for (;;) {
    const arrival = sampleArrival(desk, r);
    const channel = only ?? r.weighted(CHANNELS);
    const plan =
      channel === 'call'
        ? planCall(desk, r, arrival)
        : channel === 'chat'
          ? planChat(desk, r, arrival)
          : planMessage(desk, r, arrival, channel);
    if (plan.openAt <= desk.now) return plan;
  }
}

function planMessage(desk: Desk, r: Random, arrival: Date, channel: Exclude<Channel, 'call' | 'chat'>): Plan {
  const needsPhone = channel === 'whatsapp' || channel === 'viber';
  const social = channel === 'facebook' || channel === 'instagram' || channel === 'twitter';
  const personIndex = pickPerson(desk, r, (p) =>
    needsPhone ? p.phone !== null : social || p.email !== null,
  );
  const person = desk.people[personIndex]!;
  const topic = pickTopic(r, channel, person);
  const outbound = channel === 'email' && r.chance(0.1);
  if (outbound) return planOutboundEmail(desk, r, arrival, person, topic);
  const subject = fill(r.pick(topic.subjects), r, arrival);
  const body = fill(r.pick(topic.openings), r, arrival);
  const d = desk.departments;
  let department: string | null;
  let supportAddress: string | null = null;
  if (channel === 'email') {
    const name = r.chance(0.85) ? topic.department : 'Support';
    department = d[name];
    supportAddress = DEPARTMENTS[name].address;
  } else if (channel === 'contact_form') {
    const offered = DEPARTMENTS[topic.department].onContactForm;
    department = r.weighted([
      [offered ? d[topic.department] : d.Sales, 55],
      [null, 30],
      [d.Support, 15],
    ] as const);
  } else if (social) {
    department = d.Marketing;
  } else if (channel === 'api') {
    department = topic.department === 'Returns' || r.chance(0.3) ? d.Returns : d.Support;
  } else {
    department = d.Support;
  }
  const spam = r.chance(channel === 'api' ? 0 : channel === 'contact_form' ? 0.07 : 0.04);
  const priority = channel === 'api' || channel === 'email' ? priorityAtIntake(r) : 'normal';
  const tags = channel === 'api' ? ['order', ...(r.chance(0.1) ? ['vip'] : [])] : [];
  return {
    openAt: arrival,
    run() {
      const ledger = desk.ledger;
      const integration = desk.integrations[INTEGRATION_OF[channel]];
      let contactId: string;
      if (social) {
        const known = desk.socialContacts.get(personIndex);
        contactId =
          known ??
          ledger.createContact(addMs(arrival, -r.int(1000, 3000)), {
            name: person.name,
            emails: [],
            phones: [],
          });
        desk.socialContacts.set(personIndex, contactId);
      } else if (needsPhone) {
        contactId = ledger.resolveContact(arrival, { name: person.name, phone: person.phone! });
      } else {
        contactId = ledger.resolveContact(arrival, { name: person.name, email: person.email! });
      }
      // The public contact form acts as the sender itself, with no token; integrations use theirs.
      const opener: Actor =
        channel === 'contact_form'
          ? { type: 'contact', agentId: null, contactId: null, tokenId: null }
          : integration;
      const story = TicketStory.open(
        ledger,
        arrival,
        {
          subject,
          channel,
          contactId,
          message: { body, author: 'contact' },
          department_id: department,
          priority,
          tags,
          support_address: supportAddress,
        },
        opener,
        null,
      );
      const script = new Script(desk, r, story, topic, integration);
      if (spam) return script.spam();
      if (!script.route()) return;
      const agent = script.firstAnswer();
      if (!agent) return;
      if (person.phone && (channel === 'email' || channel === 'whatsapp') && r.chance(0.05)) {
        if (!script.callBack(agent, person.phone)) return;
      }
      script.conversation(agent);
    },
  };
}

function planOutboundEmail(desk: Desk, r: Random, arrival: Date, person: Person, topic: Topic): Plan {
  const name = topic.department === 'Marketing' ? 'Sales' : topic.department;
  const departmentId = desk.departments[name];
  const openAt = workTime(r, arrival);
  const agent = pickWorker(desk, r, departmentId, openAt);
  const subject = fill(r.pick(topic.subjects), r, openAt);
  const assign = r.chance(0.6);
  return {
    openAt,
    run() {
      const ledger = desk.ledger;
      const contactId = ledger.resolveContact(openAt, { name: person.name, email: person.email! });
      const story = TicketStory.open(
        ledger,
        openAt,
        {
          subject,
          channel: 'email',
          contactId,
          message: { body: fill(r.pick(AGENT_REPLIES[name]), r, openAt), author: 'agent' },
          department_id: departmentId,
          assignee_id: assign ? agent.id : null,
          support_address: DEPARTMENTS[name].address,
        },
        agentActor(agent),
        agent.id,
      );
      const script = new Script(desk, r, story, topic, desk.integrations.mail);
      script.conversation(agent, { followUp: 0.65 });
    },
  };
}

function planCall(desk: Desk, r: Random, arrival: Date): Plan {
  const d = desk.departments;
  const personIndex = pickPerson(desk, r, (p) => p.phone !== null);
  const person = desk.people[personIndex]!;
  const phone = person.phone!;
  const inbound = r.chance(0.85);
  const name: DepartmentName = inbound
    ? r.weighted([
        ['Support', 55],
        ['Sales', 20],
        ['Billing', 15],
        ['Returns', 10],
      ] as const)
    : r.weighted([
        ['Sales', 50],
        ['Support', 35],
        ['Wholesale', 15],
      ] as const);
  const departmentId = d[name];
  const started = inbound ? arrival : workTime(r, arrival);
  const answered = inbound ? r.chance(isOpen(started) ? 0.8 : 0.05) : r.chance(0.75);
  const agent = answered || !inbound ? pickWorker(desk, r, departmentId, started) : null;
  const answeredAt = answered ? addMs(started, r.between(4_000, 45_000)) : null;
  const ended = answeredAt
    ? addMs(answeredAt, Math.min(3600_000, Math.max(20_000, r.logNormal(240_000, 0.8))))
    : addMs(started, r.between(15_000, 60_000));
  const openAt = addMs(ended, r.between(1000, 8000));
  const topic = TOPICS.find((t) => t.department === name)!;
  return {
    openAt,
    run() {
      const ledger = desk.ledger;
      const telephony = desk.integrations.telephony;
      // ticketForRecording: the contact defaults to the customer's number.
      const contactId = ledger.resolveContact(openAt, { phone });
      const story = TicketStory.open(
        ledger,
        openAt,
        {
          subject: `${inbound ? 'Call from' : 'Call to'} ${phone}`,
          channel: 'call',
          contactId,
          department_id: departmentId,
        },
        telephony,
        telephony.agentId,
      );
      story.recordCall(openAt, telephony, {
        external_id: `pbx-${r.int(10_000_000, 99_999_999)}`,
        direction: inbound ? 'inbound' : 'outbound',
        outcome: answered ? 'answered' : 'missed',
        agent_id: agent?.id ?? null,
        from_number: inbound ? phone : desk.companyPhone,
        to_number: inbound ? desk.companyPhone : phone,
        started_at: started,
        answered_at: answeredAt,
        ended_at: ended,
      });
      const script = new Script(desk, r, story, topic, telephony);
      let handler = agent;
      if (!answered) {
        if (!inbound || !r.chance(0.7)) return;
        handler = pickWorker(desk, r, departmentId, script.agentAt(45));
        if (!script.callBack(handler, phone)) return;
        if (story.ticket.status !== 'answered') return;
      }
      afterRecording(script, handler!);
    },
  };
}

/** After a call or chat: the agent often takes the ticket and resolves it at once. */
function afterRecording(script: Script, agent: DeskAgent) {
  const r = script.r;
  const choice = r.weighted([
    ['resolve', 55],
    ['note', 15],
    ['leave', 30],
  ] as const);
  if (choice === 'leave') return;
  let at = script.soon(1, 12);
  if (!script.happened(at)) return;
  const worker = script.worker(at, agent);
  if (choice === 'note') {
    script.story.note(at, agentActor(worker), r.pick(NOTES));
    at = script.agentAt(60);
    if (!script.happened(at)) return;
    script.story.patch(at, agentActor(script.worker(at, worker)), { status: 'resolved' });
    return;
  }
  script.story.patch(at, agentActor(worker), {
    ...(script.ticket.assignee_id === null && { assignee_id: worker.id }),
    status: 'resolved',
  });
}

function planChat(desk: Desk, r: Random, arrival: Date): Plan {
  const d = desk.departments;
  const personIndex = pickPerson(desk, r, (p) => p.email !== null);
  const person = desk.people[personIndex]!;
  const name: DepartmentName = r.chance(0.7) ? 'Support' : 'Sales';
  const departmentId = d[name];
  const started = arrival;
  const missed = r.chance(isOpen(started) ? 0.12 : 0.85);
  const agent = missed ? null : pickWorker(desk, r, departmentId, started);
  const pickedUp = missed ? null : addMs(started, r.between(5_000, 90_000));
  const messages: { from: 'customer' | 'agent'; body: string; sent_at: Date }[] = [];
  let clock = addMs(started, r.between(2_000, 20_000));
  messages.push({ from: 'customer', body: fill(r.pick(CHAT_LINES.customer), r, started), sent_at: clock });
  if (missed) {
    if (r.chance(0.5)) {
      clock = addMs(clock, r.between(20_000, 90_000));
      messages.push({
        from: 'customer',
        body: fill(r.pick(CHAT_LINES.customer), r, started),
        sent_at: clock,
      });
    }
  } else {
    clock = new Date(Math.max(clock.getTime(), pickedUp!.getTime()) + r.between(3_000, 20_000));
    messages.push({ from: 'agent', body: CHAT_LINES.agent[0], sent_at: clock });
    const more = r.int(1, 8);
    for (let i = 0; i < more; i++) {
      const from = i % 2 === 0 ? 'customer' : 'agent';
      clock = addMs(clock, r.between(15_000, 120_000));
      messages.push({ from, body: fill(r.pick(CHAT_LINES[from]), r, started), sent_at: clock });
    }
    if (messages[messages.length - 1]!.from === 'customer' && r.chance(0.8)) {
      clock = addMs(clock, r.between(10_000, 60_000));
      messages.push({ from: 'agent', body: CHAT_LINES.agent[5], sent_at: clock });
    }
  }
  const ended = addMs(clock, r.between(20_000, 180_000));
  const openAt = addMs(ended, r.between(2000, 10_000));
  const topic = TOPICS.find((t) => t.department === name)!;
  return {
    openAt,
    run() {
      const ledger = desk.ledger;
      const chat = desk.integrations.chat;
      const contactId = ledger.resolveContact(openAt, { name: person.name, email: person.email! });
      const story = TicketStory.open(
        ledger,
        openAt,
        {
          subject: `Chat of ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
          channel: 'chat',
          contactId,
          department_id: departmentId,
        },
        chat,
        chat.agentId,
      );
      story.recordChat(openAt, chat, {
        external_id: `chat-${r.int(10_000_000, 99_999_999)}`,
        agent_id: agent?.id ?? null,
        started_at: started,
        picked_up_at: pickedUp,
        missed,
        ended_at: ended,
        messages,
      });
      const script = new Script(desk, r, story, topic, chat);
      if (missed || story.ticket.status !== 'answered') {
        // Nobody answered in the chat: an agent writes back later.
        const handler = script.firstAnswer();
        if (handler) script.conversation(handler, { followUp: 0.25 });
        return;
      }
      afterRecording(script, agent!);
    },
  };
}
