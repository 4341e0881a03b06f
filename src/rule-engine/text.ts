import { RE2JS, RE2Set } from 're2js';

/** Bounds that keep one rule, and one evaluation, cheap whatever an author writes. */
export const LIMITS = Object.freeze({
  /** Nesting of all / any / not, counting the root as 1. */
  maxDepth: 16,
  /** Condition nodes (groups and leaves) in one rule. */
  maxNodes: 256,
  /** Values in one is_one_of / is_none_of / contains_any... list. */
  maxListValues: 500,
  /** Characters in one text value (contains, is...). */
  maxTextValue: 1000,
  /** Characters in one `matches` pattern, after NFKC normalisation. */
  maxPatternLength: 500,
  /** RE2 program size: stops patterns such as (a{50}){50} that are short but expand hugely. */
  maxPatternProgram: 5000,
  /** `matches` reads only this many UTF-16 units of the text (a message body can be 100,000). */
  maxMatchInput: 20_000,
  maxActions: 50,
  maxTagLength: 50,
  /** Tickets carry at most this many tags (the tickets API's limit); add_tags stops there. */
  maxTicketTags: 50,
  /** Bytes (UTF-8) a ticket's tags take together at most (the tickets API's TAG_BYTES). */
  maxTicketTagBytes: 2000,
  maxNoteLength: 10_000,
  maxNameLength: 200,
  maxRuleNoteLength: 2000,
  /** One year: set_status postponed takes 60 s .. this. */
  maxPostponeSeconds: 31_536_000,
  /** One year of minutes: a ticket.idle rule waits 1 minute .. this (as SLA targets do). */
  maxIdleMinutes: 525_600,
});

// Printable ASCII plus tab and line breaks: the text that needs no Unicode normalisation.
const PLAIN = /^[\t\n\r -~]*$/;

/**
 * Folds text for case-insensitive, Unicode-aware comparison: NFKC (so compatibility forms such
 * as "ﬁ", full-width "Ｒｅｆｕｎｄ" or a decomposed "é" compare equal to their plain forms), then
 * toUpperCase().toLowerCase() (the root-locale mappings, which approximate Unicode full case
 * folding: "Straße" and "STRASSE" both fold to "strasse"), then NFKC again because case mapping
 * may decompose, and final sigma "ς" to "σ" because toLowerCase() picks the final form by
 * position, which would break substring tests. ASCII text takes the fast path.
 */
export function foldText(s: string): string {
  if (PLAIN.test(s)) return s.toLowerCase();
  return s.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC').replaceAll('ς', 'σ');
}

/** NFKC only: what `matches` runs on (RE2's case-insensitive flag does the case part). */
export function nfkc(s: string): string {
  return PLAIN.test(s) ? s : s.normalize('NFKC');
}

