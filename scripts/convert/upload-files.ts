// npm run upload:import-files -- --url <deskroute> --source <source> --files files.ndjson
//                                 [--auth-origin <origin>] [--concurrency 4] [--stall-timeout 60]
// npm run upload:import-files -- --url <deskroute B> --source <source>
//                                 --from-records export.ndjson --source-url <deskroute A>
//   env DESKROUTE_TOKEN        an owner's or admin's token of --url (required)
//   env SOURCE_AUTHORIZATION   the Authorization header value the files' URLs need (Zendesk:
//                              "Basic " + base64 of "<email>/token:<api token>"; another
//                              Deskroute: "Bearer <token>"); sent only to --auth-origin (with
//                              --from-records: --source-url's), never across a redirect elsewhere
//
// Uploads the files an import's message records name (docs/import.md, "Attachments"). The list
// is either what a converter wrote (`npm run convert:zendesk -- <dir> --files files.ndjson`: one
// {"external_id","filename","url","size"} per line), or, with --from-records, the files the
// records of another Deskroute's export in the import format name (`attachments`: that help
// desk's attachment ids, downloaded from GET /v1/attachments/{id}, named by the download).
// For each file not in Deskroute yet (GET /v1/imports/files/{external_id}) it downloads the URL
// and streams it to PUT /v1/imports/files/{external_id}; nothing is held whole in memory. It
// exits non-zero naming every file that failed: run it again once fixed (what is there is
// skipped), and start the import only when none failed: a message whose file is missing goes in
// without it, for good. A file whose transfer makes no progress for --stall-timeout seconds (a
// source or a Deskroute that stops answering) fails, and the others go on.
import { parseArgs } from 'node:util';
import { readJsonLines } from './json-lines.ts';
import type { ImportFileToUpload } from './zendesk-map.ts';

export interface UploadOptions {
  /** Deskroute's base URL (https://desk.example.com). */
  deskroute: string;
  token: string;
  source: string;
  /** Sent as Authorization to file URLs of `origin` only. */
  authorization?: { origin: string; header: string } | undefined;
  concurrency?: number;
  /** A file fails when nothing moves for this long (default 60 s): no answer, no bytes. */
  stallMs?: number;
  log?: (line: string) => void;
}

export interface UploadSummary {
  uploaded: number;
  /** In Deskroute already with the same id: not downloaded again. */
  present: number;
  failed: { external_id: string; reason: string }[];
}

/** Why a response is not what was hoped for, in one line: status and the problem's detail. */
async function reason(res: Response, what: string): Promise<string> {
  const text = (await res.text().catch(() => '')).slice(0, 500);
  let detail = text;
  try {
    const problem = JSON.parse(text) as { code?: string; detail?: string };
    detail = [problem.code, problem.detail].filter(Boolean).join(': ');
  } catch {
    // not problem+json
  }
  const hint = res.status === 413 ? '; raise the server’s ATTACHMENT_MAX_BYTES and run this again' : '';
  return `${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}${hint}`;
}

/** The parameters of a header (`type; a=b; c="d; e"`), quoted values unquoted, names lower-cased. */
function headerParameters(header: string): Map<string, string> {
  const parameters = new Map<string, string>();
  // A quoted value is taken whole, so nothing inside it is read as a parameter of its own.
  for (const m of header.matchAll(/;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g)) {
    const raw = m[2]!.trim();
    const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    const name = m[1]!.toLowerCase();
    if (!parameters.has(name)) parameters.set(name, value);
  }
  return parameters;
}

/** The name a download's Content-Disposition gives (RFC 6266: filename* first), if any. */
export function filenameOf(header: string | null): string | null {
  if (!header) return null;
  const parameters = headerParameters(header);
  const extended = /^UTF-8''(.+)$/i.exec(parameters.get('filename*') ?? '')?.[1];
  if (extended) {
    try {
      return decodeURIComponent(extended);
    } catch {
      // malformed: the plain name below
    }
  }
  return parameters.get('filename') || null;
}

/**
 * Uploads every file of `files` not uploaded yet, `concurrency` at a time. A file that fails is
 * counted and named; a list that cannot be read stops the handing out of files, lets the
 * uploads under way finish, then throws.
 */
