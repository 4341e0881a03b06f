import { execFile } from 'node:child_process';
import { access, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { agentWithToken, buildTestApp, PASSWORD } from './helpers/app.ts';

// A client generated from the committed spec (openapi-typescript + openapi-fetch) must compile
// an ordinary integration without casts, refuse the mistakes the spec knows about, and work
// against the real server. The generator lives in tools/client-codegen: it needs TypeScript 5's
// compiler API, which the project's TypeScript 7 (native) does not have.

const execute = promisify(execFile);
// Without tap's loaders (NODE_OPTIONS): the tools run as they would from a shell.
const { NODE_OPTIONS: _loaders, ...env } = process.env;
const run = (file: string, args: string[]) => execute(file, args, { env });
const root = fileURLToPath(new URL('..', import.meta.url));
const generator = join(root, 'tools/client-codegen/node_modules/.bin/openapi-typescript');
// The project's TypeScript 7; its lib/tsc.js starts the native compiler.
const tsc = join(root, 'node_modules/typescript/lib/tsc.js');

await access(generator).catch(() => {
  throw new Error(
    'openapi-typescript is missing: `npm test` installs it (scripts/install-test-tools.ts), or run `npm ci --prefix tools/client-codegen`',
  );
});

// Inside the repository (git-ignored), so the copies resolve openapi-fetch and @types/node.
await mkdir(join(root, '.scratch'), { recursive: true });
const dir = await mkdtemp(join(root, '.scratch', 'client-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

await run(process.execPath, [generator, join(root, 'openapi/openapi.json'), '-o', join(dir, 'deskroute.ts')]);
for (const file of ['scenario.ts', 'mistakes.ts'])
  await copyFile(join(root, 'test/client', file), join(dir, file));

const DIRECTIVE = '// @ts-expect-error';
const mistakes = await readFile(join(dir, 'mistakes.ts'), 'utf8');
// The same file without the directives, line numbers kept: each marked line must fail alone.
await writeFile(join(dir, 'mistakes-bare.ts'), mistakes.replaceAll(DIRECTIVE, '//'));
const expectedErrorLines = mistakes
  .split('\n')
  .flatMap((line, i) => (line.trim().startsWith(DIRECTIVE) ? [i + 2] : []));

async function typecheck(files: string[]) {
  const name = `tsconfig-${files.length}-${files[0]}.json`;
  await writeFile(
    join(dir, name),
    JSON.stringify({
      compilerOptions: {
        target: 'es2024',
        lib: ['es2024'],
        module: 'nodenext',
        moduleResolution: 'nodenext',
        types: ['node'],
        strict: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        verbatimModuleSyntax: true,
        noUncheckedIndexedAccess: true,
        skipLibCheck: true,
      },
      files,
    }),
  );
  try {
    const { stdout } = await run(process.execPath, [tsc, '-p', join(dir, name), '--pretty', 'false']);
    return { ok: true, output: stdout };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

t.test('the scenario compiles without casts, and each mistake is refused', async (t) => {
  const scenario = await readFile(join(root, 'test/client/scenario.ts'), 'utf8');
  const code = scenario.replace(/\/\/.*$/gm, '');
  t.notMatch(code, /\bas\s+(?!const\b)[A-Za-z{[(]/, 'no `as` casts');
  t.notMatch(code, /:\s*any\b|<any>/, 'no any types');
  const checked = await typecheck(['scenario.ts', 'mistakes.ts']);
  t.ok(checked.ok, `tsc passes (every @ts-expect-error is used):\n${checked.output}`);

  t.ok(expectedErrorLines.length >= 12, `${expectedErrorLines.length} mistakes`);
  const bare = await typecheck(['mistakes-bare.ts']);
  t.notOk(bare.ok, 'without the directives, the mistakes do not compile');
  const errorLines = new Set(
    [...bare.output.matchAll(/mistakes-bare\.ts\((\d+),\d+\): error/g)].map((m) => Number(m[1])),
  );
  for (const line of expectedErrorLines) t.ok(errorLines.has(line), `line ${line} is an error`);
});

interface Outcome {
  departmentId: string;
  ticketId: string;
  ticketLocation: string | null;
  rule: unknown;
  reportRows: number;
  ticketsListed: number;
  goal: { within: string; countedWithinSeconds: number; metPct: number | null } | null;
}

t.test('the generated client works against the real server', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent } = await agentWithToken(ctx, { role: 'admin' });
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  // test/client stays out of the main typecheck (it needs the generated file): typed here.
  const { scenario }: { scenario: (baseUrl: string, email: string, password: string) => Promise<Outcome> } =
    await import(pathToFileURL(join(dir, 'scenario.ts')).href);
  const result = await scenario(address, agent.email, PASSWORD);
  t.equal(result.ticketLocation, `/v1/tickets/${result.ticketId}`);
  t.match(result.rule, {
    name: 'Social media goes to Marketing',
    conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of' }] }, {}, {}, {}] },
    actions: [{ type: 'transfer', department_id: result.departmentId }, {}, {}],
  });
  t.equal(result.ticketsListed, 1, 'GET /v1/tickets without limit or sort');
  t.ok(Number.isInteger(result.reportRows), 'the report answered');
  t.same(
    result.goal,
    { within: '24h', countedWithinSeconds: 85827.493, metPct: null },
    'a goal, read through the generated types (no resolutions yet: no share)',
  );
});
