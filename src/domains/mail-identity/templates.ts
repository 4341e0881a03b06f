import { type Context, type Emitter, type FilterImplOptions, Liquid } from 'liquidjs';
import type { FieldError } from '../../errors.ts';
import { sanitiseOutgoingHtml } from './html.ts';

// The one template language of the help desk: Liquid (liquidjs), made safe for templates that
// managers write and customers' data fills:
// - strictVariables and strictFilters, and a static check of every variable against the
//   documented set (VARIABLES), so a misspelt name is refused when the template is saved or
//   previewed, never when mail goes out;
// - no file system: include, render, layout and block are removed, and `templates: {}` keeps any
//   lookup in memory;
// - bounded: parseLimit, renderLimit (time per render) and memoryLimit, and the output's size;
// - ownPropertyOnly: no reaching prototypes (constructor, __proto__); Liquid runs no JavaScript;
// - the HTML part escapes every output (outputEscape: escape, `| raw` opts out) and its result is
//   sanitised (html.ts); the text part and subjects are not escaped.

export const TEMPLATE_KINDS = [
  'acknowledgement',
  'agent_reply',
  'outside_hours',
  'transfer_notice',
  'resolved_notice',
  'csat_survey',
] as const;
export type TemplateKind = (typeof TEMPLATE_KINDS)[number];

/** Where a template is used: a mail kind, or a canned response's body. */
export type TemplateUse = TemplateKind | 'canned_response';

/** The documented variable set: every name a template may read. */
export const VARIABLES = {
  ticket: ['id', 'number', 'reference', 'subject', 'status', 'priority', 'channel', 'created_at'],
  contact: ['name', 'email'],
  department: ['name', 'sender_name', 'signature_text', 'signature_html'],
  agent: ['name'],
  help_desk: ['name'],
  message: ['text', 'html'],
  survey: ['url', 'expires_at'],
} as const satisfies Record<string, readonly string[]>;
type Root = keyof typeof VARIABLES;

/** The variables only some kinds have. */
const ONLY_FOR: Partial<Record<Root, TemplateUse>> = { message: 'agent_reply', survey: 'csat_survey' };
/** What a template may read after a leaf variable (a string's length). */
const LEAF_PROPERTIES = new Set(['size']);

export interface TemplateVariables {
  ticket: {
    id: string;
    number: number;
    reference: string;
    subject: string;
    status: string;
    priority: string;
    channel: string;
    created_at: string;
  };
  contact: { name: string; email: string | null };
  department: { name: string; sender_name: string; signature_text: string; signature_html: string };
  agent: { name: string | null };
  help_desk: { name: string };
  message: { text: string | null; html: string | null };
  survey: { url: string | null; expires_at: string | null };
}

export const MAX_SUBJECT_LENGTH = 1000;
export const MAX_PART_LENGTH = 100_000;
/** A rendered part longer than this is an error (a loop gone wild), not a mail. */
const MAX_OUTPUT_LENGTH = 1_000_000;

function engine(escapeOutput: boolean) {
  const liquid = new Liquid({
    strictVariables: true,
    strictFilters: true,
    ownPropertyOnly: true,
    templates: {},
    cache: false,
    parseLimit: 4 * MAX_PART_LENGTH,
    renderLimit: 250,
    memoryLimit: 10_000_000,
    ...(escapeOutput && { outputEscape: 'escape' as const }),
  });
  for (const tag of ['include', 'render', 'layout', 'block']) delete liquid.tags[tag];
  liquid.registerTag('capture', boundedCapture(liquid.tags.capture as TagClass));
  for (const [name, filter] of Object.entries(liquid.filters)) {
    liquid.registerFilter(name, boundedFilter(name, filter));
  }
  return liquid;
}

/** The longest list a filter takes (`split` makes one item per character; nothing real needs this). */
const MAX_FILTER_ITEMS = 10_000;

