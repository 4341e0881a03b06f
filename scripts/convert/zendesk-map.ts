// Pure mapping from Zendesk Support's documented JSON shapes (users, groups, group memberships,
// tickets, ticket audits and their events) to Deskroute's import records (docs/import.md).
// No IO here: scripts/convert/zendesk.ts streams the files and calls these functions, and
// test/convert-zendesk.test.ts checks them on fixtures.
//
// External ids are Zendesk's own numeric ids as strings. They are unique per source and record
// type on our side, so a Zendesk user who is an agent may also be a contact under the same id.
// Timeline records take the id of the audit event they come from (a comment's id is the id of
// its Comment event, so the audits path and the embedded-comments path agree).

/** One NDJSON line of the import format. */
export type ImportRecord = { type: string; external_id: string } & Record<string, unknown>;

type ZendeskId = number | string;

export interface ZendeskUser {
  id: ZendeskId;
  name?: string | null;
  email?: string | null;
  phone?: string | null;
  role?: string | null;
  active?: boolean | null;
  suspended?: boolean | null;
  /** Zendesk's flag for a number several users share: ours are unique per contact. */
  shared_phone_number?: boolean | null;
  /** Values of the user fields, by the field's key. */
  user_fields?: Record<string, unknown> | null;
  organization_id?: ZendeskId | null;
}

/** A user field (`GET /api/v2/user_fields`). */
export interface ZendeskUserField {
  id?: ZendeskId;
  key: string;
  type: string;
  title?: string | null;
  custom_field_options?: { name?: string | null; value: string }[] | null;
}

export interface ZendeskOrganization {
  id: ZendeskId;
  name?: string | null;
}

export interface ZendeskGroup {
  id: ZendeskId;
  name?: string | null;
  description?: string | null;
}

export interface ZendeskGroupMembership {
  id?: ZendeskId;
  user_id: ZendeskId;
  group_id: ZendeskId;
}

/** A file on a comment; its bytes stay on Zendesk's servers, behind the account's credentials. */
export interface ZendeskAttachment {
  id: ZendeskId;
  file_name?: string | null;
  content_url?: string | null;
  content_type?: string | null;
  size?: number | null;
}

/** A file a message record names: to download from `url` and upload before the import. */
export interface ImportFileToUpload {
  external_id: string;
  filename: string;
  url: string;
  size: number | null;
}

/** Called for each file the records name; without it, records name no file. */
export type FileSink = (file: ImportFileToUpload) => void;

export interface ZendeskComment {
  id: ZendeskId;
  type?: string;
  attachments?: ZendeskAttachment[] | null;
  body?: string | null;
  plain_body?: string | null;
  public?: boolean | null;
  author_id?: ZendeskId | null;
  created_at?: string;
  data?: ZendeskVoiceData | null;
  via?: ZendeskVia | null;
}

export interface ZendeskSatisfactionRating {
  id?: ZendeskId | null;
  score?: string | null;
  comment?: string | null;
  updated_at?: string | null;
}

export interface ZendeskTicket {
  id: ZendeskId;
  created_at: string;
  updated_at?: string | null;
  subject?: string | null;
  raw_subject?: string | null;
  description?: string | null;
  status?: string | null;
  priority?: string | null;
  tags?: string[] | null;
  group_id?: ZendeskId | null;
  assignee_id?: ZendeskId | null;
  requester_id?: ZendeskId | null;
  via?: ZendeskVia | null;
  satisfaction_rating?: ZendeskSatisfactionRating | null;
  /** Present in some full JSON exports; used only when the ticket has no audits. */
  comments?: ZendeskComment[] | null;
}

export interface ZendeskAuditEvent {
  id: ZendeskId;
  type: string;
  attachments?: ZendeskAttachment[] | null;
  field_name?: string;
  value?: unknown;
  previous_value?: unknown;
  body?: string | null;
  plain_body?: string | null;
  public?: boolean | null;
  author_id?: ZendeskId | null;
  score?: string | null;
  comment?: string | null;
  /** A VoiceComment's call (Zendesk's voice comment object). */
  data?: ZendeskVoiceData | null;
  via?: ZendeskVia | null;
}

