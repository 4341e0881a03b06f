import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref, Uuid } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { DepartmentRoleSchema } from '../agents/schemas.ts';
import { departmentDependents } from '../registered-dependents.ts';
import { listDepartments } from './repository.ts';
import {
  AddAllMembersBody,
  AddAllMembersResult,
  AvailabilityQuery,
  CreateDepartmentBody,
  DeleteDepartmentQuery,
  DepartmentAvailabilitySchema,
  DepartmentListQuery,
  DepartmentSchema,
  MemberSchema,
  ReplaceMembersBody,
  SetMemberBody,
  UpdateDepartmentBody,
} from './schemas.ts';
import * as service from './service.ts';

export const DepartmentPage = PageOf(ref(DepartmentSchema), 'DepartmentPage');
export const MemberPage = PageOf(ref(MemberSchema), 'DepartmentMemberPage');
export const departmentSchemas = [
  DepartmentSchema,
  MemberSchema,
  DepartmentPage,
  MemberPage,
  DepartmentAvailabilitySchema,
];

const tags = ['departments'];
const Department = ref(DepartmentSchema);
const MemberParams = Type.Object({ id: Uuid(), agent_id: Uuid() }, { additionalProperties: false });
const etagHeader = responseHeaders.etag('update');
const createdHeaders = { ...etagHeader, ...responseHeaders.location('department') };