/**
 * A filter refuses a string longer than a part may render to, or a list longer than
 * MAX_FILTER_ITEMS: one filter call runs to its end (renderLimit is checked between nodes only),
 * and memoryLimit let `split: "" | sort` sort a million characters for seconds.
 */
function boundedFilter(name: string, filter: FilterImplOptions): FilterImplOptions {
  const handler = typeof filter === 'function' ? filter : filter.handler;
  const check = (value: unknown) => {
    if (typeof value === 'string' && value.length > MAX_OUTPUT_LENGTH) {
      throw new Error(`${name} takes at most ${MAX_OUTPUT_LENGTH} characters`);
    }
    if (Array.isArray(value) && value.length > MAX_FILTER_ITEMS) {
      throw new Error(`${name} takes at most ${MAX_FILTER_ITEMS} items`);
    }
  };
  const bounded: typeof handler = function (this: ThisParameterType<typeof handler>, value, ...args) {
    check(value);
    for (const arg of args) check(arg);
    return handler.call(this, value, ...args);
  };
  return typeof filter === 'function' ? bounded : { ...filter, handler: bounded };
}

/**
 * `capture` counted like `append`: liquidjs charges memoryLimit for what filters make, not for
 * what a capture holds, and a capture of itself doubles a string each time for free (V8 keeps it
 * as a rope). Thirty doublings made a 134 M-character string that `url_encode` or `contains`
 * then flattened in one go, holding the event loop for seconds (the time limit is checked
 * between template nodes only). Each capture now costs its length in memoryLimit and may hold
 * at most MAX_OUTPUT_LENGTH characters, what a part may render to anyway.
 */
type TagClass = Liquid['tags'][string];

function boundedCapture(Capture: TagClass): TagClass {
  return class BoundedCapture extends Capture {
    override *render(ctx: Context, emitter: Emitter) {
      const rendered = Capture.prototype.render.call(this, ctx, emitter);
      yield* rendered as Generator<unknown, unknown, unknown>;
      const variable = (this as unknown as { variable: string }).variable;
      const value: unknown = ctx.bottom()[variable as keyof object];
      const length = typeof value === 'string' ? value.length : 0;
      if (length > MAX_OUTPUT_LENGTH) {
        throw new Error(`capture ${variable} holds more than ${MAX_OUTPUT_LENGTH} characters`);
      }
      ctx.memoryLimit.use(length);
    }
  };
}

const plain = engine(false);
const escaped = engine(true);

export type TemplatePart = 'subject' | 'text' | 'html' | 'body';

export class TemplateError extends Error {
  override name = 'TemplateError';
  readonly part: TemplatePart;
  readonly line: number | null;
  readonly column: number | null;

  constructor(part: TemplatePart, reason: string, line: number | null, column: number | null) {
    super(line === null ? reason : `line ${line}, column ${column}: ${reason}`);
    this.part = part;
    this.line = line;
    this.column = column;
  }
}

interface LiquidishError {
  message: string;
  token?: { getPosition?: () => [number, number] };
}

function templateError(part: TemplatePart, error: unknown): TemplateError {
  if (error instanceof TemplateError) return error;
  const e = error as LiquidishError;
  const position = typeof e.token?.getPosition === 'function' ? e.token.getPosition() : null;
  const reason = String(e.message ?? error)
    .replace(/, line:\d+, col:\d+$/, '')
    .split('\n')[0]!;
  return new TemplateError(part, reason, position?.[0] ?? null, position?.[1] ?? null);
}

