import type { Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import type { SmtpSettings } from '../mailboxes/repository.ts';

/** SMTP_URL (smtp(s)://user:pass@host:port) as settings; its password stays in memory only. */
export function smtpSettingsOfUrl(url: string): SmtpSettings {
  const parsed = new URL(url);
  const secure = parsed.protocol === 'smtps:';
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port ? Number(parsed.port) : secure ? 465 : 587,
    secure,
    user: parsed.username ? decodeURIComponent(parsed.username) : null,
    password: parsed.password ? decodeURIComponent(parsed.password) : null,
  };
}

export interface OutgoingMail {
  from: { name: string; address: string };
  to: string;
  subject: string;
  text: string;
  html: string;
  messageId: string;
  headers: Record<string, string>;
  /** Files of the message, streamed from the blob store. */
  attachments: { filename: string; contentType: string; content: Readable }[];
}

export type SendResult = { ok: true; response: string } | { ok: false; permanent: boolean; error: string };

/**
 * One attempt, bounded by `timeoutMs` as a whole (connect, greeting, each command and the data
 * each have the same bound in nodemailer; the whole attempt is cut too, so a server that trickles
 * answers cannot hold it). A 5xx answer is permanent (RFC 5321 4.2.1): the mail fails at once.
 * Anything else (4xx, refused, reset, timed out) is worth another attempt.
 */
export async function sendOnce(
  settings: SmtpSettings,
  mail: OutgoingMail,
  timeoutMs: number,
): Promise<SendResult> {
  const transport = nodemailer.createTransport({
    host: settings.host,
    port: settings.port,
    secure: settings.secure,
    ...(settings.user !== null && { auth: { user: settings.user, pass: settings.password ?? '' } }),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
    // Never log the conversation: AUTH carries the password.
    logger: false,
    debug: false,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const info = await Promise.race([
      transport.sendMail({
        from: { name: mail.from.name, address: mail.from.address },
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        messageId: `<${mail.messageId}>`,
        headers: mail.headers,
        attachments: mail.attachments,
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
          timeoutMs,
        );
      }),
    ]);
    return { ok: true, response: String(info.response ?? '') };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; code?: string; message?: string };
    const code = typeof e.responseCode === 'number' ? e.responseCode : null;
    const error = (
      code !== null && e.response ? e.response : `${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`
    ).slice(0, 500);
    return { ok: false, permanent: code !== null && code >= 500 && code < 600, error };
  } finally {
    clearTimeout(timer);
    transport.close();
  }
}
