/**
 * Published host ports (Docker's `-p`), beyond Zun: the `krater` CLI asks for them with the container label
 * `krater.publish` = `[hostIp:]hostPort:containerPort[/tcp|udp],…`; the agent forwards each from the host to the
 * container's port address. The format is checked when the container is created, so the agent never meets a bad one.
 */

export const PUBLISH_LABEL = 'krater.publish';

export interface PublishedPort {
  hostIp: string;
  hostPort: number;
  containerPort: number;
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
  // An IPv6 host address is written in brackets: [::1]:8080:80.
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(.*)$/.exec(addr);
  const parts = v6 ? [v6[1]!, ...v6[2]!.split(':')] : addr.split(':');
  if (parts.length < 2 || parts.length > 3) throw fail('expected [hostIp:]hostPort:containerPort');
  const containerPort = port(parts.pop());
  const hostPort = port(parts.pop());
  if (containerPort === undefined || hostPort === undefined) throw fail('ports are numbers from 1 to 65535');
  const hostIp = parts[0] || (v6 ? '' : '0.0.0.0');
  if (!v6 && !IPV4.test(hostIp)) throw fail(`${hostIp} is not an IPv4 address`);
  return { hostIp, hostPort, containerPort, protocol: proto };
}

/** The published ports of a container's labels (none without the label). */
export function publishedPorts(labels: Record<string, string>): PublishedPort[] {
  const spec = labels[PUBLISH_LABEL];
  if (!spec) return [];
  const ports = spec
    .split(',')
    .filter((s) => s.trim())
    .map(parsePublishSpec);
  const seen = new Set<string>();
  for (const p of ports) {
    const key = `${p.hostIp}:${p.hostPort}/${p.protocol}`;
    if (seen.has(key)) throw new Error(`Invalid published port: host port ${key} is given twice`);
    seen.add(key);
  }
  return ports;
}