function variableProblem(use: TemplateUse, segments: readonly unknown[]): string | null {
  const [root, key, ...rest] = segments;
  const name = segments
    .map((s) => (typeof s === 'string' || typeof s === 'number' ? String(s) : '[...]'))
    .join('.');
  if (typeof root !== 'string' || !(root in VARIABLES)) return `unknown variable ${name}`;
  const only = ONLY_FOR[root as Root];
  if (only !== undefined && only !== use) return `${root} is only available in ${only} templates`;
  if (key === undefined) return null;
  if (typeof key !== 'string' || !(VARIABLES[root as Root] as readonly string[]).includes(key)) {
    return `unknown variable ${name}`;
  }
  if (rest.length === 0) return null;
  if (rest.length === 1 && typeof rest[0] === 'string' && LEAF_PROPERTIES.has(rest[0])) return null;
  return `unknown variable ${name}`;
}

/** Parses one part and checks every variable it reads; throws TemplateError. */
function compile(part: TemplatePart, source: string, use: TemplateUse, html: boolean) {
  const liquid = html ? escaped : plain;
  try {
    const template = liquid.parse(source);
    const analysis = liquid.analyzeSync(template);
    for (const variables of Object.values(analysis.globals)) {
      for (const variable of variables) {
        const problem = variableProblem(use, variable.segments);
        if (problem) {
          throw new TemplateError(part, problem, variable.location.row, variable.location.col);
        }
      }
    }
    return template;
  } catch (error) {
    throw templateError(part, error);
  }
}

async function renderPart(
  part: TemplatePart,
  source: string,
  use: TemplateUse,
  html: boolean,
  variables: TemplateVariables,
): Promise<string> {
  const template = compile(part, source, use, html);
  let output: string;
  try {
    output = String(await (html ? escaped : plain).render(template, variables));
  } catch (error) {
    throw templateError(part, error);
  }
  if (output.length > MAX_OUTPUT_LENGTH) {
    throw new TemplateError(part, `renders to more than ${MAX_OUTPUT_LENGTH} characters`, null, null);
  }
  return output;
}

export interface TemplateParts {
  subject: string;
  text: string;
  html: string;
}

/** Renders a mail template's three parts; the subject on one line, the HTML sanitised. */
export async function renderTemplate(
  kind: TemplateKind,
  parts: TemplateParts,
  variables: TemplateVariables,
): Promise<TemplateParts> {
  const subject = await renderPart('subject', parts.subject, kind, false, variables);
  const text = await renderPart('text', parts.text, kind, false, variables);
  const html = await renderPart('html', parts.html, kind, true, variables);
  return {
    subject: subject.replace(/\s+/g, ' ').trim(),
    text,
    html: sanitiseOutgoingHtml(html),
  };
}

/** Renders a canned response's body (plain text, like every message body). */
export function renderCannedBody(body: string, variables: TemplateVariables): Promise<string> {
  return renderPart('body', body, 'canned_response', false, variables);
}

/**
 * The field errors of a template, empty when it is usable: parse errors, unknown variables and
 * filters (with line and column), and errors of a render against the sample.
 */
export async function templateProblems(
  use: TemplateUse,
  parts: Partial<Record<TemplatePart, string>>,
  sample: TemplateVariables,
): Promise<FieldError[]> {
  const errors: FieldError[] = [];
  for (const [part, source] of Object.entries(parts) as [TemplatePart, string | undefined][]) {
    if (source === undefined) continue;
    try {
      await renderPart(part, source, use, part === 'html', sample);
    } catch (error) {
      errors.push({ field: `body/${part}`, message: templateError(part, error).message });
    }
  }
  return errors;
}

const sig = (html: boolean) =>
  html ? '<div>{{ department.signature_html | raw }}</div>' : '{{ department.signature_text }}';
const hello = (html: boolean) =>
  html
    ? '<p>Hello{% if contact.name != blank %} {{ contact.name }}{% endif %},</p>'
    : 'Hello{% if contact.name != blank %} {{ contact.name }}{% endif %},';

