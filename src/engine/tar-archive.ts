/**
 * Read-only random access to an uncompressed tar file (ustar, PAX and GNU long names), or to a
 * directory through the same interface. Used for OCI image layouts and `docker save` archives:
 * entries are indexed once, then read or streamed by name without extracting anything.
 */
import { createReadStream, statSync } from 'node:fs';
import { type FileHandle, open, readFile, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';

export interface ArchiveEntry {
  name: string;
  /** '0' file, '1' hard link, '2' symlink, '5' directory, … */
  type: string;
  size: number;
  /** Byte offset of the data in the tar file. */
  offset: number;
  linkname: string;
}

/** What image import needs from an archive or a directory. */
export interface FileSource {
  /** Normalised path (no leading `./` or `/`) after following links, or undefined if absent. */
  resolve(path: string): string | undefined;
  size(path: string): number;
  read(path: string): Promise<Buffer>;
  stream(path: string): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

export function normalizeEntryName(name: string): string {
  const n = posix.normalize(`/${name}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

function cstring(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? slice.length : nul).toString('utf8');
}

function numeric(buf: Buffer, start: number, len: number): number {
  const field = buf.subarray(start, start + len);
  if (field[0] !== undefined && field[0] & 0x80) {
    // GNU base-256 encoding for large values
    let v = 0;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    return v;
  }
  const s = cstring(buf, start, len).trim();
  return s === '' ? 0 : Number.parseInt(s, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = Number(data.subarray(pos, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0) break;
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

export class TarArchive implements FileSource {
  readonly entries = new Map<string, ArchiveEntry>();
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async open(path: string): Promise<TarArchive> {
    const fh = await open(path, 'r');
    const tar = new TarArchive(path, fh);
    try {
      await tar.index();
    } catch (err) {
      await fh.close();
      throw err;
    }
    return tar;
  }

  private async readAt(pos: number, len: number): Promise<Buffer> {
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === len ? buf : buf.subarray(0, got);
  }

  private async index(): Promise<void> {
    const total = (await this.fh.stat()).size;
    const magic = await this.readAt(0, 2);
    if (magic[0] === 0x1f && magic[1] === 0x8b) throw new Error(`${this.path}: compressed tarballs are not supported`);
    if (total < 512) throw new Error(`${this.path}: not a tar archive (${total} bytes)`);
    let pos = 0;
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax: Record<string, string> = {};
    while (pos + 512 <= total) {
      const h = await this.readAt(pos, 512);
      if (h.every((b) => b === 0)) break;
      const sum = numeric(h, 148, 8);
      let check = 0;
      for (let i = 0; i < 512; i++) check += i >= 148 && i < 156 ? 0x20 : h[i]!;
      if (sum !== check) throw new Error(`${this.path}: not a tar archive (bad header checksum at ${pos})`);
      const type = String.fromCharCode(h[156] || 0x30);
      let size = numeric(h, 124, 12);
      const dataPos = pos + 512;
      if (pax.size !== undefined) size = Number(pax.size);
      const next = dataPos + Math.ceil(size / 512) * 512;
      if (type === 'x') {
        pax = { ...pax, ...parsePax(await this.readAt(dataPos, size)) };
      } else if (type === 'g') {
        // global PAX header: nothing we need
      } else if (type === 'L') {
        longName = cstring(await this.readAt(dataPos, size), 0, size);
      } else if (type === 'K') {
        longLink = cstring(await this.readAt(dataPos, size), 0, size);
      } else {
        const magic = cstring(h, 257, 6);
        const prefix = magic.startsWith('ustar') ? cstring(h, 345, 155) : '';
        const rawName = pax.path ?? longName ?? (prefix ? `${prefix}/${cstring(h, 0, 100)}` : cstring(h, 0, 100));
        const linkname = pax.linkpath ?? longLink ?? cstring(h, 157, 100);
        const name = normalizeEntryName(rawName);
        this.entries.set(name, { name, type: type === '\0' ? '0' : type, size, offset: dataPos, linkname });
        pax = {};
        longName = undefined;
        longLink = undefined;
      }
      pos = next;
    }
  }

  resolve(path: string): string | undefined {
    let name = normalizeEntryName(path);
    for (let hops = 0; hops < 16; hops++) {
      const e = this.entries.get(name);
      if (!e) return undefined;
      if (e.type === '2') {
        name = normalizeEntryName(
          e.linkname.startsWith('/') ? e.linkname : posix.join(posix.dirname(name), e.linkname),
        );
      } else if (e.type === '1') {
        name = normalizeEntryName(e.linkname);
      } else {
        return name;
      }
    }
    return undefined;
  }

  private entry(path: string): ArchiveEntry {
    const name = this.resolve(path);
    const e = name === undefined ? undefined : this.entries.get(name);
    if (!e || (e.type !== '0' && e.type !== '7')) throw new Error(`${this.path}: no file ${path}`);
    return e;
  }

  size(path: string): number {
    return this.entry(path).size;
  }

  async read(path: string): Promise<Buffer> {
    const e = this.entry(path);
    return this.readAt(e.offset, e.size);
  }

  stream(path: string): AsyncIterable<Buffer> {
    const e = this.entry(path);
    if (e.size === 0) return [][Symbol.iterator]() as unknown as AsyncIterable<Buffer>;
    return createReadStream(this.path, { start: e.offset, end: e.offset + e.size - 1, highWaterMark: 1024 * 1024 });
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** A directory (an unpacked OCI layout) seen through the FileSource interface. */
export class DirectorySource implements FileSource {
  private readonly sizes = new Map<string, number>();
  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<DirectorySource> {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
    return new DirectorySource(dir);
  }

  resolve(path: string): string | undefined {
    const name = normalizeEntryName(path);
    if (this.sizes.has(name)) return name;
    // Synchronous stat keeps the interface simple (stat follows symlinks, as resolve should).
    const st = statSync(join(this.dir, name), { throwIfNoEntry: false });
    if (!st?.isFile()) return undefined;
    this.sizes.set(name, st.size);
    return name;
  }

  size(path: string): number {
    const name = this.resolve(path);
    if (name === undefined) throw new Error(`${this.dir}: no file ${path}`);
    return this.sizes.get(name)!;
  }

  read(path: string): Promise<Buffer> {
    return readFile(join(this.dir, normalizeEntryName(path)));
  }

  stream(path: string): AsyncIterable<Buffer> {
    return createReadStream(join(this.dir, normalizeEntryName(path)), { highWaterMark: 1024 * 1024 });
  }

  async close(): Promise<void> {}
}

/** Open a tar file or a directory. */
export async function openFileSource(path: string): Promise<FileSource> {
  const st = await stat(path);
  return st.isDirectory() ? DirectorySource.open(path) : TarArchive.open(path);
}
