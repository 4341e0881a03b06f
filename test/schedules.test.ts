import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';

// Working hours through HTTP: schedules, their iCalendar import, departments' schedules and
// channel availability, and what tickets and rules make of them.

const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const officeHours = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday'].map((day) => ({
  day,
  start: '08:00',
  end: '18:00',
}));
const roundTheClock = WEEKDAYS.map((day) => ({ day, start: '00:00', end: '24:00' }));
const utcDate = (offsetDays: number) =>
  new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
/** Open every hour but closed yesterday, today and tomorrow (UTC): closed now, whatever the time. */
const closedAroundNow = () =>
  [-1, 0, 1].map((d) => ({ name: `Closed ${d}`, date: utcDate(d), yearly: false }));

async function countSchedules(ctx: TestContext) {
  const row = await ctx.db
    .selectFrom('schedules')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

t.test('schedules', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent: admin, token: adminToken } = await agentWithToken(ctx, { role: 'admin' });
  const { token: agentToken } = await agentWithToken(ctx, { role: 'agent' });
  const create = async (payload: object, token = adminToken) =>
    ctx.request({ method: 'POST', url: '/v1/schedules', token, payload });
  const created = async (payload: object) => {
    const res = await create(payload);
    if (res.statusCode !== 201) throw new Error(`schedule: ${res.statusCode} ${res.body}`);
    return res.json();
  };

  await t.test('create, read, list, update with If-Match, delete', async (t) => {
    const res = await create({
      name: '  Berlin office ',
      time_zone: 'Europe/Berlin',
      intervals: [
        { day: 'monday', start: '08:00', end: '12:00' },
        { day: 'monday', start: '13:00', end: '18:00' },
        { day: 'friday', start: '22:00', end: '06:00' },
      ],
      holidays: [{ name: 'Christmas Eve', date: '2026-12-24', yearly: true, start: '12:00', end: '24:00' }],
    });
    t.equal(res.statusCode, 201, res.body);
    const body = res.json();
    t.equal(body.name, 'Berlin office', 'stored trimmed');
    t.equal(body.version, 1);
    t.equal(body.is_default, false);
    t.same(body.holidays, [
      { name: 'Christmas Eve', date: '2026-12-24', yearly: true, start: '12:00', end: '24:00' },
    ]);
    t.equal(res.headers.location, `/v1/schedules/${body.id}`);

    const read = await ctx.request({ method: 'GET', url: `/v1/schedules/${body.id}`, token: agentToken });
    t.equal(read.statusCode, 200, 'every agent may read');
    t.same(read.json(), body);
    t.equal(read.headers.etag, res.headers.etag);
    const list = await ctx.request({ method: 'GET', url: '/v1/schedules', token: agentToken });
    t.equal(list.statusCode, 200);
    t.ok(list.json().data.some((s: { id: string }) => s.id === body.id));

    const patch = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${body.id}`,
      token: adminToken,
      headers: { 'if-match': String(res.headers.etag) },
      payload: { holidays: [] },
    });
    t.equal(patch.statusCode, 200, patch.body);
    t.equal(patch.json().version, 2, 'every change moves the version on');
    t.same(patch.json().holidays, []);
    t.not(patch.headers.etag, res.headers.etag);

    const stale = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${body.id}`,
      token: adminToken,
      headers: { 'if-match': String(res.headers.etag) },
      payload: { name: 'Lost update' },
    });
    t.equal(stale.statusCode, 412);
    const after = await ctx.request({ method: 'GET', url: `/v1/schedules/${body.id}`, token: adminToken });
    t.equal(after.json().name, 'Berlin office', 'the stale write changed nothing');

    const gone = await ctx.request({ method: 'DELETE', url: `/v1/schedules/${body.id}`, token: adminToken });
    t.equal(gone.statusCode, 204);
    const missing = await ctx.request({ method: 'GET', url: `/v1/schedules/${body.id}`, token: adminToken });
    t.equal(missing.statusCode, 404);
    t.equal(missing.json().code, 'schedule_not_found');
  });

  await t.test('semantic errors answer 422 with JSON pointers and create nothing', async (t) => {
    const before = await countSchedules(ctx);
    const cases: [object, string[]][] = [
      [{ name: 'A', time_zone: 'Mars/Olympus' }, ['body/time_zone']],
      [
        { name: 'B', time_zone: 'UTC', intervals: [{ day: 'monday', start: '25:00', end: '18:00' }] },
        ['body/intervals/0/start'],
      ],
      [
        {
          name: 'C',
          time_zone: 'UTC',
          intervals: [
            { day: 'monday', start: '08:00', end: '12:00' },
            { day: 'monday', start: '11:00', end: '13:00' },
          ],
        },
        ['body/intervals/1'],
      ],
      [
        {
          name: 'D',
          time_zone: 'UTC',
          // Sunday night runs into Monday morning.
          intervals: [
            { day: 'sunday', start: '22:00', end: '02:00' },
            { day: 'monday', start: '01:00', end: '05:00' },
          ],
        },
        ['body/intervals/1'],
      ],
      [
        { name: 'E', time_zone: 'UTC', holidays: [{ name: 'X', date: '2026-02-30', yearly: false }] },
        ['body/holidays/0/date'],
      ],
      [
        {
          name: 'F',
          time_zone: 'UTC',
          holidays: [{ name: 'X', date: '2026-05-01', yearly: false, start: '12:00' }],
        },
        ['body/holidays/0/end'],
      ],
    ];
    for (const [payload, fields] of cases) {
      const res = await create(payload);
      t.equal(res.statusCode, 422, JSON.stringify(payload).slice(0, 80));
      t.equal(res.json().code, 'invalid_schedule');
      t.same(
        res.json().errors.map((e: { field: string }) => e.field),
        fields,
      );
    }
    t.equal(await countSchedules(ctx), before, 'nothing created');
  });

  await t.test('a zone named in another case is stored by its IANA name', async (t) => {
    const res = await create({ name: 'Lower-case zone', time_zone: 'europe/prague' });
    t.equal(res.statusCode, 201, res.body);
    t.equal(res.json().time_zone, 'Europe/Prague', 'as availability and business time name it');
    const patched = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${res.json().id}`,
      token: adminToken,
      payload: { time_zone: 'etc/utc' },
    });
    t.equal(patched.statusCode, 200, patched.body);
    t.equal(patched.json().time_zone, 'Etc/UTC');
    const again = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${res.json().id}`,
      token: adminToken,
      payload: { time_zone: 'ETC/UTC' },
    });
    t.equal(again.json().version, patched.json().version, 'the same zone: no change, no new version');
  });

  await t.test('malformed bodies answer 400: unknown fields, wrong shapes, huge arrays', async (t) => {
    const before = await countSchedules(ctx);
    const cases: [object, string][] = [
      [{ name: 'A', time_zone: 'UTC', colour: 'red' }, 'body/colour'],
      [
        { name: 'A', time_zone: 'UTC', intervals: [{ day: 'someday', start: '08:00', end: '09:00' }] },
        'body/intervals/0/day',
      ],
      [
        { name: 'A', time_zone: 'UTC', intervals: [{ day: 'monday', start: '08:00', end: '09:00', x: 1 }] },
        'body/intervals/0/x',
      ],
      [{ name: 'A', time_zone: 'x'.repeat(65) }, 'body/time_zone'],
      [
        {
          name: 'A',
          time_zone: 'UTC',
          holidays: Array.from({ length: 401 }, () => ({ name: 'x', date: '2026-01-01' })),
        },
        'body/holidays',
      ],
      [{ time_zone: 'UTC' }, 'body/name'],
    ];
    for (const [payload, field] of cases) {
      const res = await create(payload);
      t.equal(res.statusCode, 400, field);
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} named`,
      );
    }
    t.equal(await countSchedules(ctx), before);
  });

  await t.test('agents may not write schedules (403) and nothing changes', async (t) => {
    const schedule = await created({ name: 'Guarded', time_zone: 'UTC' });
    const before = await countSchedules(ctx);
    const attempts = [
      create({ name: 'Mine', time_zone: 'UTC' }, agentToken),
      ctx.request({
        method: 'PATCH',
        url: `/v1/schedules/${schedule.id}`,
        token: agentToken,
        payload: { name: 'Mine' },
      }),
      ctx.request({ method: 'DELETE', url: `/v1/schedules/${schedule.id}`, token: agentToken }),
      ctx.request({
        method: 'POST',
        url: `/v1/schedules/${schedule.id}/holidays/import`,
        token: agentToken,
        headers: { 'content-type': 'text/calendar' },
        payload: 'BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n',
      }),
    ];
    for (const res of await Promise.all(attempts)) {
      t.equal(res.statusCode, 403);
      t.equal(res.json().code, 'admin_required');
    }
    t.equal(await countSchedules(ctx), before);
    const same = await ctx.request({ method: 'GET', url: `/v1/schedules/${schedule.id}`, token: agentToken });
    t.same(same.json(), schedule);
  });

  await t.test('one default at most: setting it moves it, in the audit log too', async (t) => {
    const first = await created({ name: 'First default', time_zone: 'UTC', is_default: true });
    t.equal(first.is_default, true);
    const second = await created({ name: 'Second default', time_zone: 'UTC', is_default: true });
    const defaults = await ctx.request({
      method: 'GET',
      url: '/v1/schedules?is_default=true',
      token: adminToken,
    });
    t.same(
      defaults.json().data.map((s: { id: string }) => s.id),
      [second.id],
      'only the newest is the default',
    );
    const back = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${first.id}`,
      token: adminToken,
      payload: { is_default: true },
    });
    t.equal(back.json().is_default, true);
    const secondNow = await ctx.request({
      method: 'GET',
      url: `/v1/schedules/${second.id}`,
      token: adminToken,
    });
    t.equal(secondNow.json().is_default, false);

    const audit = await ctx.request({
      method: 'GET',
      url: '/v1/audit-log?types=schedule.updated&limit=50',
      token: adminToken,
    });
    t.equal(audit.statusCode, 200, audit.body);
    const moved = audit
      .json()
      .data.find(
        (e: { payload: { schedule: { id: string }; reason?: string } }) =>
          e.payload.schedule.id === second.id && e.payload.reason === 'default_moved',
      );
    t.ok(moved, 'the schedule that lost the default records it');
    t.same(moved.payload.changes.is_default, { from: true, to: false });
    t.equal(moved.actor.agent_id, admin.id);

    const clear = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${first.id}`,
      token: adminToken,
      payload: { is_default: false },
    });
    t.equal(clear.json().is_default, false, 'false on the default leaves none');
    const none = await ctx.request({
      method: 'GET',
      url: '/v1/schedules?is_default=true',
      token: adminToken,
    });
    t.same(none.json().data, []);
  });

  await t.test('concurrent default switches leave exactly one default', async (t) => {
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        create({ name: `Racing default ${i}`, time_zone: 'UTC', is_default: true }),
      ),
    );
    t.same(
      results.map((r) => r.statusCode),
      [201, 201, 201, 201, 201, 201],
      'none fails on the one-default index',
    );
    const defaults = await ctx.db
      .selectFrom('schedules')
      .select('id')
      .where('is_default', '=', true)
      .execute();
    t.equal(defaults.length, 1);
    const cleared = await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${defaults[0]!.id}`,
      token: adminToken,
      payload: { is_default: false },
    });
    t.equal(cleared.statusCode, 200, 'the tests after this one start without a default');
  });

  await t.test('departments name a schedule; one in use cannot be deleted', async (t) => {
    const schedule = await created({
      name: 'Support hours',
      time_zone: 'Europe/Paris',
      intervals: officeHours,
    });
    const unknown = await ctx.request({
      method: 'POST',
      url: '/v1/departments',
      token: adminToken,
      payload: { name: 'Nowhere', schedule_id: '00000000-0000-4000-8000-000000000000' },
    });
    t.equal(unknown.statusCode, 422);
    t.equal(unknown.json().code, 'schedule_not_found');
    t.same(unknown.json().errors, [{ field: 'body/schedule_id', message: 'The schedule does not exist.' }]);

    const dep = await ctx.request({
      method: 'POST',
      url: '/v1/departments',
      token: adminToken,
      payload: { name: 'Support', schedule_id: schedule.id, availability: { chat: 'on' } },
    });
    t.equal(dep.statusCode, 201, dep.body);
    t.equal(dep.json().schedule_id, schedule.id);
    t.same(dep.json().availability, { chat: 'on', phone: 'schedule', messaging: 'schedule' });

    const refused = await ctx.request({
      method: 'DELETE',
      url: `/v1/schedules/${schedule.id}`,
      token: adminToken,
    });
    t.equal(refused.statusCode, 409);
    t.equal(refused.json().code, 'schedule_in_use');
    t.same(refused.json().blockers, [
      { kind: 'departments', count: 1, detail: 'Departments using the schedule: "Support".' },
    ]);
    const still = await ctx.request({
      method: 'GET',
      url: `/v1/schedules/${schedule.id}`,
      token: adminToken,
    });
    t.equal(still.statusCode, 200, 'still there');
    const refusal = await ctx.db
      .deleteFrom('schedules')
      .where('id', '=', schedule.id)
      .execute()
      .then(
        () => null,
        (error: { constraint?: string }) => error,
      );
    t.equal(refusal?.constraint, 'departments_schedule_id_fkey', 'the database refuses it too');

    // Whoever may edit the department today sets its schedule and channels: its managers too.
    const { token: manager } = await agentWithToken(ctx, { departments: [[dep.json().id, 'manager']] });
    const { token: solver } = await agentWithToken(ctx, { departments: [[dep.json().id, 'solver']] });
    const bySolver = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${dep.json().id}`,
      token: solver,
      payload: { availability: { messaging: 'off' } },
    });
    t.equal(bySolver.statusCode, 403);
    const byManager = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${dep.json().id}`,
      token: manager,
      payload: { availability: { messaging: 'off' } },
    });
    t.equal(byManager.statusCode, 200, byManager.body);
    t.equal(byManager.json().availability.messaging, 'off');

    const patched = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${dep.json().id}`,
      token: adminToken,
      payload: { schedule_id: null, availability: { phone: 'off', messaging: 'schedule' } },
    });
    t.equal(patched.statusCode, 200, patched.body);
    t.equal(patched.json().schedule_id, null);
    t.same(patched.json().availability, { chat: 'on', phone: 'off', messaging: 'schedule' }, 'chat kept');
    const badMode = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${dep.json().id}`,
      token: adminToken,
      payload: { availability: { chat: 'maybe' } },
    });
    t.equal(badMode.statusCode, 400);

    const freed = await ctx.request({
      method: 'DELETE',
      url: `/v1/schedules/${schedule.id}`,
      token: adminToken,
    });
    t.equal(freed.statusCode, 204);
  });

  await t.test('availability at fixed instants: weekend, holiday, channel overrides', async (t) => {
    const schedule = await created({
      name: 'Berlin weekdays',
      time_zone: 'Europe/Berlin',
      intervals: officeHours,
      holidays: [{ name: 'New Year', date: '2027-01-01', yearly: true }],
    });
    const depRes = await ctx.request({
      method: 'POST',
      url: '/v1/departments',
      token: adminToken,
      payload: { name: 'Berlin desk', schedule_id: schedule.id, availability: { chat: 'on', phone: 'off' } },
    });
    const dep = depRes.json().id as string;
    const at = async (instant: string) => {
      const res = await ctx.request({
        method: 'GET',
        url: `/v1/departments/${dep}/availability?at=${encodeURIComponent(instant)}`,
        token: agentToken,
      });
      t.equal(res.statusCode, 200, res.body);
      return res.json();
    };
    // Thursday 31 December 2026, 17:00 in Berlin (UTC+1): open until 18:00.
    const thursday = await at('2026-12-31T16:00:00Z');
    t.same(thursday, {
      at: '2026-12-31T16:00:00.000Z',
      department_id: dep,
      schedule_id: schedule.id,
      time_zone: 'Europe/Berlin',
      open: true,
      next_change: '2026-12-31T17:00:00.000Z',
      channels: {
        chat: { mode: 'on', available: true },
        phone: { mode: 'off', available: false },
        messaging: { mode: 'schedule', available: true },
      },
    });
    // Closed from 18:00: Friday is New Year, then the weekend, so Monday 4 January 08:00.
    const evening = await at('2026-12-31T17:00:00Z');
    t.equal(evening.open, false);
    t.equal(evening.next_change, '2027-01-04T07:00:00.000Z', 'over the holiday and the weekend');
    t.same(evening.channels.chat, { mode: 'on', available: true }, 'chat forced on while closed');
    t.same(evening.channels.messaging, { mode: 'schedule', available: false });
    // An ordinary Friday evening: the weekend alone.
    const friday = await at('2027-01-08T17:30:00Z');
    t.equal(friday.open, false);
    t.equal(friday.next_change, '2027-01-11T07:00:00.000Z');
    const monday = await at('2027-01-11T07:00:00Z');
    t.equal(monday.open, true, 'open at the opening instant');
    t.equal(monday.next_change, '2027-01-11T17:00:00.000Z');

    const bad = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep}/availability?at=yesterday`,
      token: agentToken,
    });
    t.equal(bad.statusCode, 400);
    // Its next change would lie past year 9999, which no date-time can say: refused, not a 500.
    for (const far of ['9999-12-31T23:59:59Z', '9998-06-01T00:00:00+02:00']) {
      const tooLate = await ctx.request({
        method: 'GET',
        url: `/v1/departments/${dep}/availability?at=${encodeURIComponent(far)}`,
        token: agentToken,
      });
      t.equal(tooLate.statusCode, 400, tooLate.body);
      t.equal(tooLate.json().code, 'at_out_of_range');
      t.same(tooLate.json().errors, [{ field: 'querystring/at', message: 'is too far in the future' }]);
    }
    const latest = await at('9997-12-29T00:00:00Z');
    t.equal(latest.open, false, 'Monday 01:00 in Berlin is closed');
    t.equal(latest.next_change, '9997-12-29T07:00:00.000Z');
    const early = await at('0001-01-02T12:00:00Z');
    t.equal(early.open, true, 'year 1 is answered too (a Tuesday, 12:53 local mean time)');
    const upper = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep.toUpperCase()}/availability?at=2026-12-31T16:00:00Z`,
      token: agentToken,
    });
    t.equal(upper.statusCode, 200, upper.body);
    t.same(upper.json(), thursday, 'an upper-case id names the same department, answered as stored');
    const none = await ctx.request({
      method: 'GET',
      url: '/v1/departments/00000000-0000-4000-8000-000000000000/availability',
      token: agentToken,
    });
    t.equal(none.statusCode, 404);
  });

  await t.test(
    'without a schedule of its own a department follows the default, else is always open',
    async (t) => {
      const dep = await makeDepartment(ctx.db, 'Plain desk');
      const now = await ctx.request({
        method: 'GET',
        url: `/v1/departments/${dep}/availability`,
        token: agentToken,
      });
      t.equal(now.statusCode, 200);
      t.match(now.json(), { schedule_id: null, time_zone: null, open: true, next_change: null });
      const fallback = await created({
        name: 'Closed default',
        time_zone: 'UTC',
        intervals: roundTheClock,
        holidays: closedAroundNow(),
        is_default: true,
      });
      const closed = await ctx.request({
        method: 'GET',
        url: `/v1/departments/${dep}/availability`,
        token: agentToken,
      });
      t.match(closed.json(), { schedule_id: fallback.id, time_zone: 'UTC', open: false });
      t.ok(closed.json().next_change, 'opens again after the holidays');
      const gone = await ctx.request({
        method: 'DELETE',
        url: `/v1/schedules/${fallback.id}`,
        token: adminToken,
      });
      t.equal(gone.statusCode, 204, 'the default may go');
      const open = await ctx.request({
        method: 'GET',
        url: `/v1/departments/${dep}/availability`,
        token: agentToken,
      });
      t.match(open.json(), { schedule_id: null, open: true });
    },
  );

  await t.test('schedule events are in the audit log', async (t) => {
    const schedule = await created({ name: 'Audited', time_zone: 'UTC' });
    await ctx.request({
      method: 'PATCH',
      url: `/v1/schedules/${schedule.id}`,
      token: adminToken,
      payload: { intervals: officeHours },
    });
    await ctx.request({ method: 'DELETE', url: `/v1/schedules/${schedule.id}`, token: adminToken });
    const res = await ctx.request({
      method: 'GET',
      url: '/v1/audit-log?types=schedule.created,schedule.updated,schedule.deleted&limit=200',
      token: adminToken,
    });
    t.equal(res.statusCode, 200, res.body);
    const mine = res
      .json()
      .data.filter((e: { payload: { schedule: { id: string } } }) => e.payload.schedule.id === schedule.id);
    t.same(mine.map((e: { type: string }) => e.type).reverse(), [
      'schedule.created',
      'schedule.updated',
      'schedule.deleted',
    ]);
    t.same(Object.keys(mine[1].payload.changes), ['intervals']);
    t.ok(
      mine.every(
        (e: { actor: { agent_id: string }; department_id: null }) =>
          e.actor.agent_id === admin.id && e.department_id === null,
      ),
    );
    const forbidden = await ctx.request({ method: 'GET', url: '/v1/audit-log', token: agentToken });
    t.equal(forbidden.statusCode, 403, 'the audit log stays for admins');
  });
});