// Printable ASCII except space and A-Z, in words separated by single spaces: a tag that is
// already canonical (and folded), as nearly all are. One test instead of trim, replace and
// lower-case.
const CANONICAL_TAG = /^[!-@[-~]+(?: [!-@[-~]+)*$/;

/** A tag as the tickets API stores it: trimmed, inner white space collapsed, lower-cased. */
export function canonicalTag(tag: string): string {
  if (CANONICAL_TAG.test(tag)) return tag;
  return tag.trim().replace(/\s+/g, ' ').toLowerCase();
}

/** Whether a tag is its own canonical form and its own folded form (see foldTag in values.ts). */
export function isPlainTag(tag: string): boolean {
  return CANONICAL_TAG.test(tag);
}

export type PatternResult = { ok: true; regex: RE2JS } | { ok: false; message: string };

/**
 * Compiles a `matches` pattern with RE2 (re2js, a pure-JS port: matching is linear in the input,
 * so no pattern can cause catastrophic backtracking). RE2 has no backreferences or lookaround;
 * such patterns are refused as syntax errors. Case-insensitive; the pattern is NFKC-normalised
 * like the text it runs on.
 */
export function compilePattern(pattern: string): PatternResult {
  const source = nfkc(pattern);
  if (source.length === 0) return { ok: false, message: 'must not be empty' };
  if (source.length > LIMITS.maxPatternLength) {
    return { ok: false, message: `must be at most ${LIMITS.maxPatternLength} characters` };
  }
  let regex: RE2JS;
  try {
    regex = RE2JS.compile(source, RE2JS.CASE_INSENSITIVE);
  } catch (error) {
    return { ok: false, message: `is not a valid RE2 pattern: ${(error as Error).message}` };
  }
  if (regex.programSize() > LIMITS.maxPatternProgram) {
    return { ok: false, message: 'is too complex (its compiled program is too large)' };
  }
  return { ok: true, regex };
}

const SET_CHUNK = 64;

/**
 * All `matches` patterns on one field, run together: RE2Set compiles them into one automaton,
 * so a text is scanned once for the whole rule set instead of once per pattern. A chunk that RE2
 * cannot compile as a set (too large) falls back to its patterns one by one; the result is the
 * same either way. Built during compileRules and never changed after seal() (RE2's lazily built
 * DFA states are an internal cache, invisible in results).
 */
export class PatternGroup {
  private readonly regexes: RE2JS[] = [];
  private readonly index = new Map<string, number>();
  private chunks: { offset: number; set: RE2Set | null }[] | null = null;

  /** Registers a (validated) pattern; returns its index in run()'s result. */
  add(pattern: string): number {
    const source = nfkc(pattern);
    const known = this.index.get(source);
    if (known !== undefined) return known;
    const compiled = compilePattern(pattern);
    if (!compiled.ok) throw new Error(`pattern ${compiled.message}`);
    this.index.set(source, this.regexes.length);
    this.regexes.push(compiled.regex);
    return this.regexes.length - 1;
  }

  seal(): void {
    if (this.chunks) return;
    const chunks: { offset: number; set: RE2Set | null }[] = [];
    for (let offset = 0; offset < this.regexes.length; offset += SET_CHUNK) {
      let set: RE2Set | null = null;
      const members = this.regexes.slice(offset, offset + SET_CHUNK);
      if (members.length > 1) {
        try {
          set = new RE2Set(RE2Set.UNANCHORED, RE2JS.CASE_INSENSITIVE);
          for (const regex of members) set.add(regex.pattern());
          set.compile();
        } catch {
          set = null;
        }
      }
      chunks.push({ offset, set });
    }
    this.chunks = chunks;
  }

  /** One byte per pattern: 1 when it matches somewhere in `text`. */
  run(text: string): Uint8Array {
    this.seal();
    const hits = new Uint8Array(this.regexes.length);
    for (const { offset, set } of this.chunks!) {
      if (set) {
        for (const i of set.match(text)) hits[offset + i] = 1;
      } else {
        const end = Math.min(offset + SET_CHUNK, this.regexes.length);
        for (let i = offset; i < end; i++) if (this.regexes[i]!.test(text)) hits[i] = 1;
      }
    }
    return hits;
  }
}

/** The part of a text `matches` reads; never splits a surrogate pair. */
export function matchInput(s: string): string {
  if (s.length <= LIMITS.maxMatchInput) return s;
  const end = LIMITS.maxMatchInput;
  const code = s.charCodeAt(end - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? end - 1 : end);
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A real calendar date written YYYY-MM-DD (how contact date fields are stored). */
export function isDateString(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = DATE.exec(value);
  if (!m) return false;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  return day <= days;
}

/** The UTF-8 bytes tags take together. */
export function tagBytes(tags: readonly string[]): number {
  let bytes = 0;
  for (let i = 0; i < tags.length; i++) bytes += Buffer.byteLength(tags[i]!);
  return bytes;
}

/** The first tags that fit LIMITS.maxTicketTagBytes together (a new array). */
export function fittingTags(tags: readonly string[]): string[] {
  const out: string[] = [];
  let bytes = 0;
  for (let i = 0; i < tags.length; i++) {
    bytes += Buffer.byteLength(tags[i]!);
    if (bytes > LIMITS.maxTicketTagBytes) break;
    out.push(tags[i]!);
  }
  return out;
}