/** How an update came in; for a call, `source.rel` is inbound, outbound or voicemail. */
export interface ZendeskVia {
  channel?: string | null;
  source?: { rel?: string | null } | null;
}

/** The call a VoiceComment records. */
export interface ZendeskVoiceData {
  from?: string | null;
  to?: string | null;
  started_at?: string | null;
  call_duration?: number | string | null;
  answered_by_id?: ZendeskId | null;
}

export interface ZendeskAudit {
  id: ZendeskId;
  ticket_id: ZendeskId;
  created_at: string;
  author_id?: ZendeskId | null;
  via?: ZendeskVia | null;
  events?: ZendeskAuditEvent[] | null;
}

/** Zendesk agents by id, with the role they get here. */
export type AgentDirectory = ReadonlyMap<string, 'agent' | 'admin'>;

export type Warn = (message: string) => void;

const id = (value: ZendeskId | null | undefined): string | null =>
  value === null || value === undefined || value === '' ? null : String(value);

/**
 * Zendesk ticket status to ours. pending (waiting on the requester) is our answered; hold
 * (waiting on a third party) is open: our postponed needs a time to wake up at, which hold has
 * not, and the ticket is still work to do; solved and closed (solved, then locked) are both
 * resolved. new stays new (it is how an imported ticket opens). Anything else: null (skipped).
 */
export function mapStatus(
  status: string | null | undefined,
): 'new' | 'open' | 'answered' | 'postponed' | 'resolved' | null {
  switch (status) {
    case 'new':
      return 'new';
    case 'open':
      return 'open';
    case 'pending':
      return 'answered';
    case 'hold':
      return 'open';
    case 'solved':
    case 'closed':
      return 'resolved';
    default:
      return null;
  }
}

/** Zendesk priorities are ours by name; none set (null) is normal. */
export function mapPriority(priority: string | null | undefined): 'low' | 'normal' | 'high' | 'urgent' {
  return priority === 'low' || priority === 'high' || priority === 'urgent' ? priority : 'normal';
}

const CHANNELS: Record<string, string> = {
  email: 'email',
  web: 'contact_form',
  web_form: 'contact_form',
  web_widget: 'contact_form',
  helpcenter: 'contact_form',
  chat: 'chat',
  chat_transcript: 'chat',
  native_messaging: 'chat',
  messaging: 'chat',
  voice: 'call',
  phone: 'call',
  twitter: 'twitter',
  twitter_dm: 'twitter',
  twitter_favorite: 'twitter',
  facebook: 'facebook',
  facebook_post: 'facebook',
  facebook_message: 'facebook',
  instagram_dm: 'instagram',
  instagram: 'instagram',
  whatsapp: 'whatsapp',
  viber: 'viber',
};

/**
 * Zendesk's `via.channel` to our ticket channel. Channels we have no counterpart for (api,
 * mobile_sdk, sms, any_channel, rule, closed_ticket, side conversations...) become api: the
 * ticket arrived through an integration, which is what api means here.
 */
export function mapChannel(channel: string | null | undefined): string {
  return (channel && CHANNELS[channel]) ?? 'api';
}

/** Whether a Zendesk user is staff (agent or admin): they become agents, everyone else contacts. */
export function isAgent(user: ZendeskUser): boolean {
  return user.role === 'agent' || user.role === 'admin';
}

export function agentRecord(user: ZendeskUser): ImportRecord | null {
  if (!isAgent(user) || !user.email) return null;
  return {
    type: 'agent',
    external_id: String(user.id),
    email: user.email,
    name: (user.name?.trim() || user.email).slice(0, 200),
    role: user.role === 'admin' ? 'admin' : 'agent',
    status: user.active === false || user.suspended === true ? 'disabled' : 'active',
  };
}

