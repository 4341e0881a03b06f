import t from 'tap';
import { agentWithToken, buildTestApp } from './helpers/app.ts';
import { installClock } from './helpers/clock.ts';

// The application's clock (docs/sla.md "The application's clock"): what a ticket change records
// and what it checks "now" against come from deskroute_now(), which this test freezes at an
// instant far from the real time, so any instant taken from elsewhere (SQL now(), the process's
// Date) shows.

const NOW = '2001-02-03T04:05:06.789Z';
const later = (minutes: number) => new Date(Date.parse(NOW) + minutes * 60_000).toISOString();

t.test('the application clock', async (t) => {
  const ctx = await buildTestApp(t);
  await installClock(ctx.db, NOW);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = async (method: string, url: string, payload?: object, expected?: number) => {
    const res = await ctx.request({ method: method as 'GET', url, token, ...(payload && { payload }) });
    if (expected !== undefined && res.statusCode !== expected)
      throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const ticket = async () =>
    (
      await api(
        'POST',
        '/v1/tickets',
        { subject: 'Clock', contact: { email: 'clock@example.com' }, message: { body: 'Hello' } },
        201,
      )
    ).json();

  await t.test('calls, chats and ratings are recorded at the clock’s instant', async (t) => {
    const call = (
      await api(
        'POST',
        '/v1/calls',
        {
          direction: 'inbound',
          outcome: 'missed',
          started_at: later(-1),
          contact: { phone: '+420 777 000 222' },
        },
        201,
      )
    ).json();
    t.equal(call.created_at, NOW, 'the call');
    t.equal((await api('GET', `/v1/tickets/${call.ticket_id}`, undefined, 200)).json().created_at, NOW);

    const chat = (
      await api(
        'POST',
        '/v1/chats',
        {
          started_at: later(-2),
          missed: true,
          messages: [{ from: 'customer', body: 'Anyone there?', sent_at: later(-2) }],
          contact: { email: 'chat@example.com' },
        },
        201,
      )
    ).json();
    t.equal(chat.created_at, NOW, 'the chat');

    const rated = await ticket();
    const rating = (await api('POST', `/v1/tickets/${rated.id}/ratings`, { value: 'positive' }, 201)).json();
    t.equal(rating.created_at, NOW, 'the rating');
  });

  await t.test('postponing needs a time after the clock’s now, not the process’s', async (t) => {
    const parked = await ticket();
    const refused = await api('PATCH', `/v1/tickets/${parked.id}`, {
      status: 'postponed',
      postponed_until: later(-1),
    });
    t.equal(refused.statusCode, 400);
    t.equal(refused.json().code, 'postpone_needs_future_time');
    const postponed = await api(
      'PATCH',
      `/v1/tickets/${parked.id}`,
      { status: 'postponed', postponed_until: later(60) },
      200,
    );
    t.equal(postponed.json().postponed_until, later(60));
  });
});
