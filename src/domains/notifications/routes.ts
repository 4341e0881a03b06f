import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems } from '../../plugins/openapi.ts';
import { PageOf } from '../../plugins/pagination.ts';
import {
  MarkedReadSchema,
  NotificationDefaultsSchema,
  NotificationListQuery,
  NotificationPreferenceSchema,
  NotificationPreferencesSchema,
  NotificationSchema,
  PutNotificationDefaultsBody,
  PutNotificationPreferencesBody,
} from './schemas.ts';
import * as service from './service.ts';

export const NotificationPage = PageOf(ref(NotificationSchema), 'NotificationPage');
export const notificationSchemas = [
  NotificationSchema,
  NotificationPage,
  MarkedReadSchema,
  NotificationPreferenceSchema,
  NotificationPreferencesSchema,
  NotificationDefaultsSchema,
];

const tags = ['notifications'];

export const notificationRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/me/notifications',
    {
      schema: {
        operationId: 'listMyNotifications',
        tags,
        summary: 'Your notifications',
        description:
          'Unread first, then newest first. A new ticket in your department, a customer reply on your ticket (or on an unassigned ticket of your department), a ticket assigned to you or transferred to your department, a note that mentions your @email, an SLA escalation that handed you a ticket (or, for supervisors and managers, that their department escalated); never what you did yourself, never a ticket you cannot see. They also arrive live on GET /v1/events/stream as `event: notification`.',
        querystring: NotificationListQuery,
        response: { 200: ref(NotificationPage) },
      },
    },
    async (request) => service.listMyNotifications(db, principalOf(request), request.query),
  );

  app.post(
    '/v1/me/notifications/:id/read',
    {
      schema: {
        operationId: 'markNotificationRead',
        tags,
        summary: 'Mark a notification read',
        description:
          'Marking it again keeps the first time it was read. Someone else’s notification answers 404.',
        params: IdParams,
        response: { 200: ref(NotificationSchema), ...problems(404) },
      },
    },
    async (request) => service.markRead(db, principalOf(request), request.params.id),
  );

  app.post(
    '/v1/me/notifications/read-all',
    {
      schema: {
        operationId: 'markAllNotificationsRead',
        tags,
        summary: 'Mark all your notifications read',
        response: { 200: ref(MarkedReadSchema) },
      },
    },
    async (request) => service.markAllRead(db, principalOf(request)),
  );

  app.get(
    '/v1/me/notification-preferences',
    {
      schema: {
        operationId: 'getMyNotificationPreferences',
        tags,
        summary: 'Your notification preferences',
        description:
          'Every kind for every department you belong to, for the inbox (`enabled`) and email (`email`), and where each value comes from: your own choice, else the department’s default (set by its managers), else the help desk’s (the inbox on, email off). Email goes to your address from the department’s sender, where an SMTP server is known for the department; replies to it are not read.',
        response: { 200: ref(NotificationPreferencesSchema) },
      },
    },
    async (request) => service.myPreferences(db, principalOf(request)),
  );

  app.put(
    '/v1/me/notification-preferences',
    {
      schema: {
        operationId: 'setMyNotificationPreferences',
        tags,
        summary: 'Change your notification preferences',
        description:
          'Sets the listed department and kind pairs (others stay as they are): `enabled` for the inbox, `email` for mail, each optional (an item with neither answers 400 nothing_to_set); null goes back to the department’s default. Departments you do not belong to answer 422 not_a_member.',
        body: PutNotificationPreferencesBody,
        response: { 200: ref(NotificationPreferencesSchema), ...problems(422) },
      },
    },
    async (request) => service.setMyPreferences(db, principalOf(request), request.body),
  );

  app.get(
    '/v1/departments/:id/notification-defaults',
    {
      schema: {
        operationId: 'getDepartmentNotificationDefaults',
        tags,
        summary: 'A department’s notification defaults',
        description: 'What its members get unless they chose otherwise. Members and admins may read them.',
        params: IdParams,
        response: { 200: ref(NotificationDefaultsSchema), ...problems(404) },
      },
    },
    async (request) => service.departmentDefaults(db, principalOf(request), request.params.id),
  );

  app.put(
    '/v1/departments/:id/notification-defaults',
    {
      schema: {
        operationId: 'setDepartmentNotificationDefaults',
        tags,
        summary: 'Change a department’s notification defaults',
        description:
          'Its managers, owners and admins. Sets the listed kinds, `enabled` (the inbox), `email` or both (an item with neither answers 400 nothing_to_set); the others stay as they are.',
        params: IdParams,
        body: PutNotificationDefaultsBody,
        response: { 200: ref(NotificationDefaultsSchema), ...problems(404) },
      },
    },
    async (request) =>
      service.setDepartmentDefaults(db, principalOf(request), request.params.id, request.body),
  );
};
