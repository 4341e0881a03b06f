import type { AddressInfo } from 'node:net';
import pino from 'pino';
import t from 'tap';
import { filesOfRecords, uploadFiles } from '../scripts/convert/upload-files.ts';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';

// Issue 16's "Done when": exports round-trip into a second help desk through the importer. Help
// desk A lives through the API (tickets, replies, notes, a transfer, an assignment, tags, a
// resolution, a customer reopening it, a rating, a call, a new priority and subject); its export
// in the import format, together with its agents and departments, is imported into help desk B,
// and B then shows the same tickets with the same history and the same report figures.

const log = pino({ level: 'silent' });
const a = await buildTestApp(t);
const b = await buildTestApp(t);
const sales = await makeDepartment(a.db, 'Sales');
const support = await makeDepartment(a.db, 'Support');
const { token: adminA, agent: ownerA } = await agentWithToken(a, { role: 'admin', name: 'Ann Admin' });
const { token: solver, agent: solverAgent } = await agentWithToken(a, {
  name: 'Sol Ver',
  departments: [
    [sales, 'solver'],
    [support, 'solver'],
  ],
});
const { token: adminB } = await agentWithToken(b, { role: 'admin' });

async function ok(
  ctx: TestContext,
  token: string,
  method: 'GET' | 'POST' | 'PATCH',
  url: string,
  payload?: unknown,
) {
  const res = await ctx.request({
    method,
    url,
    token,
    ...(payload !== undefined && { payload: payload as object }),
  });
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

// Help desk A's life.
for (let i = 0; i < 4; i++) {
  const ticket = await ok(a, adminA, 'POST', '/v1/tickets', {
    subject: `Order ${i}`,
    channel: 'email',
    contact: { email: `buyer${i}@shop.test`, name: `Buyer ${i}` },
    department_id: i % 2 === 0 ? sales : support,
    tags: i === 1 ? ['vip'] : [],
    message: { body: `Where is order ${i}?` },
  });
  const id = ticket.id;
  if (i === 1) {
    // A reply with two files: they travel too (upload-files.ts --from-records).
    const staged = [];
    for (const [name, content] of [
      ['label.txt', 'Return label #4471\n'],
      ['tracking ü.csv', 'parcel,state\n1,lost\n'],
    ] as const) {
      const boundary = `----roundtrip${staged.length}`;
      const res = await a.request({
        method: 'POST',
        url: `/v1/tickets/${id}/attachments`,
        token: solver,
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        payload: Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
            `Content-Type: text/plain\r\n\r\n${content}\r\n--${boundary}--\r\n`,
        ),
      });
      if (res.statusCode !== 201) throw new Error(`upload: ${res.statusCode} ${res.body}`);
      staged.push(res.json().data[0].id);
    }
    await ok(a, solver, 'POST', `/v1/tickets/${id}/messages`, {
      kind: 'reply',
      body: 'Label and tracking attached.',
      attachment_ids: staged,
    });
  }
  await ok(a, solver, 'POST', `/v1/tickets/${id}/messages`, { kind: 'reply', body: 'On its way.' });
  if (i === 0) {
    await ok(a, adminA, 'POST', `/v1/tickets/${id}/messages`, { kind: 'note', body: 'Courier called.' });
    await ok(a, adminA, 'POST', `/v1/tickets/${id}/transfer`, { department_id: support });
    await ok(a, adminA, 'PATCH', `/v1/tickets/${id}`, { assignee_id: solverAgent.id, tags: ['late'] });
    await ok(a, solver, 'PATCH', `/v1/tickets/${id}`, { priority: 'urgent', subject: 'Order 0 (lost)' });
  }
  if (i !== 3) await ok(a, adminA, 'PATCH', `/v1/tickets/${id}`, { status: 'resolved' });
  if (i === 2) {
    await ok(a, adminA, 'POST', `/v1/tickets/${id}/messages`, { kind: 'customer', body: 'Still nothing.' });
    await ok(a, adminA, 'POST', `/v1/tickets/${id}/ratings`, { value: 'negative', comment: 'Slow' });
  }
  if (i === 1) {
    await ok(a, adminA, 'POST', '/v1/calls', {
      ticket_id: id,
      direction: 'inbound',
      outcome: 'answered',
      agent_id: solverAgent.id,
      from_number: '+420601000111',
      started_at: new Date(Date.now() - 600_000).toISOString(),
      answered_at: new Date(Date.now() - 590_000).toISOString(),
      ended_at: new Date(Date.now() - 400_000).toISOString(),
    });
  }
}

async function text(ctx: TestContext, token: string, url: string) {
  const res = await ctx.request({ method: 'GET', url, token });
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.body;
}

