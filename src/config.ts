import { isIP } from 'node:net';
import { type Static, Type } from 'typebox';
import { Value } from 'typebox/value';
import { canonicalTimeZone } from './business-time/definition.ts';

/**
 * Every environment variable Deskroute reads, in one schema. Nothing else in src/ touches
 * process.env; a bad value stops the server at boot with a message naming the variable.
 */
const EnvSchema = Type.Object({
  DESKROUTE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production')], {
    default: 'development',
    description: 'production makes JWT_SECRET mandatory',
  }),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535 }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATABASE_CONNECT_TIMEOUT_MS: Type.Integer({
    default: 5_000,
    minimum: 100,
    maximum: 600_000,
    description: 'longest wait for a PostgreSQL connection before a request answers 503',
  }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({
    default: 60_000,
    minimum: 0,
    maximum: 3_600_000,
    description:
      'longest a statement sent for a request waits for its answer before it is cancelled, its connection dropped and the request answers 503 (a frozen database); 0: no bound, else at least 100. Background work is not bound',
  }),
  DATA_DIR: Type.String({ default: './data', minLength: 1 }),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  JWT_TTL_SECONDS: Type.Integer({ default: 900, minimum: 60, maximum: 86400 }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  CORS_ORIGINS: Type.String({ default: '', description: 'comma-separated origins, or * for any' }),
  RATE_LIMIT_MAX: Type.Integer({ default: 600, minimum: 1, description: 'requests per window per token' }),
  RATE_LIMIT_PER_ADDRESS_MAX: Type.Integer({
    default: 3000,
    minimum: 1,
    description: 'requests per window per client address, whatever credentials they carry',
  }),
  RATE_LIMIT_WINDOW_SECONDS: Type.Integer({ default: 60, minimum: 1 }),
  PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: Type.Integer({ default: 10, minimum: 1 }),
  SIGN_IN_MAX_FAILURES: Type.Integer({ default: 5, minimum: 1 }),
  SIGN_IN_LOCK_SECONDS: Type.Integer({ default: 900, minimum: 1 }),
  BODY_LIMIT_BYTES: Type.Integer({ default: 1_048_576, minimum: 1024 }),
  ATTACHMENT_MAX_BYTES: Type.Integer({
    default: 26_214_400,
    minimum: 1,
    maximum: 5_368_709_120,
    description: 'largest attachment accepted, in bytes (default 25 MiB); a larger one answers 413',
  }),
  IMPORT_MAX_BYTES: Type.Integer({
    default: 4_294_967_296,
    minimum: 1,
    description:
      'largest import file accepted by POST /v1/imports, in bytes (default 4 GiB); a larger one answers 413',
  }),
  ATTACHMENT_MAX_FILES: Type.Integer({
    default: 10,
    minimum: 1,
    maximum: 100,
    description: 'most files one upload (or one contact form) may carry; more answer 413',
  }),
  REQUEST_TIMEOUT_MS: Type.Integer({
    default: 30_000,
    minimum: 1000,
    maximum: 600_000,
    description:
      'a request must arrive whole within this, else 408; an upload (an import file, attachments) instead must bring at least 1 KiB in every such span',
  }),
  UPLOAD_TIMEOUT_MS: Type.Integer({
    default: 3_600_000,
    minimum: 1000,
    maximum: 86_400_000,
    description: 'an upload (an import file, attachments) must arrive whole within this, else 408',
  }),
  TRUST_PROXY: Type.Boolean({ default: false }),
  SHUTDOWN_GRACE_MS: Type.Integer({ default: 10_000, minimum: 0 }),
  HOUSEKEEPING_INTERVAL_MS: Type.Integer({
    default: 30_000,
    minimum: 100,
    description:
      'how often postponed tickets are woken, old Idempotency-Keys forgotten and ticket.idle rules run',
  }),
  SLA_TIMER_INTERVAL_MS: Type.Integer({
    default: 1_000,
    minimum: 50,
    maximum: 60_000,
    description: 'how often each process looks for SLA warnings and breaches that came due',
  }),
  REPORT_COMPACTION_INTERVAL_MS: Type.Integer({
    default: 5_000,
    minimum: 100,
    description: 'how often report rows appended since the last run are compacted',
  }),
  DESKROUTE_ADMIN_EMAIL: Type.Optional(Type.String({ format: 'email', maxLength: 254 })),
  DESKROUTE_ADMIN_PASSWORD: Type.Optional(Type.String({ minLength: 12, maxLength: 200 })),
  DESKROUTE_TIMEZONE: Type.String({
    default: 'UTC',
    minLength: 1,
    description: "the help desk's IANA time zone: reports bucket days, weeks and months in it by default",
  }),
  EXPORT_MAX_CONCURRENT: Type.Integer({
    default: 2,
    minimum: 1,
    // The pool holds 10 connections: exports may never take more than half of them.
    maximum: 5,
    description:
      'Report CSVs that may be prepared at once, and database reads that exports (report CSVs and ticket or contact downloads together) may run at once (at most 5 of the pool’s 10 connections); one more report CSV answers 503 export_busy, a download batch waits its turn',
  }),
  EXPORT_MAX_OPEN: Type.Integer({
    default: 16,
    minimum: 1,
    maximum: 1000,
    description:
      'CSV exports that may be in flight at once, from their query to the client’s last byte (each holds a temporary file); more answer 503 export_busy',
  }),
  EXPORT_STALL_TIMEOUT_MS: Type.Integer({
    default: 30_000,
    minimum: 100,
    description:
      'an export, report CSV, attachment or raw-message download whose client takes no data for this long is cut',
  }),
  WEBHOOKS_ALLOW_PRIVATE: Type.Boolean({
    default: false,
    description:
      'allow webhook URLs on loopback, private, link-local and metadata addresses (tests, on-premise receivers)',
  }),
  INBOUND_MAIL_MAX_BYTES: Type.Integer({
    default: 26_214_400,
    minimum: 1024,
    description: 'largest raw message POST /v1/inbound/email or the IMAP watcher takes (25 MiB); larger: 413',
  }),
  IMAP_POLL_SECONDS: Type.Integer({
    default: 60,
    minimum: 1,
    description: 'how often an IMAP mailbox without its own poll interval is read (IDLE wakes it sooner)',
  }),
  IMAP_TIMEOUT_MS: Type.Integer({
    default: 30_000,
    minimum: 100,
    description: 'longest an IMAP connection, greeting or command may take before the mailbox counts as down',
  }),
  IMAP_WATCHER: Type.Boolean({ default: true, description: 'read IMAP mailboxes in this process' }),
  IMAP_DNS_SERVERS: Type.String({
    default: '',
    description:
      'comma-separated DNS servers (ip or ip:port, [ipv6]:port) asked for IMAP mailbox hosts; empty: those of /etc/resolv.conf',
  }),
  WEBHOOK_DNS_SERVERS: Type.String({
    default: '',
    description:
      'comma-separated DNS servers (ip or ip:port, [ipv6]:port) the webhook address check asks; empty: those of /etc/resolv.conf',
  }),
  WEBHOOK_DNS_TIMEOUT_MS: Type.Integer({
    default: 5_000,
    minimum: 100,
    maximum: 30_000,
    description:
      'a webhook host’s DNS look-up (with the address check on) ends after this long, its queries tried twice within it',
  }),
  WEBHOOK_TIMEOUT_MS: Type.Integer({
    default: 10_000,
    minimum: 100,
    maximum: 60_000,
    description: 'one delivery attempt, from connecting to the end of the response, at most this long',
  }),
  WEBHOOK_RETRY_BASE_MS: Type.Integer({
    default: 30_000,
    minimum: 10,
    description: 'the first retry waits up to this long; each later one up to twice the one before',
  }),
  WEBHOOK_RETRY_MAX_DELAY_MS: Type.Integer({
    default: 21_600_000,
    minimum: 10,
    description: 'no retry waits longer than this (default 6 h)',
  }),
  WEBHOOK_RETRY_WINDOW_MS: Type.Integer({
    default: 86_400_000,
    minimum: 10,
    description: 'a delivery is retried until this long after its first attempt, then failed (default 24 h)',
  }),
  WEBHOOK_SECRET_OVERLAP_MS: Type.Integer({
    default: 86_400_000,
    minimum: 0,
    description: 'after a secret rotation, deliveries are signed with the old secret too for this long',
  }),
  WEBHOOK_DISABLE_AFTER_FAILURES: Type.Integer({
    default: 20,
    minimum: 1,
    description: 'a subscription is disabled after this many failed attempts in a row ...',
  }),
  WEBHOOK_DISABLE_AFTER_MS: Type.Integer({
    default: 86_400_000,
    minimum: 0,
    description: '... once its attempts have been failing for at least this long (default 24 h)',
  }),
  WEBHOOK_DELIVERY_RETENTION_DAYS: Type.Integer({
    default: 30,
    minimum: 1,
    maximum: 3650,
    description:
      'a delivered or failed webhook delivery (with its attempts, and its event’s body once no delivery needs it) is kept this many days after it settled (delivered, or last attempted)',
  }),
  WEBHOOK_DISPATCH_INTERVAL_MS: Type.Integer({
    default: 200,
    minimum: 10,
    maximum: 60_000,
    description: 'how often new events are turned into webhook deliveries',
  }),
  WEBHOOK_YIELD_REQUESTS: Type.Integer({
    default: 6,
    minimum: 0,
    maximum: 10_000,
    description:
      'requests in flight (for three quarters of the last second) from which a process counts as busy, and its webhook work (dispatch and delivery) yields to requests: it then keeps WEBHOOK_SHARE_UNDER_LOAD_PERCENT of the time and catches up once the load falls (under a quarter of the last second with half as many in flight); 0: webhook work never yields',
  }),
  WEBHOOK_SHARE_UNDER_LOAD_PERCENT: Type.Integer({
    default: 10,
    minimum: 1,
    maximum: 100,
    description: 'the share of time webhook work keeps while the process is busy with requests',
  }),
  JOBS_CONCURRENCY: Type.Integer({
    default: 8,
    minimum: 1,
    maximum: 100,
    description: 'background jobs (webhook deliveries) one process runs at once',
  }),
  JOBS_POLL_INTERVAL_MS: Type.Integer({
    default: 2_000,
    minimum: 500,
    maximum: 60_000,
    description: 'how often idle workers look for jobs that became due (new jobs wake them at once)',
  }),
  JOBS_SUPERVISE_INTERVAL_SECONDS: Type.Integer({
    default: 30,
    minimum: 1,
    maximum: 3600,
    description: 'how often jobs of a dead process are found and run again',
  }),
  AUTH_CACHE_SECONDS: Type.Integer({
    default: 60,
    minimum: 0,
    maximum: 3600,
    description:
      'who a token or session belongs to is kept this long per process, and dropped at once when any token, agent or membership changes (LISTEN/NOTIFY); 0: looked up on every request',
  }),
  STREAM_POLL_INTERVAL_MS: Type.Integer({
    default: 50,
    minimum: 10,
    maximum: 10_000,
    description: 'how often each process reads the event feed for its live-stream subscribers',
  }),
  STREAM_HEARTBEAT_MS: Type.Integer({
    default: 15_000,
    minimum: 100,
    maximum: 300_000,
    description: 'how often an idle live stream gets a comment line, so proxies keep it open',
  }),
  STREAM_MAX_SUBSCRIBERS: Type.Integer({
    default: 2_000,
    minimum: 1,
    maximum: 100_000,
    description: 'live streams one process serves at once; more answer 503 stream_busy',
  }),
  STREAM_SLOW_READER_MS: Type.Integer({
    default: 30_000,
    minimum: 100,
    description: 'a live stream whose client leaves its socket buffer full this long is cut',
  }),
  STREAM_MAX_BUFFER_BYTES: Type.Integer({
    default: 1_048_576,
    minimum: 1024,
    description: 'a live stream with more than this many bytes waiting for its client is cut at once',
  }),
  PRESENCE_TIMEOUT_SECONDS: Type.Integer({
    default: 300,
    minimum: 1,
    maximum: 86_400,
    description:
      'an agent who has not confirmed their presence (PUT /v1/me/presence) for this long reads offline',
  }),
  NOTIFICATIONS_POLL_INTERVAL_MS: Type.Integer({
    default: 200,
    minimum: 10,
    maximum: 60_000,
    description: 'how often the notifications consumer reads the event feed',
  }),
  // Mail out (docs/email.md "Mail out"). SMTP_URL carries a password: never logged or returned.
  SMTP_URL: Type.Optional(
    Type.String({
      pattern: '^smtps?://',
      maxLength: 2000,
      description:
        'help-desk-wide SMTP server, smtp(s)://user:pass@host:port; unset: only departments with a mailbox send',
    }),
  ),
  MAIL_FROM: Type.Optional(
    Type.String({
      maxLength: 254,
      description: 'sender address of departments without a reply-from address',
    }),
  ),
  MAIL_SEND_TIMEOUT_MS: Type.Integer({
    default: 30_000,
    minimum: 100,
    maximum: 600_000,
    description: 'longest SMTP attempt (connect, greeting, every command, the whole message)',
  }),
  MAIL_RETRY_BASE_MS: Type.Integer({ default: 60_000, minimum: 10, description: 'first retry delay' }),
  MAIL_RETRY_MAX_DELAY_MS: Type.Integer({ default: 3_600_000, minimum: 10 }),
  MAIL_MAX_ATTEMPTS: Type.Integer({ default: 10, minimum: 1, maximum: 100 }),
  MAIL_DISPATCH_INTERVAL_MS: Type.Integer({
    default: 1_000,
    minimum: 10,
    maximum: 60_000,
    description: 'how often the mail consumer reads the event feed',
  }),
  PUBLIC_BASE_URL: Type.String({
    default: 'http://127.0.0.1:3000',
    pattern: '^https?://',
    maxLength: 500,
    description: 'where customers open links of mails (the survey page: PUBLIC_BASE_URL/ratings/<token>)',
  }),
  CSAT_ENABLED: Type.Boolean({ default: false, description: 'surveys for departments that set nothing' }),
  CSAT_DELAY_MINUTES: Type.Integer({ default: 60, minimum: 0, maximum: 43_200 }),
  CSAT_LINK_DAYS: Type.Integer({
    default: 14,
    minimum: 1,
    maximum: 365,
    description: 'how long a survey link works',
  }),
});

