// Webhook work yields to requests while the process is busy with them (src/jobs/yield.ts):
// the gate's rules with a clock and sleeps of the test's own, then the app's count of requests
// in flight, then the whole path with a real receiver: held requests make the process busy,
// and deliveries still arrive.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { sql } from 'kysely';
import pg from 'pg';
import t from 'tap';
import { consumeFeedBatch } from '../src/domains/events/consumer.ts';
import { dispatchEvents } from '../src/domains/webhooks/delivery.ts';
import { insertWebhook, lockWebhook, updateWebhook } from '../src/domains/webhooks/repository.ts';
import { MAX_WAIT_MS, RequestLoad, YieldGate } from '../src/jobs/yield.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';
import { listenLocal } from './helpers/server.ts';

/** Sleeps the gate asks for, recorded; each ends when the test says or its signal aborts. */
function fakeSleeps() {
  const asked: { ms: number; end: () => void; ended: boolean }[] = [];
  const sleep = (ms: number, wake: AbortSignal) =>
    new Promise<void>((resolve) => {
      const entry = {
        ms,
        ended: false,
        end: () => {
          entry.ended = true;
          resolve();
        },
      };
      asked.push(entry);
      if (wake.aborted) entry.end();
      else wake.addEventListener('abort', entry.end, { once: true });
    });
  return { asked, sleep };
}

/** Lets every promise that can move, move (a few turns of the event loop). */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** A gate with the test's clock and sleeps, driven by sample() (no timer runs). */
function gateFor(requests: number, share: number) {
  const load = new RequestLoad();
  const sleeps = fakeSleeps();
  let clock = 0;
  const changes: boolean[] = [];
  const gate = new YieldGate(
    load,
    { requests, share },
    { sleep: sleeps.sleep, now: () => clock, onChange: (busy) => changes.push(busy) },
  );
  const samples = (n: number) => {
    for (let i = 0; i < n; i++) gate.sample();
  };
  return { load, gate, sleeps, samples, changes, tick: (ms: number) => (clock += ms) };
}

t.test(
  'busy from three quarters of the last second at the threshold, calm again under a quarter at half of it',
  async (t) => {
    const { load, gate, samples, changes } = gateFor(4, 0.1);
    const leave = [load.enter(), load.enter(), load.enter()];
    samples(20); // three in flight: under the threshold of 4
    t.equal(gate.busy, false);
    leave.push(load.enter());
    samples(14);
    t.equal(gate.busy, false, '14 of 20 samples at the threshold');
    samples(1);
    t.equal(gate.busy, true, '15 of 20');
    leave.pop()?.();
    leave.pop()?.();
    t.equal(load.inFlight, 2);
    samples(40);
    t.equal(
      gate.busy,
      true,
      'two in flight, half the threshold, for two windows: yielding answers requests sooner, which is no calm',
    );
    const third = leave.pop()!;
    third();
    third(); // leaving twice counts once
    t.equal(load.inFlight, 1);
    samples(14);
    t.equal(gate.busy, true, 'still 6 of 20 at half the threshold: over a quarter');
    samples(1);
    t.equal(gate.busy, false, '5 of 20');
    leave.pop()?.();
    t.equal(load.inFlight, 0);
    t.same(changes, [true, false]);
  },
);

/** A unit that counts how many units ran at once (`most`). */
function sideBySide() {
  let running = 0;
  let most = 0;
  const unit = async () => {
    running++;
    most = Math.max(most, running);
    await settle();
    running--;
  };
  return { unit, most: () => most };
}

t.test('not busy: units run side by side, with no pause', async (t) => {
  const { gate, sleeps } = gateFor(1, 0.1);
  const { unit, most } = sideBySide();
  await Promise.all([gate.run(unit), gate.run(unit), gate.run(unit)]);
  t.equal(most(), 3);
  t.equal(sleeps.asked.length, 0);
});

