import { sql } from 'kysely';
import t from 'tap';
import { fireSlaTimers, type JobFailure } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';

// The SLA clock against a controllable clock (test/helpers/clock.ts), through HTTP: the issue's
// "Friday 17:55 in a department open Monday to Friday 08:00-18:00, 1 business hour to a first
// answer, due Monday 08:55 in the department's zone", a holiday moving it, transfers following
// the policy, and the timer firing warnings and breaches once, at the instant they were due.
// Timers are fired with the function every server process runs (scheduler.ts); two processes
// and a killed one are in sla-timers-processes.test.ts.

const WEEKDAYS_8_TO_18 = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday'].map((day) => ({
  day,
  start: '08:00',
  end: '18:00',
}));

interface HistoryEvent {
  type: string;
  data: Record<string, unknown>;
  occurred_at: string;
  actor: { type: string };
}

t.test('SLA timers on a controllable clock', async (t) => {
  const ctx = await buildTestApp(t);
  // New York, Friday 2026-11-27 17:55 (EST, UTC-5).
  await installClock(ctx.db, '2026-11-27T22:55:00Z');
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = async (method: string, url: string, payload?: object, expected?: number) => {
    const res = await ctx.request({ method: method as 'GET', url, token, ...(payload && { payload }) });
    if (expected !== undefined && res.statusCode !== expected)
      throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const create = async (url: string, payload: object) => (await api('POST', url, payload, 201)).json();
  const schedule = async (name: string, timeZone: string, holidays: object[] = []) =>
    create('/v1/schedules', { name, time_zone: timeZone, intervals: WEEKDAYS_8_TO_18, holidays });
  const department = async (name: string, scheduleId: string) => {
    const id = await makeDepartment(ctx.db, name);
    await api('PATCH', `/v1/departments/${id}`, { schedule_id: scheduleId }, 200);
    return id;
  };
  const policy = (name: string, departmentId: string, minutes: number, extra: object = {}) =>
    create('/v1/sla-policies', {
      name,
      conditions: { all: [{ field: 'department_id', operator: 'is', value: departmentId }] },
      targets: { normal: { first_answer: { minutes, business: true } } },
      ...extra,
    });
  const ticket = (departmentId: string) =>
    create('/v1/tickets', {
      subject: 'Where is my parcel?',
      contact: { email: `c-${Math.random()}@example.com` },
      message: { body: 'I ordered last week.' },
      department_id: departmentId,
    });
  const get = async (id: string) => (await api('GET', `/v1/tickets/${id}`, undefined, 200)).json();
  const slaEvents = async (id: string): Promise<HistoryEvent[]> =>
    (await api('GET', `/v1/tickets/${id}/history?limit=200`, undefined, 200))
      .json()
      .data.filter((e: HistoryEvent) => e.type.startsWith('sla.'));

  const newYork = await schedule('New York office', 'America/New_York');
  const newYorkHoliday = await schedule('New York, Monday off', 'America/New_York', [
    { name: 'Bridge day', date: '2026-11-30' },
  ]);
  const berlin = await schedule('Berlin office', 'Europe/Berlin');
  const support = await department('Support', newYork.id);
  const holidaySupport = await department('Support (holiday)', newYorkHoliday.id);
  const restartDept = await department('Restart', newYork.id);
  const continueDept = await department('Continue', newYork.id);
  const keepDept = await department('Keep', newYork.id);
  const returns = await department('Returns (Berlin)', berlin.id);
  await policy('Support', support, 60, { warn_before_minutes: 10 });
  await policy('Support, holiday', holidaySupport, 60);
  await policy('Restart', restartDept, 60, { on_transfer: 'restart' });
  await policy('Continue', continueDept, 60, { on_transfer: 'continue' });
  await policy('Keep', keepDept, 60, { on_transfer: 'keep' });
  await policy('Returns', returns, 120);

  await setClock(ctx.db, '2026-11-27T22:55:00Z');
  const friday = await ticket(support);
  const fridayHoliday = await ticket(holidaySupport);

  t.test('Friday 17:55 is due Monday 08:55 in the department’s zone', async (t) => {
    t.equal(friday.created_at, '2026-11-27T22:55:00.000Z', 'created at the clock’s instant');
    t.equal(friday.created_in_working_hours, true);
    // 5 minutes on Friday, 55 on Monday from 08:00 EST (13:00Z).
    t.equal(friday.sla.due_at, '2026-11-30T13:55:00.000Z');
    t.equal(friday.sla.targets[0].kind, 'first_answer');
  });

  t.test('a holiday on the Monday moves it to Tuesday 08:55', async (t) => {
    t.equal(fridayHoliday.sla.due_at, '2026-12-01T13:55:00.000Z');
  });

  await t.test('the timer fires nothing early, the warning on time, the breach once', async (t) => {
    // 08:44:59.999 EST: the warning is due at 08:45 (10 business minutes before 08:55).
    await setClock(ctx.db, '2026-11-30T13:44:59.999Z');
    await fireSlaTimers(ctx.db);
    t.same(
      (await slaEvents(friday.id)).map((e) => e.type),
      ['sla.applied', 'sla.started'],
      'nothing fired a millisecond early',
    );

    await setClock(ctx.db, '2026-11-30T13:45:00Z');
    t.ok((await fireSlaTimers(ctx.db)) >= 1);
    const warned = await slaEvents(friday.id);
    t.same(
      warned.map((e) => e.type),
      ['sla.applied', 'sla.started', 'sla.warning'],
    );
    const warning = warned.at(-1)!;
    t.equal(warning.actor.type, 'system');
    t.equal(warning.data.at, '2026-11-30T13:45:00.000Z');
    t.equal(warning.data.due_at, '2026-11-30T13:55:00.000Z');
    t.equal((await get(friday.id)).sla.breached, false);

    // Fired again at the same instant: nothing new.
    await fireSlaTimers(ctx.db);
    t.equal((await slaEvents(friday.id)).length, 3, 'the warning fires once');

    // 08:57 EST: the breach, recorded at its due (08:55), not when the timer ran.
    await setClock(ctx.db, '2026-11-30T13:57:00Z');
    await fireSlaTimers(ctx.db);
    await fireSlaTimers(ctx.db);
    const breached = (await slaEvents(friday.id)).filter((e) => e.type === 'sla.breached');
    t.equal(breached.length, 1, 'the breach fires once');
    t.equal(breached[0]!.data.at, '2026-11-30T13:55:00.000Z');
    t.equal(breached[0]!.data.kind, 'first_answer');
    t.equal(breached[0]!.actor.type, 'system');
    const after = await get(friday.id);
    t.equal(after.sla.breached, true);
    t.equal(after.sla.due_at, null, 'nothing left running');
    const row = await ctx.db
      .selectFrom('tickets')
      .select(['sla_next_at', 'updated_at'])
      .where('id', '=', friday.id)
      .executeTakeFirstOrThrow();
    t.equal(row.sla_next_at, null, 'no timer left');
    t.equal(row.updated_at.toISOString(), friday.updated_at, 'a timer is not activity: updated_at stays');

    // The holiday ticket is not due yet on its Monday off.
    t.notOk(
      (await slaEvents(fridayHoliday.id)).some((e) => e.type === 'sla.breached'),
      'the holiday ticket runs on',
    );
  });

  await t.test('an answer before the due fulfils it: the timer then has nothing to fire', async (t) => {
    const answered = await ticket(support);
    await api('POST', `/v1/tickets/${answered.id}/messages`, { kind: 'reply', body: 'On its way.' }, 201);
    await setClock(ctx.db, '2026-12-03T12:00:00Z');
    await fireSlaTimers(ctx.db);
    const types = (await slaEvents(answered.id)).map((e) => e.type);
    t.same(types, ['sla.applied', 'sla.started', 'sla.fulfilled']);
  });

  await t.test('transfers at Monday 08:30 EST (14:30 in Berlin) follow the policy', async (t) => {
    // Opened Friday 2026-12-04 17:55 EST; 35 of the 60 business minutes are used by Monday 08:30.
    await setClock(ctx.db, '2026-12-04T22:55:00Z');
    const restart = await ticket(restartDept);
    const cont = await ticket(continueDept);
    const keep = await ticket(keepDept);
    await setClock(ctx.db, '2026-12-07T13:30:00Z');
    for (const moved of [restart, cont, keep]) {
      await api('POST', `/v1/tickets/${moved.id}/transfer`, { department_id: returns }, 200);
    }
    // restart: the Returns policy from the transfer, 120 Berlin business minutes from 14:30.
    t.equal((await get(restart.id)).sla.due_at, '2026-12-07T15:30:00.000Z');
    // continue: the Returns policy (120 minutes) keeping the 35 used: 85 left from 14:30 Berlin.
    t.equal((await get(cont.id)).sla.due_at, '2026-12-07T14:55:00.000Z');
    // keep: the original policy and New York's calendar: still Monday 08:55 EST.
    const kept = await get(keep.id);
    t.equal(kept.sla.due_at, '2026-12-07T13:55:00.000Z');
    t.equal(kept.department_id, returns);

    await setClock(ctx.db, '2026-12-07T14:00:00Z');
    await fireSlaTimers(ctx.db);
    t.equal((await get(keep.id)).sla.breached, true, 'the kept timer fires on its old due');
    t.equal((await get(cont.id)).sla.breached, false);
    t.equal((await get(restart.id)).sla.breached, false);
  });

  await t.test('a policy change reaches running tickets through the timer', async (t) => {
    await setClock(ctx.db, '2026-12-08T14:00:00Z'); // Tuesday 09:00 EST
    const plain = await department('No policy yet', newYork.id);
    const waiting = await ticket(plain);
    t.equal(waiting.sla, null, 'no policy matches it yet');
    const created = await policy('Late policy', plain, 120);
    t.equal((await get(waiting.id)).sla, null, 'not before the timer runs');
    await setClock(ctx.db, '2026-12-08T14:10:00Z');
    await fireSlaTimers(ctx.db);
    const covered = await get(waiting.id);
    t.equal(covered.sla.policy_id, created.id, 'the new policy applies to the open ticket');
    t.equal(covered.sla.due_at, '2026-12-08T16:10:00.000Z', 'its target runs from when it applied');

    // Halving the target moves the due: the 10 minutes used stay used.
    await setClock(ctx.db, '2026-12-08T14:20:00Z');
    const edited = await api(
      'PATCH',
      `/v1/sla-policies/${created.id}`,
      { targets: { normal: { first_answer: { minutes: 60, business: true } } } },
      200,
    );
    t.equal(edited.json().version, 2);
    await fireSlaTimers(ctx.db);
    const after = await get(waiting.id);
    t.equal(after.sla.due_at, '2026-12-08T15:10:00.000Z', 'the edited target, from the same start');
    const applied = (await slaEvents(waiting.id)).filter((e) => e.type === 'sla.applied');
    t.same(
      applied.map((e) => [e.data.policy_version, e.data.reason]),
      [
        [1, applied[0]!.data.reason],
        [2, 'edited'],
      ],
    );
    // Resolved tickets are left as they were.
    await api('PATCH', `/v1/tickets/${waiting.id}`, { status: 'resolved' }, 200);
    const before = (await slaEvents(waiting.id)).length;
    await api('DELETE', `/v1/sla-policies/${created.id}`, undefined, 204);
    await fireSlaTimers(ctx.db);
    t.equal((await slaEvents(waiting.id)).length, before, 'a resolved ticket is not re-planned');
  });

  await t.test('a schedule edit moves running business dues through the timer', async (t) => {
    const edited = await schedule('New York, edited later', 'America/New_York');
    const dept = await department('Edited schedule', edited.id);
    await policy('Edited schedule', dept, 60);
    // Wednesday 17:30 EST: 30 minutes today, 30 on Thursday from 08:00.
    await setClock(ctx.db, '2026-12-09T22:30:00Z');
    const running = await ticket(dept);
    t.equal(running.sla.due_at, '2026-12-10T13:30:00.000Z', 'due Thursday 08:30 EST');
    const quiet = await ticket(support);
    const quietDue = quiet.sla.due_at;

    // A rename is no calendar change: nothing is planned again.
    await api('PATCH', `/v1/schedules/${edited.id}`, { name: 'New York, renamed' }, 200);
    await setClock(ctx.db, '2026-12-09T22:30:30Z');
    await fireSlaTimers(ctx.db);
    t.equal((await get(running.id)).sla.due_at, '2026-12-10T13:30:00.000Z', 'unchanged by a rename');

    // Thursday declared a holiday at 17:31: one business minute used, 59 left: 29 until 18:00,
    // then 30 from Friday 08:00.
    await setClock(ctx.db, '2026-12-09T22:31:00Z');
    await api(
      'PATCH',
      `/v1/schedules/${edited.id}`,
      { holidays: [{ name: 'Closed', date: '2026-12-10' }] },
      200,
    );
    t.equal((await get(running.id)).sla.due_at, '2026-12-10T13:30:00.000Z', 'not before the timer runs');
    await fireSlaTimers(ctx.db);
    t.equal((await get(running.id)).sla.due_at, '2026-12-11T13:30:00.000Z', 'due Friday 08:30 EST');
    const changed = (await slaEvents(running.id)).filter((e) => e.type === 'sla.target_changed');
    t.same(
      changed.map((e) => [e.data.kind, e.data.due_at, e.data.reason]),
      [['first_answer', '2026-12-11T13:30:00.000Z', 'schedule']],
      'one target_changed event, reason schedule',
    );
    const other = await get(quiet.id);
    t.equal(other.sla.due_at, quietDue, 'a department on another schedule keeps its due');
    t.notOk(
      (await slaEvents(quiet.id)).some((e) => e.type === 'sla.target_changed'),
      'and records no change',
    );

    // The department follows Berlin from 17:32 EST (23:32 there, closed). A plan measures the
    // stretch since the last one in the calendar as it now stands, so 17:31-17:32 counts nothing:
    // 59 minutes from Thursday 08:00 CET.
    await setClock(ctx.db, '2026-12-09T22:32:00Z');
    await api('PATCH', `/v1/departments/${dept}`, { schedule_id: berlin.id }, 200);
    await fireSlaTimers(ctx.db);
    t.equal((await get(running.id)).sla.due_at, '2026-12-10T07:59:00.000Z', 'due Thursday 08:59 in Berlin');

    // A second timer run with nothing changed plans nothing more.
    const count = (await slaEvents(running.id)).length;
    await fireSlaTimers(ctx.db);
    t.equal((await slaEvents(running.id)).length, count, 'nothing more to plan');
  });

  await t.test('a department deleted with its tickets moved: their dues follow the substitute', async (t) => {
    const leaving = await department('Leaving (Berlin)', berlin.id);
    const staying = await department('Staying (New York)', newYork.id);
    await create('/v1/sla-policies', {
      name: 'Leaving or staying',
      conditions: { all: [{ field: 'department_id', operator: 'is_one_of', value: [leaving, staying] }] },
      targets: { normal: { first_answer: { minutes: 60, business: true } } },
    });
    // Friday 09:00 in Berlin (03:00 in New York): due 10:00 Berlin.
    await setClock(ctx.db, '2026-12-11T08:00:00Z');
    const moved = await ticket(leaving);
    t.equal(moved.sla.due_at, '2026-12-11T09:00:00.000Z');
    await setClock(ctx.db, '2026-12-11T08:10:00Z');
    await api('DELETE', `/v1/departments/${leaving}?move_to_department_id=${staying}`, undefined, 204);
    await fireSlaTimers(ctx.db);
    // 10 minutes used; 50 left from New York's opening, 08:00 EST.
    const after = await get(moved.id);
    t.equal(after.department_id, staying);
    t.equal(after.sla.due_at, '2026-12-11T13:50:00.000Z', 'due 08:50 in New York');
  });

  await t.test('a ticket whose plan fails is tried again a minute later; the batch goes on', async (t) => {
    // Thursday 09:00 EST; Support's target: 60 business minutes, due 10:00.
    await setClock(ctx.db, '2026-12-10T14:00:00Z');
    const broken = await ticket(support);
    const fine = await ticket(support);
    const row = () =>
      ctx.db
        .selectFrom('tickets')
        .select(['sla_state', 'sla_next_at'])
        .where('id', '=', broken.id)
        .executeTakeFirstOrThrow();
    const { sla_state: state } = await row();
    // A state no plan can read (the kind of thing a bug leaves behind).
    await ctx.db
      .updateTable('tickets')
      .set({ sla_state: sql`'{"targets": 7}'::jsonb` })
      .where('id', '=', broken.id)
      .execute();
    await setClock(ctx.db, '2026-12-10T15:00:30Z');
    const failures: JobFailure[] = [];
    await fireSlaTimers(ctx.db, 200, (f) => failures.push(f));
    t.same(
      failures.map((f) => [f.ticket_id, f.outcome]),
      [[broken.id, 'retried_in_a_minute']],
      'the failure is reported',
    );
    t.equal((await get(fine.id)).sla.breached, true, 'the other ticket of the batch breached');
    t.equal(
      (await row()).sla_next_at?.toISOString(),
      '2026-12-10T15:01:30.000Z',
      'tried again a minute later',
    );
    failures.length = 0;
    await fireSlaTimers(ctx.db, 200, (f) => failures.push(f));
    t.same(failures, [], 'not before');
    // Repaired, it fires at its next turn, at its due.
    await ctx.db
      .updateTable('tickets')
      .set({ sla_state: JSON.stringify(state) as never })
      .where('id', '=', broken.id)
      .execute();
    await setClock(ctx.db, '2026-12-10T15:01:30Z');
    await fireSlaTimers(ctx.db, 200, (f) => failures.push(f));
    t.same(failures, []);
    const breach = (await slaEvents(broken.id)).filter((e) => e.type === 'sla.breached');
    t.same(
      breach.map((e) => e.data.at),
      ['2026-12-10T15:00:00.000Z'],
      'breached once, recorded at its due',
    );
  });
});
