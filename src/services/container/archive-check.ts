/**
 * Checks a `put_archive` tar before it reaches the container: every entry must land below the target directory.
 * The container's own tar unpacks it inside the container (so nothing can reach the host), but an entry named
 * `../x` or `/x`, or a link pointing out of the tree, would write somewhere else than the path the caller named:
 * refused with the reason instead.
 */

export interface TarEntry {
  name: string;
  type: string;
  linkName: string;
}

const BLOCK = 512;

function cstring(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len);
  const nul = slice.indexOf(0);
  return (nul < 0 ? slice : slice.subarray(0, nul)).toString('utf8');
}

/** A header's numeric field: octal text, or GNU base-256 when the high bit of the first byte is set. */
function number(buf: Buffer, start: number, len: number): number {
  if (buf[start] & 0x80) {
    let n = 0;
    for (let i = start + 1; i < start + len; i++) n = n * 256 + buf[i];
    return n;
  }
  const s = cstring(buf, start, len).trim();
  return s === '' ? 0 : Number.parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === number(h, 148, 8);
}

/** pax extended header records (`<len> key=value\n`). */
function paxRecords(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number.parseInt(data.subarray(i, sp).toString('ascii'), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** The entries of an uncompressed tar (ustar, GNU long names, pax paths); throws on a malformed archive. */
export function tarEntries(tar: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> = {};
  let off = 0;
  while (off + BLOCK <= tar.length) {
    const h = tar.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) break;
    if (!checksumOk(h)) throw new Error('the data is not an uncompressed tar archive (bad header checksum)');
    const size = number(h, 124, 12);
    const type = String.fromCharCode(h[156] || 0x30);
    const dataStart = off + BLOCK;
    const data = tar.subarray(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') longName = cstring(data, 0, data.length);
    else if (type === 'K') longLink = cstring(data, 0, data.length);
    else if (type === 'x') pax = paxRecords(data);
    else if (type === 'g') continue;
    else {
      const prefix = h.subarray(257, 262).toString('ascii') === 'ustar' ? cstring(h, 345, 155) : '';
      const base = cstring(h, 0, 100);
      const name = pax.path ?? longName ?? (prefix ? `${prefix}/${base}` : base);
      const linkName = pax.linkpath ?? longLink ?? cstring(h, 157, 100);
      entries.push({ name, type, linkName });
      longName = longLink = undefined;
      pax = {};
    }
  }
  return entries;
}

const escapes = (p: string) => p.startsWith('/') || p.split('/').includes('..');

/** Why the archive may not be extracted, or undefined when every entry stays below the target directory. */
export function unsafeArchiveReason(tar: Buffer): string | undefined {
  let entries: TarEntry[];
  try {
    entries = tarEntries(tar);
  } catch (err) {
    return (err as Error).message;
  }
  for (const e of entries) {
    if (escapes(e.name)) return `the entry '${e.name}' is absolute or leaves the target directory ('..')`;
    if ((e.type === '1' || e.type === '2') && escapes(e.linkName))
      return `the ${e.type === '2' ? 'symbolic' : 'hard'} link '${e.name}' points to '${e.linkName}', outside the target directory`;
  }
  return undefined;
}