t.test('tickets and rules use working hours', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const schedule = async (name: string, extra: object) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/schedules',
      token: admin,
      payload: { name, time_zone: 'UTC', intervals: roundTheClock, ...extra },
    });
    if (res.statusCode !== 201) throw new Error(res.body);
    return res.json().id as string;
  };
  const department = async (name: string, scheduleId: string, availability?: object) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/departments',
      token: admin,
      payload: {
        name,
        schedule_id: scheduleId,
        selectable_on_contact_form: true,
        ...(availability && { availability }),
      },
    });
    if (res.statusCode !== 201) throw new Error(res.body);
    return res.json().id as string;
  };
  const closedId = await schedule('Closed now', { holidays: closedAroundNow() });
  const openId = await schedule('Always open', {});
  const closed = await department('Night desk', closedId, { chat: 'on' });
  const open = await department('Day desk', openId, { phone: 'off' });

  const rule = async (payload: object) => {
    const res = await ctx.request({ method: 'POST', url: '/v1/automation-rules', token: admin, payload });
    t.equal(res.statusCode, 201, res.body);
    return res.json();
  };
  await rule({
    name: 'Tag tickets that came in after hours',
    triggers: ['ticket.created'],
    conditions: { all: [{ field: 'created_in_working_hours', operator: 'is', value: false }] },
    actions: [{ type: 'add_tags', tags: ['after-hours'] }],
  });
  await rule({
    name: 'Note customer replies at night',
    triggers: ['ticket.customer_replied'],
    conditions: { all: [{ field: 'outside_working_hours', operator: 'is', value: true }] },
    actions: [{ type: 'add_note', body: 'Replied outside working hours.' }],
  });
  const open_ticket = async (departmentId: string) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: admin,
      payload: {
        subject: 'Where is my parcel?',
        contact: { email: 'jane@example.com', name: 'Jane' },
        message: { body: 'It has been a week.' },
        department_id: departmentId,
      },
    });
    t.equal(res.statusCode, 201, res.body);
    return res.json();
  };

  await t.test(
    'a ticket in a closed department: created_in_working_hours false, the rule fires',
    async (t) => {
      const ticket = await open_ticket(closed);
      t.equal(ticket.created_in_working_hours, false);
      t.ok(ticket.tags.includes('after-hours'), 'the rule on created_in_working_hours fired');
      const row = await ctx.db
        .selectFrom('tickets')
        .select('created_in_working_hours')
        .where('id', '=', ticket.id)
        .executeTakeFirstOrThrow();
      t.equal(row.created_in_working_hours, false, 'stored on the ticket');

      const reply = await ctx.request({
        method: 'POST',
        url: `/v1/tickets/${ticket.id}/messages`,
        token: admin,
        payload: { kind: 'customer', body: 'Any news?' },
      });
      t.equal(reply.statusCode, 201, reply.body);
      const messages = await ctx.request({
        method: 'GET',
        url: `/v1/tickets/${ticket.id}/messages`,
        token: admin,
      });
      t.ok(
        messages
          .json()
          .data.some(
            (m: { kind: string; body: string }) =>
              m.kind === 'note' && m.body === 'Replied outside working hours.',
          ),
        'outside_working_hours holds for a customer reply while closed',
      );
      const trace = await ctx.request({
        method: 'GET',
        url: `/v1/tickets/${ticket.id}/rule-trace`,
        token: admin,
      });
      t.equal(trace.statusCode, 200, trace.body);
      const replyRun = trace
        .json()
        .data.find((r: { events: string[] }) => r.events.includes('ticket.customer_replied'));
      t.equal(replyRun.ticket.outside_working_hours, true, 'the trace shows the value the rule saw');
      t.ok(replyRun.rules.some((r: { matched: boolean }) => r.matched));
    },
  );

  await t.test('an always-open schedule gives true and the rules stay quiet', async (t) => {
    const ticket = await open_ticket(open);
    t.equal(ticket.created_in_working_hours, true);
    t.notOk(ticket.tags.includes('after-hours'));
    const reply = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: admin,
      payload: { kind: 'customer', body: 'Any news?' },
    });
    t.equal(reply.statusCode, 201);
    const messages = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: admin,
    });
    t.notOk(messages.json().data.some((m: { kind: string }) => m.kind === 'note'));
  });

  await t.test('simulation sees the real values', async (t) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/automation-rules/simulate',
      token: admin,
      payload: {
        event: { type: 'ticket.created', message: { body: 'Hello?' } },
        ticket: { subject: 'Night owl', department_id: closed },
      },
    });
    t.equal(res.statusCode, 200, res.body);
    t.equal(res.json().ticket.created_in_working_hours, false);
    t.equal(res.json().ticket.outside_working_hours, true);
    t.ok(res.json().result.tags.includes('after-hours'));
    const day = await ctx.request({
      method: 'POST',
      url: '/v1/automation-rules/simulate',
      token: admin,
      payload: { event: { type: 'ticket.created' }, ticket: { subject: 'Day', department_id: open } },
    });
    t.equal(day.json().ticket.created_in_working_hours, true);
    t.equal(day.json().ticket.outside_working_hours, false);
  });

  await t.test('the public department list shows what is available now', async (t) => {
    const res = await ctx.request({ method: 'GET', url: '/v1/public/departments' });
    t.equal(res.statusCode, 200);
    const byName = new Map(res.json().data.map((d: { name: string }) => [d.name, d]));
    t.match(byName.get('Night desk'), {
      id: closed,
      open: false,
      available: { chat: true, phone: false, messaging: false },
    });
    t.match(byName.get('Day desk'), {
      id: open,
      open: true,
      next_change: null,
      available: { chat: true, phone: false, messaging: true },
    });
  });
});
