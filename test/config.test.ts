import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DEFAULT_ADMIN_EMAIL, ensureFirstAdmin, resolveJwtSecret } from '../src/bootstrap.ts';
import { type ConfigError, loadConfig } from '../src/config.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { verifyPassword } from '../src/domains/auth/passwords.ts';
import { createTestDatabase } from './helpers/database.ts';

t.test('configuration: defaults, conversion and clear refusals', async (t) => {
  const config = loadConfig({});
  t.equal(config.host, '127.0.0.1');
  t.equal(config.port, 3000);
  t.equal(config.dataDir, './data');
  t.equal(config.databaseUrl, undefined);
  t.equal(config.production, false);
  t.same(config.corsOrigins, []);

  const set = loadConfig({
    PORT: '8080',
    TRUST_PROXY: 'true',
    CORS_ORIGINS: 'https://a.example, https://b.example',
  });
  t.equal(set.port, 8080);
  t.equal(set.trustProxy, true);
  t.same(set.corsOrigins, ['https://a.example', 'https://b.example']);
  t.equal(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins, '*');
  t.same(config.webhooks.dns, { servers: [], timeoutMs: 5000 }, 'webhook DNS: resolv.conf’s servers');
  t.same(
    loadConfig({ WEBHOOK_DNS_SERVERS: '10.0.0.53, 10.0.0.54:5353,[2001:db8::53]:53,2001:db8::54' }).webhooks
      .dns.servers,
    ['10.0.0.53', '10.0.0.54:5353', '[2001:db8::53]:53', '2001:db8::54'],
  );

  t.same(
    config.mailIn.dns,
    { servers: [], timeoutMs: 15_000 },
    'IMAP DNS: resolv.conf’s, within half of IMAP_TIMEOUT_MS',
  );
  t.equal(loadConfig({ PORT: ' 8080 ' }).port, 8080, 'a whole number with spaces around');
  t.same(loadConfig({ IMAP_DNS_SERVERS: '10.0.0.53:5353', IMAP_TIMEOUT_MS: '4000' }).mailIn.dns, {
    servers: ['10.0.0.53:5353'],
    timeoutMs: 2000,
  });

  const refusals: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ JWT_SECRET: 'short' }, /JWT_SECRET/],
    [{ DESKROUTE_ENV: 'production' }, /JWT_SECRET: required/],
    [{ DESKROUTE_ENV: 'staging' }, /DESKROUTE_ENV/],
    [
      { DESKROUTE_ADMIN_EMAIL: 'not-an-email', DESKROUTE_ADMIN_PASSWORD: 'long enough password' },
      /DESKROUTE_ADMIN_EMAIL/,
    ],
    [{ DESKROUTE_ADMIN_EMAIL: 'boss@example.com' }, /set both or neither/],
    // Exports could otherwise take every pooled connection, the starvation the budget prevents.
    [{ EXPORT_MAX_CONCURRENT: '10' }, /EXPORT_MAX_CONCURRENT/],
    [{ WEBHOOK_DNS_SERVERS: 'dns.example.com' }, /WEBHOOK_DNS_SERVERS/],
    [{ WEBHOOK_DNS_SERVERS: '10.0.0.53:99999' }, /WEBHOOK_DNS_SERVERS/],
    [{ WEBHOOK_DNS_TIMEOUT_MS: '5' }, /WEBHOOK_DNS_TIMEOUT_MS/],
    [{ IMAP_DNS_SERVERS: '10.0.0.53,imap.example.com' }, /IMAP_DNS_SERVERS/],
    // A whole number, not one TypeBox's conversion would truncate or expand.
    [
      { WEBHOOK_DELIVERY_RETENTION_DAYS: '1.5' },
      /WEBHOOK_DELIVERY_RETENTION_DAYS: must be a whole number, not "1\.5"/,
    ],
    [{ PORT: '8e3' }, /PORT: must be a whole number/],
    // 1-99 ms would cut nearly every statement: a typo, not a bound (0 turns it off).
    [
      { DATABASE_STATEMENT_TIMEOUT_MS: '50' },
      /DATABASE_STATEMENT_TIMEOUT_MS: must be 0 \(no bound\) or at least 100/,
    ],
    [{ IMAP_TIMEOUT_MS: '30s' }, /IMAP_TIMEOUT_MS: must be a whole number/],
    [
      { DESKROUTE_ADMIN_EMAIL: 'boss@example.com', DESKROUTE_ADMIN_PASSWORD: 'short' },
      /DESKROUTE_ADMIN_PASSWORD/,
    ],
  ];
  for (const [env, message] of refusals) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message }, JSON.stringify(env));
  }
  const many = (() => {
    try {
      loadConfig({ PORT: 'x', LOG_LEVEL: 'y' });
    } catch (error) {
      return error as ConfigError;
    }
  })();
  t.match(many?.message, /PORT[\s\S]*LOG_LEVEL/, 'every bad variable is named at once');
  t.ok(loadConfig({ DESKROUTE_ENV: 'production', JWT_SECRET: 'p'.repeat(32) }).production);
});

t.test('the embedded default keeps a generated JWT secret in the data folder', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'deskroute-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = loadConfig({ DATA_DIR: dir });
  const first = await resolveJwtSecret(config);
  t.ok(first.length >= 32);
  t.equal(await resolveJwtSecret(config), first, 'the same secret after a restart');
  t.equal((await stat(path.join(dir, 'jwt-secret'))).mode & 0o777, 0o600, 'readable by the owner only');
  t.equal((await readFile(path.join(dir, 'jwt-secret'), 'utf8')).trim(), first);
  t.equal(await resolveJwtSecret(loadConfig({ DATA_DIR: dir, JWT_SECRET: 's'.repeat(40) })), 's'.repeat(40));
});

t.test('migrations are idempotent', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  t.same(await migrateToLatest(database.db), [], 'a migrated database has nothing pending');
  t.same(await migrateToLatest(database.db), []);
});

t.test('the first owner is created once, from the environment or with a generated password', async (t) => {
  const generated = await createTestDatabase();
  t.teardown(() => generated.drop());
  const first = await ensureFirstAdmin(generated.db, loadConfig({}));
  t.equal(first.created, true);
  if (!first.created || !first.generatedPassword) throw new Error('expected a generated password');
  t.equal(first.email, DEFAULT_ADMIN_EMAIL);
  const row = await generated.db.selectFrom('agents').selectAll().executeTakeFirstOrThrow();
  t.equal(row.role, 'owner');
  t.ok(await verifyPassword(first.generatedPassword, row.password_hash), 'the printed password works');
  t.notOk(row.password_hash?.includes(first.generatedPassword), 'only a hash is stored');
  t.same(await ensureFirstAdmin(generated.db, loadConfig({})), { created: false }, 'never again');

  const configured = await createTestDatabase();
  t.teardown(() => configured.drop());
  const env = {
    DESKROUTE_ADMIN_EMAIL: 'boss@example.com',
    DESKROUTE_ADMIN_PASSWORD: 'a configured passphrase',
  };
  const results = await Promise.all([1, 2, 3].map(() => ensureFirstAdmin(configured.db, loadConfig(env))));
  t.equal(results.filter((r) => r.created).length, 1, 'instances starting together create one owner');
  const owners = await configured.db.selectFrom('agents').selectAll().execute();
  t.equal(owners.length, 1);
  t.equal(owners[0]?.email, 'boss@example.com');
  t.ok(await verifyPassword('a configured passphrase', owners[0]!.password_hash));
});