export type Env = Static<typeof EnvSchema>;

export interface Config {
  production: boolean;
  host: string;
  port: number;
  databaseUrl: string | undefined;
  /** Bounds a request's wait for a pooled connection (and /readyz): past it, 503. */
  databaseConnectTimeoutMs: number;
  /** DATABASE_STATEMENT_TIMEOUT_MS (db/deadline.ts); 0: none. */
  databaseStatementTimeoutMs: number;
  dataDir: string;
  jwtSecret: string | undefined;
  jwtTtlSeconds: number;
  /** AUTH_CACHE_SECONDS (src/plugins/auth-cache.ts). */
  authCacheSeconds: number;
  logLevel: string;
  corsOrigins: string[] | '*';
  rateLimit: { max: number; perAddressMax: number; windowSeconds: number };
  publicFormRateLimitPerMinute: number;
  signIn: { maxFailures: number; lockSeconds: number };
  bodyLimit: number;
  /** Uploads: the largest file and the most files per request (docs/email.md, "Attachments"). */
  attachments: { maxBytes: number; maxFiles: number };
  /** The largest import file (docs/import.md). */
  importMaxBytes: number;
  /** When a request must have arrived (src/plugins/arrival.ts); uploads get longer. */
  arrival: { requestTimeoutMs: number; uploadTimeoutMs: number };
  trustProxy: boolean;
  shutdownGraceMs: number;
  scheduler: { housekeepingMs: number; reportCompactionMs: number; slaTimerMs: number };
  admin: { email: string | undefined; password: string | undefined };
  /** IANA name; the default time zone of reports. */
  timezone: string;
  /**
   * CSV exports: how many may read the database at once, how many may be in flight (each holds
   * a temporary file until its client has read it), and when a client that reads nothing is cut.
   */
  exports: { maxConcurrent: number; maxOpen: number; stallTimeoutMs: number };
  /**
   * The live stream: the feed poll of each process, heartbeats, the subscriber cap, and when a
   * client that does not read is cut (time with a full socket buffer, or bytes waiting).
   */
  stream: {
    pollMs: number;
    heartbeatMs: number;
    maxSubscribers: number;
    slowReaderMs: number;
    maxBufferBytes: number;
  };
  notifications: { pollMs: number };
  /** Seconds a confirmation of presence holds; past it the agent reads offline. */
  presenceTimeoutSeconds: number;
  webhooks: WebhookConfig;
  mailIn: MailInConfig;
  jobs: { concurrency: number; pollIntervalMs: number; superviseIntervalSeconds: number };
  mail: MailConfig;
}

