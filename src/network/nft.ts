/**
 * nftables scripts (text for `nft -f -`): the security groups inside an endpoint namespace, the host's anti-spoofing
 * bridge table, the router's NAT and the host's guard. Every script replaces its table atomically
 * (`add table` + `delete table` + the full table in one transaction), so a rewrite never opens a gap and established
 * connections survive (conntrack entries are not touched).
 */
import type { DesiredInterface, FirewallRule } from './types.js';

export const isV6 = (addr: string): boolean => addr.includes(':');
export const stripPrefix = (cidr: string): string => cidr.split('/')[0];

const q = (s: string): string => JSON.stringify(s);
const set = (items: string[]): string => `{ ${[...new Set(items)].join(', ')} }`;

/** `add table` + `delete table` + `table …`: an atomic replacement of a whole table. */
export function replaceTable(family: string, name: string, body: string): string {
  return `add table ${family} ${name}\ndelete table ${family} ${name}\ntable ${family} ${name} {\n${body}}\n`;
}

/** Protocols by name → number (numbers are used in rules, so nft never needs /etc/protocols). */
const PROTOCOLS: Record<string, number> = {
  icmp: 1,
  igmp: 2,
  ipip: 4,
  tcp: 6,
  egp: 8,
  udp: 17,
  dccp: 33,
  ipv6: 41,
  rsvp: 46,
  gre: 47,
  esp: 50,
  ah: 51,
  'ipv6-icmp': 58,
  icmpv6: 58,
  'ipv6-nonxt': 59,
  'ipv6-opts': 60,
  'ipv6-route': 43,
  'ipv6-frag': 44,
  'ipv6-encap': 41,
  ospf: 89,
  pgm: 113,
  vrrp: 112,
  sctp: 132,
  udplite: 136,
};
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136]);

const ND_TYPES = [
  'nd-neighbor-solicit',
  'nd-neighbor-advert',
  'nd-router-solicit',
  'nd-router-advert',
  'mld-listener-query',
  'mld-listener-report',
  'mld-listener-done',
  'mld2-listener-report',
];

/** One security group rule as an nft rule body (without the verdict), or null when it can never match (e.g. a
 * remote group with no member of that IP version) or is not expressible. */
export function ruleExpr(rule: FirewallRule): string | null {
  const v6 = rule.ethertype === 'IPv6';
  const parts: string[] = [];
  const dir = rule.direction === 'ingress' ? 'saddr' : 'daddr';
  const ipk = v6 ? 'ip6' : 'ip';
  let familyMatched = false;
  if (rule.remotePrefix) {
    if (isV6(rule.remotePrefix) !== v6) return null;
    const [, len] = rule.remotePrefix.split('/');
    if (len !== '0') {
      parts.push(`${ipk} ${dir} ${rule.remotePrefix}`);
      familyMatched = true;
    }
  } else if (rule.remoteAddresses) {
    const addrs = rule.remoteAddresses.map(stripPrefix).filter((a) => isV6(a) === v6);
    if (addrs.length === 0) return null;
    parts.push(`${ipk} ${dir} ${set(addrs)}`);
    familyMatched = true;
  }
  if (!familyMatched) parts.unshift(`meta nfproto ${v6 ? 'ipv6' : 'ipv4'}`);
  if (rule.protocol !== null && rule.protocol !== '' && rule.protocol !== 'any') {
    const name = rule.protocol.toLowerCase();
    let proto = /^\d+$/.test(name) ? Number(name) : PROTOCOLS[name];
    if (proto === undefined || proto > 255) return null;
    // Neutron accepts `icmp` on an IPv6 rule and means ICMPv6.
    if (v6 && proto === 1) proto = 58;
    if (proto === 1 || proto === 58) {
      parts.push(`meta l4proto ${proto}`);
      const kw = proto === 1 ? 'icmp' : 'icmpv6';
      if (rule.portMin !== null) parts.push(`${kw} type ${rule.portMin}`);
      if (rule.portMin !== null && rule.portMax !== null) parts.push(`${kw} code ${rule.portMax}`);
    } else {
      parts.push(`meta l4proto ${proto}`);
      if (PORT_PROTOCOLS.has(proto) && (rule.portMin !== null || rule.portMax !== null)) {
        const lo = rule.portMin ?? 1;
        const hi = rule.portMax ?? 65535;
        if (lo > hi) return null;
        parts.push(`th dport ${lo === hi ? lo : `${lo}-${hi}`}`);
      }
    }
  }
  return parts.join(' ');
}

