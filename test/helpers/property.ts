import path from 'node:path';
import fc from 'fast-check';
import type { Test } from 'tap';

// A fresh seed every run, so CI keeps exploring new cases instead of replaying the same ones;
// FC_SEED=<seed> replays a run, and a failure prints the seed, fast-check's path and the shrunk
// counterexample.
export const SEED = (() => {
  const given = process.env.FC_SEED;
  if (given === undefined || given === '') return Math.floor(Math.random() * 2 ** 31);
  if (!/^-?\d+$/.test(given)) throw new Error(`FC_SEED must be an integer, not ${given}`);
  return Number(given);
})();

// tap runs each test file as its own process, so argv[1] is the file being run.
const REPLAY = `FC_SEED=${SEED} npx tap ${path.relative(process.cwd(), process.argv[1] ?? '')}`;

/**
 * Runs a property with this run's seed and reports to tap: one passing assertion, or one failure
 * carrying fast-check's report (seed, path, counterexample) and the command that replays it.
 */
export function checkProperty<Ts extends [unknown, ...unknown[]]>(
  t: Test,
  name: string,
  property: fc.IProperty<Ts>,
  params: { numRuns: number },
): void {
  const details = fc.check(property, { ...params, seed: SEED });
  if (details.failed) {
    t.fail(`${name}: property failed with seed ${SEED}`, {
      seed: SEED,
      replay: REPLAY,
      error: String(details.errorInstance),
      report: fc.defaultReportMessage(details),
    });
  } else {
    t.pass(`${name}: ${details.numRuns} cases (seed ${SEED})`);
  }
}
