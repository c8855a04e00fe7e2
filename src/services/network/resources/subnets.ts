/**
 * Subnets: an address range on a network (IPv4 or IPv6), its gateway, allocation pools, DNS servers and host
 * routes; optionally carved out of a subnet pool. Subnets on one network never overlap; deleting one with allocated
 * addresses (other than DHCP ports') is 409 SubnetInUse.
 */
import type { NetSubnetRow } from '../../../core/store/schema.js';
import {
  type AttrMap,
  int,
  ipAddress,
  list,
  nullable,
  oneOf,
  ownerOf,
  parseBody,
  str,
  subnetCidr,
  tags as tagList,
  toBool,
  uuid,
} from '../attributes.js';
import { type NeutronActor, newId, nowTs, type Trx, target } from '../context.js';
import { badRequest, invalidAttr, invalidInput, nerr, notFound } from '../errors.js';
import {
  allocatePrefix,
  type Cidr,
  checkPools,
  contains,
  defaultGateway,
  defaultPools,
  formatCidr,
  formatIp,
  lastAddress,
  overlaps,
  parseCidr,
  parseIp,
  type Range,
  within,
} from '../ipam.js';
import type { View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { subnetView } from '../views.js';
import { bump, checkQuota, deleteTags, j, loadTags, present, type ResourceHandler, setTags } from './shared.js';

const IPV6_MODES = ['slaac', 'dhcpv6-stateful', 'dhcpv6-stateless', null];
const MAX_DNS = 5;
const MAX_ROUTES = 20;

const pool = (v: unknown, a: string) => {
  const p = v as { start?: unknown; end?: unknown };
  if (!p || typeof p !== 'object' || Array.isArray(p))
    throw invalidAttr(a, `'${JSON.stringify(v)}' is not a dictionary`);
  const keys = Object.keys(p).filter((k) => k !== 'start' && k !== 'end');
  if (keys.length || p.start === undefined || p.end === undefined)
    throw invalidAttr(a, `Invalid data format for IP pool: '${JSON.stringify(v)}'`);
  return { start: ipAddress(p.start, a) as string, end: ipAddress(p.end, a) as string };
};

const route = (v: unknown, a: string) => {
  const r = v as { destination?: unknown; nexthop?: unknown };
  if (!r || typeof r !== 'object' || r.destination === undefined || r.nexthop === undefined)
    throw invalidAttr(a, `Invalid data format for hostroute: '${JSON.stringify(v)}'`);
  const d = parseCidr(r.destination);
  if (!d) throw invalidAttr(a, `'${String(r.destination)}' is not a valid IP subnet`);
  return { destination: formatCidr(d), nexthop: ipAddress(r.nexthop, a) as string };
};

const SPEC: AttrMap = {
  name: { post: true, put: true, convert: str(255) },
  network_id: { post: true, required: true, convert: uuid },
  ip_version: {
    post: true,
    required: true,
    convert: (v, a) => oneOf([4, 6] as unknown as string[])(typeof v === 'string' ? Number(v) : v, a),
  },
  cidr: { post: true, convert: subnetCidr },
  prefixlen: { post: true, convert: int(0, 128) },
  subnetpool_id: { post: true, convert: nullable(uuid) },
  use_default_subnetpool: { post: true, convert: toBool },
  gateway_ip: { post: true, put: true, convert: nullable(ipAddress) },
  allocation_pools: { post: true, put: true, convert: list(pool) },
  dns_nameservers: { post: true, put: true, convert: list(ipAddress) },
  host_routes: { post: true, put: true, convert: list(route) },
  enable_dhcp: { post: true, put: true, convert: toBool },
  ipv6_ra_mode: { post: true, convert: nullable(oneOf(IPV6_MODES)) },
  ipv6_address_mode: { post: true, convert: nullable(oneOf(IPV6_MODES)) },
  service_types: {
    post: true,
    put: true,
    convert: (v, a) => {
      if (!Array.isArray(v) || v.length) throw invalidAttr(a, 'subnet service types are not supported');
      return v;
    },
  },
  segment_id: {
    post: true,
    convert: (v, a) => {
      if (v !== null) throw invalidAttr(a, 'segments are not supported');
      return v;
    },
  },
  tags: { post: true, convert: tagList },
};

const KNOWN = new Set([
  'id',
  'name',
  'network_id',
  'ip_version',
  'cidr',
  'gateway_ip',
  'allocation_pools',
  'dns_nameservers',
  'host_routes',
  'enable_dhcp',
  'subnetpool_id',
  'ipv6_ra_mode',
  'ipv6_address_mode',
  'service_types',
  'segment_id',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

export const subnetTarget = (row: NetSubnetRow, net: { project_id: string; shared: number }) =>
  target(row.project_id, {
    id: row.id,
    network_id: row.network_id,
    'network:project_id': net.project_id,
    shared: net.shared ? 'True' : 'False',
  });

export interface SubnetInsert {
  network: { id: string; project_id: string };
  owner: string;
  attrs: Record<string, unknown>;
}

function checkDns(list: string[] | undefined): void {
  if (!list) return;
  if (list.length > MAX_DNS)
    throw nerr(
      400,
      'DNSNameServersExhausted',
      `Unable to complete operation for subnet. The number of DNS nameservers exceeds the limit ${MAX_DNS}.`,
    );
  const seen = new Set<string>();
  for (const d of list) {
    if (seen.has(d)) throw invalidInput(`Duplicate nameserver '${d}'`);
    seen.add(d);
  }
}

function checkRoutes(version: number, routes: { destination: string; nexthop: string }[] | undefined): void {
  if (!routes) return;
  if (routes.length > MAX_ROUTES)
    throw nerr(
      400,
      'HostRoutesExhausted',
      `Unable to complete operation for subnet. The number of host routes exceeds the limit ${MAX_ROUTES}.`,
    );
  for (const r of routes) {
    if (parseCidr(r.destination)?.version !== version || parseIp(r.nexthop)?.version !== version)
      throw invalidInput(
        `Host route ${r.destination} via ${r.nexthop} does not match the subnet's IP version ${version}`,
      );
  }
}

function toRanges(c: Cidr, pools: { start: string; end: string }[]): Range[] {
  return pools.map((p) => {
    const s = parseIp(p.start)!;
    const e = parseIp(p.end)!;
    if (s.version !== c.version || e.version !== c.version)
      throw nerr(
        400,
        'InvalidAllocationPool',
        `The allocation pool ${p.start}-${p.end} spans beyond the subnet cidr ${formatCidr(c)}.`,
      );
    return { start: s.value, end: e.value };
  });
}

const fmtRanges = (c: Cidr, ranges: Range[]) =>
  ranges.map((r) => ({ start: formatIp(c.version, r.start), end: formatIp(c.version, r.end) }));

/** Validates pools against the CIDR and gateway; returns them in canonical form. */
export function validatePools(c: Cidr, pools: { start: string; end: string }[], gateway: bigint | null) {
  const ranges = toRanges(c, pools);
  const problem = checkPools(c, ranges, gateway);
  const txt = (r: Range) => `${formatIp(c.version, r.start)}-${formatIp(c.version, r.end)}`;
  if (problem?.kind === 'invalid')
    throw nerr(400, 'InvalidAllocationPool', `The allocation pool ${txt(problem.pool)} is not valid.`);
  if (problem?.kind === 'outside')
    throw nerr(
      400,
      'InvalidAllocationPool',
      `The allocation pool ${txt(problem.pool)} spans beyond the subnet cidr ${formatCidr(c)}.`,
    );
  if (problem?.kind === 'overlap')
    throw nerr(
      409,
      'OverlappingAllocationPools',
      `Found overlapping allocation pools: ${txt(problem.a)} and ${txt(problem.b)} for subnet ${formatCidr(c)}.`,
    );
  if (problem?.kind === 'gateway')
    throw nerr(
      409,
      'GatewayConflictWithAllocationPools',
      `Gateway ip ${formatIp(c.version, gateway!)} conflicts with allocation pool ${txt(problem.pool)}`,
    );
  return fmtRanges(c, ranges);
}

export function subnetsHandler(n: Neutron): ResourceHandler & {
  insertSubnet(trx: Trx, actor: NeutronActor, s: SubnetInsert): Promise<string>;
  deleteSubnetRows(trx: Trx, id: string): Promise<void>;
  row(actor: NeutronActor, id: string): Promise<NetSubnetRow>;
} {
  const { nx } = n;
  const db = nx.db;

  async function netsOf(rows: NetSubnetRow[]) {
    const ids = [...new Set(rows.map((r) => r.network_id))];
    const nets = ids.length
      ? await db.selectFrom('net_networks').select(['id', 'project_id', 'shared']).where('id', 'in', ids).execute()
      : [];
    return new Map(nets.map((x) => [x.id, x]));
  }

  const visibleWith = (
    actor: NeutronActor,
    r: NetSubnetRow,
    nets: Map<string, { project_id: string; shared: number }>,
  ) => {
    const net = nets.get(r.network_id);
    return !!net && nx.allowed(actor, 'get_subnet', subnetTarget(r, net));
  };

  async function views(rows: NetSubnetRow[]): Promise<View[]> {
    const tags = await loadTags(
      db,
      'subnets',
      rows.map((r) => r.id),
    );
    return rows.map((r) => subnetView(r, tags.get(r.id) ?? []));
  }

  async function row(actor: NeutronActor, id: string): Promise<NetSubnetRow> {
    const r = await db.selectFrom('net_subnets').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !visibleWith(actor, r, await netsOf([r]))) throw notFound.subnet(id);
    return r;
  }

  async function show(actor: NeutronActor, id: string) {
    return (await views([await row(actor, id)]))[0];
  }

  async function list(actor: NeutronActor, hint: Map<string, string[]>) {
    let q = db.selectFrom('net_subnets').selectAll();
    const ids = hint.get('id');
    if (ids?.length) q = q.where('id', 'in', ids);
    const nets = hint.get('network_id');
    if (nets?.length) q = q.where('network_id', 'in', nets);
    const rows = await q.execute();
    const netMap = await netsOf(rows);
    return views(rows.filter((r) => visibleWith(actor, r, netMap)));
  }

  /** Picks the subnet's CIDR from a pool (the requested one, or the first free block of the prefix length). */
  async function fromPool(
    trx: Trx,
    actor: NeutronActor,
    a: Record<string, unknown>,
    version: number,
    subnetId: string,
  ) {
    let poolId = a.subnetpool_id as string | null | undefined;
    if (!poolId && a.use_default_subnetpool) {
      const def = await trx
        .selectFrom('net_subnetpools')
        .select('id')
        .where('is_default', '=', 1)
        .where('ip_version', '=', version)
        .executeTakeFirst();
      if (!def) throw badRequest(`No default subnetpool found for IPv${version}`);
      poolId = def.id;
    }
    if (!poolId) return null;
    if (nx.postgres)
      await trx.selectFrom('net_subnetpools').select('id').where('id', '=', poolId).forUpdate().execute();
    const p = await trx.selectFrom('net_subnetpools').selectAll().where('id', '=', poolId).executeTakeFirst();
    if (!p || !(actor.isAdmin || p.project_id === actor.projectId || p.shared)) throw notFound.subnetpool(poolId);
    if (Number(p.ip_version) !== version)
      throw badRequest(`Cannot allocate IPv${version} subnet from IPv${p.ip_version} subnet pool`);
    const prefixes = (JSON.parse(p.prefixes) as string[]).map((x) => parseCidr(x)!);
    const used = (
      await trx.selectFrom('net_subnetpool_allocations').select('cidr').where('subnetpool_id', '=', p.id).execute()
    ).map((u) => parseCidr(u.cidr)!);
    let chosen: Cidr | null;
    if (a.cidr) {
      chosen = parseCidr(a.cidr)!;
      if (!prefixes.some((x) => within(chosen!, x)))
        throw nerr(
          400,
          'SubnetAllocationError',
          `Failed to allocate subnet: Cidr ${a.cidr} is not in the subnet pool ${p.id}.`,
        );
      if (used.some((u) => overlaps(u, chosen!)))
        throw nerr(
          409,
          'SubnetAllocationError',
          `Failed to allocate subnet: Cidr ${a.cidr} overlaps with another subnet of the subnet pool.`,
        );
    } else {
      const len = (a.prefixlen as number | undefined) ?? Number(p.default_prefixlen);
      if (len < Number(p.min_prefixlen) || len > Number(p.max_prefixlen))
        throw nerr(
          400,
          'IllegalSubnetPoolPrefixBounds',
          `Illegal prefix bounds: prefix_type=prefixlen, prefixlen=${len}, base_prefix_type=${len < Number(p.min_prefixlen) ? 'min_prefixlen' : 'max_prefixlen'}, base_prefixlen=${len < Number(p.min_prefixlen) ? p.min_prefixlen : p.max_prefixlen}.`,
        );
      chosen = allocatePrefix(prefixes, used, len);
      if (!chosen)
        throw nerr(
          409,
          'SubnetAllocationError',
          `Failed to allocate subnet: Insufficient prefix space to allocate subnet size /${len}.`,
        );
    }
    const text = formatCidr(chosen);
    // The pool row lock (PostgreSQL) or the single writer (SQLite) serialises allocations; the key backs it up.
    await trx
      .insertInto('net_subnetpool_allocations')
      .values({ subnetpool_id: p.id, cidr: text, subnet_id: subnetId })
      .execute();
    return { cidr: text, poolId: p.id };
  }

  /** Validates and inserts a subnet (inside the caller's transaction); returns its id. */
  async function insertSubnet(trx: Trx, actor: NeutronActor, s: SubnetInsert): Promise<string> {
    const a = s.attrs;
    const version = Number(a.ip_version);
    const id = newId();
    if (a.cidr && parseCidr(a.cidr)!.version !== version)
      throw invalidInput(`Cidr ${a.cidr} does not match ip_version ${version}`);
    const pooled = await fromPool(trx, actor, a, version, id);
    if (!pooled && !a.cidr) throw badRequest('a subnetpool must be specified in the absence of a cidr');
    if (!pooled && a.prefixlen !== undefined) throw badRequest('prefixlen is only valid with a subnet pool');
    const cidrText = pooled?.cidr ?? (a.cidr as string);
    const c = parseCidr(cidrText)!;
    if (version === 4 && (a.ipv6_ra_mode || a.ipv6_address_mode))
      throw invalidInput(
        'ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False or ip_version is 4',
      );
    if (a.ipv6_ra_mode && a.ipv6_address_mode && a.ipv6_ra_mode !== a.ipv6_address_mode)
      throw invalidInput(
        `ipv6_ra_mode set to '${a.ipv6_ra_mode}' with ipv6_address_mode set to '${a.ipv6_address_mode}' is not valid. If both attributes are set, they must be the same value`,
      );
    const mode = (a.ipv6_address_mode ?? a.ipv6_ra_mode) as string | null | undefined;
    if ((mode === 'slaac' || mode === 'dhcpv6-stateless') && c.prefix !== 64)
      throw invalidInput(
        `Invalid CIDR ${cidrText} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64`,
      );
    // Subnets of one network must not overlap (addresses would be ambiguous on the segment).
    if (nx.postgres)
      await trx.selectFrom('net_networks').select('id').where('id', '=', s.network.id).forUpdate().execute();
    const siblings = await trx
      .selectFrom('net_subnets')
      .select(['id', 'cidr'])
      .where('network_id', '=', s.network.id)
      .execute();
    for (const sib of siblings)
      if (overlaps(parseCidr(sib.cidr)!, c))
        throw invalidInput(
          `Requested subnet with cidr: ${cidrText} for network: ${s.network.id} overlaps with another subnet`,
        );
    let gateway: bigint | null;
    if (present(a, 'gateway_ip')) {
      if (a.gateway_ip === null) gateway = null;
      else {
        const g = parseIp(a.gateway_ip)!;
        if (g.version !== version) throw invalidInput(`Gateway IP version inconsistent with allocation pool version`);
        if (version === 4 && c.prefix < 31 && (g.value === c.network || g.value === lastAddress(c)))
          throw badRequest(`Gateway is not valid on subnet`);
        gateway = g.value;
      }
    } else gateway = defaultGateway(c);
    const pools = a.allocation_pools
      ? validatePools(
          c,
          a.allocation_pools as { start: string; end: string }[],
          gateway !== null && contains(c, { version: c.version, value: gateway }) ? gateway : null,
        )
      : fmtRanges(
          c,
          defaultPools(c, gateway !== null && contains(c, { version: c.version, value: gateway }) ? gateway : null),
        );
    checkDns(a.dns_nameservers as string[] | undefined);
    for (const d of (a.dns_nameservers as string[] | undefined) ?? [])
      if (parseIp(d)!.version !== version)
        throw invalidInput(`DNS nameserver ${d} does not match the subnet's IP version ${version}`);
    checkRoutes(version, a.host_routes as { destination: string; nexthop: string }[] | undefined);
    const ts = nowTs();
    await trx
      .insertInto('net_subnets')
      .values({
        id,
        name: (a.name as string) ?? '',
        network_id: s.network.id,
        project_id: s.owner,
        ip_version: version,
        cidr: cidrText,
        gateway_ip: gateway === null ? null : formatIp(c.version, gateway),
        allocation_pools: j(pools),
        dns_nameservers: j(a.dns_nameservers ?? []),
        host_routes: j(a.host_routes ?? []),
        enable_dhcp: a.enable_dhcp === false ? 0 : 1,
        subnetpool_id: pooled?.poolId ?? null,
        ipv6_ra_mode: (a.ipv6_ra_mode as string | null) ?? null,
        ipv6_address_mode: (a.ipv6_address_mode as string | null) ?? null,
        description: (a.description as string) ?? '',
        revision_number: 0,
        created_at: ts,
        updated_at: ts,
      })
      .execute();
    if (Array.isArray(a.tags) && a.tags.length) await setTags(trx, 'subnets', id, a.tags as string[]);
    await bump(trx, 'net_networks', s.network.id);
    return id;
  }

  async function create(actor: NeutronActor, body: Record<string, unknown>): Promise<View> {
    const a = parseBody(nx, actor, 'create', 'subnet', SPEC, body, target(actor.projectId));
    const owner = ownerOf(actor, a);
    const net = await n.networks.row(actor, a.network_id as string);
    // Another project's (non-shared) network is hidden, as Neutron's API layer does it.
    if (!actor.isAdmin && net.project_id !== owner && !net.shared)
      throw nerr(404, 'HTTPNotFound', 'The resource could not be found.');
    nx.enforce(actor, 'create_subnet', {
      ...target(owner),
      'network:project_id': net.project_id,
      shared: net.shared ? 'True' : 'False',
    });
    const id = await nx.write(async (trx) => {
      await checkQuota(trx, nx, owner, 'subnet');
      return insertSubnet(trx, actor, { network: net, owner, attrs: a });
    });
    return show(actor, id);
  }

  async function update(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    const net = (await netsOf([r])).get(r.network_id)!;
    nx.enforce(actor, 'update_subnet', subnetTarget(r, net));
    const a = parseBody(nx, actor, 'update', 'subnet', SPEC, body, subnetTarget(r, net));
    const c = parseCidr(r.cidr)!;
    const set: Record<string, unknown> = {};
    for (const k of ['name', 'description'] as const) if (present(a, k)) set[k] = a[k];
    if (present(a, 'enable_dhcp')) set.enable_dhcp = a.enable_dhcp ? 1 : 0;
    let gateway = r.gateway_ip === null ? null : parseIp(r.gateway_ip)!.value;
    if (present(a, 'gateway_ip')) {
      if (a.gateway_ip === null) gateway = null;
      else {
        const g = parseIp(a.gateway_ip)!;
        if (g.version !== c.version) throw invalidInput('Gateway IP version inconsistent with the subnet');
        gateway = g.value;
      }
      set.gateway_ip = gateway === null ? null : formatIp(c.version, gateway);
    }
    const inCidr = (g: bigint | null) => (g !== null && contains(c, { version: c.version, value: g }) ? g : null);
    if (present(a, 'allocation_pools'))
      set.allocation_pools = j(
        validatePools(c, a.allocation_pools as { start: string; end: string }[], inCidr(gateway)),
      );
    else if (present(a, 'gateway_ip')) validatePools(c, JSON.parse(r.allocation_pools), inCidr(gateway));
    if (present(a, 'dns_nameservers')) {
      checkDns(a.dns_nameservers as string[]);
      set.dns_nameservers = j(a.dns_nameservers);
    }
    if (present(a, 'host_routes')) {
      checkRoutes(c.version, a.host_routes as { destination: string; nexthop: string }[]);
      set.host_routes = j(a.host_routes);
    }
    await nx.write(async (trx) => {
      if (set.gateway_ip) {
        const holder = await trx
          .selectFrom('net_ip_allocations')
          .innerJoin('net_ports', 'net_ports.id', 'net_ip_allocations.port_id')
          .select(['net_ports.id', 'net_ports.device_owner'])
          .where('net_ip_allocations.subnet_id', '=', id)
          .where('net_ip_allocations.ip_address', '=', set.gateway_ip as string)
          .executeTakeFirst();
        if (holder && holder.device_owner !== 'network:router_interface')
          throw nerr(
            409,
            'GatewayIpInUse',
            `Current gateway ip ${set.gateway_ip} already in use by port ${holder.id}. Unable to update.`,
          );
      }
      await bump(trx, 'net_subnets', id, set);
    });
    return show(actor, id);
  }

  /** Deletes a subnet and what hangs off it: DHCP addresses, its pool allocation, tags. */
  async function deleteSubnetRows(trx: Trx, id: string): Promise<void> {
    await trx.deleteFrom('net_ip_allocations').where('subnet_id', '=', id).execute();
    await trx.deleteFrom('net_subnetpool_allocations').where('subnet_id', '=', id).execute();
    await deleteTags(trx, id);
    await trx.deleteFrom('net_subnets').where('id', '=', id).execute();
  }

  async function remove(actor: NeutronActor, id: string): Promise<void> {
    const r = await row(actor, id);
    const net = (await netsOf([r])).get(r.network_id)!;
    nx.enforce(actor, 'delete_subnet', subnetTarget(r, net));
    await nx.write(async (trx) => {
      if (nx.postgres) await trx.selectFrom('net_subnets').select('id').where('id', '=', id).forUpdate().execute();
      const users = await trx
        .selectFrom('net_ip_allocations')
        .innerJoin('net_ports', 'net_ports.id', 'net_ip_allocations.port_id')
        .select(['net_ports.id', 'net_ports.device_owner'])
        .where('net_ip_allocations.subnet_id', '=', id)
        .execute();
      if (users.some((u) => u.device_owner !== 'network:dhcp'))
        throw nerr(
          409,
          'SubnetInUse',
          `Unable to complete operation on subnet ${id}: One or more ports have an IP allocation from this subnet.`,
        );
      await deleteSubnetRows(trx, id);
      await bump(trx, 'net_networks', r.network_id);
    });
  }

  return {
    singular: 'subnet',
    plural: 'subnets',
    path: 'subnets',
    tagType: 'subnets',
    table: 'net_subnets',
    notFound: notFound.subnet,
    known: KNOWN,
    list,
    show,
    create,
    update,
    remove,
    insertSubnet,
    deleteSubnetRows,
    row,
    async updatable(actor, id) {
      const r = await row(actor, id);
      nx.enforce(actor, 'update_subnet', subnetTarget(r, (await netsOf([r])).get(r.network_id)!));
      return (await views([r]))[0];
    },
  };
}
