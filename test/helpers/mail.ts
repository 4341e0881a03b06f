import { randomUUID } from 'node:crypto';
import type { Test } from 'tap';
import type { TestContext } from './app.ts';

/** A raw RFC 5322 message, CRLF line ends, for tests that receive mail. */
export function rawMail(options: {
  from: string;
  to?: string;
  cc?: string;
  subject?: string;
  messageId?: string | null;
  inReplyTo?: string;
  references?: string;
  headers?: Record<string, string>;
  text?: string;
  html?: string;
  attachment?: { filename: string; contentType: string; content: Buffer };
}): string {
  const messageId = options.messageId === undefined ? `<${randomUUID()}@customer.test>` : options.messageId;
  const head = [
    `From: ${options.from}`,
    `To: ${options.to ?? 'help@elsewhere.test'}`,
    ...(options.cc ? [`Cc: ${options.cc}`] : []),
    `Subject: ${options.subject ?? 'Question'}`,
    'Date: Fri, 04 Dec 2026 10:00:00 +0000',
    ...(messageId ? [`Message-ID: ${messageId}`] : []),
    ...(options.inReplyTo ? [`In-Reply-To: ${options.inReplyTo}`] : []),
    ...(options.references ? [`References: ${options.references}`] : []),
    ...Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    'MIME-Version: 1.0',
  ];
  const text = options.text ?? (options.html ? undefined : 'Hello, I need help.');
  const parts: string[] = [];
  if (text !== undefined) parts.push(`Content-Type: text/plain; charset=utf-8\r\n\r\n${text}`);
  if (options.html !== undefined) parts.push(`Content-Type: text/html; charset=utf-8\r\n\r\n${options.html}`);
  if (!options.attachment && parts.length === 1) return `${head.join('\r\n')}\r\n${parts[0]}\r\n`;
  const boundary = `b-${randomUUID()}`;
  const alternative = parts.length > 1 ? `b-${randomUUID()}` : null;
  const sections: string[] = [];
  if (alternative) {
    sections.push(
      `Content-Type: multipart/alternative; boundary="${alternative}"\r\n\r\n${parts.map((p) => `--${alternative}\r\n${p}\r\n`).join('')}--${alternative}--`,
    );
  } else sections.push(...parts);
  if (options.attachment) {
    const a = options.attachment;
    sections.push(
      `Content-Type: ${a.contentType}; name="${a.filename}"\r\nContent-Disposition: attachment; filename="${a.filename}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${a.content.toString('base64').replace(/.{76}/g, '$&\r\n')}`,
    );
  }
  return `${[...head, `Content-Type: multipart/mixed; boundary="${boundary}"`].join('\r\n')}\r\n\r\n${sections.map((s) => `--${boundary}\r\n${s}\r\n`).join('')}--${boundary}--\r\n`;
}

/** A delivery status notification (RFC 3464) returning the headers of `returned`. */
export function dsn(options: { returnedMessageId: string; to: string; from?: string }): string {
  const boundary = `dsn-${randomUUID()}`;
  return [
    `From: ${options.from ?? 'MAILER-DAEMON@mx.customer.test'}`,
    'To: sales@acme.test',
    'Subject: Undelivered Mail Returned to Sender',
    `Message-ID: <${randomUUID()}@mx.customer.test>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.customer.test',
    '',
    `Final-Recipient: rfc822; ${options.to}`,
    'Action: failed',
    'Status: 5.1.1',
    'Diagnostic-Code: smtp; 550 5.1.1 user unknown',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    'From: Sales <sales@acme.test>',
    `To: ${options.to}`,
    `Message-ID: <${options.returnedMessageId}>`,
    'Subject: Re: Question',
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

/**
 * An inbound mailbox of `departmentId`, made through the API by `token` (an admin's), and a
 * function posting raw mail to POST /v1/inbound/email with its secret.
 */
export async function inboundMailbox(t: Test, ctx: TestContext, token: string, departmentId: string) {
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/mailboxes',
    token,
    payload: { name: 'Inbound', department_id: departmentId, kind: 'inbound' },
  });
  t.equal(created.statusCode, 201, created.body);
  const secret = created.json().inbound_secret as string;
  return (raw: string | Buffer) =>
    ctx.request({
      method: 'POST',
      url: '/v1/inbound/email',
      headers: { 'content-type': 'message/rfc822', authorization: `Bearer ${secret}` },
      payload: raw,
    });
}
