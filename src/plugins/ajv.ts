import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { fullFormats } from 'ajv-formats/dist/formats.js';

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
  const rfc3339 = fullFormats['date-time'] as { validate: (s: string) => boolean };
  ajv.addFormat('date-time', {
    type: 'string',
    validate: (s: string) => rfc3339.validate(s) && Number.isFinite(Date.parse(s)),
  });
  return ajv;
}
