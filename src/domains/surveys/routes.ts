import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems } from '../../plugins/openapi.ts';
import {
  CsatSettingSchema,
  PublicRatingBody,
  PublicRatingReceiptSchema,
  PublicSurveySchema,
  PutCsatSettingBody,
  SurveyTokenParams,
} from './schemas.ts';
import * as service from './service.ts';

export const surveySchemas = [CsatSettingSchema, PublicSurveySchema, PublicRatingReceiptSchema];

export const surveyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;

  app.get(
    '/v1/departments/:id/csat',
    {
      schema: {
        operationId: 'getDepartmentCsat',
        tags: ['departments'],
        summary: 'A department’s CSAT survey setting',
        description: 'Whether resolved tickets get a survey mail, and after how long. Members and admins.',
        params: IdParams,
        response: { 200: ref(CsatSettingSchema), ...problems(404) },
      },
    },
    async (request) => service.departmentCsat(db, config.mail, principalOf(request), request.params.id),
  );

  app.put(
    '/v1/departments/:id/csat',
    {
      schema: {
        operationId: 'setDepartmentCsat',
        tags: ['departments'],
        summary: 'Change a department’s CSAT survey setting',
        description:
          'Its managers, owners and admins. A csat_settings.updated settings event tells the change.',
        params: IdParams,
        body: PutCsatSettingBody,
        response: { 200: ref(CsatSettingSchema), ...problems(403, 404) },
      },
    },
    async (request) =>
      service.setDepartmentCsat(db, config.mail, principalOf(request), request.params.id, request.body),
  );

  // The survey page: no credentials, the same small per-address budget as the contact form.
  const rateLimit = {
    max: config.publicFormRateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request: FastifyRequest) => `public-rating:${request.ip}`,
  };

  app.get(
    '/v1/public/ratings/:token',
    {
      config: { public: true, rateLimit },
      schema: {
        operationId: 'getPublicSurvey',
        tags: ['public'],
        summary: 'What a survey page shows',
        description:
          'The ticket reference, subject and department name of a survey link (the token of PUBLIC_BASE_URL/ratings/<token> in the survey mail). No credentials; each client address may call it PUBLIC_FORM_RATE_LIMIT_PER_MINUTE times a minute.',
        params: SurveyTokenParams,
        response: { 200: ref(PublicSurveySchema), ...problems(404, 410) },
      },
    },
    async (request) => service.publicSurvey(db, request.params.token),
  );

  app.post(
    '/v1/public/ratings/:token',
    {
      bodyLimit: 64 * 1024,
      config: { public: true, rateLimit },
      schema: {
        operationId: 'rateBySurvey',
        tags: ['public'],
        summary: 'Rate a ticket through its survey link',
        description:
          'Records the rating and comment on the ticket (as a rating by its contact, counted in the reports). Each link rates once: a second use answers 409, an expired link 410, an unknown one 404. No credentials; rate limited like the contact form.',
        params: SurveyTokenParams,
        body: PublicRatingBody,
        response: { 201: ref(PublicRatingReceiptSchema), ...problems(404, 409, 410) },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await service.rateBySurvey(db, request.params.token, request.body)),
  );
};