t.test('busy: one unit at a time, the next one after the rest its predecessor earned', async (t) => {
  const { load, gate, sleeps, samples, tick } = gateFor(1, 0.1);
  load.enter();
  samples(15);
  t.equal(gate.busy, true);
  const order: string[] = [];
  const unit = (name: string, ms: number) => async () => {
    order.push(`${name} starts`);
    tick(ms);
    await Promise.resolve();
    order.push(`${name} ends`);
    return name;
  };
  const rests = () => sleeps.asked.filter((s) => s.ms !== MAX_WAIT_MS);
  const first = gate.run(unit('first', 20));
  const second = gate.run(unit('second', 500));
  const third = gate.run(unit('third', 1));
  await settle();
  t.equal(await first, 'first', 'a unit is done when its work is: the rest is the next one’s wait');
  t.same(order, ['first starts', 'first ends']);
  t.same(
    rests().map((s) => s.ms),
    [180],
    '20 ms of work at a share of 0.1: the second waits 180 ms',
  );
  rests()[0]!.end();
  t.equal(await second, 'second');
  await settle();
  t.same(order, ['first starts', 'first ends', 'second starts', 'second ends']);
  t.same(
    rests().map((s) => s.ms),
    [180, 2_000],
    '500 ms of work: 4,500 ms of rest, capped at 2 s',
  );
  rests()[1]!.end();
  t.equal(await third, 'third');
});

t.test('the waits end when the load falls', async (t) => {
  const { load, gate, sleeps, samples, tick } = gateFor(1, 0.1);
  const leave = load.enter();
  samples(20);
  let holdFirst!: () => void;
  const first = gate.run(async () => {
    tick(50);
    await new Promise<void>((resolve) => (holdFirst = resolve));
  });
  const second = gate.run(async () => 'second');
  await settle();
  t.ok(
    sleeps.asked.find((s) => s.ms === MAX_WAIT_MS && !s.ended),
    'the second unit waits for its turn',
  );
  holdFirst();
  await first;
  await settle();
  t.same(
    sleeps.asked.filter((s) => s.ms !== MAX_WAIT_MS).map((s) => [s.ms, s.ended]),
    [[450, false]],
    'then for the rest the first earned',
  );
  leave();
  samples(20);
  t.equal(gate.busy, false);
  t.equal(await second, 'second');
  t.ok(
    sleeps.asked.every((s) => s.ended),
    'every rest and wait ended with the load',
  );
});

t.test('a unit waits at most MAX_WAIT_MS for its turn: a stuck one never holds the rest', async (t) => {
  const { load, gate, sleeps, samples } = gateFor(1, 0.1);
  load.enter();
  samples(20);
  let holdFirst!: () => void;
  const first = gate.run(() => new Promise<void>((resolve) => (holdFirst = resolve)));
  const second = gate.run(async () => 'second');
  await settle();
  const wait = sleeps.asked.find((s) => s.ms === MAX_WAIT_MS && !s.ended)!;
  wait.end(); // MAX_WAIT_MS have passed
  t.equal(await second, 'second', 'ran while the first was still running');
  holdFirst();
  await first;
});

t.test('with WEBHOOK_YIELD_REQUESTS=0 the gate never yields', async (t) => {
  const { load, gate, samples } = gateFor(0, 0.1);
  load.enter();
  samples(20);
  t.equal(gate.busy, false, 'any number in flight is not busy');
  gate.start();
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(gate.busy, false);
  gate.stop();
});

t.test('with a share of 100 % units are never held back', async (t) => {
  const { load, gate, samples, sleeps } = gateFor(1, 1);
  load.enter();
  samples(20);
  t.equal(gate.busy, true);
  const { unit, most } = sideBySide();
  await Promise.all([gate.run(unit), gate.run(unit)]);
  t.equal(most(), 2);
  t.equal(sleeps.asked.length, 0);
});

