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
    let id: string | null = null;
    let event = 'message';
    const data: string[] = [];
    let any = false;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) {
        this.comments.push(line.slice(1).trim());
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
    if (any) this.messages.push({ id, event, data: data.join('\n') });
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
