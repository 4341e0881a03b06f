import net from 'node:net';

// A small Server-Sent Events client for tests: a real HTTP request (fetch) whose body is parsed
// as the SSE specification says (messages end at a blank line; `:` starts a comment).

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

export class SseStream {
  readonly status: number;
  readonly headers: Headers;
  readonly messages: SseMessage[] = [];
  readonly comments: string[] = [];
  /** Resolves when the server ends the stream (or the connection drops). */
  readonly ended: Promise<void>;
  #controller: AbortController;
  #waiters = new Set<() => void>();
  #done = false;

  private constructor(res: Response, controller: AbortController) {
    this.status = res.status;
    this.headers = res.headers;
    this.#controller = controller;
    this.ended = this.#read(res).finally(() => {
      this.#done = true;
      for (const w of this.#waiters) w();
    });
  }

  static async open(url: string, token: string, headers: Record<string, string> = {}): Promise<SseStream> {
    const controller = new AbortController();
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers },
      signal: controller.signal,
    });
    return new SseStream(res, controller);
  }

  get done(): boolean {
    return this.#done;
  }

  /** The body of a refused request (problem+json). */
  async body(): Promise<string> {
    await this.ended;
    return this.#text;
  }

  #text = '';

  async #read(res: Response) {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body) {
        const text = decoder.decode(chunk as Uint8Array, { stream: true });
        if (res.status !== 200) {
          this.#text += text;
          continue;
        }
        buffer += text;
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          this.#parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
        for (const w of this.#waiters) w();
      }
    } catch {
      // aborted by close(), or the server cut the connection
    }
  }

  #parse(block: string) {
    const { message, comments } = parseSseBlock(block);
    this.comments.push(...comments);
    if (message) this.messages.push(message);
  }

  /** Waits until `predicate` holds (checked on every chunk), or fails after `ms`. */
  async until(predicate: () => boolean, ms = 10_000, what = 'the expected messages'): Promise<void> {
    if (predicate()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(
          new Error(
            `timed out after ${ms} ms waiting for ${what}; got ${this.messages.map((m) => m.event).join(', ')}`,
          ),
        );
      }, ms);
      const check = () => {
        if (predicate() || this.#done) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          if (predicate()) resolve();
          else reject(new Error(`the stream ended while waiting for ${what}`));
        }
      };
      this.#waiters.add(check);
    });
  }

  /** Feed events (not notifications), parsed. */
  events(): {
    cursor: string;
    type: string;
    event: {
      id: string;
      type: string;
      ticket_id: string | null;
      department_id: string | null;
      payload: Record<string, unknown>;
    };
  }[] {
    return this.messages
      .filter((m) => m.event !== 'notification' && m.id !== null)
      .map((m) => ({ cursor: m.id as string, type: m.event, event: JSON.parse(m.data) }));
  }

  notifications(): Record<string, unknown>[] {
    return this.messages.filter((m) => m.event === 'notification').map((m) => JSON.parse(m.data));
  }

  close(): void {
    this.#controller.abort();
  }
}

/** One block of an SSE body (the text between blank lines): its message, if any, and comments. */
function parseSseBlock(block: string): { message: SseMessage | null; comments: string[] } {
  let id: string | null = null;
  let event = 'message';
  const data: string[] = [];
  const comments: string[] = [];
  let any = false;
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) {
      comments.push(line.slice(1).trim());
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    any = true;
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return { message: any ? { id, event, data: data.join('\n') } : null, comments };
}

/** The complete messages of an SSE body; a message cut off before its blank line is not one. */
export function parseSseBody(body: string): SseMessage[] {
  const blocks = body.split('\n\n');
  blocks.pop(); // whatever follows the last blank line is incomplete (or empty)
  return blocks.flatMap((block) => {
    const { message } = parseSseBlock(block);
    return message ? [message] : [];
  });
}

/** The body of an HTTP/1.1 chunked response, as far as it arrived (a chunk may be cut short). */
function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at);
    if (lineEnd === -1) break;
    const size = Number.parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    const start = lineEnd + 2;
    parts.push(raw.subarray(start, Math.min(start + size, raw.length)));
    at = start + size + 2;
    if (at > raw.length) break;
  }
  return Buffer.concat(parts);
}

/**
 * A stream client that sends its request on a raw socket and then reads nothing, like a client
 * that has stalled: the server's writes pile up in the kernel's buffers, then in its own.
 * `drain()` reads everything that did arrive until the server ends the connection.
 */
export class StalledSseClient {
  readonly #socket: net.Socket;
  readonly #chunks: Buffer[];
  #closed = false;

  private constructor(socket: net.Socket, chunks: Buffer[]) {
    this.#socket = socket;
    this.#chunks = chunks;
    socket.on('close', () => {
      this.#closed = true;
    });
  }

  /** Sends the request and reads until the response headers are in (the stream is open), no further. */
  static async open(
    port: number,
    token: string,
    path = '/v1/events/stream',
    headers: Record<string, string> = {},
  ): Promise<StalledSseClient> {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
    socket.write(
      `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nauthorization: Bearer ${token}\r\naccept: text/event-stream\r\n${extra.join('')}\r\n`,
    );
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (Buffer.concat(chunks).includes('\r\n\r\n')) {
          socket.pause();
          socket.off('data', check);
          resolve();
        }
      };
      socket.on('data', check);
      socket.once('close', () => reject(new Error('closed before the response headers')));
    });
    return new StalledSseClient(socket, chunks);
  }

  /** Reads what the server sent until it ends the connection; the status and complete messages. */
  async drain(ms = 30_000): Promise<{ status: number; messages: SseMessage[] }> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server did not end the stalled stream')), ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      if (this.#closed) done();
      this.#socket.once('close', done);
      this.#socket.once('end', done);
      this.#socket.resume();
    });
    const raw = Buffer.concat(this.#chunks);
    const headerEnd = raw.indexOf('\r\n\r\n');
    const head = raw.subarray(0, headerEnd).toString('latin1');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    const body = /\r\ntransfer-encoding: chunked/i.test(head)
      ? dechunk(raw.subarray(headerEnd + 4))
      : raw.subarray(headerEnd + 4);
    return { status, messages: parseSseBody(body.toString('utf8')) };
  }

  close(): void {
    this.#socket.destroy();
  }
}
