import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tap from 'tap';

// No import cycle anywhere under src/: a cycle between two domains means neither can be read,
// tested or changed alone (issue 13 found tickets/service.ts and automation-rules/runner.ts
// importing each other). Type-only imports count too: they tie the modules' designs together
// just the same, even though Node erases them.

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(
    entries.map((e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return sourceFiles(full);
      return Promise.resolve(e.name.endsWith('.ts') ? [full] : []);
    }),
  );
  return files.flat();
}

// `import ... from './x.ts'`, `export ... from './x.ts'`, `import './x.ts'` and `import('./x.ts')`:
// the sources write every relative import with its extension (Node's type stripping needs it).
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

/** Relative imports of each file, as absolute paths. */
export async function importGraph(root: string): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const file of await sourceFiles(root)) {
    // Comments may quote imports; they import nothing.
    const text = (await readFile(file, 'utf8')).replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    const targets = [...text.matchAll(SPECIFIER)].map((m) => path.resolve(path.dirname(file), m[1]!));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Every cycle's smallest witness: a path that comes back to where it started. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

tap.test('the walker finds a cycle when there is one', async (t) => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a', 'd']],
    ['d', []],
  ]);
  t.same(findCycles(graph), [['a', 'b', 'c', 'a']]);
  t.same(
    findCycles(
      new Map([
        ['a', ['b']],
        ['b', []],
      ]),
    ),
    [],
  );
});

tap.test('the walker reads the imports of a real file', async (t) => {
  const graph = await importGraph(SRC);
  const scheduler = graph.get(path.join(SRC, 'scheduler.ts'));
  t.ok(scheduler?.includes(path.join(SRC, 'db/outage.ts')), 'scheduler.ts imports db/outage.ts');
  t.ok(graph.size > 50, `walks every source file (${graph.size})`);
});

tap.test('no import cycle under src/', async (t) => {
  const cycles = findCycles(await importGraph(SRC));
  const shown = cycles.map((c) => c.map((f) => path.relative(SRC, f)).join(' -> '));
  t.same(shown, [], 'no module imports itself through others');
});
