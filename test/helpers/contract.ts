import { readFileSync } from 'node:fs';
import type { ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { CLIENT_HEADERS } from '../../src/app.ts';

/**
 * Checks a response against the committed openapi/openapi.json: the operation exists, the
 * status is documented, the content type is one it declares, and the body fits the schema.
 * Every response the suite receives goes through here, so the spec cannot drift from the code.
 */
const SPEC_PATH = new URL('../../openapi/openapi.json', import.meta.url);

interface Header {
  $ref?: string;
  required?: boolean;
}
interface Operation {
  responses: Record<
    string,
    { content?: Record<string, { schema: unknown }>; headers?: Record<string, Header> }
  >;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
  components?: { headers?: Record<string, Header> };
}

/**
 * Headers clients and CORS rely on: when a response carries one, its operation must declare it
 * for that status, and a header declared required must be there.
 */
const CHECKED_HEADERS = CLIENT_HEADERS.map((name) => name.toLowerCase());

function checkHeaders(
  spec: Spec,
  where: string,
  declared: Record<string, Header> | undefined,
  sent: InjectedResponse['headers'],
) {
  const byName = new Map(
    Object.entries(declared ?? {}).map(([name, header]) => {
      const resolved = header.$ref
        ? spec.components?.headers?.[header.$ref.replace('#/components/headers/', '')]
        : header;
      if (!resolved) throw new Error(`spec: ${where} header ${name} refers to nothing (${header.$ref})`);
      return [name.toLowerCase(), resolved] as const;
    }),
  );
  for (const name of CHECKED_HEADERS) {
    if (sent[name] !== undefined && !byName.has(name))
      throw new Error(`spec: ${where} sent ${name}, which it does not declare`);
  }
  for (const [name, header] of byName) {
    if (header.required && sent[name] === undefined)
      throw new Error(`spec: ${where} declares ${name} as always sent, but it was not`);
  }
}

let spec: Spec | undefined;
let ajv: Ajv2020 | undefined;
const validators = new Map<string, ValidateFunction>();

function load() {
  if (!spec) {
    spec = JSON.parse(readFileSync(SPEC_PATH, 'utf8')) as Spec;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema(spec as object, 'openapi.json');
  }
  return { spec, ajv: ajv! };
}

const pointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

function findOperation(paths: Spec['paths'], method: string, urlPath: string) {
  const candidates = Object.keys(paths)
    .filter((template) => paths[template]?.[method])
    .filter((template) => {
      const re = new RegExp(
        `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}/?$`,
      );
      return re.test(urlPath);
    })
    // A literal segment beats a parameter: /members/add-all before /members/{agent_id}.
    .sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0));
  return candidates[0];
}

export interface InjectedResponse {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

export function assertMatchesSpec(method: string, url: string, res: InjectedResponse): void {
  const { spec, ajv } = load();
  const m = method.toLowerCase();
  const urlPath = url.split('?')[0] ?? url;
  const template = findOperation(spec.paths, m, urlPath);
  if (!template) {
    if (res.statusCode === 404 && res.body.includes('"route_not_found"')) return;
    if (!urlPath.startsWith('/v1/') && !['/healthz', '/readyz'].includes(urlPath)) return; // docs UI, spec file
    throw new Error(`spec: no operation for ${method} ${urlPath} (answered ${res.statusCode})`);
  }
  const operation = spec.paths[template]![m]!;
  const status = String(res.statusCode);
  const documented = operation.responses[status] ?? operation.responses.default;
  if (!documented) {
    throw new Error(
      `spec: ${method} ${template} answered ${status}, which it does not document (${Object.keys(operation.responses).join(', ')}): ${res.body.slice(0, 300)}`,
    );
  }
  checkHeaders(spec, `${method} ${template} ${status}`, documented.headers, res.headers);
  if (res.body === '' || res.statusCode === 204) {
    if (res.statusCode === 204 && res.body !== '')
      throw new Error(`spec: ${method} ${template} 204 with a body`);
    return;
  }
  const contentType = String(res.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim();
  // An exact media type, else a range the operation declares (a download's type/* or */*).
  const media =
    documented.content?.[contentType] ??
    documented.content?.[`${contentType.split('/')[0]}/*`] ??
    documented.content?.['*/*'];
  if (!media) {
    throw new Error(
      `spec: ${method} ${template} ${status} sent ${contentType}, documented: ${Object.keys(documented.content ?? {}).join(', ') || 'none'}`,
    );
  }
  // NDJSON is a sequence of JSON values, not one: its lines are for the test to check.
  if (!contentType.endsWith('json') || contentType.endsWith('ndjson')) return;
  const key = `${template} ${m} ${status} ${contentType}`;
  let validate = validators.get(key);
  if (!validate) {
    const ref = `openapi.json#/paths/${pointer(template)}/${m}/responses/${status in operation.responses ? status : 'default'}/content/${pointer(contentType)}/schema`;
    validate = ajv.compile({ $ref: ref });
    validators.set(key, validate);
  }
  const body = JSON.parse(res.body) as unknown;
  if (!validate(body)) {
    throw new Error(
      `spec: ${method} ${template} ${status} body does not match its schema: ${ajv.errorsText(validate.errors)}\n${res.body.slice(0, 500)}`,
    );
  }
}
