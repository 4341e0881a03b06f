// Writes openapi/openapi.json from the route schemas (npm run openapi); `--check` fails when
// the committed file differs, as CI and the test suite do.
import { readFile, writeFile } from 'node:fs/promises';
import { generateOpenApi } from './openapi-document.ts';

const target = new URL('../openapi/openapi.json', import.meta.url);
const generated = await generateOpenApi();
if (process.argv.includes('--check')) {
  const committed = await readFile(target, 'utf8').catch(() => '');
  if (committed !== generated) {
    process.stderr.write('openapi/openapi.json is stale: run `npm run openapi` and commit it.\n');
    process.exit(1);
  }
  process.stdout.write('openapi/openapi.json is current.\n');
} else {
  await writeFile(target, generated);
  process.stdout.write(`wrote ${target.pathname}\n`);
}
