/**
 * Published host ports (`krater run -p`): where members may publish without
 * `container:create:publish_any_host_port` (KRATER_PUBLISH_HOST_IPS, default 127.0.0.1; KRATER_PUBLISH_PORTS,
 * default 1024-65535), and the IPv4 range the dataplane's publish legs take their point-to-point pairs from
 * (KRATER_PUBLISH_TRANSIT, default 169.254.64.0/18).
 */
import { type Env, IPV4, parseIpv4Cidr } from './values.js';

export interface PublishConfig {
  memberHostIps: string[];
  memberPorts: { min: number; max: number };
  transit: string;
}

export function publishConfig(env: Env): PublishConfig {
  const ips = (env.KRATER_PUBLISH_HOST_IPS ?? '127.0.0.1')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  for (const ip of ips)
    if (!IPV4.test(ip)) throw new Error(`invalid KRATER_PUBLISH_HOST_IPS entry: ${ip} (IPv4 addresses, 0.0.0.0 = any)`);
  const range = (env.KRATER_PUBLISH_PORTS ?? '1024-65535').trim();
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(range);
  const min = Number(m?.[1]);
  const max = Number(m?.[2] ?? m?.[1]);
  if (!m || min < 1 || max > 65535 || min > max)
    throw new Error(`invalid KRATER_PUBLISH_PORTS: ${range} (expected <min>-<max> within 1-65535)`);
  const transit = (env.KRATER_PUBLISH_TRANSIT ?? '169.254.64.0/18').trim();
  const t = parseIpv4Cidr(transit);
  if (!transit.includes('/') || !t || t.prefix > 31)
    throw new Error(`invalid KRATER_PUBLISH_TRANSIT: ${transit} (expected an IPv4 CIDR up to /31)`);
  return { memberHostIps: ips, memberPorts: { min, max }, transit };
}
