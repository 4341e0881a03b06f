import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';

// A template is written by a manager (or any agent, in a preview) and rendered by the mail
// sender for every ticket: whatever it does, one render must stay bounded in time and memory.
// liquidjs charges memoryLimit for what filters make but not for what `capture` holds, and a
// capture of itself doubles a string for free; a filter that then flattens it (url_encode,
// contains) runs in one go, past renderLimit, which is checked between nodes only.

const doubled = (times: number, then: string) =>
  `{% assign a = "x," %}{% for i in (1..${times}) %}{% capture a %}{{ a }}{{ a }}{% endcapture %}{% endfor %}${then}`;

t.test('a capture cannot grow past the limits a part has anyway', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const { token: solver } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const { token: manager } = await agentWithToken(ctx, { departments: [[sales, 'manager']] });

  // And within memoryLimit: appends of appends (counted) to 1.3 M characters, split into as many
  // items, then sorted: seconds in one filter call.
  const appended = (then: string) =>
    `{% assign a = "zyxwvutsrq" %}{% for i in (1..17) %}{% assign a = a | append: a %}{% endfor %}${then}`;
  // Refused before the work, by the bound it crossed (not by renderLimit, once the work is done).
  for (const [text, bound] of [
    [doubled(26, '{{ a | url_encode | size }}'), /capture a holds more than/],
    [doubled(26, '{% if a contains "y" %}y{% endif %}{{ a.size }}'), /capture a holds more than/],
    [appended('{% assign b = a | split: "" | sort %}{{ b.size }}'), /takes at most/],
    [doubled(18, '{% assign b = a | split: "" | sort_natural %}{{ b.size }}'), /sort_natural takes at most/],
  ] as const) {
    const then = text.slice(text.lastIndexOf('%}') - 40);
    const started = performance.now();
    const preview = await ctx.request({
      method: 'POST',
      url: `/v1/departments/${sales}/templates/acknowledgement/preview`,
      token: solver,
      payload: { text },
    });
    const took = performance.now() - started;
    t.equal(preview.statusCode, 422, `${then}: refused (${preview.statusCode}, ${Math.round(took)} ms)`);
    t.match(preview.json().errors?.[0]?.message, bound, then);
    t.ok(took < 1500, `${then}: answered in ${Math.round(took)} ms, not seconds of a held event loop`);
  }

  const saved = await ctx.request({
    method: 'PUT',
    url: `/v1/departments/${sales}/templates/acknowledgement`,
    token: manager,
    payload: { subject: 'Hi', text: doubled(26, '{{ a | url_encode | size }}'), html: '<p>Hi</p>' },
  });
  t.equal(saved.statusCode, 422, 'a manager cannot save one for the mail sender to run');

  const canned = await ctx.request({
    method: 'POST',
    url: '/v1/canned-responses',
    token: manager,
    payload: { department_id: sales, title: 'Boom', body: doubled(26, '{{ a | url_encode | size }}') },
  });
  t.equal(canned.statusCode, 422, 'nor a canned response');

  const fine = await ctx.request({
    method: 'POST',
    url: `/v1/departments/${sales}/templates/acknowledgement/preview`,
    token: solver,
    payload: {
      text: '{% capture greeting %}Hello {{ contact.name }}{% endcapture %}{{ greeting | upcase }} {{ ticket.reference }}',
    },
  });
  t.equal(fine.statusCode, 200, fine.body);
  t.match(fine.json().text, /^HELLO .* \[Ticket#\d+\]$/, 'an ordinary capture still works');
});
