// The SLA core stays pure like the modules it builds on: it reaches only the rule engine and
// business time, and no package that does I/O, so the write path, the timer job and the reports
// can all call it, and a test needs no database.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
const PURE = ['sla', 'rule-engine', 'business-time'];
const PACKAGES = new Set(['temporal-polyfill', 're2js']);
// Static imports and re-exports (possibly over several lines), bare imports, dynamic imports.
const SPECIFIER =
  /^(?:import|export)\b[^;]*?\bfrom\s*['"]([^'"]+)['"]|^import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]/gm;

t.test(
  'src/sla, src/rule-engine and src/business-time import only each other and pure packages',
  async (t) => {
    const problems: string[] = [];
    let files = 0;
    for (const folder of PURE) {
      for (const name of await readdir(path.join(SRC, folder))) {
        if (!name.endsWith('.ts')) continue;
        files++;
        const file = path.join(SRC, folder, name);
        const text = (await readFile(file, 'utf8'))
          .replace(/\/\*[\s\S]*?\*\//g, '')
          .replace(/^\s*\/\/.*$/gm, '');
        for (const [, staticSpec, dynamicSpec] of text.matchAll(SPECIFIER)) {
          const spec = staticSpec ?? dynamicSpec;
          if (spec!.startsWith('.')) {
            const top = path.relative(SRC, path.resolve(path.dirname(file), spec!)).split(path.sep)[0]!;
            if (!PURE.includes(top)) problems.push(`${folder}/${name} imports ${spec}`);
          } else if (!PACKAGES.has(spec!)) problems.push(`${folder}/${name} imports ${spec}`);
        }
        if (/\bDate\.now\(|new Date\(\)|performance\.now\(|process\./.test(text)) {
          problems.push(`${folder}/${name} reads the clock or the process`);
        }
      }
    }
    t.ok(files >= 15, `checked ${files} files`);
    t.same(problems, []);
  },
);
