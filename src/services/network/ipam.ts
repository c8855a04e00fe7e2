/**
 * Address arithmetic for Neutron's IPAM, IPv4 and IPv6 alike: addresses are BigInts so one code path covers both.
 * Pure functions only (no store): parsing and canonical formatting, CIDR containment and overlap, Neutron's default
 * gateway and allocation pools, pool validation, free-address candidates, EUI-64 (SLAAC) addresses and prefix
 * allocation from subnet pools.
 */

export type IpVersion = 4 | 6;

export interface Ip {
  version: IpVersion;
  value: bigint;
}

export interface Cidr {
  version: IpVersion;
  /** The network address (host bits zero). */
  network: bigint;
  prefix: number;
}

/** An inclusive address range: Neutron's allocation pool `{start, end}`. */
export interface Range {
  start: bigint;
  end: bigint;
}

export const bits = (v: IpVersion) => (v === 4 ? 32 : 128);

function parseV4(s: string): bigint | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    // No leading zeros: "010" is octal in some parsers and ambiguous, Neutron (netaddr) rejects it too.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(s: string): bigint | null {
  if (s.includes('%')) return null;
  let text = s;
  let tail: bigint[] = [];
  // An embedded IPv4 address in the last 32 bits (::ffff:1.2.3.4).
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.slice(lastColon + 1).includes('.')) {
    const v4 = parseV4(text.slice(lastColon + 1));
    if (v4 === null) return null;
    // Parse it as two placeholder groups, filled in below.
    text = `${text.slice(0, lastColon + 1)}0:0`;
    tail = [v4 >> 16n, v4 & 0xffffn];
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const group = (g: string) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? BigInt(`0x${g}`) : null);
  const side = (h: string): bigint[] | null => {
    if (h === '') return [];
    const out: bigint[] = [];
    for (const g of h.split(':')) {
      const v = group(g);
      if (v === null) return null;
      out.push(v);
    }
    return out;
  };
  const left = side(halves[0]);
  const right = halves.length === 2 ? side(halves[1]) : [];
  if (!left || !right) return null;
  let groups: bigint[];
  if (halves.length === 2) {
    const missing = 8 - left.length - right.length;
    if (missing < 1) return null;
    groups = [...left, ...new Array<bigint>(missing).fill(0n), ...right];
  } else {
    groups = left;
  }
  if (groups.length !== 8) return null;
  if (tail.length) {
    groups[6] = tail[0];
    groups[7] = tail[1];
  }
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Parses an IPv4 or IPv6 address; null when it is neither. */
export function parseIp(s: unknown): Ip | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > 64) return null;
  if (s.includes(':')) {
    const v = parseV6(s);
    return v === null ? null : { version: 6, value: v };
  }
  const v = parseV4(s);
  return v === null ? null : { version: 4, value: v };
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run compressed). */
export function formatIp(version: IpVersion, value: bigint): string {
  if (version === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical form of an address string, or null when it is not one. */
export function normalizeIp(s: unknown): string | null {
  const ip = parseIp(s);
  return ip ? formatIp(ip.version, ip.value) : null;
}

const mask = (version: IpVersion, prefix: number) => {
  const b = BigInt(bits(version));
  return ((1n << b) - 1n) ^ ((1n << (b - BigInt(prefix))) - 1n);
};

export interface ParsedCidr extends Cidr {
  /** True when the text had host bits set (10.0.0.5/24): Neutron refuses those as subnet CIDRs. */
  hostBits: boolean;
}

/** Parses `addr/prefix` (a bare address is a host route: /32 or /128). */
export function parseCidr(s: unknown): ParsedCidr | null {
  if (typeof s !== 'string') return null;
  const slash = s.indexOf('/');
  const ip = parseIp(slash >= 0 ? s.slice(0, slash) : s);
  if (!ip) return null;
  let prefix = bits(ip.version);
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > bits(ip.version)) return null;
  }
  const network = ip.value & mask(ip.version, prefix);
  return { version: ip.version, network, prefix, hostBits: network !== ip.value };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.version, c.network)}/${c.prefix}`;
}

/** `10.0.0.5/24` → `10.0.0.0/24`; null when not a CIDR. */
export function normalizeCidr(s: unknown): string | null {
  const c = parseCidr(s);
  return c ? formatCidr(c) : null;
}

export function lastAddress(c: Cidr): bigint {
  return c.network | ((1n << BigInt(bits(c.version) - c.prefix)) - 1n);
}

export function contains(c: Cidr, ip: Ip): boolean {
  return ip.version === c.version && ip.value >= c.network && ip.value <= lastAddress(c);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.version === b.version && a.network <= lastAddress(b) && b.network <= lastAddress(a);
}

/** The range Neutron allocates from in a subnet: without the network address (both versions: for IPv6 it is the
 * subnet-router anycast address) and, for IPv4, without the broadcast address; /31 and /32 keep every address. */
export function usableRange(c: Cidr): Range | null {
  const last = lastAddress(c);
  if (c.version === 4 && c.prefix >= 31) return { start: c.network, end: last };
  if (c.version === 6 && c.prefix === 128) return { start: c.network, end: last };
  const start = c.network + 1n;
  const end = c.version === 4 ? last - 1n : last;
  return start <= end ? { start, end } : null;
}

/** Neutron's default gateway: the first usable address. */
export function defaultGateway(c: Cidr): bigint | null {
  return usableRange(c)?.start ?? null;
}

/** Removes one address from a set of ranges. */
export function subtract(ranges: Range[], addr: bigint): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    if (addr < r.start || addr > r.end) {
      out.push(r);
      continue;
    }
    if (r.start < addr) out.push({ start: r.start, end: addr - 1n });
    if (addr < r.end) out.push({ start: addr + 1n, end: r.end });
  }
  return out;
}

/** Neutron's default allocation pools: the usable range minus the gateway. */
export function defaultPools(c: Cidr, gateway: bigint | null): Range[] {
  const r = usableRange(c);
  if (!r) return [];
  return gateway === null ? [r] : subtract([r], gateway);
}

export type PoolProblem =
  | { kind: 'invalid'; pool: Range }
  | { kind: 'outside'; pool: Range }
  | { kind: 'overlap'; a: Range; b: Range }
  | { kind: 'gateway'; pool: Range };

/** Checks requested allocation pools: start ≤ end, inside the CIDR, pairwise disjoint, not holding the gateway. */
export function checkPools(c: Cidr, pools: Range[], gateway: bigint | null): PoolProblem | null {
  for (const p of pools) {
    if (p.start > p.end) return { kind: 'invalid', pool: p };
    if (p.start < c.network || p.end > lastAddress(c)) return { kind: 'outside', pool: p };
  }
  const sorted = [...pools].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i].start <= sorted[i - 1].end) return { kind: 'overlap', a: sorted[i - 1], b: sorted[i] };
  if (gateway !== null)
    for (const p of pools) if (gateway >= p.start && gateway <= p.end) return { kind: 'gateway', pool: p };
  return null;
}

export function poolsSize(pools: Range[]): bigint {
  return pools.reduce((n, p) => n + (p.end - p.start + 1n), 0n);
}

/**
 * Up to `max` free addresses of the pools, in order, skipping `taken`. Walks only as far as needed, so huge IPv6
 * pools cost no more than small ones.
 */
export function freeAddresses(pools: Range[], taken: Set<bigint>, max: number): bigint[] {
  const out: bigint[] = [];
  for (const p of pools) {
    for (let a = p.start; a <= p.end && out.length < max; a++) if (!taken.has(a)) out.push(a);
    if (out.length >= max) break;
  }
  return out;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Lower-case colon form of a MAC (`FA-16-3E-…` and `fa:16:3e:…` accepted); null when invalid. */
export function normalizeMac(s: unknown): string | null {
  if (typeof s !== 'string') return null;
  const m = s.toLowerCase().replace(/-/g, ':');
  if (!MAC_RE.test(m)) return null;
  return m;
}

/** A MAC usable on a port: unicast (multicast bit clear) and not all zeroes. */
export function isUnicastMac(mac: string): boolean {
  return (Number.parseInt(mac.slice(0, 2), 16) & 1) === 0 && mac !== '00:00:00:00:00:00';
}

/** Modified EUI-64 address of `mac` in a /64 (SLAAC): the U/L bit flipped, ff:fe in the middle. */
export function eui64(prefix: Cidr, mac: string): bigint {
  const b = mac.split(':').map((x) => Number.parseInt(x, 16));
  b[0] ^= 0x02;
  const iid = [b[0], b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]].reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
  return prefix.network | iid;
}

/**
 * The first block of length `prefixlen` inside `prefixes` that overlaps none of `used` (aligned to its own size),
 * or null when the pool has no room: how a subnet pool hands out a subnet.
 */
export function allocatePrefix(prefixes: Cidr[], used: Cidr[], prefixlen: number): Cidr | null {
  for (const p of prefixes) {
    if (prefixlen < p.prefix) continue;
    const step = 1n << BigInt(bits(p.version) - prefixlen);
    const end = lastAddress(p);
    let at = p.network;
    while (at <= end) {
      const candidate: Cidr = { version: p.version, network: at, prefix: prefixlen };
      const clash = used.find((u) => overlaps(u, candidate));
      if (!clash) return candidate;
      // Skip past the clashing block (aligned up to our step) instead of probing every candidate inside it.
      const next = lastAddress(clash) + 1n;
      at = next > at ? ((next + step - 1n) / step) * step : at + step;
    }
  }
  return null;
}

/** True when `inner` lies entirely inside `outer`. */
export function within(inner: Cidr, outer: Cidr): boolean {
  return inner.version === outer.version && inner.prefix >= outer.prefix && overlaps(inner, outer);
}