/** One Zendesk user field as a contact field here: our key, our type, its value mapping. */
interface FieldMapping {
  key: string;
  type: 'text' | 'number' | 'date' | 'boolean' | 'choice';
  /** dropdown: the stored option value to the option's name (our choice); multiselect: to text. */
  options?: ReadonlyMap<string, string>;
}

/**
 * How contacts carry what Zendesk keeps on users beyond name, email and phone: each user field
 * becomes a contact field, and the user's organization a text field holding its name (we have no
 * organizations). Built from user_fields.json and organizations.json before any contact.
 */
export interface ContactFieldPlan {
  fields: ReadonlyMap<string, FieldMapping>;
  /** The key of the organization field; null without organizations. */
  organizationKey: string | null;
  organizations: ReadonlyMap<string, string>;
}

export const NO_CONTACT_FIELDS: ContactFieldPlan = {
  fields: new Map(),
  organizationKey: null,
  organizations: new Map(),
};

/** A key as ours takes it (`^[a-z][a-z0-9_]{0,62}$`), unlike any already taken. */
function fieldKey(raw: string, taken: Set<string>): string {
  let base = raw.toLowerCase().replace(/[^a-z0-9_]+/g, '_');
  if (!/^[a-z]/.test(base)) base = `f_${base}`;
  base = base.slice(0, 63);
  let key = base;
  for (let n = 2; taken.has(key); n++) key = `${base.slice(0, 63 - String(n).length - 1)}_${n}`;
  taken.add(key);
  return key;
}

const label = (text: string | null | undefined, fallback: string) => (text?.trim() || fallback).slice(0, 100);

/**
 * User fields and organizations as contact field records, and the plan that maps each user's
 * values. Types: text, textarea and regexp are text; integer and decimal number; date date;
 * checkbox boolean; dropdown a choice of its option names (text when they do not fit ours: more
 * than 100, or longer than 100 characters); multiselect text, the names joined with ", ".
 * Lookup fields (links to other Zendesk objects) are left out, with a warning.
 */
export function contactFieldPlan(
  userFields: readonly ZendeskUserField[],
  organizations: ReadonlyMap<string, string> | null,
  warn: Warn = () => {},
): { records: ImportRecord[]; plan: ContactFieldPlan } {
  const taken = new Set<string>();
  const fields = new Map<string, FieldMapping>();
  const records: ImportRecord[] = [];
  for (const field of userFields) {
    if (!field.key || fields.has(field.key)) continue;
    const options = new Map(
      (field.custom_field_options ?? []).map((o) => [o.value, (o.name?.trim() || o.value).trim()] as const),
    );
    let mapping: Omit<FieldMapping, 'key'>;
    switch (field.type) {
      case 'integer':
      case 'decimal':
        mapping = { type: 'number' };
        break;
      case 'date':
        mapping = { type: 'date' };
        break;
      case 'checkbox':
        mapping = { type: 'boolean' };
        break;
      case 'dropdown': {
        const names = [...new Set(options.values())];
        const fits =
          names.length >= 1 &&
          names.length <= 100 &&
          names.length === options.size &&
          names.every((n) => n.length >= 1 && n.length <= 100);
        mapping = fits ? { type: 'choice', options } : { type: 'text', options };
        if (!fits) warn(`user field ${field.key}: its options do not fit a choice here; carried as text`);
        break;
      }
      case 'multiselect':
        mapping = { type: 'text', options };
        break;
      case 'lookup':
        warn(`user field ${field.key}: a lookup field (a link to another Zendesk object) is not carried`);
        continue;
      default:
        mapping = { type: 'text' };
    }
    const key = fieldKey(field.key, taken);
    fields.set(field.key, { key, ...mapping });
    records.push({
      type: 'contact_field',
      external_id: `user_field:${field.key}`,
      key,
      label: label(field.title, field.key),
      field_type: mapping.type,
      ...(mapping.type === 'choice' && { options: [...new Set(mapping.options!.values())] }),
    });
  }
  let organizationKey: string | null = null;
  if (organizations) {
    organizationKey = fieldKey('organization', taken);
    records.push({
      type: 'contact_field',
      external_id: 'organization',
      key: organizationKey,
      label: 'Organization',
      field_type: 'text',
    });
  }
  return { records, plan: { fields, organizationKey, organizations: organizations ?? new Map() } };
}

