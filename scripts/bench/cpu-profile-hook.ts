// Loaded with --import into a bench's server process: a V8 CPU profile of exactly the span the
// bench asks for over IPC ({ profile: 'start' } ... { profile: 'stop', file }), so that start-up
// (module loading, schema compilation) stays out of it, as Node's --cpu-prof cannot.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 200 });
process.on('message', async (m: { profile?: 'start' | 'stop'; file?: string }) => {
  if (m.profile === 'start') {
    await session.post('Profiler.start');
    process.send?.({ profiling: true });
  } else if (m.profile === 'stop' && m.file) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(m.file, JSON.stringify(profile));
    process.send?.({ profiled: m.file });
  }
});
