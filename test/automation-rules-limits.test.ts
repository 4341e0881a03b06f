import t from 'tap';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';

// Bad input to /v1/automation-rules answers a precise 4xx and changes nothing: trees too deep or
// too large for the documented limits, text PostgreSQL cannot store, simulation inputs that are
// not plain values; changes to nothing move no rules version; and rule writes racing the
// deletion of a department or agent they name neither deadlock nor leave a dangling reference.

const GHOST = '00000000-0000-4000-8000-000000000000';
const LEAF = '{"field":"subject","operator":"contains","value":"refund"}';
const nested = (open: string, close: string, depth: number, inner: string) =>
  open.repeat(depth) + inner + close.repeat(depth);

t.test('automation rules at their limits', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const reader = await agentWithToken(ctx, { departments: [[sales, 'reader']] });

  const api = (
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
    url: string,
    payload?: object | string,
    token = admin.token,
  ) =>
    ctx.request({
      method,
      url,
      token,
      ...(payload !== undefined && {
        payload,
        headers: { 'content-type': 'application/json' },
      }),
    });
  const base = {
    name: 'Refunds',
    triggers: ['ticket.created'],
    conditions: { all: [{ field: 'subject', operator: 'contains', value: 'refund' }] },
    actions: [{ type: 'add_tags', tags: ['refund'] }],
  };
  const state = async () => {
    const s = await ctx.db
      .selectFrom('automation_rules_state')
      .select(['rules_version', 'rules_key'])
      .executeTakeFirstOrThrow();
    const count = async (table: 'automation_rules' | 'automation_rule_versions') =>
      Number(
        (
          await ctx.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    return {
      rules_version: String(s.rules_version),
      rules_key: String(s.rules_key),
      rules: await count('automation_rules'),
      versions: await count('automation_rule_versions'),
    };
  };
  const created = await api('POST', '/v1/automation-rules', base);
  t.equal(created.statusCode, 201, created.body);
  const rule = created.json();
  const ruleUrl = `/v1/automation-rules/${rule.id}`;

  await t.test('trees deeper or larger than the limits: one 422 pointing at them, never a 500', async (t) => {
    const before = await state();
    const body = (conditions: string) =>
      `{"name":"Deep","triggers":["ticket.created"],"actions":[{"type":"mark_spam"}],"conditions":${conditions}}`;
    const cases: [string, 'POST' | 'PATCH', string, string, RegExp][] = [
      [
        'not nested 100,000 deep',
        'POST',
        body(nested('{"not":', '}', 100_000, LEAF)),
        'body/conditions/not/not/not/not/not/not/not/not/not/not/not/not/not/not/not/not',
        /nests deeper than 16 levels/,
      ],
      [
        'not nested 5,000 deep, on update',
        'PATCH',
        `{"conditions":${nested('{"not":', '}', 5_000, LEAF)}}`,
        'body/conditions/not/not/not/not/not/not/not/not/not/not/not/not/not/not/not/not',
        /nests deeper than 16 levels/,
      ],
      [
        'all nested 1,000 deep, on update',
        'PATCH',
        `{"conditions":${nested('{"all":[', ']}', 1_000, LEAF)}}`,
        `body/conditions${'/all/0'.repeat(16)}`,
        /nests deeper than 16 levels/,
      ],
      [
        'a leaf value nested 5,000 deep, on update',
        'PATCH',
        `{"conditions":{"all":[{"field":"subject","operator":"is_one_of","value":${nested('[', ']', 5_000, '"x"')}}]}}`,
        'body/conditions/all/0/value/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0',
        /nests too deeply/,
      ],
      [
        '15,000 matches leaves (nearly 1 MB)',
        'POST',
        body(
          `{"any":[${Array.from({ length: 15_000 }, (_, i) => `{"field":"subject","operator":"matches","value":"(a+)+${i}"}`).join(',')}]}`,
        ),
        'body/conditions/any',
        /must have at most 500 entries/,
      ],
      [
        '300 leaves',
        'POST',
        body(`{"any":[${Array.from({ length: 300 }, () => LEAF).join(',')}]}`),
        'body/conditions',
        /must have at most 256 condition nodes/,
      ],
    ];
    for (const [what, method, payload, field, message] of cases) {
      const res = await api(method, method === 'POST' ? '/v1/automation-rules' : ruleUrl, payload);
      t.equal(res.statusCode, 422, what);
      t.equal(res.json().code, 'invalid_rule', what);
      t.same(res.json().errors, [{ field, message: res.json().errors[0]?.message }], `${what}: ${res.body}`);
      t.match(res.json().errors[0]?.message, message, what);
    }

    // 4,000 leaves each with an unknown field and operator: the engine alone finds 8,001 problems.
    const many = await api(
      'POST',
      '/v1/automation-rules',
      body(`{"any":[${Array.from({ length: 4_000 }, () => '{"field":"mood","operator":"x"}').join(',')}]}`),
    );
    t.equal(many.statusCode, 422);
    t.ok(
      many.json().errors.length <= 50,
      `a short list of problems, not thousands (${many.json().errors.length})`,
    );

    const unknown = Array.from({ length: 60 }, (_, i) => ({ field: `mood${i}`, operator: 'is', value: 'x' }));
    const listed = await api('POST', '/v1/automation-rules', { ...base, conditions: { any: unknown } });
    t.equal(listed.statusCode, 422);
    t.equal(listed.json().errors.length, 50, 'at most 50 problems listed');
    t.match(listed.json().detail, /\(and 59 more\)/, 'the rest counted in the detail');

    t.same(await state(), before, 'nothing stored, the rule set did not move');
    t.same((await api('GET', ruleUrl)).json(), rule, 'the rule is as it was');
  });

  await t.test('text PostgreSQL cannot store answers 422 pointing at it, not 500', async (t) => {
    const before = await state();
    const cases: [string, 'POST' | 'PATCH', Record<string, unknown>, string][] = [
      ['NUL in the name', 'POST', { ...base, name: 'Ref\u0000unds' }, 'body/name'],
      ['NUL in the note', 'PATCH', { note: 'see \u0000' }, 'body/note'],
      [
        'NUL in a condition value',
        'POST',
        { ...base, conditions: { all: [{ field: 'subject', operator: 'contains', value: 'a\u0000' }] } },
        'body/conditions/all/0/value',
      ],
      [
        'NUL in a note action',
        'PATCH',
        { actions: [{ type: 'add_note', body: 'x\u0000y' }] },
        'body/actions/0/body',
      ],
    ];
    for (const [what, method, payload, field] of cases) {
      const res = await api(method, method === 'POST' ? '/v1/automation-rules' : ruleUrl, payload);
      t.equal(res.statusCode, 422, `${what}: ${res.body}`);
      t.equal(res.json().code, 'invalid_rule', what);
      t.same(res.json().errors, [{ field, message: 'must not contain U+0000 or unpaired surrogates' }], what);
    }
    // A lone surrogate never reaches the rule: the JSON body is refused as it is parsed, as on
    // every route (README, "Errors").
    const half = await api('POST', '/v1/automation-rules', {
      ...base,
      actions: [{ type: 'add_tags', tags: ['ok', 'bad\ud800'] }],
    });
    t.equal(half.statusCode, 400, half.body);
    t.equal(half.json().code, 'invalid_text');
    t.same(half.json().errors, [
      { field: 'body/actions/0/tags/1', message: 'holds a lone UTF-16 surrogate' },
    ]);
    t.same(await state(), before, 'nothing stored');
  });

  await t.test('a change to nothing moves no rules version, so no cache is thrown away', async (t) => {
    const before = await state();
    const same = await api('PATCH', ruleUrl, { name: rule.name, conditions: rule.conditions });
    t.equal(same.statusCode, 200);
    t.equal(same.json().version, rule.version);
    const order = await api('PUT', '/v1/automation-rules/order', { rule_ids: [rule.id] });
    t.equal(order.statusCode, 200);
    t.same(order.json().data, [rule]);
    t.same(await state(), before, 'rules_version and rules_key as they were');

    const changed = await api('PATCH', ruleUrl, { active: false });
    t.equal(changed.json().version, rule.version + 1);
    const after = await state();
    t.equal(Number(after.rules_version), Number(before.rules_version) + 1, 'a real change does move it');
    t.not(after.rules_key, before.rules_key);
    t.equal((await api('PATCH', ruleUrl, { active: true })).statusCode, 200);
  });

  await t.test('simulate: plain values in, bounded drafts; 4xx instead of 500', async (t) => {
    const simulate = (payload: object | string, token = reader.token) =>
      api('POST', '/v1/automation-rules/simulate', payload, token);
    const deepValue = nested('[', ']', 5_000, '1');
    for (const [what, payload, field] of [
      [
        'a contact field nested 5,000 deep',
        `{"event":{"type":"ticket.created"},"ticket":{"contact":{"custom":{"plan":${deepValue}}}}}`,
        'body/ticket/contact/custom/plan',
      ],
      [
        'a previous value nested 5,000 deep',
        `{"event":{"type":"ticket.updated","previous":{"subject":${deepValue}}},"ticket":{}}`,
        'body/event/previous/subject',
      ],
      [
        'a previous value of a field that has none',
        { event: { type: 'ticket.updated', previous: { mood: 'sad' } }, ticket: {} },
        'body/event/previous/mood',
      ],
      [
        'a previous status that does not exist',
        { event: { type: 'ticket.updated', previous: { status: { closed: true } } }, ticket: {} },
        'body/event/previous/status',
      ],
    ] as const) {
      const res = await simulate(payload);
      t.equal(res.statusCode, 400, `${what}: ${res.body.slice(0, 300)}`);
      t.ok(
        res.json().errors?.some((e: { field: string }) => e.field === field),
        `${what}: ${field} in ${res.body.slice(0, 300)}`,
      );
    }

    const changed = await simulate({
      event: {
        type: 'ticket.updated',
        previous: { priority: 'low', contact: { custom: { plan: 'Free' } } },
      },
      ticket: { priority: 'high', contact: { custom: { plan: 'Pro' } } },
      rules: [
        {
          name: 'Escalated',
          triggers: ['ticket.updated'],
          conditions: { all: [{ field: 'priority', operator: 'changed_from', value: 'low' }] },
          actions: [{ type: 'add_tags', tags: ['escalated'] }],
        },
      ],
    });
    t.equal(changed.statusCode, 200, changed.body);
    t.same(changed.json().result.tags, ['escalated'], 'previous values still work');

    const draft = (leaves: number, i: number) => ({
      name: `Draft ${i}`,
      triggers: ['ticket.created'],
      conditions: {
        any: Array.from({ length: leaves }, (_, j) => ({
          field: 'message.body',
          operator: 'matches',
          value: `(x+)+y${i}-${j}`,
        })),
      },
      actions: [{ type: 'add_tags', tags: ['x'] }],
    });
    const event = { type: 'ticket.created', message: { body: 'x'.repeat(20_000) } };
    const tooMany = await simulate({
      event,
      ticket: {},
      rules: Array.from({ length: 200 }, (_, i) => draft(20, i)),
    });
    t.equal(tooMany.statusCode, 422, tooMany.body.slice(0, 300));
    t.equal(tooMany.json().code, 'simulation_too_large');
    t.same(tooMany.json().errors, [
      { field: 'body/rules', message: 'must have at most 1024 condition nodes in all' },
    ]);
    const deepDraft = await simulate(
      `{"event":{"type":"ticket.created"},"ticket":{},"rules":[{"name":"D","triggers":["ticket.created"],"actions":[{"type":"mark_spam"}],"conditions":${nested('{"not":', '}', 50_000, LEAF)}}]}`,
    );
    t.equal(deepDraft.statusCode, 422);
    t.match(deepDraft.json().errors, [{ field: /^body\/rules\/0\/conditions(\/not){16}$/ }]);
    const fits = await simulate({
      event,
      ticket: {},
      rules: Array.from({ length: 40 }, (_, i) => draft(20, i)),
    });
    t.equal(fits.statusCode, 200, 'drafts within the limit run');
  });

  await t.test(
    'rule writes racing the deletion of what they name: no deadlock, nothing dangling',
    async (t) => {
      const other = await makeDepartment(ctx.db, 'Other');
      const seen = new Set<string>();
      for (let i = 0; i < 16; i++) {
        const doomed = await makeDepartment(ctx.db, `Doomed ${i}`);
        const move = i % 2 === 1 ? `?move_to_department_id=${other}` : '';
        const [deletion, write] = await Promise.all([
          api('DELETE', `/v1/departments/${doomed}${move}`),
          api('POST', '/v1/automation-rules', {
            ...base,
            name: `Owned ${i}`,
            department_id: doomed,
            actions: [{ type: 'transfer', department_id: doomed }],
          }),
        ]);
        seen.add(`${deletion.statusCode} ${write.statusCode}`);
        t.not(write.json().code, 'concurrent_update', `${i}: the rule write did not deadlock`);
        t.not(write.json().code, 'reference_conflict', `${i}: ${write.body.slice(0, 200)}`);
        if (deletion.statusCode !== 204) {
          t.not(deletion.json().code, 'concurrent_update', `${i}: the deletion did not deadlock`);
        }
        t.ok(
          [201, 422].includes(write.statusCode),
          `${i}: created, or refused as naming a missing department`,
        );
        if (write.statusCode === 201) {
          const stored = (await api('GET', `/v1/automation-rules/${write.json().id}`)).json();
          if (deletion.statusCode === 204) {
            t.same(
              [stored.department_id, stored.actions[0].department_id],
              [other, other],
              `${i}: the rule followed the department's tickets`,
            );
          } else {
            t.equal(deletion.json().code, 'department_in_use', `${i}: the deletion waited and saw the rule`);
          }
          t.equal((await api('DELETE', `/v1/automation-rules/${stored.id}`)).statusCode, 204);
        }
      }
      t.comment(`outcomes (deletion, write): ${[...seen].join('; ')}`);

      const substitute = await makeAgent(ctx.db, { departments: [[sales, 'solver']] });
      for (let i = 0; i < 8; i++) {
        const leaving = await makeAgent(ctx.db, { departments: [[sales, 'solver']] });
        const [deletion, write] = await Promise.all([
          api('DELETE', `/v1/agents/${leaving.id}?substitute_agent_id=${substitute.id}`),
          api('POST', '/v1/automation-rules', {
            ...base,
            name: `Assign ${i}`,
            actions: [{ type: 'assign', to: 'agent', agent_id: leaving.id }],
          }),
        ]);
        t.equal(deletion.statusCode, 204, deletion.body);
        t.ok([201, 422].includes(write.statusCode), write.body.slice(0, 200));
        if (write.statusCode === 201) {
          const stored = (await api('GET', `/v1/automation-rules/${write.json().id}`)).json();
          t.equal(
            stored.actions[0].agent_id,
            substitute.id,
            `${i}: the rule names the substitute, not a gone agent`,
          );
          await api('DELETE', `/v1/automation-rules/${stored.id}`);
        }
      }
      t.equal((await api('GET', `/v1/departments/${GHOST}`)).statusCode, 404);
    },
  );

  await t.test('concurrent writers of one rule take turns', async (t) => {
    const other = (await api('POST', '/v1/automation-rules', { ...base, name: 'Other' })).json();
    const [a, b] = await Promise.all([
      api('PUT', '/v1/automation-rules/order', { rule_ids: [other.id, rule.id] }),
      api('PUT', '/v1/automation-rules/order', { rule_ids: [rule.id, other.id] }),
    ]);
    t.same([a.statusCode, b.statusCode], [200, 200]);
    const order = (await api('GET', '/v1/automation-rules')).json().data.map((r: { id: string }) => r.id);
    t.ok(
      [
        JSON.stringify(a.json().data.map((r: { id: string }) => r.id)),
        JSON.stringify(b.json().data.map((r: { id: string }) => r.id)),
      ].includes(JSON.stringify(order)),
      'one of the two orders, whole',
    );

    const etag = String((await api('GET', ruleUrl)).headers.etag);
    const [first, second] = await Promise.all(
      ['First', 'Second'].map((name) =>
        ctx.request({
          method: 'PATCH',
          url: ruleUrl,
          token: admin.token,
          headers: { 'if-match': etag },
          payload: { name },
        }),
      ),
    );
    t.same(
      [first!.statusCode, second!.statusCode].sort(),
      [200, 412],
      'with the same If-Match, one wins and the other is told it is stale',
    );

    const [update, deletion] = await Promise.all([
      api('PATCH', `/v1/automation-rules/${other.id}`, { name: 'Renamed' }),
      api('DELETE', `/v1/automation-rules/${other.id}`),
    ]);
    t.equal(deletion.statusCode, 204);
    t.ok([200, 404].includes(update.statusCode), `update before or after the deletion: ${update.statusCode}`);
    const history = (await api('GET', `/v1/automation-rules/${other.id}/versions`)).json().data;
    t.equal(history.at(-1).change, 'deleted', 'the deletion is the last version');
    t.equal((await api('GET', `/v1/automation-rules/${other.id}`)).statusCode, 404);
  });
});