function builtIn(subject: string, paragraphs: string[], options: { greet?: boolean } = {}): TemplateParts {
  const greet = options.greet ?? true;
  const text = [...(greet ? [hello(false)] : []), ...paragraphs, sig(false)].join('\n\n');
  const html = [...(greet ? [hello(true)] : []), ...paragraphs.map((p) => `<p>${p}</p>`), sig(true)].join(
    '\n',
  );
  return { subject, text: `${text}\n`, html: `${html}\n` };
}

const keepReference =
  'Your reference is {{ ticket.reference }}; please keep it in the subject when you write to us about this request.';

/** The built-in templates: mail can go out with nothing configured. */
export const BUILT_IN_TEMPLATES: Record<TemplateKind, TemplateParts> = {
  acknowledgement: builtIn('We received your request: {{ ticket.subject }} {{ ticket.reference }}', [
    'Thank you for contacting {{ help_desk.name }}. We have received your request "{{ ticket.subject }}" and will get back to you as soon as we can.',
    keepReference,
  ]),
  agent_reply: {
    subject: 'Re: {{ ticket.subject }} {{ ticket.reference }}',
    text: '{{ message.text }}\n\n{% if agent.name != blank %}{{ agent.name }}\n{% endif %}{{ department.signature_text }}\n',
    html: '<div>{{ message.html | raw }}</div>\n{% if agent.name != blank %}<p>{{ agent.name }}</p>\n{% endif %}<div>{{ department.signature_html | raw }}</div>\n',
  },
  outside_hours: builtIn('We have received your request: {{ ticket.subject }} {{ ticket.reference }}', [
    'Thank you for your message. Our team is outside its working hours right now; we will answer as soon as we are back.',
    keepReference,
  ]),
  transfer_notice: builtIn('Your request has moved to {{ department.name }} {{ ticket.reference }}', [
    'Your request "{{ ticket.subject }}" is now handled by our {{ department.name }} team, who will get back to you.',
    keepReference,
  ]),
  resolved_notice: builtIn('Resolved: {{ ticket.subject }} {{ ticket.reference }}', [
    'We have marked your request "{{ ticket.subject }}" as resolved. If anything is still open, simply reply to this message and we will pick it up again.',
  ]),
  csat_survey: {
    ...builtIn('How did we do? {{ ticket.reference }}', [
      'Your request "{{ ticket.subject }}" was resolved recently. Would you tell us how we did? It takes one click: {{ survey.url }}',
      'The link works once, until {{ survey.expires_at | date: "%Y-%m-%d" }}.',
    ]),
    html: `${hello(true)}
<p>Your request "{{ ticket.subject }}" was resolved recently. Would you tell us how we did?</p>
<p><a href="{{ survey.url }}">Rate our answer</a></p>
<p>The link works once, until {{ survey.expires_at | date: "%Y-%m-%d" }}.</p>
${sig(true)}
`,
  },
};

/** The variables previews and save-time checks render against when no ticket is named. */
export function sampleVariables(overrides: Partial<TemplateVariables> = {}): TemplateVariables {
  const created = new Date('2026-01-15T09:30:00Z');
  return {
    ticket: {
      id: '00000000-0000-4000-8000-000000001234',
      number: 1234,
      reference: ticketReference(1234),
      subject: 'Where is my parcel?',
      status: 'open',
      priority: 'normal',
      channel: 'email',
      created_at: created.toISOString(),
    },
    contact: { name: 'Alex Example', email: 'alex@example.com' },
    department: { name: 'Support', sender_name: 'Support', signature_text: '', signature_html: '' },
    agent: { name: 'Sam Agent' },
    help_desk: { name: 'Help desk' },
    message: {
      text: 'Your parcel left our warehouse this morning.',
      html: '<p>Your parcel left our warehouse this morning.</p>',
    },
    survey: { url: 'https://example.com/survey/sample', expires_at: '2026-01-22T09:30:00.000Z' },
    ...overrides,
  };
}

/** The reference mail threads by, agreed across the help desk: `[Ticket#<number>]`. */
export const ticketReference = (number: number) => `[Ticket#${number}]`;
