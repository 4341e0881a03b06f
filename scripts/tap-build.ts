// `npm test` runs this first (pretest). tap 21 rebuilds its plugin set when it differs from
// .taprc, but only after the run that notices has already spawned the test files with the old
// plugins (after `npm ci`, that is @tapjs/typescript, which breaks with TypeScript 7: "no tests
// found"). So build here when the built set is stale; when it is current this costs ~0.3 s
// instead of the ~6 s of an unconditional `tap build`.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

async function stale(): Promise<boolean> {
  try {
    const { TapConfig } = await import('@tapjs/config');
    const { signature } = await import('@tapjs/test');
    const config = await TapConfig.load();
    return config.pluginSignature !== signature.trim();
  } catch {
    return true; // tap's internals moved: building is always safe
  }
}

if (await stale()) {
  process.stdout.write('tap: building the plugin set configured in .taprc\n');
  const tap = createRequire(import.meta.url)
    .resolve('tap/package.json')
    .replace(/package\.json$/, 'dist/esm/run.mjs');
  const result = spawnSync(process.execPath, [tap, 'build'], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
