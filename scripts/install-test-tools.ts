// `npm test` runs this first (pretest), after the Node check. test/client-types.test.ts generates a
// client from the committed spec with openapi-typescript, which needs TypeScript 5's compiler API
// and so lives apart from the project's TypeScript 7, in tools/client-codegen with its own lockfile.
// A fresh clone has only the root's node_modules: install it here once, so `npm ci && npm test`
// needs no other step. Costs nothing when it is already there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const tools = fileURLToPath(new URL('../tools/client-codegen/', import.meta.url));
if (!existsSync(`${tools}node_modules/.bin/openapi-typescript`)) {
  process.stdout.write('test tools: installing tools/client-codegen (openapi-typescript)\n');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, ['ci', '--no-audit', '--no-fund', '--prefix', tools], { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
