import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, statSync } from 'node:fs';
import { open, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

/** An upload in progress: bytes go to `stream`; nothing is visible until `commit`, and `abort` leaves nothing. */
export interface ImageDataWriter {
  readonly stream: Writable;
  /** Flushes the data and makes it durable; returns the location to store on the image. */
  commit(): Promise<string>;
  /** Discards whatever was written (safe to call after a failed commit and more than once). */
  abort(): Promise<void>;
}

/** Where image bytes live. Glance calls these "stores"; Krater ships a filesystem one. */
export interface ImageDataStore {
  readonly name: string;
  begin(imageId: string): Promise<ImageDataWriter>;
  /** A stream of the data at `location`, optionally the inclusive byte range [start, end]; 404-style null if gone. */
  open(location: string, range?: { start: number; end: number }): Promise<Readable | null>;
  delete(location: string): Promise<void>;
  /**
   * When data for an upload of `imageId` last arrived (ms since epoch), or null if none is in progress here. Lets a
   * process tell uploads that died with another process from live ones; stores that cannot tell omit it.
   */
  uploadActivity?(imageId: string): Promise<number | null>;
  /** Removes partial data of `imageId` idle for more than `maxIdleMs`. */
  discardStalePartials?(imageId: string, maxIdleMs: number): Promise<void>;
}

const LOCATION_PREFIX = 'file:';
const PART_SUFFIX = '.part';

/** Image data as plain files: `<dir>/<image id>`, written to `<dir>/.<id>.<random>.part` first, then renamed. */
export class FilesystemImageStore implements ImageDataStore {
  readonly name = 'file';

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Removes partial files older than `maxAgeMs` (left behind by a process that died mid-upload). */
  sweepPartials(maxAgeMs: number): number {
    let removed = 0;
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith(PART_SUFFIX)) continue;
      const p = join(this.dir, name);
      try {
        if (Date.now() - statSync(p).mtimeMs > maxAgeMs) {
          void rm(p, { force: true });
          removed++;
        }
      } catch {
        // raced with the writer finishing or aborting
      }
    }
    return removed;
  }

  private partials(imageId: string): Array<{ path: string; mtimeMs: number }> {
    const prefix = `.${imageId}.`;
    const out: Array<{ path: string; mtimeMs: number }> = [];
    for (const name of readdirSync(this.dir)) {
      if (!name.startsWith(prefix) || !name.endsWith(PART_SUFFIX)) continue;
      try {
        out.push({ path: join(this.dir, name), mtimeMs: statSync(join(this.dir, name)).mtimeMs });
      } catch {
        // finished or aborted meanwhile
      }
    }
    return out;
  }

  async uploadActivity(imageId: string): Promise<number | null> {
    const parts = this.partials(imageId);
    return parts.length ? Math.max(...parts.map((p) => p.mtimeMs)) : null;
  }

  async discardStalePartials(imageId: string, maxIdleMs: number): Promise<void> {
    for (const p of this.partials(imageId)) if (Date.now() - p.mtimeMs > maxIdleMs) await rm(p.path, { force: true });
  }

  private pathOf(location: string): string {
    if (!location.startsWith(LOCATION_PREFIX)) throw new Error(`not a filesystem image location: ${location}`);
    const key = location.slice(LOCATION_PREFIX.length);
    if (!/^[A-Za-z0-9._-]+$/.test(key) || key.startsWith('.')) throw new Error(`invalid image location: ${location}`);
    return join(this.dir, key);
  }

  async begin(imageId: string): Promise<ImageDataWriter> {
    const key = imageId;
    const final = this.pathOf(`${LOCATION_PREFIX}${key}`);
    const part = join(this.dir, `.${key}.${randomBytes(4).toString('hex')}${PART_SUFFIX}`);
    const stream = createWriteStream(part, { flags: 'wx', mode: 0o600 });
    // Errors reach the caller through its own listener and commit(); an abort can make an in-flight write fail
    // after everyone stopped listening, which must not become an uncaught 'error' event.
    stream.on('error', () => {});
    let done = false;
    const abort = async () => {
      done = true;
      if (!stream.destroyed) stream.destroy();
      await rm(part, { force: true });
    };
    return {
      stream,
      async commit() {
        if (done) throw new Error('upload already finished');
        if (!stream.writableEnded) stream.end();
        await finished(stream);
        const fh = await open(part, 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(part, final);
        done = true;
        return `${LOCATION_PREFIX}${key}`;
      },
      abort,
    };
  }

  async open(location: string, range?: { start: number; end: number }): Promise<Readable | null> {
    const p = this.pathOf(location);
    try {
      await stat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return createReadStream(p, range ? { start: range.start, end: range.end } : {});
  }

  async delete(location: string): Promise<void> {
    try {
      await unlink(this.pathOf(location));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/**
 * The data side of a process that must not touch image data itself (a separate `krater agent`: its data goes through
 * the image API, see images/glance-http.ts). Every call fails, so a wiring mistake shows at once.
 */
export class RecordsOnlyImageStore implements ImageDataStore {
  readonly name = 'none';
  private refuse(): never {
    throw new Error('image data is reached through the image API in this process');
  }
  async begin(): Promise<ImageDataWriter> {
    this.refuse();
  }
  async open(): Promise<Readable | null> {
    this.refuse();
  }
  async delete(): Promise<void> {
    this.refuse();
  }
}
