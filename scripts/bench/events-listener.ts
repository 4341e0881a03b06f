// Started by scripts/bench/events.ts as a child process: the far end of what the server sends,
// in an event loop of its own so that neither the load generator nor the receivers delay the
// other's clock readings. Two roles:
//   - webhook receivers: POST /hook/<name> answers 204 at once and notes when each delivery came;
//   - SSE subscribers: opens N raw http streams on /v1/events/stream and notes when each
//     subscriber got each ticket.created.
// Times are `performance.timeOrigin + performance.now()` (milliseconds of the wall clock with
// sub-millisecond resolution), the same clock as the bench process reads, so the two compare.
import http from 'node:http';

if (!process.send) {
  process.stderr.write('usage: started by scripts/bench/events.ts\n');
  process.exit(2);
}
const send = (m: unknown) => process.send!(m);
const now = () => performance.timeOrigin + performance.now();

interface Delivery {
  at: number;
  hook: string;
  type: string;
  ticketId: string | null;
}
let deliveries: Delivery[] = [];
let seenDeliveryIds = new Set<string>();
let duplicates = 0;
let unsigned = 0;

const receiver = http.createServer((req, res) => {
  const at = now();
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.writeHead(204).end();
    const hook = (req.url ?? '').replace(/^\/hook\//, '');
    const id = req.headers['webhook-id'];
    if (!req.headers['webhook-signature']) unsigned++;
    // A redelivery of one attempt (same webhook-id to the same hook) is what "each attempt
    // once across processes" forbids: counted, not recorded twice.
    if (typeof id === 'string') {
      const key = `${hook} ${id}`;
      if (seenDeliveryIds.has(key)) {
        duplicates++;
        return;
      }
      seenDeliveryIds.add(key);
    }
    let event: { type?: string; ticket_id?: string | null } = {};
    try {
      event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {}
    deliveries.push({ at, hook, type: String(event.type), ticketId: event.ticket_id ?? null });
  });
});
receiver.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));

interface Subscriber {
  request: http.ClientRequest;
  status: number | null;
  /** ticket id -> when this subscriber got its ticket.created */
  created: Map<string, number>;
  events: number;
  heartbeats: number;
  ended: boolean;
}
let subscribers: Subscriber[] = [];
const streamAgent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });

const TICKET_ID = /"ticket_id":"([0-9a-f-]{36})"/;

/** Parses SSE from one response: messages are separated by a blank line (WHATWG HTML, 9.2). */
function readStream(sub: Subscriber, res: http.IncomingMessage) {
  let buffer = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    const at = now();
    buffer += chunk;
    let end = buffer.search(/\r?\n\r?\n/);
    while (end !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(buffer[end] === '\r' ? end + 4 : end + 2).replace(/^\r?\n/, '');
      let type = 'message';
      let data = '';
      let comment = false;
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':')) comment = true;
        else if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
      }
      if (comment && !data) sub.heartbeats++;
      else {
        sub.events++;
        if (type === 'ticket.created') {
          // Not JSON.parse: 1,000 subscribers parse every event, and a listener that falls behind
          // would stamp arrivals late and charge its own delay to the server.
          const ticketId = TICKET_ID.exec(data)?.[1];
          if (ticketId && !sub.created.has(ticketId)) sub.created.set(ticketId, at);
        }
      }
      end = buffer.search(/\r?\n\r?\n/);
    }
  });
  res.on('end', () => {
    sub.ended = true;
  });
  res.on('error', () => {
    sub.ended = true;
  });
}

function subscribe(url: string, tokens: string[], count: number): Promise<void> {
  return new Promise((resolve) => {
    let pending = count;
    const done = () => {
      if (--pending === 0) resolve();
    };
    if (count === 0) resolve();
    for (let i = 0; i < count; i++) {
      const sub: Subscriber = {
        request: null as unknown as http.ClientRequest,
        status: null,
        created: new Map(),
        events: 0,
        heartbeats: 0,
        ended: false,
      };
      subscribers.push(sub);
      sub.request = http.get(
        url,
        {
          agent: streamAgent,
          headers: { authorization: `Bearer ${tokens[i % tokens.length]}`, accept: 'text/event-stream' },
        },
        (res) => {
          sub.status = res.statusCode ?? 0;
          if (sub.status === 200) readStream(sub, res);
          else {
            res.resume();
            sub.ended = true;
          }
          done();
        },
      );
      sub.request.on('error', () => {
        sub.ended = true;
        if (sub.status === null) {
          sub.status = 0;
          done();
        }
      });
    }
  });
}