export const departmentRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/departments',
    {
      schema: {
        operationId: 'listDepartments',
        tags,
        summary: 'List departments',
        description: 'Every agent may list departments, sorted by name.',
        querystring: Type.Object({ ...PageQuery, ...DepartmentListQuery }, { additionalProperties: false }),
        response: { 200: ref(DepartmentPage) },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return listDepartments(db, filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/departments',
    {
      schema: {
        operationId: 'createDepartment',
        tags,
        summary: 'Create a department',
        description: 'Owners and admins only. 422 `schedule_not_found` when `schedule_id` names no schedule.',
        body: CreateDepartmentBody,
        response: { 201: { ...Department, headers: createdHeaders }, ...problems(409, 422) },
      },
    },
    async (request, reply) => {
      const department = await service.createDepartment(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/departments/${department.id}`);
      return withEtag(reply, department);
    },
  );

  app.get(
    '/v1/departments/:id',
    {
      schema: {
        operationId: 'getDepartment',
        tags,
        summary: 'Get a department',
        params: IdParams,
        response: { 200: { ...Department, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getDepartment(db, request.params.id)),
  );

  app.patch(
    '/v1/departments/:id',
    {
      schema: {
        operationId: 'updateDepartment',
        tags,
        summary: 'Update a department',
        description:
          "Owners, admins and the department's managers (its schedule and channel availability too). 422 `schedule_not_found` when `schedule_id` names no schedule. Send If-Match to avoid overwriting a newer version.",
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateDepartmentBody,
        response: { 200: { ...Department, headers: etagHeader }, ...problems(404, 409, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateDepartment(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/departments/:id',
    {
      schema: {
        operationId: 'deleteDepartment',
        tags,
        summary: 'Delete a department',
        description:
          'Owners and admins only. Answers 409 listing what the department still owns (`blockers`) unless `move_to_department_id` names the department that takes it over. Memberships go with the department.',
        params: IdParams,
        headers: IfMatchHeaders,
        querystring: Type.Object(DeleteDepartmentQuery, { additionalProperties: false }),
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      await service.deleteDepartment(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
        {
          moveTo: request.query.move_to_department_id,
          dependents: departmentDependents,
        },
      );
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/departments/:id/availability',
    {
      schema: {
        operationId: 'getDepartmentAvailability',
        tags,
        summary: 'Is the department open, and which channels are available',
        description:
          "At `at` (default now): open or closed by the department's schedule (its own, else the help desk's default; with neither it is always open), when that next changes, and each channel's mode and availability (schedule: available while open; on, off: always, never). Every agent may ask, as for GET department. 400 `at_out_of_range` for an `at` so late (after year 9997) that the next change could not be written as a date-time.",
        params: IdParams,
        querystring: Type.Object(AvailabilityQuery, { additionalProperties: false }),
        response: { 200: ref(DepartmentAvailabilitySchema), ...problems(404) },
      },
    },
    async (request) =>
      service.departmentAvailability(
        db,
        request.params.id,
        request.query.at === undefined ? new Date() : new Date(request.query.at),
      ),
  );

  app.get(
    '/v1/departments/:id/members',
    {
      schema: {
        operationId: 'listDepartmentMembers',
        tags,
        summary: "List a department's members",
        params: IdParams,
        querystring: Type.Object(
          { ...PageQuery, role: Type.Optional(DepartmentRoleSchema) },
          { additionalProperties: false },
        ),
        response: { 200: ref(MemberPage), ...problems(404) },
      },
    },
    async (request) => {
      const { limit, cursor, role } = request.query;
      return service.listMembers(db, request.params.id, { role }, { limit, cursor });
    },
  );

  app.put(
    '/v1/departments/:id/members',
    {
      schema: {
        operationId: 'replaceDepartmentMembers',
        tags,
        summary: "Replace a department's whole member set",
        description:
          "Owners, admins and the department's managers. Agents not listed leave the department; listed ones join or take the given role and level (solver and 1 when left out).",
        params: IdParams,
        body: ReplaceMembersBody,
        response: { 200: ref(MemberPage), ...problems(404, 422) },
      },
    },
    async (request) => {
      await service.replaceMembers(db, principalOf(request), request.params.id, request.body.members);
      return service.listMembers(db, request.params.id, {}, { limit: 200 });
    },
  );

  app.post(
    '/v1/departments/:id/members/add-all',
    {
      schema: {
        operationId: 'addAllAgentsToDepartment',
        tags,
        summary: 'Add every agent to a department',
        description: "Owners, admins and the department's managers. Existing members keep their role.",
        params: IdParams,
        body: AddAllMembersBody,
        response: { 200: AddAllMembersResult, ...problems(404) },
      },
    },
    async (request) => ({
      added: await service.addAllAgents(
        db,
        principalOf(request),
        request.params.id,
        request.body.role,
        request.body.include_disabled ?? false,
      ),
    }),
  );

  app.get(
    '/v1/departments/:id/members/:agent_id',
    {
      schema: {
        operationId: 'getDepartmentMember',
        tags,
        summary: "Get one member's role in a department",
        params: MemberParams,
        response: { 200: ref(MemberSchema), ...problems(404) },
      },
    },
    async (request) => service.getMember(db, request.params.id, request.params.agent_id),
  );

  app.put(
    '/v1/departments/:id/members/:agent_id',
    {
      schema: {
        operationId: 'setDepartmentMember',
        tags,
        summary: 'Add an agent to a department, or change their role or level in it',
        description:
          "Owners, admins and the department's managers. Idempotent; the role and level default to the current ones, or solver and level 1 for a new member.",
        params: MemberParams,
        body: SetMemberBody,
        response: {
          200: { ...ref(MemberSchema), description: 'The role changed (or stayed).' },
          201: { ...ref(MemberSchema), description: 'The agent joined the department.' },
          ...problems(404, 422),
        },
      },
    },
    async (request, reply) => {
      const { created, member } = await service.setMember(
        db,
        principalOf(request),
        request.params.id,
        request.params.agent_id,
        request.body.role,
        request.body.level,
      );
      return reply.code(created ? 201 : 200).send(member);
    },
  );

  app.delete(
    '/v1/departments/:id/members/:agent_id',
    {
      schema: {
        operationId: 'removeDepartmentMember',
        tags,
        summary: 'Remove an agent from a department',
        description: "Owners, admins and the department's managers.",
        params: MemberParams,
        response: { 204: { description: 'Removed.', type: 'null' }, ...problems(404) },
      },
    },
    async (request, reply) => {
      await service.removeMember(db, principalOf(request), request.params.id, request.params.agent_id);
      return reply.code(204).send(null);
    },
  );
};