export async function uploadFiles(
  files: AsyncIterable<ImportFileToUpload> | Iterable<ImportFileToUpload>,
  options: UploadOptions,
): Promise<UploadSummary> {
  const base = options.deskroute.replace(/\/+$/, '');
  const auth = { authorization: `Bearer ${options.token}` };
  const summary: UploadSummary = { uploaded: 0, present: 0, failed: [] };
  const log = options.log ?? (() => {});
  const iterator = (
    Symbol.asyncIterator in files ? files[Symbol.asyncIterator]() : files[Symbol.iterator]()
  ) as AsyncIterator<ImportFileToUpload> | Iterator<ImportFileToUpload>;
  const sourceOrigin = options.authorization ? new URL(options.authorization.origin).origin : null;
  let listError: unknown = null;

  const stallMs = options.stallMs ?? 60_000;
  // Every request of a file shares one signal, aborted once nothing has moved for stallMs: a
  // hung source or Deskroute fails that file instead of holding a worker (and the run) forever.
  const one = async (file: ImportFileToUpload) => {
    const stalled = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const moved = () => {
      clearTimeout(timer);
      timer = setTimeout(() => stalled.abort(new Error(`nothing moved for ${stallMs / 1000} s`)), stallMs);
    };
    moved();
    try {
      await transfer(file, stalled.signal, moved);
    } finally {
      clearTimeout(timer);
    }
  };
  const transfer = async (file: ImportFileToUpload, signal: AbortSignal, moved: () => void) => {
    const target = `${base}/v1/imports/files/${encodeURIComponent(file.external_id)}`;
    const here = await fetch(`${target}?source=${encodeURIComponent(options.source)}`, {
      headers: auth,
      signal,
    });
    moved();
    if (here.status === 200) {
      await here.body?.cancel();
      summary.present++;
      return;
    }
    if (here.status !== 404) throw new Error(await reason(here, 'checking Deskroute'));
    await here.body?.cancel();
    const url = new URL(file.url);
    // The source's credentials go to its own origin only; fetch drops them on a redirect to
    // another origin (a signed storage URL).
    const download = await fetch(url, {
      headers:
        options.authorization && url.origin === sourceOrigin
          ? { authorization: options.authorization.header }
          : {},
      signal,
    });
    moved();
    if (!download.ok || !download.body) {
      throw new Error(await reason(download, `downloading ${url.origin}${url.pathname}`));
    }
    const filename =
      file.filename ||
      filenameOf(download.headers.get('content-disposition')) ||
      `attachment-${file.external_id}`;
    const put = await fetch(
      `${target}?source=${encodeURIComponent(options.source)}&filename=${encodeURIComponent(filename.slice(0, 1000))}`,
      {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        // Each chunk that passes is progress.
        body: download.body.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              moved();
              controller.enqueue(chunk);
            },
          }),
        ),
        duplex: 'half',
        signal,
      } as RequestInit,
    );
    if (put.status !== 201 && put.status !== 200) throw new Error(await reason(put, 'uploading'));
    await put.body?.cancel();
    summary.uploaded++;
    log(`uploaded ${file.external_id} (${filename})`);
  };

  const worker = async () => {
    while (listError === null) {
      let next: IteratorResult<ImportFileToUpload>;
      try {
        next = await iterator.next();
      } catch (error) {
        listError ??= error;
        return;
      }
      if (next.done) return;
      try {
        await one(next.value);
      } catch (error) {
        summary.failed.push({ external_id: next.value.external_id, reason: (error as Error).message });
        log(`failed ${next.value.external_id}: ${(error as Error).message}`);
      }
    }
  };
  const workers =
    Number.isInteger(options.concurrency) && options.concurrency! > 0 ? options.concurrency! : 4;
  await Promise.all(Array.from({ length: workers }, worker));
  if (listError !== null) throw listError;
  return summary;
}

/**
 * The files the records of a Deskroute export in the import format name (a message's or a
 * ticket's first message's `attachments`: that help desk's attachment ids), each once, to
 * download from it; their names come with the downloads.
 */
