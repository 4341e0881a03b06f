// node scripts/bench/webhook-post-floor.ts [--posts 5000] [--concurrency 25]
//
// The floor under a webhook delivery's cost: the CPU one bare HTTP POST costs the sender (a
// ticket-sized JSON body) to a receiver in a child process answering 204, on a fresh connection
// per POST (`agent: false`, as the delivery worker did before 2026-12-05) and on kept
// connections (a keep-alive agent, as it does now: src/domains/webhooks/http-post.ts). No
// database, no signing, no job. It bounds bench:events (a): a creation with 10 subscriptions to
// every event makes ~20 deliveries, so 20 x this figure is the least a creation's webhooks can
// cost while deliveries keep pace.
import { fork } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

if (process.argv[2] === 'receiver') {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
} else {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { posts: { type: 'string', default: '5000' }, concurrency: { type: 'string', default: '25' } },
  });
  const posts = Number(values.posts);
  const concurrency = Number(values.concurrency);
  const child = fork(new URL(import.meta.url).pathname, ['receiver']);
  const port = await new Promise<number>((resolve) => child.once('message', (p) => resolve(p as number)));
  const body = JSON.stringify({ id: 'te_1', type: 'ticket.created', payload: { subject: 'x'.repeat(600) } });
  const kept = new http.Agent({ keepAlive: true, maxFreeSockets: 64, scheduling: 'lifo' });
  const post = (agent: http.Agent | false) =>
    new Promise<void>((resolve) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve());
        },
      );
      req.on('error', () => resolve());
      req.end(body);
    });
  const run = async (n: number, agent: http.Agent | false) => {
    for (let i = 0; i < n; i += concurrency)
      await Promise.all(Array.from({ length: concurrency }, () => post(agent)));
  };
  const perPost: Record<string, number> = {};
  for (const [name, agent] of [
    ['fresh connection per POST', false],
    ['kept connections', kept],
  ] as const) {
    await run(500, agent); // warm-up
    const cpu = process.cpuUsage();
    const started = performance.now();
    await run(posts, agent);
    const used = process.cpuUsage(cpu);
    const seconds = (performance.now() - started) / 1000;
    perPost[name] = (used.user + used.system) / 1000 / posts;
    console.log(
      `webhook POST floor, ${name}: ${posts} POSTs, ${concurrency} at a time, ${(posts / seconds).toFixed(0)}/s`,
    );
    console.log(
      `  sender CPU per POST ${perPost[name]!.toFixed(3)} ms; x20 deliveries per creation = ${(20 * perPost[name]!).toFixed(2)} ms`,
    );
  }
  console.log(
    `kept / fresh sender CPU per POST: ${(perPost['kept connections']! / perPost['fresh connection per POST']!).toFixed(2)}`,
  );
  kept.destroy();
  child.kill();
}