export interface MailConfig {
  /** Secret (its password): never logged, never returned. */
  smtpUrl: string | undefined;
  from: string | undefined;
  sendTimeoutMs: number;
  retryBaseMs: number;
  retryMaxDelayMs: number;
  maxAttempts: number;
  dispatchIntervalMs: number;
  publicBaseUrl: string;
  csat: { enabled: boolean; delayMinutes: number; linkDays: number };
}

export interface MailInConfig {
  maxBytes: number;
  imapPollSeconds: number;
  imapTimeoutMs: number;
  imapWatcher: boolean;
  /** Where an IMAP mailbox's host is resolved (IMAP_DNS_SERVERS), within half of IMAP_TIMEOUT_MS. */
  dns: DnsSettings;
}

/**
 * Where and how long a host name of an outbound connection is asked of DNS (src/net/resolve-host.ts):
 * webhooks (WEBHOOK_DNS_SERVERS, WEBHOOK_DNS_TIMEOUT_MS), IMAP mailboxes (IMAP_DNS_SERVERS, IMAP_TIMEOUT_MS).
 */
export interface DnsSettings {
  /** `ip` or `ip:port`; empty: those of /etc/resolv.conf. */
  servers: string[];
  /** The whole look-up's limit: a third of it for the first try, the rest for the second. */
  timeoutMs: number;
}

