import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { ref } from '../../contract.ts';
import { problems } from '../../plugins/openapi.ts';
import { registerMultipart, requireContentType } from '../attachments/multipart.ts';
import { readFormWithFiles } from '../attachments/service.ts';
import { discardFiles } from '../attachments/store.ts';
import {
  ContactFormBody,
  type ContactFormInput,
  ContactFormReceiptSchema,
  FORM_DEPARTMENTS_MAX,
  FormDepartmentListSchema,
} from './schemas.ts';
import { checkContactForm, hidingRuleDetails, listFormDepartments, submitContactForm } from './service.ts';

export const publicSchemas = [FormDepartmentListSchema, ContactFormReceiptSchema];

const tags = ['public'];

// The largest valid form, with every character JSON-escaped, stays well below this; an anonymous
// caller gets no more than that, nor more than BODY_LIMIT_BYTES.
const FORM_BODY_LIMIT = 256 * 1024;

/** The contact form of a website: no credentials, so each client address has a small budget. */
export const publicRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;
  // Files on the form: multipart/form-data is accepted by this plugin's routes only.
  await registerMultipart(app, config.attachments);
  const rateLimit = {
    max: config.publicFormRateLimitPerMinute,
    timeWindow: 60_000,
    // Per client address, like the global limit, but a much smaller budget: anyone may call it.
    keyGenerator: (request: FastifyRequest) => `public:${request.ip}`,
  };

  app.get(
    '/v1/public/departments',
    {
      config: { public: true, rateLimit },
      schema: {
        operationId: 'listContactFormDepartments',
        tags,
        summary: 'Departments a contact form may offer',
        description: `Each department selectable on the contact form, sorted by name (at most ${FORM_DEPARTMENTS_MAX}): its id and name, whether it is open now by its working hours and when that next changes, and which of its channels (chat, phone, messaging) are available now, for a contact widget. No credentials needed; each client address may call it PUBLIC_FORM_RATE_LIMIT_PER_MINUTE times a minute.`,
        response: { 200: ref(FormDepartmentListSchema) },
      },
    },
    async () => listFormDepartments(db),
  );

  app.post(
    '/v1/public/tickets',
    {
      bodyLimit: Math.min(FORM_BODY_LIMIT, config.bodyLimit),
      config: { public: true, rateLimit },
      schema: {
        operationId: 'submitContactForm',
        tags,
        summary: 'Send a message through the contact form',
        description:
          'Opens a ticket (channel contact_form) for the contact with this email, or a new contact with this name. The answer carries only the new ticket’s reference. No credentials needed (an Authorization header is ignored); each client address may call it PUBLIC_FORM_RATE_LIMIT_PER_MINUTE times a minute.',
        body: {
          content: {
            'application/json': { schema: ContactFormBody },
            'multipart/form-data': {
              schema: {
                ...ContactFormBody,
                additionalProperties: {
                  type: 'string',
                  format: 'binary',
                  description: 'A file, under any field name that is not one of the form’s.',
                },
                properties: {
                  ...ContactFormBody.properties,
                  files: {
                    type: 'array',
                    items: { type: 'string', format: 'binary' },
                    description:
                      'Attachments: one part per file (any field name that is not a form field); they go on the opening message.',
                  },
                },
              },
            },
          },
        },
        response: {
          202: { ...ref(ContactFormReceiptSchema), description: 'Received; a ticket was opened.' },
          409: {
            ...problems(409)[409],
            description:
              'rule_action_failed: the help desk’s automation could not file the message; try again later.',
          },
          422: {
            ...problems(422)[422],
            description:
              'department_not_selectable: the department does not exist or is not offered on the form.',
          },
        },
      },
    },
    async (request, reply) => {
      requireContentType(request);
      if (!request.isMultipart()) {
        const form = request.body as ContactFormInput;
        return reply.code(202).send(await hidingRuleDetails(() => submitContactForm(db, form)));
      }
      // The same fields as form fields, plus files, streamed to storage before the ticket opens.
      const { fields, files } = await readFormWithFiles(app.blobs, request.parts(), config.attachments);
      try {
        const form = checkContactForm(fields);
        return reply.code(202).send(await hidingRuleDetails(() => submitContactForm(db, form, files)));
      } catch (error) {
        await discardFiles(app.blobs, files);
        throw error;
      }
    },
  );
};
