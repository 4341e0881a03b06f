import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * The values of a file of JSON lines, streamed; a line that is not JSON is named with its
 * number (and `hint`, what to do about it).
 */
export async function* readJsonLines(path: string, hint = ''): AsyncGenerator<unknown> {
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (!line.trim()) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new Error(`${path}:${n}: not a JSON line (${(error as Error).message})${hint}`);
    }
    yield value;
  }
}