/** A real receiver that records what it gets. */
async function startReceiver(t: { teardown(fn: () => unknown): void }) {
  const received: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(204).end();
    });
  });
  return { received, url: `http://127.0.0.1:${await listenLocal(t, server)}/hook` };
}

/** A receiver that answers nothing until released (then 204 to all, held or not). */
async function startHoldingReceiver(t: { teardown(fn: () => unknown): void }) {
  const held: http.ServerResponse[] = [];
  let released = false;
  const server = http.createServer((req, res) => {
    req.resume();
    if (released) res.writeHead(204).end();
    else held.push(res);
  });
  const port = await listenLocal(t, server);
  return {
    url: `http://127.0.0.1:${port}/held`,
    release() {
      released = true;
      for (const res of held.splice(0)) res.writeHead(204).end();
    },
  };
}

async function until<T>(what: string, probe: () => T | undefined | null | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test(
  'through the app: requests count while in flight, and deliveries go on while it is busy',
  async (t) => {
    const ctx = await buildTestApp(
      t,
      {
        WEBHOOKS_ALLOW_PRIVATE: 'true',
        WEBHOOK_YIELD_REQUESTS: '2',
        WEBHOOK_SHARE_UNDER_LOAD_PERCENT: '1',
        WEBHOOK_TIMEOUT_MS: '60000',
      },
      { jobs: true },
    );
    const gate = ctx.jobs!.gate;
    const load = ctx.app.requestLoad;
    const { token } = await agentWithToken(ctx, { role: 'admin' });
    const departmentId = await makeDepartment(ctx.db);
    const receiver = await startReceiver(t);
    const hook = await ctx.request({
      method: 'POST',
      url: '/v1/webhooks',
      token,
      payload: { url: receiver.url, event_types: ['ticket.created'] },
    });
    t.equal(hook.statusCode, 201, hook.body);
    t.equal(load.inFlight, 0, 'answered requests no longer count');

    // A JSON body still arriving is a slow client, not work: it does not count.
    const slow = new PassThrough();
    slow.write('{"subject": "held open');
    const slowAnswer = ctx.app.inject({
      method: 'POST',
      url: '/v1/tickets',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: slow,
    });
    // Nor does an anonymous upload (the public form's files), which its handler reads itself.
    const form = new PassThrough();
    form.write('--b0undary\r\nContent-Disposition: form-data; name="subject"\r\n\r\nheld open\r\n');
    const formAnswer = ctx.app.inject({
      method: 'POST',
      url: '/v1/public/tickets',
      headers: { 'content-type': 'multipart/form-data; boundary=b0undary' },
      payload: form,
    });
    // Nor an agent's: a file over a slow link is no work until it has arrived.
    const ticket = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token,
      payload: {
        subject: 'Files',
        department_id: departmentId,
        contact: { email: 'files@example.com' },
        message: { body: 'hello' },
      },
    });
    t.equal(ticket.statusCode, 201, ticket.body);
    const attachment = new PassThrough();
    attachment.write(
      '--b0undary\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"\r\n' +
        'Content-Type: text/plain\r\n\r\nthe first half, ',
    );
    const attachmentAnswer = ctx.app.inject({
      method: 'POST',
      url: `/v1/tickets/${ticket.json().id}/attachments`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'multipart/form-data; boundary=b0undary' },
      payload: attachment,
    });
    // Nor two import files, whose bodies the handler streams to the store.
    const bodies = [new PassThrough(), new PassThrough()];
    const uploads = bodies.map((body, i) => {
      body.write(Buffer.alloc(1000, 'x'));
      return ctx.app.inject({
        method: 'PUT',
        url: `/v1/imports/files/held-${i}?source=yield&filename=held.bin`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
        payload: body,
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.equal(load.inFlight, 0, 'requests whose bodies are still arriving do not count');

    // Two pings held by their receiver: requests at work until it answers.
    const holder = await startHoldingReceiver(t);
    const pinged = await ctx.request({
      method: 'POST',
      url: '/v1/webhooks',
      token,
      payload: { url: holder.url, event_types: ['ticket.created'], active: false },
    });
    t.equal(pinged.statusCode, 201, pinged.body);
    const pings = [0, 1].map(() =>
      ctx.request({ method: 'POST', url: `/v1/webhooks/${pinged.json().id}/ping`, token }),
    );
    await until('two requests in flight', () => load.inFlight === 2);
    await until('the gate to call the process busy', () => gate.busy);

    const created: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await ctx.request({
        method: 'POST',
        url: '/v1/tickets',
        token,
        payload: {
          subject: `Under load ${i}`,
          department_id: departmentId,
          contact: { email: `yield-${i}@example.com` },
          message: { body: 'hello' },
        },
      });
      t.equal(res.statusCode, 201, res.body);
      created.push(res.json().id);
    }
    await until('every creation delivered', () =>
      created.every((id) => receiver.received.some((body) => body.includes(id))),
    );
    t.equal(gate.busy, true, 'delivered while webhook work was yielding');

    holder.release();
    for (const res of await Promise.all(pings)) t.equal(res.statusCode, 200, res.body);
    for (const body of bodies) body.end();
    for (const res of await Promise.all(uploads)) t.equal(res.statusCode, 201, res.body);
    attachment.end('the second half.\r\n--b0undary--\r\n');
    const staged = await attachmentAnswer;
    t.equal(staged.statusCode, 201, staged.body);
    t.equal(staged.json().data[0].size_bytes, 'the first half, the second half.'.length, 'the whole file');
    slow.end('"}');
    t.equal((await slowAnswer).statusCode, 400, 'the slow one ends too (its body lacks fields)');
    form.end('--b0undary--\r\n');
    t.equal((await formAnswer).statusCode, 400, 'and the form (it lacks fields)');
    await until('the load to fall', () => load.inFlight === 0 && !gate.busy);
  },
);

t.test('a live stream stops counting once it starts', async (t) => {
  const ctx = await buildTestApp(t);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (ctx.app.server.address() as AddressInfo).port;
  const req = http.get({
    host: '127.0.0.1',
    port,
    path: '/v1/events/stream',
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
  });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  t.equal(res.statusCode, 200);
  t.equal(ctx.app.requestLoad.inFlight, 0, 'the open stream is not a request in flight');
  req.destroy();
  res.destroy();
});

t.test(
  'a subscription gets the events written after it was created or turned on, however late the dispatch',
  async (t) => {
    // No job workers: the test runs the webhooks' feed consumer itself, late on purpose.
    const ctx = await buildTestApp(t, { WEBHOOKS_ALLOW_PRIVATE: 'true' });
    const { token } = await agentWithToken(ctx, { role: 'admin' });
    const departmentId = await makeDepartment(ctx.db);
    const dispatch = () =>
      consumeFeedBatch(ctx.db, 'webhooks', 1_000, async (trx, rows) => {
        await dispatchEvents({ queue: undefined }, trx, rows);
      });
    await dispatch(); // the consumer starts at the head
    const create = async (subject: string) => {
      const res = await ctx.request({
        method: 'POST',
        url: '/v1/tickets',
        token,
        payload: {
          subject,
          department_id: departmentId,
          contact: { email: `${subject}@example.com` },
          message: { body: 'hello' },
        },
      });
      t.equal(res.statusCode, 201, res.body);
      return res.json().id as string;
    };
    const before = await create('before');
    const hook = await ctx.request({
      method: 'POST',
      url: '/v1/webhooks',
      token,
      payload: { url: 'http://127.0.0.1:9/hook', event_types: ['ticket.created'] },
    });
    t.equal(hook.statusCode, 201, hook.body);
    const whileOn = await create('while-on');
    await dispatch(); // late for 'before' (written before the subscription), on time for 'while-on'
    const setActive = async (active: boolean) => {
      const res = await ctx.request({
        method: 'PATCH',
        url: `/v1/webhooks/${hook.json().id}`,
        token,
        payload: { active },
      });
      t.equal(res.statusCode, 200, res.body);
    };
    await setActive(false);
    const whileOff = await create('while-off');
    await setActive(true);
    const betweenOns = await create('between-ons');
    await setActive(true); // on already: no new start, so 'between-ons' stays its own
    const afterwards = await create('afterwards');

    // Late for 'while-off' (written while it was off), in time for 'afterwards'. What was written
    // while it was on but dispatched only after it was turned off is not its own either: a
    // subscription gets what the dispatch reaches while it is on, from when it was last turned on.
    await dispatch();
    const delivered = await ctx.db
      .selectFrom('webhook_deliveries')
      .select('ticket_id')
      .where('webhook_id', '=', hook.json().id)
      .execute();
    t.same(
      delivered.map((d) => d.ticket_id).sort(),
      [whileOn, betweenOns, afterwards].sort(),
      'neither the ticket from before it existed, nor the one from while it was off',
    );
    t.notOk(delivered.some((d) => d.ticket_id === before || d.ticket_id === whileOff));

    // The change that turns a subscription on is its own: its webhook.updated goes to it.
    const watcher = await ctx.request({
      method: 'POST',
      url: '/v1/webhooks',
      token,
      payload: { url: 'http://127.0.0.1:9/settings', event_types: ['webhook.updated'], active: false },
    });
    t.equal(watcher.statusCode, 201, watcher.body);
    const watcherId = watcher.json().id as string;
    const on = await ctx.request({
      method: 'PATCH',
      url: `/v1/webhooks/${watcherId}`,
      token,
      payload: { active: true },
    });
    t.equal(on.statusCode, 200, on.body);
    await dispatch();
    const bodies = await ctx.db
      .selectFrom('webhook_deliveries as d')
      .innerJoin('webhook_bodies as b', 'b.event_id', 'd.event_id')
      .select(['d.event_type', 'b.body'])
      .where('d.webhook_id', '=', watcherId)
      .execute();
    t.same(
      bodies.map((d) => d.event_type),
      ['webhook.updated'],
      'the event of its own turning on, nothing from before',
    );
    t.match(JSON.parse(bodies[0]?.body ?? '{}'), { payload: { webhook: { id: watcherId, active: true } } });
  },
);

t.test(
  'turned on by a transaction that already has an id: a later one that committed first does not hide its own event',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'needs a second connection to commit a transaction in between (PGlite has one)'
        : false,
  },
  async (t) => {
    const ctx = await buildTestApp(t);
    const { agent } = await agentWithToken(ctx, { role: 'admin' });
    const hook = await insertWebhook(ctx.db, {
      url: 'http://127.0.0.1:9/hook',
      event_types: [],
      department_id: null,
      active: false,
      description: '',
      secret: 'whsec_dGVzdA==',
      created_by: agent.id,
    });
    const other = new pg.Client({ connectionString: ctx.database.url! });
    await other.connect();
    t.teardown(() => other.end());
    const { own, since } = await ctx.db.transaction().execute(async (trx) => {
      await lockWebhook(trx, hook.id); // takes a transaction id
      const { rows } = await sql<{ x: string }>`select pg_current_xact_id()::text as x`.execute(trx);
      // A transaction that begins after ours and commits before our update: the snapshot's
      // horizon is now past our own id.
      await other.query('begin');
      await other.query('select pg_current_xact_id()');
      await other.query('commit');
      const after = await updateWebhook(trx, hook.id, { active: true }, { turnedOn: true });
      return { own: BigInt(rows[0]!.x), since: BigInt(after.active_since_tx) };
    });
    t.ok(since <= own, `its own transaction's events count (since ${since}, own ${own})`);
  },
);