function stats(latencies: number[]) {
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies.length === 0
      ? null
      : latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(p * latencies.length) - 1))]!;
  return { n: latencies.length, p50: q(0.5), p99: q(0.99), max: q(1), min: q(0) };
}

type Command =
  | { id: number; cmd: 'reset' }
  | { id: number; cmd: 'counts' }
  | { id: number; cmd: 'timeline'; from: number; to: number }
  | { id: number; cmd: 'deliveries'; hook: string; sent: [string, number][]; from: number; to: number }
  | { id: number; cmd: 'subscribe'; url: string; tokens: string[]; count: number; batch: number }
  | { id: number; cmd: 'streams'; sent: [string, number][] }
  | { id: number; cmd: 'receptions' }
  | { id: number; cmd: 'unsubscribe' }
  | { id: number; cmd: 'stop' };

process.on('message', async (m: Command) => {
  switch (m.cmd) {
    case 'reset':
      deliveries = [];
      seenDeliveryIds = new Set();
      duplicates = 0;
      unsigned = 0;
      return send({ id: m.id });
    case 'counts': {
      const perHook: Record<string, number> = {};
      for (const d of deliveries) perHook[d.hook] = (perHook[d.hook] ?? 0) + 1;
      return send({ id: m.id, total: deliveries.length, perHook, duplicates, unsigned });
    }
    case 'timeline': {
      // Deliveries received in each second from `from` until `to`.
      const seconds = new Array<number>(Math.max(1, Math.ceil((m.to - m.from) / 1000))).fill(0);
      for (const d of deliveries) {
        if (d.at >= m.from && d.at < m.to) seconds[Math.floor((d.at - m.from) / 1000)]!++;
      }
      return send({ id: m.id, seconds });
    }
    case 'deliveries': {
      // Latency of each created ticket's first ticket.created delivery to `hook`, from its 201.
      const sent = new Map(m.sent);
      const latencies: number[] = [];
      const got = new Set<string>();
      let inWindow = 0;
      let last = 0;
      for (const d of deliveries) {
        if (d.hook !== m.hook) continue;
        if (d.at >= m.from && d.at < m.to) inWindow++;
        last = Math.max(last, d.at);
        if (d.type !== 'ticket.created' || !d.ticketId || got.has(d.ticketId)) continue;
        const t201 = sent.get(d.ticketId);
        if (t201 === undefined) continue;
        got.add(d.ticketId);
        latencies.push(d.at - t201);
      }
      return send({ id: m.id, ...stats(latencies), missing: sent.size - got.size, inWindow, last });
    }
    case 'subscribe': {
      // In batches, so that 1,000 connections do not all knock at once.
      for (let opened = 0; opened < m.count; opened += m.batch) {
        await subscribe(m.url, m.tokens, Math.min(m.batch, m.count - opened));
      }
      const statuses: Record<string, number> = {};
      for (const s of subscribers) statuses[String(s.status)] = (statuses[String(s.status)] ?? 0) + 1;
      return send({
        id: m.id,
        open: subscribers.filter((s) => s.status === 200 && !s.ended).length,
        statuses,
      });
    }
    case 'streams': {
      const latencies: number[] = [];
      let missing = 0;
      let events = 0;
      let heartbeats = 0;
      const live = subscribers.filter((s) => s.status === 200);
      for (const s of live) {
        events += s.events;
        heartbeats += s.heartbeats;
        for (const [ticketId, t201] of m.sent) {
          const at = s.created.get(ticketId);
          if (at === undefined) missing++;
          else latencies.push(at - t201);
        }
      }
      return send({
        id: m.id,
        ...stats(latencies),
        missing,
        subscribers: live.length,
        ended: live.filter((s) => s.ended).length,
        events,
        heartbeats,
      });
    }
    case 'receptions':
      return send({ id: m.id, n: subscribers.reduce((a, s) => a + s.created.size, 0) });
    case 'unsubscribe':
      for (const s of subscribers) s.request.destroy();
      subscribers = [];
      return send({ id: m.id });
    case 'stop':
      for (const s of subscribers) s.request.destroy();
      receiver.closeAllConnections();
      receiver.close();
      send({ id: m.id });
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
send({ port: (receiver.address() as { port: number }).port });
