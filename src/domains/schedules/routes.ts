import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorCodes } from 'fastify';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { listSchedules } from './repository.ts';
import {
  CreateScheduleBody,
  HolidayImportResultSchema,
  HolidaySchema,
  ImportModeQuery,
  ScheduleListQuery,
  ScheduleSchema,
  UpdateScheduleBody,
  WeeklyIntervalSchema,
} from './schemas.ts';
import * as service from './service.ts';

export const SchedulePage = PageOf(ref(ScheduleSchema), 'SchedulePage');
export const scheduleSchemas = [
  WeeklyIntervalSchema,
  HolidaySchema,
  ScheduleSchema,
  SchedulePage,
  HolidayImportResultSchema,
];

const tags = ['schedules'];
const Schedule = ref(ScheduleSchema);
const etagHeader = responseHeaders.etag('update');
const createdHeaders = { ...etagHeader, ...responseHeaders.location('schedule') };

/** An .ics of a few years of public holidays is a few dozen KiB; this leaves room and no more. */
export const ICS_BODY_LIMIT = 512 * 1024;

export const scheduleRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  // Only this plugin reads raw calendars: the parser is registered in its own encapsulated
  // context, so every other route still answers 415 to text/calendar.
  app.addContentTypeParser(
    'text/calendar',
    { parseAs: 'string', bodyLimit: ICS_BODY_LIMIT },
    (_request, body, done) => done(null, body),
  );

  app.get(
    '/v1/schedules',
    {
      schema: {
        operationId: 'listSchedules',
        tags,
        summary: 'List schedules',
        description: 'Working-hours schedules, sorted by name. Every agent may list them.',
        querystring: Type.Object({ ...PageQuery, ...ScheduleListQuery }, { additionalProperties: false }),
        response: { 200: ref(SchedulePage) },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return listSchedules(db, filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/schedules',
    {
      schema: {
        operationId: 'createSchedule',
        tags,
        summary: 'Create a schedule',
        description:
          'Owners and admins only. 422 `invalid_schedule` when business time cannot use the definition (an unknown zone, bad times or dates, overlapping intervals), each problem pointing into the body. `is_default: true` takes the default from the schedule that had it.',
        body: CreateScheduleBody,
        response: { 201: { ...Schedule, headers: createdHeaders }, ...problems(409, 422) },
      },
    },
    async (request, reply) => {
      const schedule = await service.createSchedule(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/schedules/${schedule.id}`);
      return withEtag(reply, schedule);
    },
  );

  app.get(
    '/v1/schedules/:id',
    {
      schema: {
        operationId: 'getSchedule',
        tags,
        summary: 'Get a schedule',
        params: IdParams,
        response: { 200: { ...Schedule, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getSchedule(db, request.params.id)),
  );

  app.patch(
    '/v1/schedules/:id',
    {
      schema: {
        operationId: 'updateSchedule',
        tags,
        summary: 'Update a schedule',
        description:
          'Owners and admins only. Arrays are replaced whole. Send If-Match to avoid overwriting a newer version.',
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateScheduleBody,
        response: { 200: { ...Schedule, headers: etagHeader }, ...problems(404, 409, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateSchedule(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/schedules/:id',
    {
      schema: {
        operationId: 'deleteSchedule',
        tags,
        summary: 'Delete a schedule',
        description:
          'Owners and admins only. 409 `schedule_in_use` (listing them in `blockers`) while departments follow it. The default may be deleted: departments without a schedule of their own are then always open.',
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 409, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteSchedule(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/schedules/:id/holidays/import',
    {
      bodyLimit: ICS_BODY_LIMIT,
      // The body schema is per media type, so a JSON body would pass unchecked: only the calendar.
      preValidation: async (request) => {
        if (typeof request.body !== 'string') {
          throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(String(request.headers['content-type']));
        }
      },
      schema: {
        operationId: 'importScheduleHolidays',
        tags,
        summary: 'Import holidays from an iCalendar file',
        description: `Owners and admins only. The body is the .ics text itself (Content-Type: text/calendar, at most ${ICS_BODY_LIMIT / 1024} KiB). All-day events close their dates whole; timed events close their hours in the schedule's zone; a yearly repetition on the same month and day becomes a yearly holiday; other repetitions are expanded from one year back to three years ahead. Holidays the schedule already has on the same day and hours are skipped. 422 \`invalid_calendar\` with the parser's reason when the text is not iCalendar, or names a date or time that does not exist (20270230).`,
        params: IdParams,
        headers: IfMatchHeaders,
        querystring: Type.Object(ImportModeQuery, { additionalProperties: false }),
        body: {
          content: {
            'text/calendar': {
              schema: Type.String({
                description: 'An iCalendar (RFC 5545) VCALENDAR.',
                examples: [
                  'BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//Holidays//EN\r\nBEGIN:VEVENT\r\nUID:newyear@example.com\r\nDTSTART;VALUE=DATE:20270101\r\nDTEND;VALUE=DATE:20270102\r\nRRULE:FREQ=YEARLY\r\nSUMMARY:New Year\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:closing@example.com\r\nDTSTART;TZID=Europe/Berlin:20261224T120000\r\nDTEND;TZID=Europe/Berlin:20261224T180000\r\nSUMMARY:Christmas Eve afternoon\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n',
                ],
              }),
            },
          },
        },
        response: { 200: ref(HolidayImportResultSchema), ...problems(404, 412, 422) },
      },
    },
    async (request) =>
      service.importHolidays(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
        request.body as string,
        request.query.mode ?? 'merge',
      ),
  );
};
