/**
 * Writing ustar archives as a stream of buffers (headers, data, padding), for `docker save` archives. Names up to
 * 100 bytes go in the header; longer ones get a PAX `path` record.
 */

export interface TarEntryHeader {
  name: string;
  size: number;
  /** Default 0o644 for files, 0o755 for directories. */
  mode?: number;
  /** Seconds since the epoch (default 0: reproducible archives). */
  mtime?: number;
  /** '0' file (default), '5' directory, '2' symlink. */
  type?: '0' | '2' | '5';
  linkname?: string;
  uid?: number;
  gid?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function rawHeader(name: string, size: number, type: string, e: TarEntryHeader): Buffer {
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(e.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 'ascii');
  h.write(octal(e.uid ?? 0, 8), 108, 'ascii');
  h.write(octal(e.gid ?? 0, 8), 116, 'ascii');
  if (size > 0o77777777777) {
    // GNU base-256 for sizes over 8 GiB
    h[124] = 0x80;
    let v = size;
    for (let i = 135; i > 124; i--) {
      h[i] = v % 256;
      v = Math.floor(v / 256);
    }
  } else {
    h.write(octal(size, 12), 124, 'ascii');
  }
  h.write(octal(e.mtime ?? 0, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(type, 156, 'ascii');
  if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** The header block(s) of an entry (a PAX record first when the name does not fit). */
export function tarHeader(e: TarEntryHeader): Buffer {
  const type = e.type ?? '0';
  const size = type === '0' ? e.size : 0;
  if (Buffer.byteLength(e.name) <= 100 && (!e.linkname || Buffer.byteLength(e.linkname) <= 100))
    return rawHeader(e.name, size, type, e);
  const records: string[] = [];
  const record = (k: string, v: string) => {
    const body = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(body) + 1;
    while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
    records.push(`${len}${body}`);
  };
  record('path', e.name);
  if (e.linkname) record('linkpath', e.linkname);
  const pax = Buffer.from(records.join(''), 'utf8');
  const paxHeader = rawHeader('PaxHeader', pax.length, 'x', { name: 'PaxHeader', size: pax.length });
  return Buffer.concat([
    paxHeader,
    pax,
    tarPadding(pax.length),
    rawHeader(e.name.slice(0, 100), size, type, { ...e, linkname: e.linkname?.slice(0, 100) }),
  ]);
}

/** Zero bytes completing a data section of `size` bytes to a 512-byte block. */
export function tarPadding(size: number): Buffer {
  const rest = size % 512;
  return Buffer.alloc(rest === 0 ? 0 : 512 - rest, 0);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(1024, 0);

/** A whole small archive in memory (tests, tiny layers). */
export function tarBuffer(entries: Array<TarEntryHeader & { data?: Buffer | string }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    parts.push(tarHeader({ ...e, size: data.length }), data, tarPadding(data.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}
