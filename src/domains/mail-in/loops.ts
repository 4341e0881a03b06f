import type { Headers, ParsedMail } from 'mailparser';
import { normaliseAddress } from '../departments/addresses.ts';

// Mail a machine sent: answering it could start a loop (RFC 3834), so it is recorded at most,
// never answered, and never opens a ticket.

const header = (headers: Headers, name: string): string | undefined => {
  const value = headers.get(name);
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && 'value' in value && typeof value.value === 'string') return value.value;
  return String(value);
};

/** Why this mail is automatic (auto-reply, out-of-office, list mail), or undefined when a person sent it. */
export function autoSubmittedReason(mail: ParsedMail): string | undefined {
  const h = mail.headers;
  const autoSubmitted = header(h, 'auto-submitted')?.trim().toLowerCase();
  if (autoSubmitted && !autoSubmitted.startsWith('no')) return `Auto-Submitted: ${autoSubmitted}`;
  const precedence = header(h, 'precedence')?.trim().toLowerCase();
  if (precedence && ['bulk', 'junk', 'list', 'auto_reply', 'auto-reply'].includes(precedence))
    return `Precedence: ${precedence}`;
  for (const name of ['x-autoreply', 'x-autorespond', 'x-auto-response-suppress']) {
    if (h.has(name)) return name;
  }
  // mailparser gathers the List-* headers under one key, list.
  if (h.has('list') || h.has('list-id')) return 'mailing list';
  return undefined;
}

/** A delivery status notification (RFC 3464) or a bounce from a mailer daemon. */
export function isBounce(mail: ParsedMail, from: string | undefined): boolean {
  const type = mail.headers.get('content-type') as
    | { value?: string; params?: Record<string, string> }
    | undefined;
  if (
    type?.value?.toLowerCase() === 'multipart/report' &&
    type.params?.['report-type']?.toLowerCase() === 'delivery-status'
  )
    return true;
  const local = from?.split('@')[0]?.toLowerCase();
  return local === 'mailer-daemon' || local === 'postmaster';
}

// A bounce returns one message; a body listing more ids than this is not a bounce we can match
// (and a query takes at most 65,535 parameters).
const MAX_RETURNED_IDS = 20;

/**
 * The Message-IDs of the message a bounce returns (its message/rfc822 or text/rfc822-headers
 * part), read from the raw bytes after the bounce's own header. Only Message-ID: the returned
 * message's In-Reply-To and References name other mails, which were delivered.
 */
export function returnedMessageIds(raw: Buffer): string[] {
  const text = raw.toString('latin1');
  const bodyStart = text.search(/\r?\n\r?\n/);
  const body = bodyStart < 0 ? '' : text.slice(bodyStart);
  const ids = new Set<string>();
  for (const match of body.matchAll(/^Message-ID:[ \t]*(?:\r?\n[ \t]+)?<([^>\s]+)>/gim)) {
    ids.add(match[1]!);
    if (ids.size >= MAX_RETURNED_IDS) break;
  }
  return [...ids];
}

/** The address a delivery status notification says failed (RFC 3464 Final-Recipient), if any. */
export function finalRecipient(raw: Buffer): string | undefined {
  // The line is found by one expression and its address checked by hand: matched in one go
  // (`<?([^\s<>]+@[^\s<>]+?)>?[ \t]*$`), a long line of @s that does not end right backtracked
  // quadratically, and anyone may send a "bounce" (From: MAILER-DAEMON@...): 40,000 characters
  // held the event loop for seconds, a mail may carry 25 MiB.
  for (const line of raw.toString('latin1').matchAll(/^Final-Recipient:[ \t]*rfc822[ \t]*;([^\r\n]*)/gim)) {
    let value = line[1]!;
    let start = 0;
    let end = value.length;
    while (start < end && (value[start] === ' ' || value[start] === '\t')) start++;
    while (end > start && (value[end - 1] === ' ' || value[end - 1] === '\t')) end--;
    value = value.slice(start, end);
    if (value.startsWith('<')) value = value.slice(1);
    if (value.endsWith('>')) value = value.slice(0, -1);
    // Read as latin1 for the search; the address itself as UTF-8 (RFC 6533), normalised like
    // every address we store (its domain in ASCII).
    if (!/[\s<>]/.test(value) && value.slice(1, -1).includes('@')) {
      return normaliseAddress(Buffer.from(value, 'latin1').toString('utf8'));
    }
  }
  return undefined;
}

/** The reason a bounce gives: its Diagnostic-Code or Status, else its first line of text. */
export function bounceReason(mail: ParsedMail, raw: Buffer): string {
  const text = raw.toString('latin1');
  const diagnostic = /^Diagnostic-Code:[ \t]*(.+(?:\r?\n[ \t].+)*)/im.exec(text)?.[1];
  const status = /^Status:[ \t]*(\d\.\d{1,3}\.\d{1,3})/im.exec(text)?.[1];
  const reason =
    diagnostic?.replace(/\s+/g, ' ').trim() ??
    (status ? `Status ${status}` : (mail.text ?? '').trim().split(/\r?\n/)[0] || 'delivery failed');
  return reason.slice(0, 500);
}