/** A user's field values and organization, as our contact's custom_fields. */
function customFields(user: ZendeskUser, plan: ContactFieldPlan, warn: Warn): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [zendeskKey, raw] of Object.entries(user.user_fields ?? {})) {
    const field = plan.fields.get(zendeskKey);
    if (!field || raw === null || raw === undefined || raw === '') continue;
    const value = fieldValue(field, raw);
    if (value === undefined)
      warn(`user ${user.id}: ${zendeskKey} ${JSON.stringify(raw)} does not fit; left out`);
    else out[field.key] = value;
  }
  const organization = id(user.organization_id);
  if (organization !== null && plan.organizationKey !== null) {
    const name = plan.organizations.get(organization);
    if (name) out[plan.organizationKey] = name;
    else warn(`user ${user.id}: organization ${organization} is not in organizations.json; left out`);
  }
  return out;
}

function fieldValue(field: FieldMapping, raw: unknown): string | number | boolean | undefined {
  switch (field.type) {
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw.trim()) : Number.NaN;
      return Number.isFinite(n) ? n : undefined;
    }
    case 'date': {
      const date = typeof raw === 'string' ? /^\d{4}-\d{2}-\d{2}/.exec(raw.trim())?.[0] : undefined;
      // A real day: Date takes 2024-02-30 as 1 March, which the importer would refuse.
      const day = date ? new Date(`${date}T00:00:00Z`) : null;
      return day && !Number.isNaN(day.getTime()) && day.toISOString().slice(0, 10) === date
        ? date
        : undefined;
    }
    case 'boolean':
      return typeof raw === 'boolean' ? raw : undefined;
    case 'choice':
      return typeof raw === 'string' ? field.options!.get(raw) : undefined;
    case 'text': {
      const values = Array.isArray(raw) ? raw : [raw];
      const text = values
        .map((v) => (typeof v === 'string' ? (field.options?.get(v) ?? v) : String(v)))
        .join(', ')
        .trim();
      return text === '' ? undefined : text.slice(0, 10_000);
    }
  }
}

export function contactRecord(
  user: ZendeskUser,
  plan: ContactFieldPlan = NO_CONTACT_FIELDS,
  warn: Warn = () => {},
): ImportRecord {
  const custom = customFields(user, plan, warn);
  return {
    type: 'contact',
    external_id: String(user.id),
    name: (user.name?.trim() || user.email || `Zendesk user ${user.id}`).slice(0, 200),
    emails: user.email ? [user.email] : [],
    phones: user.phone && !user.shared_phone_number ? [user.phone] : [],
    ...(Object.keys(custom).length > 0 && { custom_fields: custom }),
  };
}

export function departmentRecord(group: ZendeskGroup): ImportRecord {
  return {
    type: 'department',
    external_id: String(group.id),
    name: group.name?.trim() || `Zendesk group ${group.id}`,
    ...(group.description ? { description: group.description } : {}),
  };
}

/**
 * A group membership: Zendesk has no per-group roles, so agents become solvers and admins
 * managers. Memberships of users who are not agents here are dropped (null).
 */
export function membershipRecord(
  membership: ZendeskGroupMembership,
  agents: AgentDirectory,
): ImportRecord | null {
  const agent = String(membership.user_id);
  const role = agents.get(agent);
  if (!role) return null;
  return {
    type: 'membership',
    external_id: `${membership.group_id}:${agent}`,
    department: String(membership.group_id),
    agent,
    role: role === 'admin' ? 'manager' : 'solver',
  };
}

