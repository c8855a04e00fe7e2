/**
 * Published ports in the kernel (Docker's iptables driver, in nftables): pure parts — the transit address pairs of
 * the publish legs and the nft scripts. The dataplane (dataplane.ts) owns the kernel side.
 *
 * A container with published ports gets a point-to-point "publish leg" (veth `kt<tag><id>` in the host ↔ `pub0` in
 * its namespace) with a transit pair X (host) / Y (namespace) from a configurable range. The host's
 * `table ip krater-<tag>` DNATs hostIp:hostPort → Y:containerPort (prerouting for traffic from outside, output for
 * the host's own, 127.0.0.1 included thanks to `route_localnet` on the leg) and masquerades what leaves through a
 * leg, so replies come back through it; inside the namespace, traffic from the leg is DNATed to the container's
 * fixed address (a service bound to it answers too).
 */
import { isV6, replaceTable } from './nft.js';

export interface PublishBinding {
  /** Specific IPv4 address, or 0.0.0.0 for every local address. */
  hostIp: string;
  hostPort: number;
  protocol: 'tcp' | 'udp';
  /** The namespace end of the endpoint's leg. */
  target: string;
  containerPort: number;
}

export const ANY_V4 = '0.0.0.0';
/** Default range for transit pairs: link-local, clear of 169.254.169.254 (cloud metadata). */
export const DEFAULT_TRANSIT_CIDR = '169.254.64.0/18';

const PROTO_NUMBER = { tcp: 6, udp: 17 } as const;

export function ipv4ToInt(a: string): number {
  const p = a.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255))
    throw new Error(`not an IPv4 address: ${a}`);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}
export const intToIpv4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The transit range: its first address and the number of /31 pairs in it. Throws on a malformed or IPv6 CIDR
 * (or one too small for a single pair). */
export function transitRange(cidr: string): { base: number; pairs: number } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr.trim());
  if (!m || isV6(cidr) || Number(m[2]) > 31)
    throw new Error(`publish transit range must be an IPv4 CIDR up to /31, got ${cidr}`);
  const len = Number(m[2]);
  const size = 2 ** (32 - len);
  const base = Math.floor(ipv4ToInt(m[1]) / size) * size;
  return { base, pairs: size / 2 };
}

/** Pair `index` of the range: host end (even) and namespace end (odd) address. */
export function transitPair(cidr: string, index: number): { host: string; ns: string } {
  const { base, pairs } = transitRange(cidr);
  if (!Number.isInteger(index) || index < 0 || index >= pairs) throw new Error(`transit pair ${index} out of ${cidr}`);
  return { host: intToIpv4(base + 2 * index), ns: intToIpv4(base + 2 * index + 1) };
}

/** The namespace end of a pair given its host end. */
export const transitPeer = (host: string): string => intToIpv4(ipv4ToInt(host) + 1);

/**
 * Chooses a free pair: random (so that several Krater instances on one host rarely race for the same one), skipping
 * pairs any address in `used` falls in (the host's addresses and the pairs this instance already holds). Undefined
 * when the range is full.
 */
export function chooseTransit(
  cidr: string,
  used: Iterable<string>,
  random: () => number = Math.random,
): string | undefined {
  const { base, pairs } = transitRange(cidr);
  const taken = new Set<number>();
  for (const a of used) {
    if (isV6(a)) continue;
    const n = ipv4ToInt(a.split('/')[0]);
    if (n >= base && n < base + 2 * pairs) taken.add(Math.floor((n - base) / 2));
  }
  if (taken.size >= pairs) return undefined;
  const start = Math.floor(random() * pairs);
  for (let i = 0; i < pairs; i++) {
    const idx = (start + i) % pairs;
    if (!taken.has(idx)) return intToIpv4(base + 2 * idx);
  }
  return undefined;
}

/** Whether two bindings claim the same host socket: same protocol and port, and the same address or either on
 * 0.0.0.0 (which covers every local address). */
export function bindingsOverlap(
  a: { hostIp: string; hostPort: number; protocol: string },
  b: { hostIp: string; hostPort: number; protocol: string },
): boolean {
  if (a.protocol !== b.protocol || a.hostPort !== b.hostPort) return false;
  return a.hostIp === b.hostIp || a.hostIp === ANY_V4 || b.hostIp === ANY_V4;
}

/**
 * The host's NAT table (`table ip <name>`), an atomic replacement: two maps (specific address . protocol . port →
 * target . port, and protocol . port → target . port for 0.0.0.0), looked up for packets to a local address in
 * prerouting (from outside) and output (the host's own), and masquerade on the publish legs (`legPrefix*`).
 */
export function hostPublishTable(table: string, legPrefix: string, bindings: PublishBinding[]): string {
  const specific: string[] = [];
  const any: string[] = [];
  for (const b of bindings) {
    const to = `${b.target} . ${b.containerPort}`;
    const proto = PROTO_NUMBER[b.protocol];
    if (b.hostIp === ANY_V4) any.push(`${proto} . ${b.hostPort} : ${to}`);
    else specific.push(`${b.hostIp} . ${proto} . ${b.hostPort} : ${to}`);
  }
  const elements = (e: string[]) => (e.length ? `    elements = { ${e.join(',\n      ')} }\n` : '');
  const lookups =
    '    meta l4proto { tcp, udp } fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @addr\n' +
    '    meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . th dport map @any\n';
  return replaceTable(
    'ip',
    table,
    '  map addr {\n    type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service\n' +
      elements(specific) +
      '  }\n' +
      '  map any {\n    type inet_proto . inet_service : ipv4_addr . inet_service\n' +
      elements(any) +
      '  }\n' +
      `  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n${lookups}  }\n` +
      `  chain output {\n    type nat hook output priority -100; policy accept;\n${lookups}  }\n` +
      '  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n' +
      `    oifname ${JSON.stringify(`${legPrefix}*`)} masquerade\n  }\n`,
  );
}

/** Inside an endpoint namespace (`table ip <name>`): what arrives on the publish leg goes to the container's fixed
 * address (absent: the leg's own address answers, for a service bound to 0.0.0.0). */
export function endpointPublishTable(table: string, legIf: string, fixedIp: string | undefined): string {
  const rule = fixedIp ? `    iifname ${JSON.stringify(legIf)} meta l4proto { tcp, udp } dnat ip to ${fixedIp}\n` : '';
  return replaceTable(
    'ip',
    table,
    `  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n${rule}  }\n`,
  );
}
