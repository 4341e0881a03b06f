import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { Condition } from '../rule-engine/index.ts';
import type {
  SLA_ESCALATED,
  SlaEscalation,
  SlaEventType,
  SlaPolicy,
  SlaState,
  TransferMode,
} from '../sla/index.ts';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export type AgentRole = 'owner' | 'admin' | 'agent';
export type AgentStatus = 'active' | 'disabled';
export type DepartmentRole = 'reader' | 'solver' | 'supervisor' | 'manager';
export type AgentPresence = 'online' | 'away' | 'offline';
/** Tier within a department: 1 first line (the default), 2 and 3 more senior. */
export type MemberLevel = 1 | 2 | 3;
export type TokenScope = 'read' | 'write';
/** A column named with its table (`c.id`), for SQL helpers that must not bind a bare name wrongly. */
export type QualifiedColumn = `${string}.${string}`;

export interface DepartmentsTable {
  id: Generated<string>;
  name: string;
  description: Generated<string>;
  to_solve_enabled: Generated<boolean>;
  selectable_on_contact_form: Generated<boolean>;
  /** null: the help desk's default schedule (migrations/0016). */
  schedule_id: string | null;
  chat_availability: Generated<ChannelAvailability>;
  phone_availability: Generated<ChannelAvailability>;
  messaging_availability: Generated<ChannelAvailability>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** A channel follows its department's schedule, or is forced on or off. */
export type ChannelAvailability = 'schedule' | 'on' | 'off';

/** Working hours (migrations/0016); intervals and holidays are the business-time shapes. */
export interface SlaPoliciesTable {
  id: Generated<string>;
  name: string;
  position: number;
  active: Generated<boolean>;
  conditions: ColumnType<Condition, string, string>;
  targets: ColumnType<SlaPolicy['targets'], string, string>;
  pause_when_answered: Generated<boolean>;
  on_transfer: Generated<TransferMode>;
  warn_before_minutes: number | null;
  escalations: ColumnType<SlaEscalation[], string | undefined, string>;
  version: Generated<number>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** One row; policies_key is renewed with every policy change and null while none is active. */
export interface SlaPoliciesStateTable {
  id: ColumnType<boolean, never, never>;
  policies_key: string | null;
}

export interface SchedulesTable {
  id: Generated<string>;
  name: string;
  time_zone: string;
  intervals: ColumnType<unknown[], string, string>;
  holidays: ColumnType<unknown[], string, string>;
  is_default: Generated<boolean>;
  version: Generated<number>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** The last name of a deleted department or agent, kept for reports (migrations/0012). */
export interface DeletedNamesTable {
  id: string;
  name: string;
  deleted_at: CreatedAt;
}

export interface AgentsTable {
  id: Generated<string>;
  name: string;
  email: string;
  role: AgentRole;
  status: ColumnType<AgentStatus, AgentStatus | undefined, AgentStatus>;
  password_hash: string | null;
  password_changed_at: Date | null;
  last_sign_in_at: Date | null;
  presence: ColumnType<AgentPresence, AgentPresence | undefined, AgentPresence>;
  presence_confirmed_at: Date | null;
  presence_expires_at: Date | null;
  presence_changed_at: Date | null;
  capacity: ColumnType<number | null, number | null | undefined, number | null>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface DepartmentMembersTable {
  department_id: string;
  agent_id: string;
  role: DepartmentRole;
  level: ColumnType<MemberLevel, MemberLevel | undefined, MemberLevel>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ApiTokensTable {
  id: Generated<string>;
  agent_id: string;
  name: string;
  token_hash: string;
  token_prefix: string;
  scopes: TokenScope[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_at: CreatedAt;
}

export type WebhookDeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface WebhooksTable {
  id: Generated<string>;
  url: string;
  event_types: ColumnType<string[], string[] | undefined, string[]>;
  department_id: string | null;
  active: Generated<boolean>;
  description: Generated<string>;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  disabled_reason: string | null;
  disabled_at: Date | null;
  consecutive_failures: Generated<number>;
  failing_since: Date | null;
  /** xid8: the oldest transaction running when it was created or last turned on (migration 0045). */
  active_since_tx: Generated<string>;
  created_by: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface WebhookDeliveriesTable {
  id: string;
  seq: Generated<number>;
  webhook_id: string;
  event_id: string;
  event_type: string;
  ticket_id: string | null;
  status: ColumnType<WebhookDeliveryStatus, WebhookDeliveryStatus | undefined, WebhookDeliveryStatus>;
  attempts: Generated<number>;
  next_attempt_at: Date | null;
  locked_until: Date | null;
  first_attempt_at: Date | null;
  last_attempt_at: Date | null;
  last_status_code: number | null;
  last_latency_ms: number | null;
  last_error: string | null;
  delivered_at: Date | null;
  /** When it was delivered or failed; null while pending (migration 0042). */
  settled_at: Date | null;
  created_at: CreatedAt;
}

/** A delivery's body, once per event (migration 0042). */
export interface WebhookBodiesTable {
  event_id: string;
  body: string;
  created_at: CreatedAt;
}

export interface WebhookDeliveryAttemptsTable {
  delivery_id: string;
  attempt: number;
  started_at: Date;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
}

export interface SignInThrottleTable {
  key: string;
  failures: number;
  window_started_at: Date;
  blocked_until: Date | null;
}

export type Channel =
  | 'email'
  | 'contact_form'
  | 'chat'
  | 'call'
  | 'facebook'
  | 'twitter'
  | 'instagram'
  | 'viber'
  | 'whatsapp'
  | 'api';
export type TicketStatus = 'new' | 'open' | 'answered' | 'postponed' | 'resolved' | 'spam' | 'deleted';
export type Priority = 'low' | 'normal' | 'high' | 'urgent';
export type MessageKind = 'customer' | 'agent' | 'note';
export type ActorType = 'agent' | 'contact' | 'rule' | 'system';
/** The kinds of ticket history entry (listed for the API in tickets/schemas.ts). */
export type TicketEventType =
  | 'created'
  | 'message_added'
  | 'status_changed'
  | 'priority_changed'
  | 'subject_changed'
  | 'transferred'
  | 'assigned'
  | 'tags_changed'
  | 'rated'
  | 'call_recorded'
  | 'chat_recorded'
  | SlaEventType
  | typeof SLA_ESCALATED;
export type ContactFieldType = 'text' | 'number' | 'date' | 'boolean' | 'choice';

export interface ContactFieldsTable {
  id: Generated<string>;
  key: string;
  label: string;
  type: ContactFieldType;
  options: ColumnType<string[], string[] | undefined, string[]>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ContactsTable {
  id: Generated<string>;
  name: Generated<string>;
  custom_fields: ColumnType<Record<string, unknown>, string | undefined, string>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ContactEmailsTable {
  contact_id: string;
  email: string;
  position: Generated<number>;
  /** A bounce reported the address undeliverable (migrations/0030); no mail goes to it. */
  bounced_at: Date | null;
  bounce_reason: string | null;
}

/** A department's support address (migrations/0030), lower-cased, unique across departments. */
export interface DepartmentAddressesTable {
  address: string;
  department_id: string;
  is_reply_from: Generated<boolean>;
  created_at: CreatedAt;
}

/** The help desk's mail defaults (migrations/0031): one row. */
export interface MailSettingsTable {
  id: ColumnType<boolean, never, never>;
  help_desk_name: string;
  sender_name: string | null;
  signature_text: string | null;
  signature_html: string | null;
  from_address: string | null;
  updated_at: Timestamp;
}

/** A department's own sender name and signature (migrations/0031); null: the help desk's. */
export interface DepartmentMailIdentitiesTable {
  department_id: string;
  sender_name: string | null;
  signature_text: string | null;
  signature_html: string | null;
  updated_at: Timestamp;
}

/** A Liquid mail template (migrations/0031): help-desk wide (department_id null) or a department's. */
export interface MailTemplatesTable {
  id: Generated<string>;
  department_id: string | null;
  kind: string;
  subject: string;
  html: string;
  text: string;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** A canned response (migrations/0032): help-desk wide (department_id null) or a department's. */
export interface CannedResponsesTable {
  id: Generated<string>;
  department_id: string | null;
  title: string;
  body: string;
  tags: ColumnType<string[], string[] | undefined, string[]>;
  status: 'open' | 'answered' | 'resolved' | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** A saved view (migrations/0036): a named filter over the ticket list, personal or shared. */
export interface SavedViewsTable {
  id: Generated<string>;
  scope: 'personal' | 'department' | 'helpdesk';
  owner_agent_id: string | null;
  department_id: string | null;
  name: string;
  /** The ticket list's filters (TicketFilter), as saved. */
  filters: ColumnType<Record<string, unknown>, string, string>;
  sort: string;
  position: number | null;
  created_by: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ContactPhonesTable {
  contact_id: string;
  phone: string;
  position: Generated<number>;
}

export interface TicketsTable {
  id: Generated<string>;
  number: ColumnType<number, number | undefined, never>;
  subject: string;
  channel: Channel;
  status: TicketStatus;
  priority: Priority;
  priority_rank: ColumnType<number, never, never>;
  department_id: string | null;
  assignee_id: string | null;
  contact_id: string;
  tags: ColumnType<string[], string[] | undefined, string[]>;
  support_address: string | null;
  postponed_until: Date | null;
  status_before_delete: TicketStatus | null;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: Timestamp;
  /**
   * When the row last changed in this help desk: the writing transaction's real time (now()),
   * set with updated_at; an import's replayed history keeps its own updated_at. Null on rows
   * last written before 0041: their updated_at stands for it (CHANGED_KEY, exports).
   */
  changed_at: ColumnType<Date | null, never, Date | string>;
  first_answered_at: Date | null;
  last_customer_message_at: Date | null;
  last_agent_message_at: Date | null;
  resolved_at: Date | null;
  /** When the ticket was first resolved (migrations/0018): later resolves carry no resolution time. */
  first_resolved_at: Date | null;
  waiting_since: Timestamp;
  search: ColumnType<string, unknown, unknown>;
  /** Computed once at creation from the department's calendar; null for older tickets. */
  created_in_working_hours: ColumnType<boolean | null, boolean | null | undefined, never>;
  /** The SLA clock (src/sla SlaState), null before any policy applied (migrations/0020). */
  sla_state: ColumnType<SlaState | null, string | null | undefined, string | null>;
  sla_policy_id: string | null;
  sla_due_at: Date | null;
  sla_breached: Generated<boolean>;
  sla_next_at: Date | null;
  sla_planned_key: Generated<string>;
  /**
   * The last write that counts as activity for ticket.idle rules (migrations/0028): messages and
   * changes by agents, contacts and integrations, a postponed ticket waking; not rules or clocks.
   */
  last_activity_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface TicketMessagesTable {
  id: Generated<string>;
  ticket_id: string;
  kind: MessageKind;
  channel: Channel;
  author_agent_id: string | null;
  author_contact_id: string | null;
  chat_id: string | null;
  body: string;
  department_id: string | null;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  /** Mail (migrations/0030): the RFC 5322 Message-ID without angle brackets, unique. */
  mail_message_id: string | null;
  /** The customer's address the message came from (customer) or went to (agent reply). */
  mail_address: string | null;
  /** The sanitised HTML part; body is always the text. */
  html_body: string | null;
  /** The received message as it came, in blob storage. */
  raw_blob_key: string | null;
  delivery_state: DeliveryState | null;
  delivery_error: string | null;
  delivered_at: Date | null;
  /** Sent by a machine (auto-reply, out-of-office, bounce): recorded, never answered. */
  mail_auto_submitted: Generated<boolean>;
}

/** An outgoing message's state in the outbox; suppressed: nothing to send it to (no address). */
export type DeliveryState = 'queued' | 'sent' | 'failed' | 'bounced' | 'suppressed';

export interface AttachmentsTable {
  id: Generated<string>;
  ticket_id: string;
  message_id: string | null;
  filename: string;
  /** Sniffed from the bytes, not taken from the sender. */
  content_type: string;
  size_bytes: number;
  sha256: string;
  blob_key: string;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  /** The agent who staged it (migrations/0034); null for mail and the contact form. */
  uploaded_by_agent_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface TicketEventsTable {
  id: ColumnType<number, never, never>;
  ticket_id: string;
  /** A TicketEventType; left a string so inserts of computed types need no narrowing. */
  type: string;
  actor_type: ActorType;
  actor_agent_id: string | null;
  actor_contact_id: string | null;
  actor_rule_id: string | null;
  actor_rule_version: number | null;
  via_token_id: string | null;
  department_id: string | null;
  agent_id: string | null;
  channel: Channel;
  data: ColumnType<Record<string, unknown>, string | undefined, never>;
  occurred_at: ColumnType<Date, Date | string | undefined, never>;
  /** The writing transaction (xid8, read as text): the event feed's order and horizon. */
  tx: ColumnType<string, never, never>;
  /** The import that replayed it (migration 0037); null for live events. Set from the transaction. */
  import_id: ColumnType<string | null, never, never>;
}

export interface SettingsEventsTable {
  id: ColumnType<number, never, never>;
  tx: ColumnType<string, never, never>;
  type: string;
  actor_type: 'agent' | 'token' | 'system';
  actor_agent_id: string | null;
  actor_token_id: string | null;
  department_id: string | null;
  subject_id: string | null;
  payload: ColumnType<Record<string, unknown>, string, never>;
  occurred_at: CreatedAt;
}

export interface FeedConsumersTable {
  name: string;
  cursor: string;
  updated_at: Timestamp;
}

export interface CallsTable {
  id: Generated<string>;
  ticket_id: string;
  external_id: string | null;
  direction: 'inbound' | 'outbound';
  outcome: 'answered' | 'missed';
  agent_id: string | null;
  department_id: string | null;
  from_number: string | null;
  to_number: string | null;
  started_at: Date | string;
  answered_at: Date | string | null;
  ended_at: Date | string | null;
  duration_seconds: Generated<number>;
  created_at: CreatedAt;
}

export interface ChatsTable {
  id: Generated<string>;
  ticket_id: string;
  external_id: string | null;
  agent_id: string | null;
  department_id: string | null;
  started_at: Date | string;
  picked_up_at: Date | string | null;
  missed: Generated<boolean>;
  ended_at: Date | string | null;
  created_at: CreatedAt;
}

export interface RatingsTable {
  id: Generated<string>;
  ticket_id: string;
  message_id: string | null;
  agent_id: string | null;
  department_id: string | null;
  value: 'positive' | 'negative';
  comment: string | null;
  created_at: CreatedAt;
}

export interface IdempotencyKeysTable {
  scope: string;
  key: string;
  request_hash: string;
  status_code: number | null;
  response: ColumnType<unknown, string | null | undefined, string | null>;
  created_at: CreatedAt;
}

export type RuleVersionChange = 'created' | 'updated' | 'reordered' | 'deleted';

export interface AutomationRulesTable {
  id: Generated<string>;
  name: string;
  note: string | null;
  active: boolean;
  position: number;
  stop_processing: boolean;
  triggers: string[];
  conditions: ColumnType<unknown, string, string>;
  actions: ColumnType<unknown[], string, string>;
  /** The ticket.idle parameter {minutes, business}, null for other rules (migrations/0028). */
  idle: ColumnType<{ minutes: number; business: boolean } | null, string | null | undefined, string | null>;
  department_id: string | null;
  version: number;
  created_at: CreatedAt;
  updated_at: Timestamp;
  created_by: string | null;
  updated_by: string | null;
}

export interface AutomationRuleVersionsTable {
  rule_id: string;
  version: number;
  rules_version: ColumnType<string, string | number, never>;
  definition: ColumnType<Record<string, unknown>, string, never>;
  change: RuleVersionChange;
  changed_by: string | null;
  changed_at: CreatedAt;
}

export interface AutomationRulesStateTable {
  id: ColumnType<boolean, never, never>;
  rules_version: ColumnType<string, never, string | number>;
  rules_key: ColumnType<string, never, unknown>;
}

/** Which activity instant each ticket.idle rule last ran for, per ticket (migrations/0028). */
export interface IdleRuleFiringsTable {
  rule_id: string;
  ticket_id: string;
  activity_at: ColumnType<Date, Date | string, Date | string>;
  fired_at: CreatedAt;
}

export interface RuleRunsTable {
  id: ColumnType<string, never, never>;
  ticket_id: string;
  event_types: string[];
  rules_version: ColumnType<string, string | number, never>;
  input: ColumnType<Record<string, unknown>, string, never>;
  trace: ColumnType<unknown[], string, never>;
  effects: ColumnType<unknown[], string, never>;
  created_at: CreatedAt;
}

export interface RoundRobinCursorsTable {
  department_id: string;
  last_agent_id: string | null;
}

export type NotificationKind =
  | 'ticket_created'
  | 'customer_replied'
  | 'ticket_assigned'
  | 'ticket_transferred'
  | 'mentioned'
  | 'sla_escalated';

export interface NotificationsTable {
  id: string;
  seq: ColumnType<number, never, never>;
  /** The writing transaction (xid8, read as text): live streams tail the inbox by it. */
  tx: ColumnType<string, never, never>;
  agent_id: string;
  kind: NotificationKind;
  event_id: string;
  ticket_id: string;
  department_id: string | null;
  actor_agent_id: string | null;
  subject: string;
  created_at: CreatedAt;
  read_at: Date | null;
}

/** Where a notification goes (migrations/0049): the in-app inbox, or a mail to the agent. */
export type NotificationChannelName = 'inbox' | 'email';

export interface NotificationPreferencesTable {
  agent_id: string;
  department_id: string;
  kind: NotificationKind;
  channel: ColumnType<NotificationChannelName, NotificationChannelName | undefined, never>;
  enabled: boolean;
  updated_at: Timestamp;
}

export interface NotificationDefaultsTable {
  department_id: string;
  kind: NotificationKind;
  channel: ColumnType<NotificationChannelName, NotificationChannelName | undefined, never>;
  enabled: boolean;
  updated_at: Timestamp;
}

/** Mail out (migrations/0035): one outgoing mail, rendered, and its delivery. */
export type OutboxKind =
  | 'acknowledgement'
  | 'agent_reply'
  | 'outside_hours'
  | 'transfer_notice'
  | 'resolved_notice'
  | 'csat_survey'
  /** A department notification mailed to an agent (migrations/0049); not part of the ticket's mail. */
  | 'notification';
export type OutboxState = 'queued' | 'sent' | 'failed' | 'suppressed' | 'cancelled';

export interface MailOutboxTable {
  id: Generated<string>;
  kind: OutboxKind;
  ticket_id: string;
  message_id: string | null;
  department_id: string | null;
  to_address: string | null;
  from_name: string;
  from_address: string | null;
  subject: string;
  text_body: string;
  html_body: string;
  /** Extra headers as sent (In-Reply-To, References, Auto-Submitted). */
  headers: ColumnType<Record<string, string>, string | undefined, string>;
  mail_message_id: string;
  state: OutboxState;
  attempts: Generated<number>;
  last_error: string | null;
  next_attempt_at: Date | null;
  locked_until: Date | null;
  sent_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface CsatSettingsTable {
  department_id: string;
  enabled: boolean;
  delay_minutes: number;
  updated_at: Timestamp;
}

export interface CsatSurveysTable {
  id: Generated<string>;
  ticket_id: string;
  outbox_id: string | null;
  token_hash: string;
  expires_at: Date;
  used_at: Date | null;
  rating_id: string | null;
  created_at: CreatedAt;
}

export interface Database {
  mail_outbox: MailOutboxTable;
  csat_settings: CsatSettingsTable;
  csat_surveys: CsatSurveysTable;
  notifications: NotificationsTable;
  notification_preferences: NotificationPreferencesTable;
  notification_defaults: NotificationDefaultsTable;
  automation_rules: AutomationRulesTable;
  automation_rule_versions: AutomationRuleVersionsTable;
  automation_rules_state: AutomationRulesStateTable;
  rule_runs: RuleRunsTable;
  idle_rule_firings: IdleRuleFiringsTable;
  round_robin_cursors: RoundRobinCursorsTable;
  contact_fields: ContactFieldsTable;
  contacts: ContactsTable;
  contact_emails: ContactEmailsTable;
  contact_phones: ContactPhonesTable;
  tickets: TicketsTable;
  ticket_messages: TicketMessagesTable;
  attachments: AttachmentsTable;
  department_addresses: DepartmentAddressesTable;
  mail_settings: MailSettingsTable;
  department_mail_identities: DepartmentMailIdentitiesTable;
  mail_templates: MailTemplatesTable;
  canned_responses: CannedResponsesTable;
  saved_views: SavedViewsTable;
  ticket_events: TicketEventsTable;
  settings_events: SettingsEventsTable;
  feed_consumers: FeedConsumersTable;
  calls: CallsTable;
  chats: ChatsTable;
  ratings: RatingsTable;
  idempotency_keys: IdempotencyKeysTable;
  departments: DepartmentsTable;
  schedules: SchedulesTable;
  sla_policies: SlaPoliciesTable;
  sla_policies_state: SlaPoliciesStateTable;
  agents: AgentsTable;
  deleted_departments: DeletedNamesTable;
  deleted_agents: DeletedNamesTable;
  department_members: DepartmentMembersTable;
  api_tokens: ApiTokensTable;
  sign_in_throttle: SignInThrottleTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_bodies: WebhookBodiesTable;
  webhook_delivery_attempts: WebhookDeliveryAttemptsTable;
  mailboxes: MailboxesTable;
  imports: ImportsTable;
  import_errors: ImportErrorsTable;
  import_keys: ImportKeysTable;
  import_files: ImportFilesTable;
}

export type DepartmentRow = Selectable<DepartmentsTable>;
export type NewDepartmentRow = Insertable<DepartmentsTable>;
export type DepartmentUpdate = Updateable<DepartmentsTable>;
export type ScheduleRow = Selectable<SchedulesTable>;
export type AgentRow = Selectable<AgentsTable>;
export type ApiTokenRow = Selectable<ApiTokensTable>;
export type TicketRow = Selectable<TicketsTable>;
export type ContactRow = Selectable<ContactsTable>;
export type AutomationRuleRow = Selectable<AutomationRulesTable>;
export type WebhookRow = Selectable<WebhooksTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;
export type MailboxRow = Selectable<MailboxesTable>;

/** Mail in (migrations/0033): an IMAP account or an inbound-only mailbox, bound to a department. */
export interface MailboxesTable {
  id: Generated<string>;
  name: string;
  department_id: string;
  kind: 'imap' | 'inbound';
  active: Generated<boolean>;
  imap_host: string | null;
  imap_port: number | null;
  imap_tls: Generated<boolean>;
  imap_username: string | null;
  /** Write-only through the API; never logged. */
  imap_password: string | null;
  imap_folder: Generated<string>;
  poll_seconds: number | null;
  /** The address it receives at, lower-cased, besides its IMAP username (migrations/0048). */
  address: string | null;
  /** int8: read through Number() (PGlite and pg parse it differently). */
  imap_uidvalidity: ColumnType<number | string | null, number | null | undefined, number | null>;
  imap_last_uid: ColumnType<number | string | null, number | null | undefined, number | null>;
  smtp_host: string | null;
  smtp_port: number | null;
  smtp_secure: Generated<boolean>;
  smtp_username: string | null;
  smtp_password: string | null;
  /** sha256 (hex) of the inbound secret; the secret is shown once. */
  inbound_secret_hash: string;
  last_polled_at: Date | null;
  last_error: string | null;
  failures: Generated<number>;
  next_poll_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export type ImportState = 'queued' | 'running' | 'finished' | 'failed';

export interface ImportsTable {
  id: Generated<string>;
  source: string;
  format: 'ndjson' | 'csv';
  run_rules: boolean;
  state: ColumnType<ImportState, ImportState | undefined, ImportState>;
  blob_key: string | null;
  size_bytes: number;
  position: ColumnType<number, number | undefined, number>;
  read_count: ColumnType<number, number | undefined, number>;
  created_count: ColumnType<number, number | undefined, number>;
  updated_count: ColumnType<number, number | undefined, number>;
  skipped_count: ColumnType<number, number | undefined, number>;
  failed_count: ColumnType<number, number | undefined, number>;
  failure: string | null;
  lease_until: Date | null;
  lease_token: string | null;
  created_by: string | null;
  created_at: ColumnType<Date, never, never>;
  started_at: Date | null;
  finished_at: Date | null;
}

export interface ImportErrorsTable {
  import_id: string;
  line: number;
  type: string | null;
  external_id: string | null;
  code: string;
  message: string;
}

export interface ImportFilesTable {
  source: string;
  external_id: string;
  filename: string;
  content_type: string;
  size_bytes: number;
  sha256: string;
  blob_key: string;
  uploaded_by: string | null;
  created_at: Generated<Date>;
}

export interface ImportKeysTable {
  source: string;
  type: string;
  external_id: string;
  target_id: string;
  digest: string | null;
  import_id: string;
}