const commentBody = (c: { body?: string | null; plain_body?: string | null }) =>
  (c.plain_body ?? c.body ?? '').trim();

/** The most files a message record names (the import format's limit). */
const MAX_MESSAGE_FILES = 100;

/**
 * The files of a comment that can be fetched (an id and a content_url), as the external ids a
 * message record names, each handed to `files` to download and upload. Without `files`: none.
 */
function commentFiles(
  ticket: string,
  comment: { id: ZendeskId; attachments?: ZendeskAttachment[] | null },
  files: FileSink | undefined,
  warn: Warn,
): string[] {
  if (!files) return [];
  const ids: string[] = [];
  for (const a of comment.attachments ?? []) {
    const external = id(a.id);
    if (external === null || !a.content_url || ids.includes(external)) continue;
    if (ids.length === MAX_MESSAGE_FILES) {
      warn(
        `ticket ${ticket}: comment ${comment.id} has over ${MAX_MESSAGE_FILES} files; the rest are left out`,
      );
      break;
    }
    ids.push(external);
    files({
      external_id: external,
      filename: a.file_name?.trim() || `attachment-${external}`,
      url: a.content_url,
      size: typeof a.size === 'number' ? a.size : null,
    });
  }
  return ids;
}

/** A comment with files but no text still says it came: its files' names stand as its body. */
const bodyOrFiles = (
  body: string,
  comment: { attachments?: ZendeskAttachment[] | null },
  fileIds: string[],
) =>
  body ||
  (fileIds.length > 0
    ? `(${(comment.attachments ?? [])
        .filter((a) => fileIds.includes(String(a.id)))
        .map((a) => a.file_name?.trim() || 'attachment')
        .join(', ')})`
    : '');

/**
 * The call a VoiceComment records, as a call record at its audit's time: inbound unless its via
 * says outbound; answered when Zendesk names who answered it, or when it lasted and was not a
 * voicemail (then from its start, Zendesk keeping no ring time), else missed; it ends
 * `call_duration` seconds after its start. The agent is who answered, else the comment's author
 * when an exported agent. A number ours would refuse (under 3 or over 40 characters) is left out.
 */
export function voiceCallRecord(
  ticket: string,
  event: ZendeskAuditEvent,
  audit: Pick<ZendeskAudit, 'created_at' | 'author_id' | 'via'>,
  agents: AgentDirectory,
  warn: Warn = () => {},
): ImportRecord {
  const data = event.data ?? {};
  const rel = (event.via ?? audit.via)?.source?.rel ?? null;
  const parsedStart = data.started_at ? Date.parse(data.started_at) : Number.NaN;
  const started = Number.isNaN(parsedStart) ? audit.created_at : new Date(parsedStart).toISOString();
  const seconds = Number(data.call_duration);
  const duration = Number.isFinite(seconds) && seconds >= 0 ? Math.round(seconds) : null;
  const answeredBy = id(data.answered_by_id);
  const answered = answeredBy !== null || (rel !== 'voicemail' && duration !== null && duration > 0);
  const agent = [answeredBy, id(event.author_id ?? audit.author_id)].find((a) => a !== null && agents.has(a));
  const number = (value: string | null | undefined, which: string) => {
    const n = value?.trim();
    if (!n) return {};
    if (n.length >= 3 && n.length <= 40) return { [which]: n };
    warn(`ticket ${ticket}: call ${event.id}: ${which} ${JSON.stringify(n)} does not fit; left out`);
    return {};
  };
  const startMs = Date.parse(started);
  return {
    type: 'call',
    external_id: String(event.id),
    ticket,
    at: audit.created_at,
    started_at: started,
    direction: rel === 'outbound' ? 'outbound' : 'inbound',
    outcome: answered ? 'answered' : 'missed',
    ...(agent ? { agent } : {}),
    ...number(data.from, 'from_number'),
    ...number(data.to, 'to_number'),
    ...(answered ? { answered_at: started } : {}),
    ...(duration !== null ? { ended_at: new Date(startMs + duration * 1000).toISOString() } : {}),
  };
}

