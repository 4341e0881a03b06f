import t from 'tap';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';

// The /v1/automation-rules resource: CRUD, versions, ETags, validation with pointers,
// permissions, reordering, and what deleting a department or agent does to the rules naming it.
// What rules do to tickets is in automation-rules-runtime.test.ts.

const SOCIAL = ['facebook', 'twitter', 'instagram', 'viber'];

t.test('automation rules', async (t) => {
  const ctx = await buildTestApp(t);
  const marketing = await makeDepartment(ctx.db, 'Marketing');
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin', name: 'Ada Admin' });
  const salesManager = await agentWithToken(ctx, { name: 'Mia Manager', departments: [[sales, 'manager']] });
  const salesSupervisor = await agentWithToken(ctx, {
    name: 'Sam Supervisor',
    departments: [[sales, 'supervisor']],
  });
  const agent = await agentWithToken(ctx, { name: 'Al Agent', departments: [[support, 'solver']] });

  type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  const api = (
    method: Method,
    url: string,
    payload?: unknown,
    token = admin.token,
    headers?: Record<string, string>,
  ) =>
    ctx.request({
      method,
      url,
      token,
      ...(payload !== undefined && { payload: payload as object }),
      ...(headers && { headers }),
    });
  const marketingRule = (patch: Record<string, unknown> = {}) => ({
    name: 'Marketing ticket routing',
    note: 'Social media conversations belong to Marketing.',
    active: true,
    triggers: ['ticket.created'],
    conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: SOCIAL }] }] },
    actions: [
      { type: 'transfer', department_id: marketing },
      { type: 'assign', to: 'nobody' },
    ],
    ...patch,
  });
  const create = async (payload: Record<string, unknown>, token = admin.token) => {
    const res = await api('POST', '/v1/automation-rules', payload, token);
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const count = async (table: 'automation_rules' | 'automation_rule_versions') =>
    Number(
      (
        await ctx.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const rulesVersion = async () =>
    Number(
      (await ctx.db.selectFrom('automation_rules_state').select('rules_version').executeTakeFirstOrThrow())
        .rules_version,
    );
  const versions = async (id: string) =>
    (await api('GET', `/v1/automation-rules/${id}/versions`)).json().data;
  const removeAll = async () => {
    for (const rule of (await api('GET', '/v1/automation-rules?limit=200')).json().data) {
      t.equal((await api('DELETE', `/v1/automation-rules/${rule.id}`)).statusCode, 204);
    }
  };

  await t.test('create: the Marketing example, with Location, ETag, version 1, running last', async (t) => {
    const res = await api('POST', '/v1/automation-rules', marketingRule());
    t.equal(res.statusCode, 201, res.body);
    const rule = res.json();
    t.match(rule, {
      name: 'Marketing ticket routing',
      note: 'Social media conversations belong to Marketing.',
      active: true,
      position: 1,
      stop_processing: false,
      department_id: null,
      triggers: ['ticket.created'],
      conditions: { any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: SOCIAL }] }] },
      actions: [
        { type: 'transfer', department_id: marketing },
        { type: 'assign', to: 'nobody' },
      ],
      version: 1,
      created_by: admin.agent.id,
      updated_by: admin.agent.id,
    });
    t.equal(res.headers.location, `/v1/automation-rules/${rule.id}`);
    const read = await api('GET', `/v1/automation-rules/${rule.id}`);
    t.same(read.json(), rule);
    t.equal(read.headers.etag, res.headers.etag);

    const second = await create(marketingRule({ name: 'Second', note: '   ', active: false }));
    t.equal(second.position, 2, 'without a position a rule runs last');
    t.equal(second.note, null, 'a blank note is no note');
    const third = await create(marketingRule({ name: 'Third', position: -5, stop_processing: true }));
    t.equal(third.position, -5);

    const list = await api('GET', '/v1/automation-rules');
    t.same(
      list.json().data.map((r: { name: string }) => r.name),
      ['Third', 'Marketing ticket routing', 'Second'],
      'in running order',
    );
    const inactive = await api('GET', '/v1/automation-rules?active=false');
    t.same(
      inactive.json().data.map((r: { id: string }) => r.id),
      [second.id],
    );
    const paged = await api('GET', '/v1/automation-rules?limit=2');
    t.equal(paged.json().data.length, 2);
    const rest = await api('GET', `/v1/automation-rules?limit=2&cursor=${paged.json().next_cursor}`);
    t.same(
      rest.json().data.map((r: { id: string }) => r.id),
      [second.id],
    );

    t.same(
      (await versions(rule.id)).map((v: { version: number; change: string }) => [v.version, v.change]),
      [[1, 'created']],
    );
    await removeAll();
  });

  await t.test(
    'validation: 422 invalid_rule with a pointer to each offending node; nothing stored',
    async (t) => {
      const rulesBefore = await count('automation_rules');
      const versionBefore = await rulesVersion();
      const ghost = '00000000-0000-4000-8000-000000000000';
      const cases: [string, Record<string, unknown>, string, RegExp][] = [
        [
          'unknown field',
          {
            conditions: {
              any: [
                {
                  all: [
                    { field: 'channel', operator: 'is', value: 'email' },
                    { field: 'mood', operator: 'is', value: 'sad' },
                  ],
                },
              ],
            },
          },
          'body/conditions/any/0/all/1/field',
          /unknown field "mood"/,
        ],
        [
          'operator that does not fit the field',
          {
            conditions: {
              any: [
                {
                  all: [
                    { field: 'channel', operator: 'is', value: 'email' },
                    { field: 'priority', operator: 'contains', value: 'hi' },
                  ],
                },
              ],
            },
          },
          'body/conditions/any/0/all/1/operator',
          /"contains" does not apply to priority/,
        ],
        [
          'unsafe pattern (expands beyond the program limit)',
          { conditions: { all: [{ field: 'subject', operator: 'matches', value: '((a{50}){50}){50}' }] } },
          'body/conditions/all/0/value',
          /^pattern /,
        ],
        [
          'pattern with a backreference',
          { conditions: { all: [{ field: 'message.body', operator: 'matches', value: '(a)\\1' }] } },
          'body/conditions/all/0/value',
          /^pattern /,
        ],
        [
          'department that does not exist, in a condition',
          { conditions: { not: { field: 'department_id', operator: 'is_one_of', value: [sales, ghost] } } },
          'body/conditions/not/value/1',
          /department ".*" does not exist/,
        ],
        [
          'department that does not exist, in an action',
          {
            actions: [
              { type: 'add_tags', tags: ['social'] },
              { type: 'transfer', department_id: ghost },
            ],
          },
          'body/actions/1/department_id',
          /department ".*" does not exist/,
        ],
        [
          'agent that does not exist',
          { actions: [{ type: 'assign', to: 'agent', agent_id: ghost }] },
          'body/actions/0/agent_id',
          /agent ".*" does not exist/,
        ],
        [
          'contact field that does not exist',
          { conditions: { all: [{ field: 'contact.custom.plan', operator: 'is', value: 'Pro' }] } },
          'body/conditions/all/0/field',
          /unknown contact field "plan"/,
        ],
        [
          'action of an unknown type',
          { actions: [{ type: 'escalate' }] },
          'body/actions/0/type',
          /must be one of/,
        ],
        [
          'postponing for too short a time',
          { actions: [{ type: 'set_status', status: 'postponed', postpone_seconds: 5 }] },
          'body/actions/0/postpone_seconds',
          /from 60/,
        ],
        ['no actions', { actions: [] }, 'body/actions', /at least one action/],
        [
          'repeated trigger',
          { triggers: ['ticket.created', 'ticket.created'] },
          'body/triggers/1',
          /repeats/,
        ],
      ];
      for (const [what, patch, field, message] of cases) {
        const res = await api('POST', '/v1/automation-rules', marketingRule(patch));
        t.equal(res.statusCode, 422, what);
        t.equal(res.json().code, 'invalid_rule', what);
        t.match(res.headers['content-type'], /^application\/problem\+json/);
        const error = res.json().errors.find((e: { field: string }) => e.field === field);
        t.ok(error, `${what}: ${field} in ${res.body}`);
        t.match(error?.message, message, what);
      }
      const several = await api(
        'POST',
        '/v1/automation-rules',
        marketingRule({
          conditions: {
            any: [
              {
                all: [
                  { field: 'channel', operator: 'contains', value: 'x' },
                  { field: 'nope', operator: 'is', value: 1 },
                ],
              },
            ],
          },
          actions: [{ type: 'transfer', department_id: ghost }],
        }),
      );
      t.same(
        several.json().errors.map((e: { field: string }) => e.field),
        [
          'body/conditions/any/0/all/0/operator',
          'body/conditions/any/0/all/1/field',
          'body/actions/0/department_id',
        ],
        'every problem, in order',
      );
      for (const [payload, field] of [
        [marketingRule({ triggers: ['ticket.deleted'] }), 'body/triggers/0'],
        [marketingRule({ name: '  ' }), 'body/name'],
        [marketingRule({ conditions: [] }), 'body/conditions'],
        [marketingRule({ owner: 'me' }), 'body/owner'],
      ] as const) {
        const res = await api('POST', '/v1/automation-rules', payload);
        t.equal(res.statusCode, 400, field);
        t.ok(
          res.json().errors.some((e: { field: string }) => e.field === field),
          `${field} in ${res.body}`,
        );
      }
      t.equal(await count('automation_rules'), rulesBefore, 'nothing created');
      t.equal(await rulesVersion(), versionBefore, 'the rule set did not change');

      const rule = await create(marketingRule());
      const bad = await api('PATCH', `/v1/automation-rules/${rule.id}`, {
        conditions: { all: [{ field: 'status', operator: 'is', value: 'closed' }] },
      });
      t.equal(bad.statusCode, 422);
      t.same(bad.json().errors, [
        {
          field: 'body/conditions/all/0/value',
          message: 'must be one of: new, open, answered, postponed, resolved, spam, deleted',
        },
      ]);
      t.same((await api('GET', `/v1/automation-rules/${rule.id}`)).json(), rule, 'unchanged');
      await removeAll();
    },
  );

  await t.test('update: If-Match, a new immutable version per change, none for no change', async (t) => {
    const rule = await create(marketingRule());
    const first = await api('GET', `/v1/automation-rules/${rule.id}`);
    const etag = String(first.headers.etag);
    const changed = await api(
      'PATCH',
      `/v1/automation-rules/${rule.id}`,
      { name: 'Social routing', stop_processing: true },
      admin.token,
      {
        'if-match': etag,
      },
    );
    t.equal(changed.statusCode, 200, changed.body);
    t.match(changed.json(), { name: 'Social routing', stop_processing: true, version: 2, note: rule.note });
    t.not(changed.headers.etag, etag);

    const stale = await api('PATCH', `/v1/automation-rules/${rule.id}`, { active: false }, admin.token, {
      'if-match': etag,
    });
    t.equal(stale.statusCode, 412);
    t.equal(stale.json().code, 'stale_version');
    t.equal((await api('GET', `/v1/automation-rules/${rule.id}`)).json().active, true, 'not changed');
    const staleDelete = await api('DELETE', `/v1/automation-rules/${rule.id}`, undefined, admin.token, {
      'if-match': etag,
    });
    t.equal(staleDelete.statusCode, 412);

    const same = await api('PATCH', `/v1/automation-rules/${rule.id}`, {
      conditions: rule.conditions,
      name: 'Social routing',
    });
    t.equal(same.json().version, 2, 'a change to nothing makes no version');

    const noted = await api(
      'PATCH',
      `/v1/automation-rules/${rule.id}`,
      { note: null, department_id: sales },
      admin.token,
      {
        'if-match': String(changed.headers.etag),
      },
    );
    t.match(noted.json(), { note: null, department_id: sales, version: 3 });

    const history = await versions(rule.id);
    t.same(
      history.map((v: { version: number; change: string }) => [v.version, v.change]),
      [
        [1, 'created'],
        [2, 'updated'],
        [3, 'updated'],
      ],
    );
    t.match(history[0].definition, {
      name: 'Marketing ticket routing',
      stop_processing: false,
      note: rule.note,
    });
    t.match(history[1].definition, { name: 'Social routing', stop_processing: true, department_id: null });
    t.match(history[2].definition, { note: null, department_id: sales });
    t.equal(history[2].changed_by, admin.agent.id);

    const deleted = await api('DELETE', `/v1/automation-rules/${rule.id}`, undefined, admin.token, {
      'if-match': String(noted.headers.etag),
    });
    t.equal(deleted.statusCode, 204);
    t.equal((await api('GET', `/v1/automation-rules/${rule.id}`)).statusCode, 404);
    t.equal((await api('PATCH', `/v1/automation-rules/${rule.id}`, { active: false })).statusCode, 404);
    const after = await versions(rule.id);
    t.same(
      after.map((v: { change: string }) => v.change),
      ['created', 'updated', 'updated', 'deleted'],
      'versions outlive the rule',
    );
    t.match(after[3], { version: 4, definition: { name: 'Social routing' } });
    t.equal(
      (await api('GET', '/v1/automation-rules/00000000-0000-4000-8000-000000000000/versions')).statusCode,
      404,
    );
  });

  await t.test('reorder: every rule once; positions 1..n; moved rules get a new version', async (t) => {
    const a = await create(marketingRule({ name: 'A' }));
    const b = await create(marketingRule({ name: 'B' }));
    const c = await create(marketingRule({ name: 'C' }));
    const res = await api('PUT', '/v1/automation-rules/order', { rule_ids: [c.id, a.id, b.id] });
    t.equal(res.statusCode, 200, res.body);
    t.same(
      res
        .json()
        .data.map((r: { name: string; position: number; version: number }) => [
          r.name,
          r.position,
          r.version,
        ]),
      [
        ['C', 1, 2],
        ['A', 2, 2],
        ['B', 3, 2],
      ],
    );
    t.same(
      (await api('GET', '/v1/automation-rules')).json().data.map((r: { name: string }) => r.name),
      ['C', 'A', 'B'],
    );
    t.same(
      (await versions(c.id)).map((v: { change: string }) => v.change),
      ['created', 'reordered'],
    );

    const again = await api('PUT', '/v1/automation-rules/order', { rule_ids: [c.id, b.id, a.id] });
    t.same(
      again.json().data.map((r: { name: string; version: number }) => [r.name, r.version]),
      [
        ['C', 2],
        ['B', 3],
        ['A', 3],
      ],
      'only the rules that moved get a version',
    );

    for (const [ids, field] of [
      [[c.id, b.id], 'body/rule_ids'],
      [[c.id, b.id, a.id, a.id], 'body/rule_ids/3'],
      [[c.id, b.id, a.id, '00000000-0000-4000-8000-000000000000'], 'body/rule_ids/3'],
    ] as const) {
      const bad = await api('PUT', '/v1/automation-rules/order', { rule_ids: ids });
      t.equal(bad.statusCode, 422);
      t.equal(bad.json().code, 'invalid_rule_order');
      t.ok(
        bad.json().errors.some((e: { field: string }) => e.field === field),
        bad.body,
      );
    }
    const forbidden = await api(
      'PUT',
      '/v1/automation-rules/order',
      { rule_ids: [a.id, b.id, c.id] },
      salesManager.token,
    );
    t.equal(forbidden.statusCode, 403);
    t.same(
      (await api('GET', '/v1/automation-rules')).json().data.map((r: { name: string }) => r.name),
      ['C', 'B', 'A'],
    );
    await removeAll();
  });

  await t.test('permissions: every agent reads; admins write all; managers their department’s', async (t) => {
    const global = await create(marketingRule());
    t.equal((await api('GET', '/v1/automation-rules', undefined, agent.token)).statusCode, 200);
    t.equal((await api('GET', `/v1/automation-rules/${global.id}`, undefined, agent.token)).statusCode, 200);
    t.equal(
      (await api('GET', `/v1/automation-rules/${global.id}/versions`, undefined, agent.token)).statusCode,
      200,
    );

    const denied = await api('POST', '/v1/automation-rules', marketingRule(), agent.token);
    t.equal(denied.statusCode, 403);
    t.equal(denied.json().code, 'admin_required');
    const noDepartment = await api('POST', '/v1/automation-rules', marketingRule(), salesManager.token);
    t.equal(noDepartment.statusCode, 403, 'a manager may not write global rules');
    const otherDepartment = await api(
      'POST',
      '/v1/automation-rules',
      marketingRule({ department_id: support }),
      salesManager.token,
    );
    t.equal(otherDepartment.statusCode, 403);
    t.equal(otherDepartment.json().code, 'department_manager_required');
    const supervisor = await api(
      'POST',
      '/v1/automation-rules',
      marketingRule({ department_id: sales }),
      salesSupervisor.token,
    );
    t.equal(supervisor.statusCode, 403, 'supervisors are not managers');

    const own = await api(
      'POST',
      '/v1/automation-rules',
      marketingRule({
        department_id: sales,
        name: 'Sales VIP',
        conditions: { all: [] },
        actions: [{ type: 'add_tags', tags: ['vip'] }],
      }),
      salesManager.token,
    );
    t.equal(own.statusCode, 201, own.body);
    const rule = own.json();
    t.equal(rule.created_by, salesManager.agent.id);
    const edit = await api(
      'PATCH',
      `/v1/automation-rules/${rule.id}`,
      { name: 'Sales VIPs' },
      salesManager.token,
    );
    t.equal(edit.statusCode, 200);
    const move = await api(
      'PATCH',
      `/v1/automation-rules/${rule.id}`,
      { department_id: support },
      salesManager.token,
    );
    t.equal(move.statusCode, 403, 'not to a department they do not manage');
    const unown = await api(
      'PATCH',
      `/v1/automation-rules/${rule.id}`,
      { department_id: null },
      salesManager.token,
    );
    t.equal(unown.statusCode, 403);
    t.equal(
      (await api('PATCH', `/v1/automation-rules/${global.id}`, { active: false }, salesManager.token))
        .statusCode,
      403,
    );
    t.equal(
      (await api('DELETE', `/v1/automation-rules/${global.id}`, undefined, salesManager.token)).statusCode,
      403,
    );
    t.equal(
      (await api('PATCH', `/v1/automation-rules/${rule.id}`, { active: false }, agent.token)).statusCode,
      403,
    );

    const readOnly = (
      await api('POST', '/v1/api-tokens', { name: 'read only', scopes: ['read'] }, admin.token)
    ).json().secret as string;
    t.equal((await api('GET', '/v1/automation-rules', undefined, readOnly)).statusCode, 200);
    const write = await api('POST', '/v1/automation-rules', marketingRule(), readOnly);
    t.equal(write.statusCode, 403);
    t.equal(write.json().code, 'insufficient_scope');
    t.equal(
      (await api('PATCH', `/v1/automation-rules/${rule.id}`, { active: false }, readOnly)).statusCode,
      403,
    );
    const simulated = await api(
      'POST',
      '/v1/automation-rules/simulate',
      { event: { type: 'ticket.created' }, ticket: { channel: 'twitter' } },
      readOnly,
    );
    t.equal(simulated.statusCode, 200, 'simulation only reads');

    t.equal(
      (await api('DELETE', `/v1/automation-rules/${rule.id}`, undefined, salesManager.token)).statusCode,
      204,
    );
    await removeAll();
  });

  await t.test(
    'deleting a department that rules name: 409 naming them, or rewrite to a substitute',
    async (t) => {
      const doomed = await makeDepartment(ctx.db, 'Doomed');
      const routing = await create(
        marketingRule({ name: 'Marketing routing', actions: [{ type: 'transfer', department_id: doomed }] }),
      );
      const vip = await create(
        marketingRule({
          name: 'VIP',
          conditions: {
            any: [{ all: [{ field: 'department_id', operator: 'is_one_of', value: [doomed, sales] }] }],
          },
          actions: [{ type: 'set_priority', priority: 'high' }],
        }),
      );
      const sleeping = await create(
        marketingRule({
          name: 'Sleeping',
          active: false,
          conditions: { all: [{ field: 'department_id', operator: 'is', value: doomed }] },
          actions: [{ type: 'add_tags', tags: ['x'] }],
        }),
      );
      const unrelated = await create(marketingRule({ name: 'Unrelated' }));

      const blocked = await api('DELETE', `/v1/departments/${doomed}`);
      t.equal(blocked.statusCode, 409);
      t.equal(blocked.json().code, 'department_in_use');
      t.same(blocked.json().blockers, [
        {
          kind: 'automation_rules',
          count: 2,
          detail: '2 automation rules refer to the department: "Marketing routing", "VIP"',
        },
      ]);

      const moved = await api('DELETE', `/v1/departments/${doomed}?move_to_department_id=${support}`);
      t.equal(moved.statusCode, 204, moved.body);
      const get = async (id: string) => (await api('GET', `/v1/automation-rules/${id}`)).json();
      t.match(await get(routing.id), { version: 2, actions: [{ type: 'transfer', department_id: support }] });
      t.match(await get(vip.id), {
        version: 2,
        conditions: { any: [{ all: [{ field: 'department_id', value: [support, sales] }] }] },
      });
      t.match(
        await get(sleeping.id),
        { version: 2, conditions: { all: [{ value: support }] } },
        'inactive rules are rewritten too',
      );
      t.equal((await get(unrelated.id)).version, 1, 'rules that do not name it stay as they are');
      const history = await versions(routing.id);
      t.match(history[1], {
        change: 'updated',
        changed_by: admin.agent.id,
        definition: { actions: [{ department_id: support }] },
      });

      const owner = await makeDepartment(ctx.db, 'Owner');
      const owned = await create(marketingRule({ name: 'Owned', active: false, department_id: owner }));
      const ownedBlock = await api('DELETE', `/v1/departments/${owner}`);
      t.equal(ownedBlock.statusCode, 409, 'a department cannot go while it owns rules, active or not');
      t.match(ownedBlock.json().blockers, [{ kind: 'automation_rules', count: 1, detail: /"Owned"/ }]);
      t.equal((await api('DELETE', `/v1/automation-rules/${owned.id}`)).statusCode, 204);

      const quiet = await makeDepartment(ctx.db, 'Quiet');
      await create(
        marketingRule({
          name: 'Inactive mention',
          active: false,
          conditions: { all: [{ field: 'department_id', operator: 'is', value: quiet }] },
        }),
      );
      t.equal(
        (await api('DELETE', `/v1/departments/${quiet}`)).statusCode,
        204,
        'inactive mentions do not block',
      );
      await removeAll();
    },
  );

  await t.test('deleting an agent that rules name: 409 naming them, or a substitute_agent_id', async (t) => {
    const leaving = await makeAgent(ctx.db, { name: 'Lea Leaving', departments: [[sales, 'solver']] });
    const staying = await makeAgent(ctx.db, { name: 'Stan Staying', departments: [[sales, 'solver']] });
    const assign = await create(
      marketingRule({ name: 'To Lea', actions: [{ type: 'assign', to: 'agent', agent_id: leaving.id }] }),
    );
    const watch = await create(
      marketingRule({
        name: 'Lea’s tickets',
        triggers: ['ticket.updated'],
        conditions: { all: [{ field: 'previous.assignee_id', operator: 'is_one_of', value: [leaving.id] }] },
        actions: [{ type: 'add_tags', tags: ['handover'] }],
      }),
    );
    const blocked = await api('DELETE', `/v1/agents/${leaving.id}`);
    t.equal(blocked.statusCode, 409);
    t.equal(blocked.json().code, 'agent_in_use');
    t.same(blocked.json().blockers, [
      {
        kind: 'automation_rules',
        count: 2,
        detail: '2 automation rules refer to the agent: "To Lea", "Lea’s tickets"',
      },
    ]);
    const ghost = await api(
      'DELETE',
      `/v1/agents/${leaving.id}?substitute_agent_id=00000000-0000-4000-8000-000000000000`,
    );
    t.equal(ghost.statusCode, 422);
    t.equal(ghost.json().code, 'substitute_not_found');
    const self = await api('DELETE', `/v1/agents/${leaving.id}?substitute_agent_id=${leaving.id}`);
    t.equal(self.statusCode, 400);
    const done = await api('DELETE', `/v1/agents/${leaving.id}?substitute_agent_id=${staying.id}`);
    t.equal(done.statusCode, 204, done.body);
    t.match((await api('GET', `/v1/automation-rules/${assign.id}`)).json(), {
      version: 2,
      actions: [{ type: 'assign', to: 'agent', agent_id: staying.id }],
    });
    t.match((await api('GET', `/v1/automation-rules/${watch.id}`)).json(), {
      version: 2,
      conditions: { all: [{ value: [staying.id] }] },
    });
    t.equal((await api('GET', `/v1/agents/${leaving.id}`)).statusCode, 404);
    await removeAll();
  });
});