export interface WebhookConfig {
  allowPrivate: boolean;
  /** Where the address check resolves host names (src/net/resolve-host.ts resolveHost). */
  dns: DnsSettings;
  timeoutMs: number;
  retryBaseMs: number;
  retryMaxDelayMs: number;
  retryWindowMs: number;
  secretOverlapMs: number;
  disableAfterFailures: number;
  disableAfterMs: number;
  dispatchIntervalMs: number;
  /** When webhook work yields to requests (src/jobs/yield.ts); share in (0, 1]. */
  yieldTo: { requests: number; share: number };
  /** Settled deliveries older than this are deleted (delivery.ts pruneDeliveries). */
  deliveryRetentionDays: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** `ip`, `ip:port` or `[ipv6]:port`, as dns.setServers takes them. */
function isDnsServer(server: string): boolean {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(server);
  const plain = /^([^:]+):(\d{1,5})$/.exec(server);
  const [host, port] = bracketed
    ? [bracketed[1]!, bracketed[2]]
    : plain
      ? [plain[1]!, plain[2]]
      : [server, undefined];
  return isIP(host) !== 0 && (port === undefined || (Number(port) >= 1 && Number(port) <= 65_535));
}

/** Reads, converts and validates the environment. Throws ConfigError listing every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const known = Object.keys(EnvSchema.properties);
  const input: Record<string, unknown> = {};
  for (const key of known) {
    const raw = env[key];
    if (raw !== undefined && raw !== '') input[key] = raw;
  }
  const problems: string[] = [];
  // TypeBox's conversion truncates "1.5" to 1 for an integer: a whole number is asked for, so
  // anything else (a fraction, an exponent, a unit) is refused rather than read as something else.
  for (const [key, schema] of Object.entries(EnvSchema.properties)) {
    const raw = input[key];
    if (
      (schema as { type?: unknown }).type === 'integer' &&
      typeof raw === 'string' &&
      !/^[+-]?\d+$/.test(raw.trim())
    ) {
      problems.push(`${key}: must be a whole number, not ${JSON.stringify(raw.slice(0, 40))}`);
      delete input[key];
    }
  }
  const converted = Value.Convert(EnvSchema, Value.Default(EnvSchema, input));
  for (const error of Value.Errors(EnvSchema, converted)) {
    const name = error.instancePath.replace(/^\//, '') || 'environment';
    problems.push(`${name}: ${error.message}`);
  }
  const parsed = converted as Env;
  if (parsed.DESKROUTE_ADMIN_EMAIL !== undefined && !EMAIL.test(parsed.DESKROUTE_ADMIN_EMAIL)) {
    problems.push('DESKROUTE_ADMIN_EMAIL: must be an email address');
  }
  if (parsed.DESKROUTE_ENV === 'production' && !parsed.JWT_SECRET) {
    problems.push('JWT_SECRET: required when DESKROUTE_ENV=production (at least 32 characters)');
  }
  if ((parsed.DESKROUTE_ADMIN_EMAIL === undefined) !== (parsed.DESKROUTE_ADMIN_PASSWORD === undefined)) {
    problems.push('DESKROUTE_ADMIN_EMAIL and DESKROUTE_ADMIN_PASSWORD: set both or neither');
  }
  // Below DATABASE_CONNECT_TIMEOUT_MS's floor, most statements would be cut: a typo, not a bound.
  const statementBound = parsed.DATABASE_STATEMENT_TIMEOUT_MS;
  if (typeof statementBound === 'number' && statementBound > 0 && statementBound < 100) {
    problems.push('DATABASE_STATEMENT_TIMEOUT_MS: must be 0 (no bound) or at least 100');
  }
  if (parsed.MAIL_FROM !== undefined && !EMAIL.test(parsed.MAIL_FROM)) {
    problems.push('MAIL_FROM: must be an email address');
  }
  if (parsed.SMTP_URL !== undefined && !URL.canParse(parsed.SMTP_URL)) {
    problems.push('SMTP_URL: must be smtp(s)://user:pass@host:port');
  }
  const dnsServers = (key: 'WEBHOOK_DNS_SERVERS' | 'IMAP_DNS_SERVERS') => {
    const servers = parsed[key]
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (servers.some((server) => !isDnsServer(server))) {
      problems.push(`${key}: must be IP addresses, each optionally with :port ([ipv6]:port)`);
    }
    return servers;
  };
  const webhookDnsServers = dnsServers('WEBHOOK_DNS_SERVERS');
  const imapDnsServers = dnsServers('IMAP_DNS_SERVERS');
  // The check schedules and reports make (an offset such as +05:00 passes Intl, not them).
  const timezone = canonicalTimeZone(parsed.DESKROUTE_TIMEZONE);
  if (timezone === null) {
    problems.push('DESKROUTE_TIMEZONE: must be an IANA time zone name such as Europe/Prague or UTC');
  }
  if (problems.length > 0) {
    throw new ConfigError(`Invalid configuration:\n  ${[...new Set(problems)].join('\n  ')}`);
  }
  const origins = parsed.CORS_ORIGINS.trim();
  return {
    production: parsed.DESKROUTE_ENV === 'production',
    host: parsed.HOST,
    port: parsed.PORT,
    databaseUrl: parsed.DATABASE_URL,
    databaseConnectTimeoutMs: parsed.DATABASE_CONNECT_TIMEOUT_MS,
    databaseStatementTimeoutMs: parsed.DATABASE_STATEMENT_TIMEOUT_MS,
    dataDir: parsed.DATA_DIR,
    jwtSecret: parsed.JWT_SECRET,
    jwtTtlSeconds: parsed.JWT_TTL_SECONDS,
    authCacheSeconds: parsed.AUTH_CACHE_SECONDS,
    logLevel: parsed.LOG_LEVEL,
    corsOrigins:
      origins === '*'
        ? '*'
        : origins
            .split(',')
            .map((o) => o.trim())
            .filter(Boolean),
    rateLimit: {
      max: parsed.RATE_LIMIT_MAX,
      perAddressMax: parsed.RATE_LIMIT_PER_ADDRESS_MAX,
      windowSeconds: parsed.RATE_LIMIT_WINDOW_SECONDS,
    },
    publicFormRateLimitPerMinute: parsed.PUBLIC_FORM_RATE_LIMIT_PER_MINUTE,
    signIn: { maxFailures: parsed.SIGN_IN_MAX_FAILURES, lockSeconds: parsed.SIGN_IN_LOCK_SECONDS },
    bodyLimit: parsed.BODY_LIMIT_BYTES,
    attachments: { maxBytes: parsed.ATTACHMENT_MAX_BYTES, maxFiles: parsed.ATTACHMENT_MAX_FILES },
    importMaxBytes: parsed.IMPORT_MAX_BYTES,
    arrival: { requestTimeoutMs: parsed.REQUEST_TIMEOUT_MS, uploadTimeoutMs: parsed.UPLOAD_TIMEOUT_MS },
    trustProxy: parsed.TRUST_PROXY,
    shutdownGraceMs: parsed.SHUTDOWN_GRACE_MS,
    scheduler: {
      housekeepingMs: parsed.HOUSEKEEPING_INTERVAL_MS,
      reportCompactionMs: parsed.REPORT_COMPACTION_INTERVAL_MS,
      slaTimerMs: parsed.SLA_TIMER_INTERVAL_MS,
    },
    admin: { email: parsed.DESKROUTE_ADMIN_EMAIL, password: parsed.DESKROUTE_ADMIN_PASSWORD },
    timezone: timezone!,
    exports: {
      maxConcurrent: parsed.EXPORT_MAX_CONCURRENT,
      maxOpen: parsed.EXPORT_MAX_OPEN,
      stallTimeoutMs: parsed.EXPORT_STALL_TIMEOUT_MS,
    },
    mailIn: {
      maxBytes: parsed.INBOUND_MAIL_MAX_BYTES,
      imapPollSeconds: parsed.IMAP_POLL_SECONDS,
      imapTimeoutMs: parsed.IMAP_TIMEOUT_MS,
      imapWatcher: parsed.IMAP_WATCHER,
      // Half the connection's limit, so a silent DNS server is reported as such, not as a
      // connection that timed out.
      dns: { servers: imapDnsServers, timeoutMs: Math.max(100, Math.floor(parsed.IMAP_TIMEOUT_MS / 2)) },
    },
    webhooks: {
      allowPrivate: parsed.WEBHOOKS_ALLOW_PRIVATE,
      dns: { servers: webhookDnsServers, timeoutMs: parsed.WEBHOOK_DNS_TIMEOUT_MS },
      timeoutMs: parsed.WEBHOOK_TIMEOUT_MS,
      retryBaseMs: parsed.WEBHOOK_RETRY_BASE_MS,
      retryMaxDelayMs: parsed.WEBHOOK_RETRY_MAX_DELAY_MS,
      retryWindowMs: parsed.WEBHOOK_RETRY_WINDOW_MS,
      secretOverlapMs: parsed.WEBHOOK_SECRET_OVERLAP_MS,
      disableAfterFailures: parsed.WEBHOOK_DISABLE_AFTER_FAILURES,
      disableAfterMs: parsed.WEBHOOK_DISABLE_AFTER_MS,
      dispatchIntervalMs: parsed.WEBHOOK_DISPATCH_INTERVAL_MS,
      yieldTo: {
        requests: parsed.WEBHOOK_YIELD_REQUESTS,
        share: parsed.WEBHOOK_SHARE_UNDER_LOAD_PERCENT / 100,
      },
      deliveryRetentionDays: parsed.WEBHOOK_DELIVERY_RETENTION_DAYS,
    },
    jobs: {
      concurrency: parsed.JOBS_CONCURRENCY,
      pollIntervalMs: parsed.JOBS_POLL_INTERVAL_MS,
      superviseIntervalSeconds: parsed.JOBS_SUPERVISE_INTERVAL_SECONDS,
    },
    stream: {
      pollMs: parsed.STREAM_POLL_INTERVAL_MS,
      heartbeatMs: parsed.STREAM_HEARTBEAT_MS,
      maxSubscribers: parsed.STREAM_MAX_SUBSCRIBERS,
      slowReaderMs: parsed.STREAM_SLOW_READER_MS,
      maxBufferBytes: parsed.STREAM_MAX_BUFFER_BYTES,
    },
    notifications: { pollMs: parsed.NOTIFICATIONS_POLL_INTERVAL_MS },
    presenceTimeoutSeconds: parsed.PRESENCE_TIMEOUT_SECONDS,
    mail: {
      smtpUrl: parsed.SMTP_URL,
      from: parsed.MAIL_FROM,
      sendTimeoutMs: parsed.MAIL_SEND_TIMEOUT_MS,
      retryBaseMs: parsed.MAIL_RETRY_BASE_MS,
      retryMaxDelayMs: parsed.MAIL_RETRY_MAX_DELAY_MS,
      maxAttempts: parsed.MAIL_MAX_ATTEMPTS,
      dispatchIntervalMs: parsed.MAIL_DISPATCH_INTERVAL_MS,
      publicBaseUrl: parsed.PUBLIC_BASE_URL.replace(/\/+$/, ''),
      csat: {
        enabled: parsed.CSAT_ENABLED,
        delayMinutes: parsed.CSAT_DELAY_MINUTES,
        linkDays: parsed.CSAT_LINK_DAYS,
      },
    },
  };
}
