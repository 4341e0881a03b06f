import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { Db } from '../../db/database.ts';
import { DomainError, type FieldError, invalid } from '../../errors.ts';
import { insertAttachmentRows, type PutFile } from '../attachments/store.ts';
import { listDepartments } from '../departments/repository.ts';
import { availabilityAt, departmentCalendars } from '../schedules/calendar.ts';
import { type Actor, openingMessageId, reference } from '../tickets/repository.ts';
import { type CreateTicketInput, writeTicket } from '../tickets/write.ts';
import { holdFormDepartment } from './repository.ts';
import {
  ContactFormBody,
  type ContactFormInput,
  type ContactFormReceipt,
  FORM_DEPARTMENTS_MAX,
  type FormDepartmentList,
} from './schemas.ts';

/** The form's departments, each open or closed now and its channels available now (a contact widget). */
export async function listFormDepartments(db: Db, now: Date = new Date()): Promise<FormDepartmentList> {
  const page = await listDepartments(
    db,
    { selectable_on_contact_form: true },
    { limit: FORM_DEPARTMENTS_MAX },
  );
  const calendars = await departmentCalendars(db, page.data);
  return {
    data: page.data.map((d) => {
      const { open, next_change, channels } = availabilityAt(
        calendars.get(d.id)!.calendar,
        d.availability,
        now.getTime(),
      );
      return {
        id: d.id,
        name: d.name,
        open,
        next_change,
        available: {
          chat: channels.chat.available,
          phone: channels.phone.available,
          messaging: channels.messaging.available,
        },
      };
    }),
  };
}

// The write path fills in the contact the ticket was opened for.
const SENDER: Actor = { type: 'contact', agentId: null, contactId: null, tokenId: null };

/**
 * Opens a ticket from the public contact form: channel contact_form, the sender as the contact
 * (found by email, else created with the name given) and as the actor of its history. Unknown
 * departments and those not on the form get the same answer, so the form reveals nothing.
 */
export async function submitContactForm(
  db: Db,
  form: ContactFormInput,
  /** Files of a multipart form, already in the blob store: their rows go on the opening message. */
  files: readonly PutFile[] = [],
): Promise<ContactFormReceipt> {
  const input: CreateTicketInput = {
    subject: form.subject,
    channel: 'contact_form',
    contact: { name: form.name, email: form.email },
    message: { body: form.message, author: 'contact' },
    department_id: form.department_id ?? null,
  };
  const ticket = await db.transaction().execute(async (trx) => {
    if (form.department_id !== undefined && !(await holdFormDepartment(trx, form.department_id))) {
      const error = new DomainError(
        'unprocessable',
        'department_not_selectable',
        'Choose one of the departments listed by GET /v1/public/departments.',
      );
      error.errors = [{ field: 'body/department_id', message: 'is not a department of the contact form' }];
      throw error;
    }
    const opened = await writeTicket(trx, {
      kind: 'create',
      input,
      actor: SENDER,
      authorAgentId: null,
      by: null,
    });
    if (files.length > 0) {
      const opening = await openingMessageId(trx, opened.ticket.id);
      await insertAttachmentRows(trx, files, { ticketId: opened.ticket.id, messageId: opening });
    }
    return opened.ticket;
  });
  return { reference: reference(ticket.number), message: 'received' };
}

/** The sender cannot fix the help desk's automation rules, and their details are not theirs to see. */
export async function hidingRuleDetails<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof DomainError && error.code === 'rule_action_failed') {
      throw new DomainError(
        'conflict',
        error.code,
        'The message could not be filed right now; try again later.',
      );
    }
    throw error;
  }
}

const formAjv = new Ajv({ allErrors: true, removeAdditional: false, coerceTypes: false, strict: false });
addFormats.default(formAjv);
const validForm = formAjv.compile<ContactFormInput>(ContactFormBody);

/**
 * The fields of a multipart contact form, checked against the JSON body's own schema (fastify
 * validates JSON bodies; a multipart body is a stream its route reads), with the same 400.
 */
export function checkContactForm(fields: Record<string, string>): ContactFormInput {
  if (validForm(fields)) return fields;
  const errors: FieldError[] = (validForm.errors ?? []).map((e) => {
    const at = e.instancePath.replace(/^\//, '');
    if (e.keyword === 'required')
      return { field: `body/${String(e.params.missingProperty)}`, message: 'is required' };
    if (e.keyword === 'additionalProperties')
      return { field: `body/${String(e.params.additionalProperty)}`, message: 'is not a known field' };
    return { field: at ? `body/${at}` : 'body', message: e.message ?? 'is invalid' };
  });
  const first = errors[0];
  throw invalid(
    'validation_failed',
    first ? `${first.field} ${first.message}` : 'The form is invalid.',
    errors,
  );
}
