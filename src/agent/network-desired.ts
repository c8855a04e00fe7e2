import type { Kysely } from 'kysely';
import { storedPorts } from '../compute/publish.js';
import type { Database, NetSubnetRow } from '../core/store/schema.js';
import type {
  DesiredEndpoint,
  DesiredInterface,
  DesiredNetwork,
  DesiredRouter,
  DesiredState,
  FirewallRule,
} from '../network/types.js';

/** Neutron's default DNS domain (`[DEFAULT] dns_domain = openstacklocal`). */
export const DNS_DOMAIN = 'openstacklocal';
export const DHCP_OWNER = 'network:dhcp';
export const dhcpDeviceId = (host: string, networkId: string) => `dhcp-${host}-${networkId}`;

const json = <T>(s: string | null | undefined, fallback: T): T => (s ? (JSON.parse(s) as T) : fallback);
const prefixOf = (cidr: string) => cidr.split('/')[1] ?? '32';
/** Whether a container's published ports are bound: while it runs (and while it is being started or rebooted, so
 * that a reconcile in between does not free them) — Docker frees them when a container stops. */
export const publishesNow = (c: { status: string; task_state: string | null }): boolean =>
  c.status === 'Running' ||
  c.status === 'Paused' ||
  c.task_state === 'container_starting' ||
  c.task_state === 'container_rebooting';

/**
 * What the kernel of `host` should look like, read from the store: every container of the host with ports gets an
 * endpoint (its namespace and interfaces), every network those ports (and the routers) use a bridge, every
 * router its namespace. With `only`, endpoints are limited to those containers (the start fast path).
 */
