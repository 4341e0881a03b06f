import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { fullFormats } from 'ajv-formats/dist/formats.js';

/** The instants a date-time may name: the years 0001-9999 in UTC, as toISOString() writes them. */
const EARLIEST_INSTANT = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST_INSTANT = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * The Ajv every schema is checked with. Bodies (and other JSON documents such as import
 * records): no coercion ("12" stays a string) and unknown fields rejected, not stripped.
 * Query strings and params arrive as text, so they are coerced.
 */
export function createAjv(part: 'body' | 'other') {
  const ajv = new Ajv({
    allErrors: true,
    removeAdditional: false,
    useDefaults: true,
    coerceTypes: part === 'body' ? false : 'array',
    strict: false,
  });
  addFormats.default(ajv);
  // RFC 3339 allows a leap second (23:59:60), which a JavaScript Date cannot hold: such a value
  // would pass validation and then fail as an Invalid Date in the handler. Refused here (400).
  // It also allows instants outside the years 0001-9999 in UTC (0000-01-01T00:00:00Z, or
  // 9999-12-31T23:59:59-23:59): embedded PGlite sends a Date as its toISOString(), which
  // PostgreSQL refuses for year 0 and for six-digit years, while pg sends "0001 BC" and takes
  // them. Such a value would pass here, be stored (a saved view's filters) and fail every
  // later read that used it, on one backend and not the other. Refused here too (400).
  const rfc3339 = fullFormats['date-time'] as { validate: (s: string) => boolean };
  ajv.addFormat('date-time', {
    type: 'string',
    validate: (s: string) => {
      if (!rfc3339.validate(s)) return false;
      const instant = Date.parse(s);
      return instant >= EARLIEST_INSTANT && instant <= LATEST_INSTANT;
    },
  });
  return ajv;
}
