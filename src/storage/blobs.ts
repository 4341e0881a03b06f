import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Where attachments and received messages are kept: a small interface so another store (an
 * object store) can take the local disk's place. Keys are opaque, chosen by the store.
 */
export interface BlobStore {
  /**
   * Streams `source` into a new blob. Past `maxBytes` the write stops and `BlobTooLarge` is thrown
   * (nothing stays behind). Returns the key, size and sha256 (hex) of what was written.
   */
  put(source: Readable | Buffer, options?: { maxBytes?: number }): Promise<StoredBlob>;
  /** A stream of the blob's bytes; throws `BlobMissing` when there is none under the key. */
  get(key: string): Promise<Readable>;
  delete(key: string): Promise<void>;
}

export interface StoredBlob {
  key: string;
  size: number;
  sha256: string;
}

export class BlobTooLarge extends Error {
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`blob larger than ${maxBytes} bytes`);
    this.maxBytes = maxBytes;
  }
}

export class BlobMissing extends Error {}

const KEY = /^[0-9a-f]{2}\/[0-9a-f-]{36}$/;

/** Blobs as files under `<dir>`, two hex characters of fan-out; written to a temporary name first. */
export function localDiskStore(dir: string): BlobStore {
  const fileOf = (key: string) => {
    if (!KEY.test(key)) throw new BlobMissing(`not a blob key: ${key}`);
    return path.join(dir, key);
  };
  return {
    async put(source, options = {}) {
      const id = randomUUID();
      const key = `${id.slice(0, 2)}/${id}`;
      const file = path.join(dir, key);
      const temporary = `${file}.part`;
      await mkdir(path.dirname(file), { recursive: true });
      const hash = createHash('sha256');
      let size = 0;
      const max = options.maxBytes ?? Number.POSITIVE_INFINITY;
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          size += chunk.length;
          if (size > max) return done(new BlobTooLarge(max));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      const input = Buffer.isBuffer(source) ? [source] : source;
      try {
        await pipeline(input, meter, createWriteStream(temporary, { flags: 'wx' }));
        await rename(temporary, file);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      return { key, size, sha256: hash.digest('hex') };
    },
    async get(key) {
      const file = fileOf(key);
      try {
        await stat(file);
      } catch {
        throw new BlobMissing(`no blob ${key}`);
      }
      return createReadStream(file);
    },
    async delete(key) {
      await rm(fileOf(key), { force: true });
    },
  };
}

/** The store of a server or test: DATA_DIR/blobs. */
export function blobStoreFor(dataDir: string): BlobStore {
  return localDiskStore(path.join(dataDir, 'blobs'));
}
