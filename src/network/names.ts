/**
 * Kernel object names. Every object in the host namespace carries the instance tag right after a two-letter kind,
 * so that `k?<tag>` prefixes select exactly this instance's objects (Linux interface names are at most 15 chars):
 *
 * | object | name |
 * |---|---|
 * | bridge of a network | `kb<tag><net id 8>` |
 * | host end of a container veth | `kv<tag><port id 8>` |
 * | host end of a router leg (qr-/qg-) | `kr<tag><port id 8>` |
 * | host end of a DNS namespace leg | `kd<tag><port id 8>` |
 * | host end of a pooled veth (not yet used) | `kp<tag><random 8>` |
 * | host end of a publish leg (published ports) | `kt<tag><container id 8>` |
 * | endpoint namespace | `krater-<tag>-e-<random>` (the endpoint id is the alias of its `lo`) |
 * | router namespace | `krater-<tag>-r-<router id>` |
 * | DNS namespace | `krater-<tag>-d-<network id>` |
 * | nft tables (host: inet and bridge; namespaces: inet/ip) | `krater-<tag>` |
 */
import { randomBytes } from 'node:crypto';

export const TAG_RE = /^[a-z0-9]{4}$/;

/** First 8 hex digits of a uuid-like id (dashes dropped), lower case. */
export function short(id: string, n = 8): string {
  const hex = id.toLowerCase().replace(/[^0-9a-z]/g, '');
  if (hex.length < n) return hex.padEnd(n, '0');
  return hex.slice(0, n);
}

export class Names {
  constructor(readonly tag: string) {
    if (!TAG_RE.test(tag)) throw new Error(`dataplane tag must be 4 characters [a-z0-9], got ${JSON.stringify(tag)}`);
  }

  get table(): string {
    return `krater-${this.tag}`;
  }
  get netnsPrefix(): string {
    return `krater-${this.tag}-`;
  }
  bridge(networkId: string): string {
    return `kb${this.tag}${short(networkId)}`;
  }
  veth(portId: string): string {
    return `kv${this.tag}${short(portId)}`;
  }
  routerVeth(portId: string): string {
    return `kr${this.tag}${short(portId)}`;
  }
  dnsVeth(portId: string): string {
    return `kd${this.tag}${short(portId)}`;
  }
  publishVeth(endpointId: string): string {
    return `kt${this.tag}${short(endpointId)}`;
  }
  /** Prefix of every publish leg of this instance (the host NAT table masquerades on it). */
  get publishVethPrefix(): string {
    return `kt${this.tag}`;
  }
  poolVeth(rand: string): string {
    return `kp${this.tag}${rand}`;
  }
  newPoolId(): string {
    return randomBytes(4).toString('hex');
  }
  endpointNetns(rand: string): string {
    return `krater-${this.tag}-e-${rand}`;
  }
  routerNetns(routerId: string): string {
    return `krater-${this.tag}-r-${routerId}`;
  }
  dnsNetns(networkId: string): string {
    return `krater-${this.tag}-d-${networkId}`;
  }
  /** Is this host interface name one of ours? */
  ownsLink(ifname: string): boolean {
    return ifname.length >= 6 && ifname[0] === 'k' && 'bvrdpt'.includes(ifname[1]) && ifname.slice(2, 6) === this.tag;
  }
  ownsNetns(name: string): boolean {
    return name.startsWith(this.netnsPrefix);
  }
}

/** Router leg names inside the router namespace (Neutron's: qr-/qg- + 11 chars of the port id). */
export const qrName = (portId: string): string => `qr-${portId.slice(0, 11)}`;
export const qgName = (portId: string): string => `qg-${portId.slice(0, 11)}`;
/** The DNS namespace's leg. */
export const DNS_IFNAME = 'dns0';
/** The namespace end of a publish leg. */
export const PUBLISH_IFNAME = 'pub0';
/** The inner end of a pooled veth before it gets its ifname. */
export const POOL_IFNAME = 'pool0';
/** The alias on an endpoint namespace's `lo` naming the endpoint: lets `apply` rediscover a lost state file. */
export const ENDPOINT_ALIAS_PREFIX = 'krater-endpoint:';