export async function* filesOfRecords(
  records: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>,
  sourceUrl: string,
): AsyncGenerator<ImportFileToUpload> {
  const base = sourceUrl.replace(/\/+$/, '');
  const seen = new Set<string>();
  for await (const record of records) {
    const named =
      record.type === 'message'
        ? record.attachments
        : record.type === 'ticket'
          ? (record.message as { attachments?: unknown } | undefined)?.attachments
          : undefined;
    if (!Array.isArray(named)) continue;
    for (const id of named) {
      if (typeof id !== 'string' || seen.has(id)) continue;
      seen.add(id);
      yield {
        external_id: id,
        filename: '',
        url: `${base}/v1/attachments/${encodeURIComponent(id)}`,
        size: null,
      };
    }
  }
}

/** The objects of a file of JSON lines. */
async function* readJsonObjects(path: string): AsyncGenerator<Record<string, unknown>> {
  let n = 0;
  for await (const value of readJsonLines(path)) {
    n++;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new Error(`${path}: entry ${n} is not a JSON object`);
    }
    yield value as Record<string, unknown>;
  }
}

/** The lines of a files list, each checked to be a file to upload. */
export async function* readFileList(path: string): AsyncGenerator<ImportFileToUpload> {
  let n = 0;
  for await (const file of readJsonObjects(path)) {
    n++;
    if (
      typeof file.external_id !== 'string' ||
      typeof file.url !== 'string' ||
      typeof file.filename !== 'string'
    ) {
      throw new Error(`${path}: entry ${n} is not a file (external_id, filename and url are required)`);
    }
    yield file as unknown as ImportFileToUpload;
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      files: { type: 'string' },
      'from-records': { type: 'string' },
      'source-url': { type: 'string' },
      url: { type: 'string' },
      source: { type: 'string' },
      'auth-origin': { type: 'string' },
      concurrency: { type: 'string', default: '4' },
      'stall-timeout': { type: 'string', default: '60' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const token = process.env.DESKROUTE_TOKEN;
  const header = process.env.SOURCE_AUTHORIZATION;
  const fromRecords = values['from-records'];
  const authOrigin = values['auth-origin'] ?? (fromRecords ? values['source-url'] : undefined);
  const lists = (values.files ? 1 : 0) + (fromRecords ? 1 : 0);
  const concurrency = Number(values.concurrency);
  const stallSeconds = Number(values['stall-timeout']);
  if (
    !Number.isInteger(stallSeconds) ||
    stallSeconds < 1 ||
    stallSeconds > 3600 ||
    !Number.isInteger(concurrency) ||
    concurrency < 1 ||
    concurrency > 64 ||
    values.help ||
    lists !== 1 ||
    (fromRecords && !values['source-url']) ||
    !values.url ||
    !values.source ||
    !token ||
    (header && !authOrigin)
  ) {
    process.stderr.write(
      'usage: DESKROUTE_TOKEN=... [SOURCE_AUTHORIZATION=...] npm run upload:import-files -- --url <deskroute> --source <source>\n' +
        '         (--files files.ndjson [--auth-origin <origin>] | --from-records export.ndjson --source-url <deskroute>) [--concurrency 4] [--stall-timeout 60]\n' +
        '(SOURCE_AUTHORIZATION goes to --auth-origin only; with --from-records, --source-url by default; --concurrency 1-64;\n' +
        ' a file fails when nothing moves for --stall-timeout seconds, 1-3600)\n',
    );
    process.exit(values.help ? 0 : 2);
  }
  const files = fromRecords
    ? filesOfRecords(readJsonObjects(fromRecords), values['source-url']!)
    : readFileList(values.files!);
  const summary = await uploadFiles(files, {
    deskroute: values.url,
    token,
    source: values.source,
    authorization: header ? { origin: authOrigin!, header } : undefined,
    concurrency,
    stallMs: stallSeconds * 1000,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(
    `files: ${summary.uploaded} uploaded, ${summary.present} there already, ${summary.failed.length} failed\n`,
  );
  if (summary.failed.length > 0) {
    process.stderr.write('do not start the import yet: fix the failures and run this again\n');
    process.exit(1);
  }
}

if (import.meta.main) {
  main().catch((error) => {
    process.stderr.write(`upload:import-files: ${(error as Error).message}\n`);
    process.exit(1);
  });
}