export async function computeDesired(
  db: Kysely<Database>,
  host: string,
  opts: {
    only?: string[];
    routersHere: boolean;
    /** Containers still `Creating` are left out unless listed here (their start plugs them, on the fast path). */
    plugged?: ReadonlySet<string>;
  } = { routersHere: true },
): Promise<DesiredState> {
  let portQuery = db
    .selectFrom('net_ports')
    .selectAll()
    .where('device_owner', '=', 'compute:zun')
    .where('binding_host_id', '=', host);
  if (opts.only) portQuery = portQuery.where('device_id', 'in', opts.only.length ? opts.only : ['-']);
  const ports = await portQuery.orderBy('created_at').orderBy('id').execute();
  const uuids = [...new Set(ports.map((p) => p.device_id))];
  const containers = uuids.length
    ? await db
        .selectFrom('containers')
        .select(['uuid', 'name', 'hostname', 'published_ports', 'addresses', 'status', 'task_state'])
        .where('uuid', 'in', uuids)
        .where('host', '=', host)
        .execute()
    : [];
  const plugged = opts.plugged;
  const byUuid = new Map(
    containers.filter((c) => !plugged || c.status !== 'Creating' || plugged.has(c.uuid)).map((c) => [c.uuid, c]),
  );

  const routers = opts.routersHere
    ? await db
        .selectFrom('net_routers')
        .selectAll()
        .where((eb) => eb.or([eb('host', '=', host), eb('host', 'is', null)]))
        .execute()
    : [];
  const routerPorts = routers.length
    ? await db
        .selectFrom('net_ports')
        .selectAll()
        .where((eb) =>
          eb.or([
            eb.and([
              eb('device_owner', '=', 'network:router_interface'),
              eb(
                'device_id',
                'in',
                routers.map((r) => r.id),
              ),
            ]),
            eb(
              'id',
              'in',
              routers.map((r) => r.gw_port_id ?? '-'),
            ),
          ]),
        )
        .execute()
    : [];

  const allPortIds = [...ports, ...routerPorts].map((p) => p.id);
  const allocations = allPortIds.length
    ? await db.selectFrom('net_ip_allocations').selectAll().where('port_id', 'in', allPortIds).execute()
    : [];
  const networkIds = new Set([...ports, ...routerPorts].map((p) => p.network_id));
  const networks = networkIds.size
    ? await db
        .selectFrom('net_networks')
        .selectAll()
        .where('id', 'in', [...networkIds])
        .execute()
    : [];
  const netById = new Map(networks.map((n) => [n.id, n]));
  const subnets = networkIds.size
    ? await db
        .selectFrom('net_subnets')
        .selectAll()
        .where('network_id', 'in', [...networkIds])
        .execute()
    : [];
  const subnetById = new Map(subnets.map((s) => [s.id, s]));
  const ipsOf = (portId: string) => allocations.filter((a) => a.port_id === portId);
  const cidrOf = (a: { subnet_id: string; ip_address: string }) =>
    `${a.ip_address}/${prefixOf(subnetById.get(a.subnet_id)?.cidr ?? '/32')}`;

  // Security groups of the containers' ports, their rules, and the members of groups rules point at.
  const portGroups = ports.length
    ? await db
        .selectFrom('net_port_security_groups')
        .selectAll()
        .where(
          'port_id',
          'in',
          ports.map((p) => p.id),
        )
        .execute()
    : [];
  const groupIds = [...new Set(portGroups.map((g) => g.security_group_id))];
  const rules = groupIds.length
    ? await db.selectFrom('net_security_group_rules').selectAll().where('security_group_id', 'in', groupIds).execute()
    : [];
  const remoteIds = [...new Set(rules.map((r) => r.remote_group_id).filter((id): id is string => !!id))];
  const members = remoteIds.length
    ? await db
        .selectFrom('net_port_security_groups as g')
        .innerJoin('net_ip_allocations as a', 'a.port_id', 'g.port_id')
        .select(['g.security_group_id', 'a.ip_address'])
        .where('g.security_group_id', 'in', remoteIds)
        .execute()
    : [];
  const toRule = (r: (typeof rules)[number]): FirewallRule => {
    const v6 = r.ethertype === 'IPv6';
    return {
      direction: r.direction as FirewallRule['direction'],
      ethertype: v6 ? 'IPv6' : 'IPv4',
      protocol: r.protocol,
      portMin: r.port_range_min,
      portMax: r.port_range_max,
      remotePrefix: r.remote_ip_prefix,
      remoteAddresses: r.remote_group_id
        ? members
            .filter((m) => m.security_group_id === r.remote_group_id && m.ip_address.includes(':') === v6)
            .map((m) => m.ip_address)
        : null,
    };
  };

  // DNS: one name server per network with a DHCP-enabled subnet (Neutron's DHCP port), answering for every
  // container port on the network.
  const dhcpPorts = networkIds.size
    ? await db
        .selectFrom('net_ports')
        .selectAll()
        .where('device_owner', '=', DHCP_OWNER)
        .where('binding_host_id', '=', host)
        .where('network_id', 'in', [...networkIds])
        .execute()
    : [];
  const dhcpIps = dhcpPorts.length
    ? await db
        .selectFrom('net_ip_allocations')
        .selectAll()
        .where(
          'port_id',
          'in',
          dhcpPorts.map((p) => p.id),
        )
        .execute()
    : [];
  const dnsOf = new Map<string, string[]>();
  for (const p of dhcpPorts)
    dnsOf.set(
      p.network_id,
      dhcpIps.filter((a) => a.port_id === p.id).map((a) => a.ip_address),
    );

  const desiredNetworks = new Map<string, DesiredNetwork>();
  const ensureNetwork = (id: string): DesiredNetwork | undefined => {
    const n = netById.get(id);
    if (!n) return undefined;
    let d = desiredNetworks.get(id);
    if (!d) {
      const own = subnets.filter((s) => s.network_id === id);
      d = {
        id,
        mtu: n.mtu,
        hostAddresses: n.external
          ? own.filter((s) => s.gateway_ip).map((s) => `${s.gateway_ip}/${prefixOf(s.cidr)}`)
          : [],
      };
      desiredNetworks.set(id, d);
    }
    return d;
  };

  const endpoints: DesiredEndpoint[] = [];
  for (const uuid of uuids) {
    const c = byUuid.get(uuid);
    if (!c) continue;
    const mine = ports.filter((p) => p.device_id === uuid);
    const interfaces: DesiredInterface[] = [];
    const nameservers: string[] = [];
    for (const [i, p] of mine.entries()) {
      const net = ensureNetwork(p.network_id);
      if (!net) continue;
      const ips = ipsOf(p.id);
      const subnetsOf = ips.map((a) => subnetById.get(a.subnet_id)).filter((s): s is NetSubnetRow => !!s);
      const gw = (v: number) => subnetsOf.find((s) => s.ip_version === v && s.gateway_ip)?.gateway_ip ?? undefined;
      const groups = portGroups.filter((g) => g.port_id === p.id).map((g) => g.security_group_id);
      const pairs = json<{ ip_address: string; mac_address?: string }[]>(p.allowed_address_pairs, []);
      interfaces.push({
        portId: p.id,
        networkId: p.network_id,
        ifname: `eth${i}`,
        mac: p.mac_address,
        mtu: net.mtu,
        addresses: ips.map(cidrOf),
        gateway4: gw(4),
        gateway6: gw(6),
        routes: subnetsOf.flatMap((s) => json<{ destination: string; nexthop: string }[]>(s.host_routes, [])),
        portSecurity: !!p.port_security_enabled,
        allowedAddressPairs: pairs.map((a) => ({ ipAddress: a.ip_address, macAddress: a.mac_address })),
        rules: rules.filter((r) => groups.includes(r.security_group_id)).map(toRule),
      });
      nameservers.push(...(dnsOf.get(p.network_id) ?? []));
      nameservers.push(...subnetsOf.flatMap((s) => json<string[]>(s.dns_nameservers, [])));
    }
    endpoints.push({
      id: uuid,
      hostname: c.hostname ?? uuid.slice(0, 12),
      interfaces,
      nameservers: [...new Set(nameservers)].slice(0, 3),
      search: [DNS_DOMAIN],
      published: storedPorts(c.published_ports),
      publishing: publishesNow(c),
    });
  }

  // Name records per network: every container port on it, by container name and hostname.
  if (dhcpPorts.length) {
    const named = await db
      .selectFrom('net_ports as p')
      .innerJoin('containers as c', 'c.uuid', 'p.device_id')
      .innerJoin('net_ip_allocations as a', 'a.port_id', 'p.id')
      .select(['p.network_id', 'c.name', 'c.hostname', 'c.uuid', 'a.ip_address'])
      .where(
        'p.network_id',
        'in',
        dhcpPorts.map((p) => p.network_id),
      )
      .where('p.device_owner', '=', 'compute:zun')
      .execute();
    for (const p of dhcpPorts) {
      const net = ensureNetwork(p.network_id);
      if (!net) continue;
      const records = new Map<string, Set<string>>();
      for (const r of named.filter((n) => n.network_id === p.network_id))
        for (const name of [r.name, r.hostname ?? r.uuid.slice(0, 12)]) {
          if (!name) continue;
          const set = records.get(name) ?? new Set<string>();
          set.add(r.ip_address);
          records.set(name, set);
        }
      net.dns = {
        portId: p.id,
        mac: p.mac_address,
        addresses: dhcpIps.filter((a) => a.port_id === p.id).map(cidrOf),
        records: [...records].map(([name, addrs]) => ({ name, addresses: [...addrs] })),
        domain: DNS_DOMAIN,
      };
    }
  }

  const desiredRouters: DesiredRouter[] = [];
  if (routers.length) {
    const fips = await db
      .selectFrom('net_floatingips')
      .selectAll()
      .where(
        'router_id',
        'in',
        routers.map((r) => r.id),
      )
      .where('port_id', 'is not', null)
      .execute();
    for (const r of routers) {
      if (!r.admin_state_up) continue;
      const legs = routerPorts.filter((p) => p.device_owner === 'network:router_interface' && p.device_id === r.id);
      const gwPort = routerPorts.find((p) => p.id === r.gw_port_id);
      const router: DesiredRouter = {
        id: r.id,
        interfaces: legs
          .filter((p) => ensureNetwork(p.network_id))
          .map((p) => ({
            portId: p.id,
            networkId: p.network_id,
            mac: p.mac_address,
            addresses: ipsOf(p.id).map(cidrOf),
            mtu: netById.get(p.network_id)!.mtu,
          })),
        floatingIps: fips
          .filter((f) => f.router_id === r.id && f.fixed_ip_address)
          .map((f) => ({ floatingIp: f.floating_ip_address, fixedIp: f.fixed_ip_address! })),
        routes: json<{ destination: string; nexthop: string }[]>(r.routes, []),
      };
      if (gwPort && ensureNetwork(gwPort.network_id)) {
        const ips = ipsOf(gwPort.id);
        const gwOf = (v: number) =>
          ips.map((a) => subnetById.get(a.subnet_id)).find((s) => s?.ip_version === v && s.gateway_ip)?.gateway_ip ??
          undefined;
        router.gateway = {
          portId: gwPort.id,
          networkId: gwPort.network_id,
          mac: gwPort.mac_address,
          addresses: ips.map(cidrOf),
          mtu: netById.get(gwPort.network_id)!.mtu,
          nexthop4: gwOf(4),
          nexthop6: gwOf(6),
          snat: !!r.enable_snat,
        };
      }
      desiredRouters.push(router);
    }
  }

  return { networks: [...desiredNetworks.values()], endpoints, routers: desiredRouters };
}