function interfaceChains(table: string, interfaces: DesiredInterface[]): { chains: string[]; elements: string[] } {
  const chains: string[] = [];
  const elements: string[] = [];
  interfaces
    .filter((i) => i.portSecurity)
    .forEach((itf, n) => {
      for (const direction of ['ingress', 'egress'] as const) {
        const map = direction === 'ingress' ? 'in' : 'out';
        const chain = `${map}-${n}`;
        elements.push(`add element inet ${table} ${map} { ${q(itf.ifname)} : jump ${chain} }\n`);
        const lines = [
          'ct state established,related accept',
          `meta l4proto ipv6-icmp icmpv6 type ${set(ND_TYPES)} accept`,
          'ct state invalid drop',
        ];
        for (const rule of itf.rules) {
          if (rule.direction !== direction) continue;
          const expr = ruleExpr(rule);
          if (expr !== null) lines.push(`${expr} accept`);
        }
        lines.push('drop');
        chains.push(
          `add chain inet ${table} ${chain}\n${lines.map((l) => `add rule inet ${table} ${chain} ${l}\n`).join('')}`,
        );
      }
    });
  return { chains, elements };
}

/** The skeleton of an endpoint namespace's firewall (`table inet <name>`): base chains dispatching through the
 * verdict maps `in`/`out` (interface name → its chain); interfaces not in a map (no port security) are not
 * filtered. */
const ENDPOINT_SKELETON =
  '  map in {\n    type ifname : verdict;\n  }\n  map out {\n    type ifname : verdict;\n  }\n' +
  '  chain input {\n    type filter hook input priority filter; policy accept;\n    iif "lo" accept\n' +
  // (a `ct` match even without filtered interfaces: it initialises the namespace's conntrack when a pool entry
  // is made, not when it is taken)
  '    ct state untracked accept\n    iifname vmap @in\n  }\n' +
  '  chain output {\n    type filter hook output priority filter; policy accept;\n    oif "lo" accept\n' +
  '    oifname vmap @out\n  }\n';

/** The security groups of the interfaces of one endpoint namespace, as an atomic replacement of its table:
 * stateful chains with default drop per interface with port security. */
export function endpointFirewall(table: string, interfaces: DesiredInterface[]): string {
  const { chains, elements } = interfaceChains(table, interfaces);
  return replaceTable('inet', table, ENDPOINT_SKELETON) + chains.join('') + elements.join('');
}

/** The same rules as additions only, onto a fresh skeleton (a pooled namespace): nftables transactions that
 * only add are several times cheaper than ones that delete or flush (those wait for an RCU grace period). */
export function endpointFirewallAdd(table: string, interfaces: DesiredInterface[]): string {
  const { chains, elements } = interfaceChains(table, interfaces);
  return chains.join('') + elements.join('');
}

/** Anti-spoofing chain for one container port (host bridge table): only its own MAC(s) and IP(s) (plus allowed
 * address pairs; `::` and link-local for IPv6 DAD/ND) may leave the port; no router advertisements, no DHCP
 * server replies, no VLAN tags. */
export function antiSpoofRules(itf: DesiredInterface): string[] {
  const macs = [itf.mac.toLowerCase(), ...itf.allowedAddressPairs.flatMap((p) => (p.macAddress ? [p.macAddress] : []))];
  const ips = [...itf.addresses.map(stripPrefix), ...itf.allowedAddressPairs.map((p) => p.ipAddress)];
  const v4 = ips.filter((a) => !isV6(a));
  const v6 = ips.filter(isV6);
  const rules = ['ether type { 8021q, 8021ad } drop', `ether saddr != ${set(macs)} drop`];
  if (v4.length) {
    rules.push(`meta protocol ip ip saddr != ${set(v4)} drop`);
    rules.push(`meta protocol arp arp saddr ip != ${set([...v4, '0.0.0.0'])} drop`);
  } else {
    rules.push('meta protocol ip drop');
    rules.push('meta protocol arp arp saddr ip != 0.0.0.0 drop');
  }
  rules.push(`meta protocol arp arp saddr ether != ${set(macs)} drop`);
  rules.push('meta protocol ip udp sport 67 drop');
  rules.push(`meta protocol ip6 ip6 saddr != ${set([...v6, '::', 'fe80::/10'])} drop`);
  rules.push('meta protocol ip6 icmpv6 type { nd-router-advert, nd-redirect } drop');
  rules.push('meta protocol ip6 udp sport 547 drop');
  return rules;
}

export const antiSpoofChain = (hostIf: string): string => `p-${hostIf}`;