/** A comment as a message: public by an agent is a reply, public by anyone else the customer's, private a note. */
function messageRecord(
  ticket: string,
  comment: { id: ZendeskId; public?: boolean | null; author_id?: ZendeskId | null },
  body: string,
  at: string,
  agents: AgentDirectory,
  fileIds: string[],
): ImportRecord {
  const author = id(comment.author_id);
  const byAgent = author !== null && agents.has(author);
  const kind = comment.public === false ? 'note' : byAgent ? 'reply' : 'customer';
  return {
    type: 'message',
    external_id: String(comment.id),
    ticket,
    at,
    kind,
    body,
    ...(byAgent && kind !== 'customer' ? { agent: author } : {}),
    ...(fileIds.length > 0 ? { attachments: fileIds } : {}),
  };
}

/** A ticket's first message: by the agent named, else by the contact. */
function openingMessage(body: string, agent: string | null, fileIds: string[]): ImportRecord['message'] {
  return {
    body,
    author: agent !== null ? 'agent' : 'contact',
    ...(agent !== null ? { agent } : {}),
    ...(fileIds.length > 0 ? { attachments: fileIds } : {}),
  };
}

function ratingValue(score: string | null | undefined): 'positive' | 'negative' | null {
  return score === 'good' ? 'positive' : score === 'bad' ? 'negative' : null;
}

const time = (at: string) => Date.parse(at);

/** A subject as ours takes it: trimmed, at most 500 characters; empty: null. */
function cleanSubject(value: unknown): string | null {
  const subject = typeof value === 'string' ? value.trim().slice(0, 500) : '';
  return subject === '' ? null : subject;
}

/**
 * Tags as ours accept them: trimmed, lower-cased, 1 to 50 characters, no repeats, at most 50.
 * Zendesk allows longer ones; one of them would make the whole ticket fail, so it is dropped.
 */
export function cleanTags(tags: unknown, warn: Warn = () => {}): string[] {
  // Audits give tag sets as arrays; a space-separated string is taken too.
  const list: unknown[] = Array.isArray(tags)
    ? tags
    : typeof tags === 'string'
      ? tags.split(/\s+/).filter(Boolean)
      : [];
  const kept = new Set<string>();
  for (const tag of list) {
    const t = typeof tag === 'string' ? tag.trim().toLowerCase() : '';
    if (t.length >= 1 && t.length <= 50 && kept.size < 50) kept.add(t);
    else warn(`tag ${JSON.stringify(tag)} dropped (ours are 1-50 characters, 50 per ticket)`);
  }
  return [...kept];
}

/**
 * A ticket and its timeline, in the order to import them: the ticket first, then its records
 * in time order (a stable sort, so the events of one audit keep their order).
 *
 * With audits (`GET /api/v2/tickets/{id}/audits`): the creation audit's Create events give the
 * ticket's first status, group, assignee and tags, its first public comment the ticket's first
 * message; later Comment events become messages, Change events of status, group_id, assignee_id
 * and tags become status, transfer, assignment and tags records at the audit's created_at, and
 * SatisfactionRating events ratings, and Change events of priority and subject priority and
 * subject records (the ticket opens with the created ones). Without audits: the ticket's current
 * group, tags, priority, subject and embedded comments, a status record at updated_at and an
 * assignment at created_at.
 */