/** What a ticket is, without ids: subject, state, people and departments by name, its history. */
async function snapshot(ctx: TestContext, token: string) {
  const departments = new Map<string, string>(
    (await ok(ctx, token, 'GET', '/v1/departments?limit=200')).data.map((d: { id: string; name: string }) => [
      d.id,
      d.name,
    ]),
  );
  const agents = new Map<string, string>(
    (await ok(ctx, token, 'GET', '/v1/agents?limit=200')).data.map((x: { id: string; email: string }) => [
      x.id,
      x.email,
    ]),
  );
  const tickets = (await ok(ctx, token, 'GET', '/v1/tickets?sort=created_at&limit=50')).data;
  const out = [];
  for (const ticket of tickets) {
    const messages = (await ok(ctx, token, 'GET', `/v1/tickets/${ticket.id}/messages?limit=200`)).data;
    const history = (await ok(ctx, token, 'GET', `/v1/tickets/${ticket.id}/history?limit=200`)).data;
    out.push({
      subject: ticket.subject,
      status: ticket.status,
      priority: ticket.priority,
      channel: ticket.channel,
      tags: ticket.tags,
      department: departments.get(ticket.department_id),
      assignee: ticket.assignee_id && agents.get(ticket.assignee_id),
      contact: ticket.contact.email,
      created_at: ticket.created_at,
      messages: await Promise.all(
        messages.map(
          async (m: {
            kind: string;
            body: string;
            created_at: string;
            attachments: { id: string; filename: string; content_type: string; size_bytes: number }[];
          }) => [
            m.kind,
            m.body,
            m.created_at,
            await Promise.all(
              m.attachments.map(async (f) => [
                f.filename,
                f.content_type,
                f.size_bytes,
                (await ctx.request({ method: 'GET', url: `/v1/attachments/${f.id}`, token })).body,
              ]),
            ),
          ],
        ),
      ),
      history: history
        .filter((e: { type: string }) => !e.type.startsWith('sla.'))
        .map((e: { type: string; occurred_at: string }) => [e.type, e.occurred_at]),
    });
  }
  return out;
}

async function figures(ctx: TestContext, token: string) {
  const columns = [
    'created_tickets',
    'answers',
    'incoming_messages',
    'resolved_tickets',
    'reopened_tickets',
    'transfers_in',
    'transfers_out',
    'negative_ratings',
    'calls',
  ];
  const from = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  const to = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
  const report = await ok(
    ctx,
    token,
    'GET',
    `/v1/reports/departments?from=${from}&to=${to}&timezone=UTC&${columns.map((c) => `columns=${c}`).join('&')}`,
  );
  return report.data
    .map((row: Record<string, unknown>) => [row.department_name, ...columns.map((c) => row[c] ?? 0)])
    .sort();
}

t.test('an export of A in the import format makes B the same help desk', async (t) => {
  // The directory (agents, departments, memberships) from A's API, then its contacts and tickets
  // as the exports give them.
  const directory: Record<string, unknown>[] = [];
  for (const agent of (await ok(a, adminA, 'GET', '/v1/agents?limit=200')).data) {
    directory.push({
      type: 'agent',
      external_id: agent.id,
      email: agent.email,
      name: agent.name,
      role: agent.role === 'agent' ? 'agent' : 'admin',
    });
  }
  for (const department of (await ok(a, adminA, 'GET', '/v1/departments?limit=200')).data) {
    directory.push({ type: 'department', external_id: department.id, name: department.name });
    for (const member of (await ok(a, adminA, 'GET', `/v1/departments/${department.id}/members?limit=200`))
      .data) {
      directory.push({
        type: 'membership',
        external_id: `${department.id}:${member.agent_id}`,
        department: department.id,
        agent: member.agent_id,
        role: member.role,
      });
    }
  }
  const contacts = await text(a, adminA, '/v1/exports/contacts?format=import');
  const tickets = await text(a, adminA, '/v1/exports/tickets?format=import');
  t.ok(tickets.split('\n').filter(Boolean).length > 4, 'the tickets and their timelines');
  const file = [...directory.map((r) => JSON.stringify(r)), contacts.trim(), tickets.trim()].join('\n');

  // The messages' files, from A to B before the import, as upload-files.ts --from-records does.
  const records = tickets
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  await a.app.listen({ port: 0, host: '127.0.0.1' });
  await b.app.listen({ port: 0, host: '127.0.0.1' });
  const base = (ctx: TestContext) => `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
  const moved = await uploadFiles(filesOfRecords(records, base(a)), {
    deskroute: base(b),
    token: adminB,
    source: 'desk-a',
    authorization: { origin: base(a), header: `Bearer ${adminA}` },
  });
  t.same(moved, { uploaded: 2, present: 0, failed: [] }, 'both files moved');

  const res = await b.request({
    method: 'POST',
    url: '/v1/imports?source=desk-a',
    token: adminB,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: file,
  });
  t.equal(res.statusCode, 202, res.body);
  await processPendingImports({ db: b.db, blobs: b.app.blobs, log });
  const done = await ok(b, adminB, 'GET', `/v1/imports/${res.json().id}`);
  const errors = await ok(b, adminB, 'GET', `/v1/imports/${res.json().id}/errors`);
  t.same(errors.data, [], 'no record refused');
  t.equal(done.counts.failed, 0);

  t.same(
    await snapshot(b, adminB),
    await snapshot(a, adminA),
    'the same tickets, messages and history, at the same times',
  );
  t.same(await figures(b, adminB), await figures(a, adminA), 'the same report figures');
  t.ok(ownerA.id);
});
