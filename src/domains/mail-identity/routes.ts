import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import {
  DepartmentKindParams,
  DepartmentMailIdentitySchema,
  KindParams,
  MailSettingsSchema,
  MailTemplateListSchema,
  MailTemplateSchema,
  PreviewMailTemplateBody,
  PutMailTemplateBody,
  RenderedMailSchema,
  UpdateDepartmentMailIdentityBody,
  UpdateMailSettingsBody,
} from './schemas.ts';
import * as service from './service.ts';

export const mailIdentitySchemas = [
  MailSettingsSchema,
  DepartmentMailIdentitySchema,
  MailTemplateSchema,
  MailTemplateListSchema,
  RenderedMailSchema,
];

const tags = ['mail'];
const etagHeader = responseHeaders.etag('update');
const TEMPLATE_ERRORS =
  '422 `invalid_template` when a part cannot be used: Liquid syntax, a variable or filter outside the documented set (docs/email.md, "Templates"), or an error rendering the built-in sample; each error names the part (`body/subject`, `body/text`, `body/html`) with its line and column.';

export const mailIdentityRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/mail-settings',
    {
      schema: {
        operationId: 'getMailSettings',
        tags,
        summary: 'The help desk’s mail defaults',
        description: 'Every agent may read them.',
        response: { 200: { ...ref(MailSettingsSchema), headers: etagHeader } },
      },
    },
    async (_request, reply) => withEtag(reply, await service.getMailSettings(db)),
  );

  app.put(
    '/v1/mail-settings',
    {
      schema: {
        operationId: 'updateMailSettings',
        tags,
        summary: 'Change the help desk’s mail defaults',
        description:
          'Owners and admins only. The help desk’s name, sender name, signature and from-address apply wherever a department sets none. The HTML signature is sanitised. 422 `invalid_address` for a from-address that is not one.',
        headers: IfMatchHeaders,
        body: UpdateMailSettingsBody,
        response: { 200: { ...ref(MailSettingsSchema), headers: etagHeader }, ...problems(412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateMailSettings(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.body,
        ),
      ),
  );

  app.get(
    '/v1/departments/:id/mail-identity',
    {
      schema: {
        operationId: 'getDepartmentMailIdentity',
        tags,
        summary: 'A department’s sender name, signature and support addresses',
        description: 'Every agent may read it. `effective` is what its mail goes out with.',
        params: IdParams,
        response: { 200: { ...ref(DepartmentMailIdentitySchema), headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getDepartmentIdentity(db, request.params.id)),
  );

  app.put(
    '/v1/departments/:id/mail-identity',
    {
      schema: {
        operationId: 'updateDepartmentMailIdentity',
        tags,
        summary: 'Change a department’s sender name, signature and support addresses',
        description:
          'Owners, admins and the department’s managers. `addresses` replaces the support addresses (lower-cased; one reply-from, the first when none is marked). They route mail, so only owners and admins may change them: a manager may send them unchanged (any order or case; the reply-from may move among them), else 403 `addresses_admin_required` and nothing changes. 422 `invalid_address`, `duplicate_address` or `several_reply_from` naming the entry; 409 `address_taken` when another department has the address, `address_of_mailbox` when another department’s mailbox receives at it (its IMAP username or its address). The HTML signature is sanitised.',
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateDepartmentMailIdentityBody,
        response: {
          200: { ...ref(DepartmentMailIdentitySchema), headers: etagHeader },
          ...problems(403, 404, 409, 412, 422),
        },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateDepartmentIdentity(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  // Templates: the help desk's level and each department's.

  app.get(
    '/v1/mail-templates',
    {
      schema: {
        operationId: 'listMailTemplates',
        tags,
        summary: 'The help desk’s mail templates, one per kind',
        description:
          'Every agent may read them. `source` says whether the help desk set it or it is built in.',
        response: { 200: ref(MailTemplateListSchema) },
      },
    },
    async () => service.listTemplates(db, null),
  );

  app.get(
    '/v1/mail-templates/:kind',
    {
      schema: {
        operationId: 'getMailTemplate',
        tags,
        summary: 'The help desk’s template of a kind',
        params: KindParams,
        response: { 200: { ...ref(MailTemplateSchema), headers: etagHeader } },
      },
    },
    async (request, reply) => withEtag(reply, await service.getTemplate(db, null, request.params.kind)),
  );

  app.put(
    '/v1/mail-templates/:kind',
    {
      schema: {
        operationId: 'putMailTemplate',
        tags,
        summary: 'Set the help desk’s template of a kind',
        description: `Owners and admins only. Applies to departments without a template of their own. ${TEMPLATE_ERRORS}`,
        params: KindParams,
        headers: IfMatchHeaders,
        body: PutMailTemplateBody,
        response: { 200: { ...ref(MailTemplateSchema), headers: etagHeader }, ...problems(412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.putTemplate(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          null,
          request.params.kind,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/mail-templates/:kind',
    {
      schema: {
        operationId: 'deleteMailTemplate',
        tags,
        summary: 'Go back to the built-in template of a kind',
        description:
          'Owners and admins only. 404 `mail_template_not_found` when the help desk has none of its own.',
        params: KindParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteTemplate(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        null,
        request.params.kind,
      );
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/mail-templates/:kind/preview',
    {
      schema: {
        operationId: 'previewMailTemplate',
        tags,
        summary: 'Render the help desk’s template (or a draft) for a ticket or a sample',
        description: `Every agent. Saves nothing. With \`ticket_id\` (a ticket you may see, else 404), the mail as it would go out for that ticket, from its department’s sender; otherwise a built-in sample. ${TEMPLATE_ERRORS}`,
        params: KindParams,
        body: PreviewMailTemplateBody,
        response: { 200: ref(RenderedMailSchema), ...problems(404, 422) },
      },
    },
    async (request) =>
      service.previewTemplate(db, principalOf(request), null, request.params.kind, request.body),
  );

  app.get(
    '/v1/departments/:id/templates',
    {
      schema: {
        operationId: 'listDepartmentMailTemplates',
        tags,
        summary: 'The templates a department’s mail uses, one per kind',
        description:
          'Every agent may read them. `source`: department (its own), help_desk or built_in (inherited).',
        params: IdParams,
        response: { 200: ref(MailTemplateListSchema), ...problems(404) },
      },
    },
    async (request) => service.listTemplates(db, request.params.id),
  );

  app.get(
    '/v1/departments/:id/templates/:kind',
    {
      schema: {
        operationId: 'getDepartmentMailTemplate',
        tags,
        summary: 'The template of a kind a department’s mail uses',
        params: DepartmentKindParams,
        response: { 200: { ...ref(MailTemplateSchema), headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) =>
      withEtag(reply, await service.getTemplate(db, request.params.id, request.params.kind)),
  );

  app.put(
    '/v1/departments/:id/templates/:kind',
    {
      schema: {
        operationId: 'putDepartmentMailTemplate',
        tags,
        summary: 'Set a department’s own template of a kind',
        description: `Owners, admins and the department’s managers. ${TEMPLATE_ERRORS}`,
        params: DepartmentKindParams,
        headers: IfMatchHeaders,
        body: PutMailTemplateBody,
        response: {
          200: { ...ref(MailTemplateSchema), headers: etagHeader },
          ...problems(404, 412, 422),
        },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.putTemplate(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.params.kind,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/departments/:id/templates/:kind',
    {
      schema: {
        operationId: 'deleteDepartmentMailTemplate',
        tags,
        summary: 'Drop a department’s own template of a kind',
        description:
          'Owners, admins and the department’s managers. The help desk’s (or the built-in) template applies again. 404 `mail_template_not_found` when the department has none of its own.',
        params: DepartmentKindParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteTemplate(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
        request.params.kind,
      );
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/departments/:id/templates/:kind/preview',
    {
      schema: {
        operationId: 'previewDepartmentMailTemplate',
        tags,
        summary: 'Render a department’s template (or a draft) for a ticket or a sample',
        description: `Every agent. Saves nothing. From the department’s sender, with its name and signature; with \`ticket_id\` (a ticket you may see, else 404) that ticket’s data, otherwise a built-in sample. ${TEMPLATE_ERRORS}`,
        params: DepartmentKindParams,
        body: PreviewMailTemplateBody,
        response: { 200: ref(RenderedMailSchema), ...problems(404, 422) },
      },
    },
    async (request) =>
      service.previewTemplate(db, principalOf(request), request.params.id, request.params.kind, request.body),
  );
};