export function ticketRecords(
  ticket: ZendeskTicket,
  audits: readonly ZendeskAudit[],
  agents: AgentDirectory,
  warn: Warn = () => {},
  files?: FileSink,
): ImportRecord[] {
  const ticketId = String(ticket.id);
  const timeline: ImportRecord[] = [];
  const actor = (author: ZendeskId | null | undefined) => {
    const a = id(author);
    return a !== null && agents.has(a) ? { agent: a } : {};
  };
  const knownAgent = (value: unknown): string | null | undefined => {
    const a = id(value as ZendeskId | null);
    if (a === null) return null;
    if (agents.has(a)) return a;
    warn(`ticket ${ticketId}: assignee ${a} is not an exported agent; assignment skipped`);
    return undefined;
  };
  let status: string = 'new';
  const setStatus = (eventId: string, value: unknown, at: string, author: ZendeskId | null | undefined) => {
    const mapped = mapStatus(value as string);
    if (mapped === null) {
      warn(`ticket ${ticketId}: status ${JSON.stringify(value)} has no counterpart; skipped`);
      return;
    }
    if (mapped === status || mapped === 'new') return;
    status = mapped;
    timeline.push({
      type: 'status',
      external_id: eventId,
      ticket: ticketId,
      at,
      status: mapped,
      ...actor(author),
    });
  };
  let department = id(ticket.group_id);
  /** The department the ticket opens in; `department` follows the transfers. */
  let opening = department;
  /** Set by the creation audit; else the ticket's current tags. */
  let tags: string[] | null = null;
  let message: ImportRecord['message'] | undefined;
  // Priority and subject as the ticket opened (the creation audit's, else the first change's
  // previous value; else the ticket's current one) and as the changes left them.
  const opened: Record<'priority' | 'subject', string | null> = { priority: null, subject: null };
  const current: Record<'priority' | 'subject', string | null> = { priority: null, subject: null };
  const clean = { priority: (v: unknown) => mapPriority(v as string), subject: cleanSubject };
  const sorted = [...audits].sort((a, b) => time(a.created_at) - time(b.created_at));

  if (sorted.length > 0) {
    // The creation audit's Create events say how the ticket started.
    const creation = sorted[0]!;
    const created = new Map(
      (creation.events ?? []).filter((e) => e.type === 'Create').map((e) => [e.field_name, e] as const),
    );
    if (created.has('group_id')) department = id(created.get('group_id')!.value as ZendeskId | null);
    if (created.has('tags')) tags = cleanTags(created.get('tags')!.value, warn);
    for (const field of ['priority', 'subject'] as const) {
      if (created.has(field)) opened[field] = clean[field](created.get(field)!.value);
    }
    opening = department;
    let first = true;
    for (const audit of sorted) {
      const at = audit.created_at;
      for (const event of audit.events ?? []) {
        const eventId = String(event.id);
        if (event.type === 'Comment' || event.type === 'VoiceComment') {
          if (event.type === 'VoiceComment')
            timeline.push(voiceCallRecord(ticketId, event, audit, agents, warn));
          const fileIds = commentFiles(ticketId, event, files, warn);
          const body = bodyOrFiles(commentBody(event), event, fileIds);
          if (!body) continue;
          const author = id(event.author_id ?? audit.author_id);
          const byAgent = author !== null && agents.has(author);
          if (first && audit === creation && event.public !== false) {
            message = openingMessage(body, byAgent ? author : null, fileIds);
          } else {
            timeline.push(
              messageRecord(ticketId, { ...event, author_id: author }, body, at, agents, fileIds),
            );
          }
          first = false;
        } else if (event.type === 'Create' || event.type === 'Change') {
          switch (event.field_name) {
            case 'status':
              setStatus(eventId, event.value, at, audit.author_id);
              break;
            case 'group_id': {
              const to = id(event.value as ZendeskId | null);
              if (event.type === 'Change' && to !== null && to !== department) {
                department = to;
                timeline.push({
                  type: 'transfer',
                  external_id: eventId,
                  ticket: ticketId,
                  at,
                  department: to,
                  ...actor(audit.author_id),
                });
              }
              break;
            }
            case 'assignee_id': {
              const to = knownAgent(event.value);
              if (to === undefined || (event.type === 'Create' && to === null)) break;
              timeline.push({
                type: 'assignment',
                external_id: eventId,
                ticket: ticketId,
                at,
                assignee: to,
                ...actor(audit.author_id),
              });
              break;
            }
            case 'priority':
            case 'subject': {
              const field = event.field_name;
              if (event.type !== 'Change') break;
              opened[field] ??= clean[field](event.previous_value);
              const to = clean[field](event.value);
              if (to === null || to === (current[field] ?? opened[field])) break;
              current[field] = to;
              timeline.push({
                type: field,
                external_id: eventId,
                ticket: ticketId,
                at,
                [field]: to,
                ...actor(audit.author_id),
              });
              break;
            }
            case 'tags':
              if (event.type === 'Change') {
                const value = cleanTags(event.value, warn);
                timeline.push({
                  type: 'tags',
                  external_id: eventId,
                  ticket: ticketId,
                  at,
                  tags: value,
                  ...actor(audit.author_id),
                });
              }
              break;
          }
        } else if (event.type === 'SatisfactionRating') {
          const value = ratingValue(event.score);
          if (value) {
            const comment = (event.body ?? event.comment ?? '').trim();
            timeline.push({
              type: 'rating',
              external_id: eventId,
              ticket: ticketId,
              at,
              value,
              ...(comment ? { comment } : {}),
            });
          }
        }
      }
    }
  } else {
    const comments = [...(ticket.comments ?? [])]
      .filter((c) => c.created_at)
      .sort((a, b) => time(a.created_at!) - time(b.created_at!));
    for (const [i, comment] of comments.entries()) {
      if (comment.type === 'VoiceComment') {
        timeline.push(
          voiceCallRecord(
            ticketId,
            { ...comment, type: comment.type },
            { created_at: comment.created_at!, author_id: comment.author_id, via: ticket.via },
            agents,
            warn,
          ),
        );
      }
      const fileIds = commentFiles(ticketId, comment, files, warn);
      const body = bodyOrFiles(commentBody(comment), comment, fileIds);
      if (!body) continue;
      const author = id(comment.author_id);
      const byAgent = author !== null && agents.has(author);
      if (i === 0 && comment.public !== false) {
        message = openingMessage(body, byAgent ? author : null, fileIds);
      } else {
        timeline.push(messageRecord(ticketId, comment, body, comment.created_at!, agents, fileIds));
      }
    }
    const assignee = id(ticket.assignee_id) === null ? null : knownAgent(ticket.assignee_id);
    if (assignee) {
      timeline.push({
        type: 'assignment',
        external_id: `${ticketId}:assignee`,
        ticket: ticketId,
        at: ticket.created_at,
        assignee,
      });
    }
    const at = ticket.updated_at ?? ticket.created_at;
    setStatus(`${ticketId}:status`, ticket.status ?? 'new', at, null);
    const rating = ratingValue(ticket.satisfaction_rating?.score);
    if (rating) {
      const comment = ticket.satisfaction_rating?.comment?.trim();
      timeline.push({
        type: 'rating',
        external_id: `${ticketId}:rating`,
        ticket: ticketId,
        at: ticket.satisfaction_rating?.updated_at ?? at,
        value: rating,
        ...(comment ? { comment } : {}),
      });
    }
  }

  const record: ImportRecord = {
    type: 'ticket',
    external_id: ticketId,
    created_at: ticket.created_at,
    subject:
      opened.subject ??
      cleanSubject(ticket.subject) ??
      cleanSubject(ticket.raw_subject) ??
      cleanSubject(ticket.description?.trim().split('\n')[0]?.slice(0, 200)) ??
      `Zendesk ticket ${ticketId}`,
    channel: mapChannel(ticket.via?.channel),
    contact: id(ticket.requester_id),
    department: opening,
    priority: opened.priority ?? mapPriority(ticket.priority),
    tags: tags ?? cleanTags(ticket.tags, warn),
    ...(message ? { message } : {}),
  };
  // Stable: records of one instant keep the order the audit gave them.
  const ordered = timeline
    .map((r, i) => ({ r, i, t: time(r.at as string) }))
    .sort((a, b) => a.t - b.t || a.i - b.i)
    .map(({ r }) => r);
  return [record, ...ordered];
}
