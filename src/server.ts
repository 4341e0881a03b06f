import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp, REDACT_PATHS } from './app.ts';
import { ensureFirstAdmin, resolveJwtSecret } from './bootstrap.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createDatabase } from './db/database.ts';
import { migrateToLatest } from './db/migrate.ts';
import { describe, retryWhileUnreachable } from './db/outage.ts';
import { startImportWorker } from './domains/imports/run.ts';
import { startImapWatcher } from './domains/mailboxes/imap.ts';
import { startNotifications } from './domains/notifications/service.ts';
import { startJobs } from './jobs/start.ts';
import { RequestLoad } from './jobs/yield.ts';
import { createLogDestination } from './logging.ts';
import { startScheduler } from './scheduler.ts';
import { blobStoreFor } from './storage/blobs.ts';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  throw error;
}

// One destination for every log line, so no logger can hold the exit up (logging.ts).
const logStream = createLogDestination();
// Database events before the app (and its logger) exist, and lost idle connections after.
const dbLog = pino(
  { level: config.logLevel, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
  logStream,
).child({ component: 'database' });
const db = await createDatabase({
  databaseUrl: config.databaseUrl,
  dataDir: config.dataDir,
  connectTimeoutMs: config.databaseConnectTimeoutMs,
  // The pool has already dropped the client and opens a new one on the next request.
  onIdleError: (err) => dbLog.warn({ reason: describe(err) }, 'idle database connection lost'),
});
// PostgreSQL may come up after us (a host booting, one compose file for both): wait for it with
// backoff instead of exiting. Both steps are safe to repeat (migrations run in a transaction
// under a lock; the first owner is created once), so a connection lost half-way retries both.
const { applied, firstAdmin } = await retryWhileUnreachable(
  async () => {
    const applied = await migrateToLatest(db);
    return { applied, firstAdmin: await ensureFirstAdmin(db, config) };
  },
  dbLog,
  'migrating',
);
// Webhook deliveries and other background jobs; started before the app so routes can enqueue.
const blobs = blobStoreFor(config.dataDir);
// The app counts the requests it answers in `load`; webhook work yields to them (jobs/yield.ts).
const load = new RequestLoad();
const jobs = await retryWhileUnreachable(
  () => startJobs(db, dbLog.child({ component: 'jobs' }), config, blobs, load),
  dbLog,
  'starting the job queue',
);
const app = await buildApp(config, {
  db,
  ...(config.databaseUrl !== undefined && { databaseUrl: config.databaseUrl }),
  jobs: jobs.queue,
  load,
  blobs,
  jwtSecret: await resolveJwtSecret(config),
  logger: {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    stream: logStream,
  },
});
const stopScheduler = startScheduler(
  db,
  app.log,
  config.scheduler.housekeepingMs,
  config.scheduler.reportCompactionMs,
  config.scheduler.slaTimerMs,
  app.blobs,
);
const stopNotifications = startNotifications(db, app.log, config, jobs.queue);
// IMAP mailboxes are read by every process that runs the watcher; a mailbox by one at a time.
const imapWatcher = config.mailIn.imapWatcher
  ? startImapWatcher({
      db,
      blobs: app.blobs,
      log: app.log.child({ component: 'imap' }),
      config: config.mailIn,
      mailFrom: config.mail.from,
    })
  : undefined;
// Imports (POST /v1/imports) are worked through in the background on every instance, each by one.
const stopImports = startImportWorker({ db, blobs: app.blobs, log: app.log.child({ component: 'imports' }) });
// Node's own limit is the uploads' (an import file of gigabytes); every other request must
// arrive within REQUEST_TIMEOUT_MS (src/plugins/arrival.ts).
app.server.requestTimeout = config.arrival.uploadTimeoutMs;
app.server.headersTimeout = 10_000;

closeWithGrace({ delay: config.shutdownGraceMs }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an error');
  else app.log.info({ signal }, 'shutting down: finishing in-flight requests');
  await stopScheduler();
  await imapWatcher?.stop();
  await stopImports();
  await jobs.stop();
  await stopNotifications();
  await app.close();
  await db.destroy();
});

await app.listen({ host: config.host, port: config.port });
const url = `http://${config.host}:${(app.server.address() as { port: number }).port}`;
app.log.info(
  { migrations: applied, storage: config.databaseUrl ? 'postgresql' : `pglite:${config.dataDir}` },
  'deskroute ready',
);

// Printed to the terminal, not logged: the generated password appears this once and never again.
if (firstAdmin.created) {
  const password = firstAdmin.generatedPassword ?? '(the DESKROUTE_ADMIN_PASSWORD you set)';
  process.stdout.write(
    [
      '',
      'Deskroute created the first owner. Sign in with:',
      `  email:    ${firstAdmin.email}`,
      `  password: ${password}`,
      firstAdmin.generatedPassword
        ? '  (shown only now: store it, then change it with POST /v1/me/password)'
        : '',
      `  curl -s -X POST ${url}/v1/auth/token -H 'content-type: application/json' \\`,
      `    -d '{"email":"${firstAdmin.email}","password":"..."}'`,
      '',
    ].join('\n'),
  );
}
process.stdout.write(`Deskroute listening on ${url} (API docs: ${url}/docs)\n`);
