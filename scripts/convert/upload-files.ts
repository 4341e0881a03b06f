// npm run upload:import-files -- --files files.ndjson --url <deskroute> --source <source>
//                                 [--auth-origin <origin>] [--concurrency 4]
//   env DESKROUTE_TOKEN        an owner's or admin's token (required)
//   env SOURCE_AUTHORIZATION   the Authorization header value the source's file URLs need
//                              (Zendesk: "Basic " + base64 of "<email>/token:<api token>"); sent
//                              only to URLs of --auth-origin, never across a redirect elsewhere
//
// Uploads the files an import's message records name (docs/import.md, "Attachments"): reads the
// list a converter wrote (`npm run convert:zendesk -- <dir> --files files.ndjson`: one
// {"external_id","filename","url","size"} per line), and for each file not in Deskroute yet
// (GET /v1/imports/files/{external_id}) downloads it from its URL and streams it to
// PUT /v1/imports/files/{external_id}. Nothing is held whole in memory. Run it again after a
// failure: what is there already is skipped. Then POST the records (/v1/imports).
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { ImportFileToUpload } from './zendesk-map.ts';

export interface UploadOptions {
  /** Deskroute's base URL (https://desk.example.com). */
  deskroute: string;
  token: string;
  source: string;
  /** Sent as Authorization to file URLs of `origin` only. */
  authorization?: { origin: string; header: string } | undefined;
  concurrency?: number;
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
  return `${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}`;
}

/** Uploads every file of `files` not uploaded yet, `concurrency` at a time. */
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

  const one = async (file: ImportFileToUpload) => {
    const target = `${base}/v1/imports/files/${encodeURIComponent(file.external_id)}`;
    const here = await fetch(`${target}?source=${encodeURIComponent(options.source)}`, { headers: auth });
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
    });
    if (!download.ok || !download.body)
      throw new Error(await reason(download, `downloading ${url.origin}${url.pathname}`));
    const put = await fetch(
      `${target}?source=${encodeURIComponent(options.source)}&filename=${encodeURIComponent(file.filename.slice(0, 1000))}`,
      {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        body: download.body,
        duplex: 'half',
      } as RequestInit,
    );
    if (put.status !== 201 && put.status !== 200) throw new Error(await reason(put, 'uploading'));
    await put.body?.cancel();
    summary.uploaded++;
    log(`uploaded ${file.external_id} (${file.filename})`);
  };

  const worker = async () => {
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      try {
        await one(next.value);
      } catch (error) {
        summary.failed.push({ external_id: next.value.external_id, reason: (error as Error).message });
        log(`failed ${next.value.external_id}: ${(error as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
  return summary;
}

/** The lines of a files list, each checked to be a file to upload. */
export async function* readFileList(path: string): AsyncGenerator<ImportFileToUpload> {
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (!line.trim()) continue;
    const file = JSON.parse(line) as Partial<ImportFileToUpload>;
    if (
      typeof file.external_id !== 'string' ||
      typeof file.url !== 'string' ||
      typeof file.filename !== 'string'
    ) {
      throw new Error(`${path}:${n}: not a file line (external_id, filename and url are required)`);
    }
    yield file as ImportFileToUpload;
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      files: { type: 'string' },
      url: { type: 'string' },
      source: { type: 'string' },
      'auth-origin': { type: 'string' },
      concurrency: { type: 'string', default: '4' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const token = process.env.DESKROUTE_TOKEN;
  const header = process.env.SOURCE_AUTHORIZATION;
  if (
    values.help ||
    !values.files ||
    !values.url ||
    !values.source ||
    !token ||
    (header && !values['auth-origin'])
  ) {
    process.stderr.write(
      'usage: DESKROUTE_TOKEN=... [SOURCE_AUTHORIZATION=...] npm run upload:import-files -- --files files.ndjson --url <deskroute> --source <source> [--auth-origin <origin>] [--concurrency 4]\n' +
        '(SOURCE_AUTHORIZATION needs --auth-origin: the origin its credentials may go to)\n',
    );
    process.exit(values.help ? 0 : 2);
  }
  const summary = await uploadFiles(readFileList(values.files), {
    deskroute: values.url,
    token,
    source: values.source,
    authorization: header ? { origin: values['auth-origin']!, header } : undefined,
    concurrency: Number(values.concurrency),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(
    `files: ${summary.uploaded} uploaded, ${summary.present} there already, ${summary.failed.length} failed\n`,
  );
  if (summary.failed.length > 0) process.exit(1);
}

if (import.meta.main) {
  main().catch((error) => {
    process.stderr.write(`upload:import-files: ${(error as Error).message}\n`);
    process.exit(1);
  });
}
