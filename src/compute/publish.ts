/**
 * Published host ports (Docker's `-p`), beyond Zun. They are a field of the container (`published_ports`, set at
 * create); the `krater` CLI sends them as the container label `krater.publish` =
 * `[hostIp:]hostPort:containerPort[/tcp|udp],…`, which is parsed here once, at create. The agent's dataplane binds
 * them in the kernel (nftables DNAT) while the container runs.
 */
import type { PublishConfig } from '../core/config/config.js';

export const PUBLISH_LABEL = 'krater.publish';
/** Policy rule that lets a caller publish on any host address and port (admins by default). */
export const PUBLISH_ANY_RULE = 'container:create:publish_any_host_port';

export interface PublishedPort {
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/** As stored in `containers.published_ports` and shown in the container view. */
export interface PublishedPortView {
  host_ip: string;
  host_port: number;
  container_port: number;
  protocol: 'tcp' | 'udp';
}

const port = (s: string | undefined): number | undefined =>
  s !== undefined && /^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535 ? Number(s) : undefined;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** Parses one `[hostIp:]hostPort:containerPort[/proto]`; throws an Error saying what is wrong. */
export function parsePublishSpec(one: string): PublishedPort {
  const fail = (why: string) => new Error(`Invalid published port "${one}": ${why}`);
  const [addr = '', proto = 'tcp', ...extra] = one.trim().split('/');
  if (extra.length || (proto !== 'tcp' && proto !== 'udp')) throw fail('the protocol must be tcp or udp');
  // An IPv6 host address is written in brackets ([::1]:8080:80): recognised to say it is not supported.
  if (/^\[[0-9a-fA-F:.]*\]/.test(addr) || (addr.match(/:/g)?.length ?? 0) > 2)
    throw fail('IPv6 host addresses are not supported (publish on an IPv4 address or 0.0.0.0)');
  const parts = addr.split(':');
  if (parts.length < 2 || parts.length > 3) throw fail('expected [hostIp:]hostPort:containerPort');
  const containerPort = port(parts.pop());
  const hostPort = port(parts.pop());
  if (containerPort === undefined || hostPort === undefined) throw fail('ports are numbers from 1 to 65535');
  const hostIp = parts[0] || '0.0.0.0';
  if (!IPV4.test(hostIp)) throw fail(`${hostIp} is not an IPv4 address`);
  return { hostIp, hostPort, containerPort, protocol: proto };
}

/** Whether two bindings claim the same host socket (0.0.0.0 covers every address). */
export function portsOverlap(a: PublishedPort, b: PublishedPort): boolean {
  if (a.protocol !== b.protocol || a.hostPort !== b.hostPort) return false;
  return a.hostIp === b.hostIp || a.hostIp === '0.0.0.0' || b.hostIp === '0.0.0.0';
}

/** Parses a whole `krater.publish` value; a binding given twice (or overlapping, 0.0.0.0 against an address) is
 * refused. */
export function parsePublishList(spec: string): PublishedPort[] {
  const ports = spec
    .split(',')
    .filter((s) => s.trim())
    .map(parsePublishSpec);
  for (const [i, p] of ports.entries()) {
    const clash = ports.slice(0, i).find((q) => portsOverlap(p, q));
    if (clash)
      throw new Error(
        `Invalid published port: host port ${p.hostIp}:${p.hostPort}/${p.protocol} is given twice (overlaps ${clash.hostIp}:${clash.hostPort})`,
      );
  }
  return ports;
}

/** The published ports a create's labels ask for (none without the label). */
export function publishedPorts(labels: Record<string, string>): PublishedPort[] {
  const spec = labels[PUBLISH_LABEL];
  return spec ? parsePublishList(spec) : [];
}

export const toView = (p: PublishedPort): PublishedPortView => ({
  host_ip: p.hostIp,
  host_port: p.hostPort,
  container_port: p.containerPort,
  protocol: p.protocol,
});

/** The container's published ports from its stored field (tolerant: a malformed value publishes nothing). */
export function storedPorts(value: string | null | undefined): PublishedPort[] {
  if (!value) return [];
  try {
    return (JSON.parse(value) as PublishedPortView[]).map((v) => ({
      hostIp: v.host_ip,
      hostPort: v.host_port,
      containerPort: v.container_port,
      protocol: v.protocol,
    }));
  } catch {
    return [];
  }
}

/** The bindings a caller without `container:create:publish_any_host_port` may not make (outside the configured host
 * addresses and port range), as messages. */
export function outsideMemberPolicy(ports: PublishedPort[], cfg: PublishConfig): string[] {
  return ports
    .filter(
      (p) =>
        !cfg.memberHostIps.includes(p.hostIp) || p.hostPort < cfg.memberPorts.min || p.hostPort > cfg.memberPorts.max,
    )
    .map((p) => `${p.hostIp}:${p.hostPort}/${p.protocol}`);
}
