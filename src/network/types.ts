/**
 * The contract between the agent and the kernel dataplane: the agent computes, from the store, the desired state of
 * everything networking on its host; the dataplane makes the kernel match it (idempotently) and removes whatever
 * it owns that is not desired. All kernel object names carry the instance tag so that several Krater instances (or
 * tests) on one machine never touch each other's objects.
 */

/** One L2 network on this host: a Linux bridge. */
export interface DesiredNetwork {
  id: string;
  mtu: number;
  /** For `router:external` networks: addresses (CIDR notation, e.g. the subnet's gateway) the host itself holds
   * on the bridge, so the host reaches floating IPs and router gateways directly. Empty for tenant networks. */
  hostAddresses: string[];
  /** Name service for the network (Neutron's DHCP port): a namespace plugged into the bridge with these
   * addresses, running a DNS server that answers `records` (and nothing else). Absent: no DNS on this network. */
  dns?: {
    portId: string;
    mac: string;
    /** CIDR notation, e.g. 10.0.0.2/24, fd00::2/64 */
    addresses: string[];
    /** Name → addresses (v4 and v6) of every container port on the network; names are container names and
     * hostnames. */
    records: { name: string; addresses: string[] }[];
    /** Search domain handed to containers, e.g. `krater.local`. */
    domain: string;
  };
}

export interface FirewallRule {
  direction: 'ingress' | 'egress';
  ethertype: 'IPv4' | 'IPv6';
  /** null = any; otherwise tcp, udp, icmp, ipv6-icmp, sctp or a protocol number as string. */
  protocol: string | null;
  portMin: number | null;
  portMax: number | null;
  /** Remote side: a prefix (CIDR) or a list of member addresses of a remote group (already resolved); both null =
   * anywhere. */
  remotePrefix: string | null;
  remoteAddresses: string[] | null;
}

/** One port plugged into a container's network namespace. */
export interface DesiredInterface {
  portId: string;
  networkId: string;
  /** Name inside the namespace: eth0, eth1, … */
  ifname: string;
  mac: string;
  mtu: number;
  /** CIDR notation: the port's fixed IPs with their subnet's prefix length. */
  addresses: string[];
  /** Default gateways (the subnet's gateway_ip), at most one per IP version; absent for gateway-less subnets. */
  gateway4?: string;
  gateway6?: string;
  /** Extra routes (subnet host_routes). */
  routes: { destination: string; nexthop: string }[];
  /** Port security: anti-spoofing (own MAC/IPs + allowed address pairs) and the security group rules. When
   * false, everything is allowed. */
  portSecurity: boolean;
  /** Extra (ip[/prefix], mac?) the port may send from: Neutron's allowed_address_pairs. */
  allowedAddressPairs: { ipAddress: string; macAddress?: string }[];
  /** Union of the rules of the port's security groups (stateful; ingress denied unless allowed). */
  rules: FirewallRule[];
}

/** A container's network namespace and its ports. */
export interface DesiredEndpoint {
  /** Container uuid. */
  id: string;
  hostname: string;
  interfaces: DesiredInterface[];
  /** DNS servers for the container's resolv.conf (the networks' DNS addresses), search domains. */
  nameservers: string[];
  search: string[];
  /** Published host ports (krater CLI `-p`): host address:port → container port (IPv4; 0.0.0.0 = every local
   * address). A non-empty list gives the endpoint its publish leg. */
  published: { hostIp: string; hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' }[];
  /** Whether the ports are bound now (the container runs): Docker frees them when a container stops. */
  publishing: boolean;
}

/** A Neutron router: a namespace with a leg in each attached subnet and a gateway leg on an external network. */
export interface DesiredRouter {
  id: string;
  /** Interfaces on tenant subnets: the port's MAC and its address(es) (the subnet gateway) in CIDR notation. */
  interfaces: { portId: string; networkId: string; mac: string; addresses: string[]; mtu: number }[];
  gateway?: {
    portId: string;
    networkId: string;
    mac: string;
    addresses: string[];
    mtu: number;
    /** Next hop for the default route (the external subnet's gateway), if any. */
    nexthop4?: string;
    nexthop6?: string;
    /** SNAT the attached subnets behind the gateway address. */
    snat: boolean;
  };
  /** 1:1 NAT: floating address (on the gateway leg) ↔ fixed address on an attached subnet. */
  floatingIps: { floatingIp: string; fixedIp: string }[];
  routes: { destination: string; nexthop: string }[];
}

export interface DesiredState {
  networks: DesiredNetwork[];
  endpoints: DesiredEndpoint[];
  routers: DesiredRouter[];
}

/** What `Dataplane.endpointPaths` hands to the engine for a container. */
export interface EndpointPaths {
  /** e.g. /var/run/netns/krater-ab12-… */
  netnsPath: string;
  /** Files to bind-mount into the container (read-only for hosts/resolv.conf is not required). */
  hostsFile: string;
  resolvConf: string;
  hostnameFile: string;
}