/** The host's bridge-family table: a verdict map from container ports to their anti-spoofing chains. */
export function hostBridgeTable(table: string, ports: { hostIf: string; itf: DesiredInterface }[]): string {
  const chains = ports
    .map(
      (p) =>
        `  chain ${antiSpoofChain(p.hostIf)} {\n${antiSpoofRules(p.itf)
          .map((r) => `    ${r}\n`)
          .join('')}  }\n`,
    )
    .join('');
  const elements = ports.map((p) => `${q(p.hostIf)} : jump ${antiSpoofChain(p.hostIf)}`);
  return replaceTable(
    'bridge',
    table,
    '  map ports {\n    type ifname : verdict;\n' +
      (elements.length ? `    elements = ${set(elements)}\n` : '') +
      '  }\n' +
      '  chain prerouting {\n    type filter hook prerouting priority -200; policy accept;\n    iifname vmap @ports\n  }\n' +
      chains,
  );
}

/** Incremental form: add one port's chain and map element (the table exists). `fresh`: the chain cannot exist
 * yet (a new port), so it is not flushed — a transaction with only additions is much cheaper. */
export function hostBridgeAddPort(table: string, hostIf: string, itf: DesiredInterface, fresh = false): string {
  const chain = antiSpoofChain(hostIf);
  return (
    `add chain bridge ${table} ${chain}\n${fresh ? '' : `flush chain bridge ${table} ${chain}\n`}` +
    antiSpoofRules(itf)
      .map((r) => `add rule bridge ${table} ${chain} ${r}\n`)
      .join('') +
    `add element bridge ${table} ports { ${q(hostIf)} : jump ${chain} }\n`
  );
}

/** The host's guard: nothing is routed between our bridges and the host's other interfaces (the host may have
 * forwarding on for other reasons), and the host accepts from our bridges only replies, ICMP and ND. Publish legs
 * (`kt`) carry only published-port flows: from a leg, only replies are accepted or forwarded (a container cannot
 * open a connection to the host or, through it, to another container's published port). */
export function hostGuardTable(table: string, tag: string): string {
  const br = q(`kb${tag}*`);
  const leg = q(`kt${tag}*`);
  return replaceTable(
    'inet',
    table,
    '  chain forward {\n    type filter hook forward priority filter - 10; policy accept;\n' +
      `    iifname ${br} oifname != ${br} drop\n` +
      `    oifname ${br} iifname != ${br} drop\n` +
      `    iifname ${leg} ct state established,related accept\n` +
      `    iifname ${leg} drop\n` +
      `    oifname ${leg} ct status dnat accept\n` +
      `    oifname ${leg} drop\n` +
      '  }\n' +
      '  chain input {\n    type filter hook input priority filter - 10; policy accept;\n' +
      `    iifname ${br} ct state established,related accept\n` +
      `    iifname ${br} meta l4proto { icmp, ipv6-icmp } accept\n` +
      `    iifname ${br} drop\n` +
      `    iifname ${leg} ct state established,related accept\n` +
      `    iifname ${leg} drop\n` +
      '  }\n',
  );
}

export interface RouterNat {
  gatewayIf: string;
  /** IPv4 address SNAT uses (the gateway leg's), when snat is on. */
  snatAddress?: string;
  floatingIps: { floatingIp: string; fixedIp: string }[];
}

/** The router's NAT (`table ip <name>` inside the router namespace). */
export function routerNatTable(table: string, nat: RouterNat | undefined): string {
  if (!nat) return replaceTable('ip', table, '');
  const g = q(nat.gatewayIf);
  const fips = nat.floatingIps.filter((f) => !isV6(f.floatingIp) && !isV6(f.fixedIp));
  const pre = fips.map((f) => `    ip daddr ${f.floatingIp} dnat to ${f.fixedIp}\n`).join('');
  const post =
    // Hairpin: a tenant reaching another tenant's floating IP through this router gets the reply through it too.
    '    iifname "qr-*" oifname "qr-*" ct status dnat masquerade\n' +
    fips.map((f) => `    ip saddr ${f.fixedIp} oifname ${g} snat to ${f.floatingIp}\n`).join('') +
    (nat.snatAddress ? `    iifname "qr-*" oifname ${g} snat to ${nat.snatAddress}\n` : '');
  return replaceTable(
    'ip',
    table,
    `  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n${pre}  }\n` +
      `  chain output {\n    type nat hook output priority -100; policy accept;\n${pre}  }\n` +
      `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n${post}  }\n`,
  );
}
