/**
 * Ports: a MAC and fixed IPs on a network, what a container (or router, floating IP, DHCP server) plugs in.
 * IPAM lives here: an address is taken by inserting its (subnet, address) row — the primary key makes a second
 * taker fail, so concurrent creators (threads, processes, replicas on one PostgreSQL) never share an address;
 * a loser simply tries the next candidate.
 */
import { randomBytes } from 'node:crypto';
import type { NetNetworkRow, NetPortRow, NetSubnetRow } from '../../../core/store/schema.js';
import {
  type AttrMap,
  dict,
  ipAddress,
  list,
  mac as macAttr,
  nullable,
  oneOf,
  ownerOf,
  parseBody,
  str,
  tags as tagList,
  toBool,
  uuid,
} from '../attributes.js';
import { type NeutronActor, newId, nowTs, type Trx, target, tf } from '../context.js';
import { badRequest, invalidAttr, invalidInput, ipGenerationFailure, nerr, notFound } from '../errors.js';
import {
  contains,
  eui64,
  formatIp,
  freeAddresses,
  isUnicastMac,
  lastAddress,
  normalizeIp,
  parseCidr,
  parseIp,
  type Range,
} from '../ipam.js';
import type { CustomFilter, View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { type FixedIp, portView } from '../views.js';
import {
  bump,
  checkQuota,
  chunks,
  deleteTags,
  isNetworkDevice,
  j,
  loadTags,
  present,
  type ResourceHandler,
  setTags,
} from './shared.js';

export const VNIC_TYPES = [
  'normal',
  'direct',
  'macvtap',
  'baremetal',
  'direct-physical',
  'virtio-forwarder',
  'smart-nic',
  'vdpa',
  'accelerator-direct',
  'accelerator-direct-physical',
  'remote-managed',
];

/** Ports owned by routers and floating IPs: deleted only through those APIs. */
const L3_OWNERS = [
  'network:router_interface',
  'network:router_gateway',
  'network:floatingip',
  'network:router_interface_distributed',
  'network:router_ha_interface',
];

const fixedIp = (v: unknown, a: string) => {
  const f = v as Record<string, unknown>;
  if (!f || typeof f !== 'object' || Array.isArray(f))
    throw invalidAttr(a, `Invalid data format for fixed IP: '${JSON.stringify(v)}'`);
  const extra = Object.keys(f).filter((k) => k !== 'subnet_id' && k !== 'ip_address');
  if (extra.length) throw invalidAttr(a, `Invalid data format for fixed IP: '${JSON.stringify(v)}'`);
  if (f.subnet_id === undefined && f.ip_address === undefined)
    throw invalidAttr(a, `Invalid data format for fixed IP: '${JSON.stringify(v)}'`);
  const out: { subnet_id?: string; ip_address?: string } = {};
  if (f.subnet_id !== undefined) out.subnet_id = uuid(f.subnet_id, a) as string;
  if (f.ip_address !== undefined) out.ip_address = ipAddress(f.ip_address, a) as string;
  return out;
};

const addressPair = (v: unknown, a: string) => {
  const p = v as Record<string, unknown>;
  if (!p || typeof p !== 'object' || Array.isArray(p) || p.ip_address === undefined)
    throw invalidAttr(a, `Allowed address pair must contain ip_address`);
  const extra = Object.keys(p).filter((k) => k !== 'ip_address' && k !== 'mac_address');
  if (extra.length) throw invalidAttr(a, `Unrecognized attribute(s) '${extra.join(', ')}'`);
  const c = parseCidr(p.ip_address);
  if (!c) throw invalidAttr(a, `'${String(p.ip_address)}' is not a valid IP address`);
  const ip = String(p.ip_address).includes('/')
    ? `${formatIp(c.version, c.network)}/${c.prefix}`
    : formatIp(c.version, c.network);
  const out: { ip_address: string; mac_address?: string } = { ip_address: ip };
  if (p.mac_address !== undefined && p.mac_address !== null) out.mac_address = macAttr(p.mac_address, a) as string;
  return out;
};

const SPEC: AttrMap = {
  name: { post: true, put: true, convert: str(255) },
  network_id: { post: true, required: true, convert: uuid },
  admin_state_up: { post: true, put: true, convert: toBool },
  mac_address: { post: true, put: true, convert: macAttr, policy: true },
  fixed_ips: { post: true, put: true, convert: list(fixedIp) },
  device_id: { post: true, put: true, convert: str(255) },
  device_owner: { post: true, put: true, convert: str(255), policy: true },
  security_groups: { post: true, put: true, convert: nullable(list(uuid)) },
  port_security_enabled: { post: true, put: true, convert: toBool, policy: true },
  allowed_address_pairs: { post: true, put: true, convert: nullable(list(addressPair, 10)), policy: true },
  dns_name: {
    post: true,
    put: true,
    convert: (v, a) => {
      const s = str(255)(v, a) as string;
      if (s !== '' && !/^(?!-)[a-zA-Z0-9-]{1,63}(?<!-)(\.(?!-)[a-zA-Z0-9-]{1,63}(?<!-))*\.?$/.test(s))
        throw invalidAttr(a, `'${s}' not a valid PQDN or FQDN`);
      return s;
    },
  },
  'binding:host_id': { post: true, put: true, convert: (v, a) => (v === null ? '' : str(255)(v, a)), policy: true },
  'binding:profile': { post: true, put: true, convert: (v, a) => (v === null ? {} : dict(v, a)), policy: true },
  'binding:vnic_type': { post: true, put: true, convert: oneOf(VNIC_TYPES), policy: true },
  'binding:vif_type': {},
  'binding:vif_details': {},
  status: {},
  extra_dhcp_opts: {
    post: true,
    put: true,
    convert: (v, a) => {
      if (v !== null && (!Array.isArray(v) || v.length)) throw invalidAttr(a, 'extra DHCP options are not supported');
      return [];
    },
  },
  tags: { post: true, convert: tagList },
};

const KNOWN = new Set([
  'id',
  'name',
  'network_id',
  'mac_address',
  'admin_state_up',
  'status',
  'device_id',
  'device_owner',
  'fixed_ips',
  'allowed_address_pairs',
  'security_groups',
  'port_security_enabled',
  'dns_name',
  'ip_allocation',
  'binding:host_id',
  'binding:vif_type',
  'binding:vnic_type',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

const HIDDEN_BINDING = ['binding:host_id', 'binding:vif_type', 'binding:vif_details', 'binding:profile'];

/** kuryr's `?fixed_ips=subnet_id=X&fixed_ips=ip_address=Y`: every named key must match one of the port's IPs. */
const fixedIpsFilter: CustomFilter = (view, values) => {
  const want = new Map<string, string[]>();
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq < 0) throw badRequest(`Invalid fixed_ips filter '${v}'`);
    const k = v.slice(0, eq);
    if (!['subnet_id', 'ip_address', 'ip_address_substr'].includes(k))
      throw badRequest(`Invalid fixed_ips filter '${v}'`);
    want.set(k, [...(want.get(k) ?? []), v.slice(eq + 1)]);
  }
  const ips = view.fixed_ips as FixedIp[];
  const ip = want.get('ip_address')?.map((x) => normalizeIp(x) ?? x);
  if (ip && !ips.some((f) => ip.includes(f.ip_address))) return false;
  const sub = want.get('subnet_id');
  if (sub && !ips.some((f) => sub.includes(f.subnet_id))) return false;
  const substr = want.get('ip_address_substr');
  if (substr && !ips.some((f) => substr.some((s) => f.ip_address.includes(s)))) return false;
  return true;
};

export const portTarget = (
  r: { id?: string; project_id: string; device_owner: string },
  net: { project_id: string; shared?: number },
) =>
  target(r.project_id, {
    id: r.id,
    'network:project_id': net.project_id,
    shared: tf(net.shared ?? 0),
    device_owner: r.device_owner,
    network_device: tf(isNetworkDevice(r.device_owner)),
  });

/** What a new port is made of (already validated). */
export interface PortSpec {
  network: NetNetworkRow;
  owner: string;
  name?: string;
  description?: string;
  adminStateUp?: boolean;
  deviceId?: string;
  deviceOwner?: string;
  mac?: string;
  /** undefined: Neutron's default (one IPv4, one stateful IPv6, every SLAAC subnet). */
  fixedIps?: { subnet_id?: string; ip_address?: string }[];
  /** Resolved group ids; undefined: the owner's default group when port security is on. */
  securityGroups?: string[];
  defaultSecurityGroup?: string;
  portSecurity?: boolean;
  allowedAddressPairs?: { ip_address: string; mac_address?: string }[];
  hostId?: string;
  profile?: Record<string, unknown>;
  vnicType?: string;
  dnsName?: string;
  tags?: string[];
  /** Only an IPv4 address (floating IPs). */
  ipv4Only?: boolean;
  subnetFilter?: string;
}

const randomMac = () => `fa:16:3e:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

const isAutoAddress = (s: NetSubnetRow) =>
  Number(s.ip_version) === 6 && (s.ipv6_address_mode === 'slaac' || s.ipv6_address_mode === 'dhcpv6-stateless');

function bindingFor(hostId: string) {
  return hostId
    ? { binding_vif_type: 'bridge', binding_vif_details: j({ connectivity: 'l2', port_filter: true }) }
    : { binding_vif_type: 'unbound', binding_vif_details: '{}' };
}

/** Address allocation for one port inside the caller's transaction. */
export class Ipam {
  private subnetsCache?: NetSubnetRow[];
  constructor(
    private readonly trx: Trx,
    private readonly network: NetNetworkRow,
    private readonly portId: string,
    private readonly mac: string,
    private readonly deviceOwner: string,
  ) {}

  async subnets(): Promise<NetSubnetRow[]> {
    this.subnetsCache ??= await this.trx
      .selectFrom('net_subnets')
      .selectAll()
      .where('network_id', '=', this.network.id)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return this.subnetsCache;
  }

  private async take(subnet: NetSubnetRow, ip: string): Promise<boolean> {
    const r = await this.trx
      .insertInto('net_ip_allocations')
      .values({ subnet_id: subnet.id, ip_address: ip, network_id: this.network.id, port_id: this.portId })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  /** A specific address; 409 IpAddressAlreadyAllocated when someone holds it. */
  async specific(subnet: NetSubnetRow, ip: string): Promise<FixedIp> {
    const c = parseCidr(subnet.cidr)!;
    const addr = parseIp(ip)!;
    const bad = () => nerr(400, 'InvalidIpForSubnet', `IP address ${ip} is not a valid IP for the specified subnet.`);
    if (!contains(c, addr)) throw bad();
    if (c.version === 4 && c.prefix < 31 && (addr.value === c.network || addr.value === lastAddress(c))) throw bad();
    if (isAutoAddress(subnet) && this.deviceOwner !== 'network:router_interface')
      throw nerr(
        400,
        'InvalidInput',
        `Invalid input for operation: IPv6 address ${ip} cannot be directly assigned to a port on subnet ${subnet.id} as the subnet is configured for automatic addresses.`,
      );
    if (!(await this.take(subnet, ip)))
      throw nerr(409, 'IpAddressAlreadyAllocated', `IP address ${ip} already allocated in subnet ${subnet.id}`);
    return { subnet_id: subnet.id, ip_address: ip };
  }

  /** Any free address of the subnet's pools, or null when they are exhausted. */
  async any(subnet: NetSubnetRow): Promise<FixedIp | null> {
    const c = parseCidr(subnet.cidr)!;
    if (isAutoAddress(subnet)) {
      const ip = formatIp(6, eui64(c, this.mac));
      return (await this.take(subnet, ip)) ? { subnet_id: subnet.id, ip_address: ip } : null;
    }
    const pools: Range[] = (JSON.parse(subnet.allocation_pools) as { start: string; end: string }[]).map((p) => ({
      start: parseIp(p.start)!.value,
      end: parseIp(p.end)!.value,
    }));
    const rows = await this.trx
      .selectFrom('net_ip_allocations')
      .select('ip_address')
      .where('subnet_id', '=', subnet.id)
      .execute();
    const taken = new Set<bigint>(rows.map((r) => parseIp(r.ip_address)!.value));
    for (let attempt = 0; attempt < 10_000; attempt++) {
      // A random pick among the first free addresses keeps concurrent allocators from all racing for the same one.
      const candidates = freeAddresses(pools, taken, 16);
      if (!candidates.length) return null;
      const pick = candidates[Math.floor(Math.random() * candidates.length)];
      const ip = formatIp(c.version, pick);
      if (await this.take(subnet, ip)) return { subnet_id: subnet.id, ip_address: ip };
      taken.add(pick);
    }
    return null;
  }

  /** Neutron's defaults: one IPv4 address, one stateful IPv6 address, an address on every SLAAC subnet. */
  async defaults(opts: { ipv4Only?: boolean; subnetId?: string } = {}): Promise<FixedIp[]> {
    const out: FixedIp[] = [];
    let subnets = await this.subnets();
    if (opts.subnetId) subnets = subnets.filter((s) => s.id === opts.subnetId);
    const v4 = subnets.filter((s) => Number(s.ip_version) === 4);
    const v6 = opts.ipv4Only ? [] : subnets.filter((s) => Number(s.ip_version) === 6);
    const first = async (list: NetSubnetRow[]) => {
      for (const s of list) {
        const got = await this.any(s);
        if (got) return got;
      }
      if (list.length) throw ipGenerationFailure(this.network.id);
      return null;
    };
    const a4 = await first(v4);
    if (a4) out.push(a4);
    const a6 = await first(v6.filter((s) => !isAutoAddress(s)));
    if (a6) out.push(a6);
    if (this.deviceOwner !== 'network:router_interface')
      for (const s of v6.filter(isAutoAddress)) {
        const got = await this.any(s);
        if (got) out.push(got);
      }
    return out;
  }

  /** The subnet a request names (by id, or by the address it contains). */
  async subnetFor(req: { subnet_id?: string; ip_address?: string }): Promise<NetSubnetRow> {
    const subnets = await this.subnets();
    if (req.subnet_id) {
      const s = subnets.find((x) => x.id === req.subnet_id);
      if (!s)
        throw invalidInput(
          `Failed to create port on network ${this.network.id}, because fixed_ips included invalid subnet ${req.subnet_id}`,
        );
      return s;
    }
    const ip = parseIp(req.ip_address)!;
    const s = subnets.find((x) => contains(parseCidr(x.cidr)!, ip));
    if (!s)
      throw nerr(
        400,
        'InvalidIpForNetwork',
        `IP address ${req.ip_address} is not a valid IP for any of the subnets on the specified network.`,
      );
    return s;
  }

  async request(req: { subnet_id?: string; ip_address?: string }): Promise<FixedIp> {
    const s = await this.subnetFor(req);
    if (req.ip_address) return this.specific(s, req.ip_address);
    const got = await this.any(s);
    if (!got) throw ipGenerationFailure(this.network.id);
    return got;
  }

  async release(ips: FixedIp[]): Promise<void> {
    for (const f of ips)
      await this.trx
        .deleteFrom('net_ip_allocations')
        .where('subnet_id', '=', f.subnet_id)
        .where('ip_address', '=', f.ip_address)
        .where('port_id', '=', this.portId)
        .execute();
  }
}

export function portsHandler(n: Neutron): ResourceHandler & {
  insertPort(trx: Trx, spec: PortSpec): Promise<string>;
  deletePortRows(trx: Trx, id: string): Promise<void>;
  row(actor: NeutronActor, id: string, q?: Trx): Promise<NetPortRow>;
  views(actor: NeutronActor, rows: NetPortRow[], db?: Trx): Promise<View[]>;
  setStatus(id: string, status: string): Promise<void>;
  fixedIps(ids: string[], db?: Trx): Promise<Map<string, FixedIp[]>>;
} {
  const { nx } = n;
  const db = nx.db;

  async function fixedIps(ids: string[], q: Trx | typeof db = db): Promise<Map<string, FixedIp[]>> {
    const out = new Map<string, FixedIp[]>();
    for (const chunk of chunks(ids)) {
      const rows = await q
        .selectFrom('net_ip_allocations')
        .innerJoin('net_subnets', 'net_subnets.id', 'net_ip_allocations.subnet_id')
        .select([
          'net_ip_allocations.port_id',
          'net_ip_allocations.subnet_id',
          'net_ip_allocations.ip_address',
          'net_subnets.ip_version',
          'net_subnets.created_at',
        ])
        .where('net_ip_allocations.port_id', 'in', chunk)
        .execute();
      // Neutron lists IPv4 before IPv6, subnets in creation order.
      rows.sort(
        (a, b) =>
          Number(a.ip_version) - Number(b.ip_version) ||
          a.created_at.localeCompare(b.created_at) ||
          a.ip_address.localeCompare(b.ip_address),
      );
      for (const r of rows)
        out.set(r.port_id, [...(out.get(r.port_id) ?? []), { subnet_id: r.subnet_id, ip_address: r.ip_address }]);
    }
    return out;
  }

  async function views(actor: NeutronActor, rows: NetPortRow[], q: Trx | typeof db = db): Promise<View[]> {
    const ids = rows.map((r) => r.id);
    const ips = await fixedIps(ids, q);
    const sgs = new Map<string, string[]>();
    for (const chunk of chunks(ids)) {
      const links = await q
        .selectFrom('net_port_security_groups')
        .selectAll()
        .where('port_id', 'in', chunk)
        .orderBy('security_group_id')
        .execute();
      for (const l of links) sgs.set(l.port_id, [...(sgs.get(l.port_id) ?? []), l.security_group_id]);
    }
    const tags = await loadTags(q, 'ports', ids);
    const hide = nx.allowed(actor, 'get_port:binding:host_id', target(actor.projectId)) ? [] : HIDDEN_BINDING;
    return rows.map((r) => portView(r, ips.get(r.id) ?? [], sgs.get(r.id) ?? [], tags.get(r.id) ?? [], hide));
  }

  async function netOf(networkId: string, q: Trx | typeof db = db) {
    return (
      (await q
        .selectFrom('net_networks')
        .select(['project_id', 'shared'])
        .where('id', '=', networkId)
        .executeTakeFirst()) ?? {
        project_id: '',
        shared: 0,
      }
    );
  }

  /** The port if the actor may see it; pass the transaction when called inside one (SQLite has one connection). */
  async function row(actor: NeutronActor, id: string, q: Trx | typeof db = db): Promise<NetPortRow> {
    const r = await q.selectFrom('net_ports').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !nx.allowed(actor, 'get_port', portTarget(r, await netOf(r.network_id, q)))) throw notFound.port(id);
    return r;
  }

  const show = async (actor: NeutronActor, id: string) => (await views(actor, [await row(actor, id)]))[0];

  /** Checks requested groups exist and belong to the port's project (admins may use any). */
  async function resolveGroups(trx: Trx, actor: NeutronActor, owner: string, ids: string[]): Promise<string[]> {
    const unique = [...new Set(ids)];
    if (!unique.length) return [];
    const rows = await trx
      .selectFrom('net_security_groups')
      .select(['id', 'project_id', 'shared'])
      .where('id', 'in', unique)
      .execute();
    for (const id of unique) {
      const g = rows.find((r) => r.id === id);
      if (!g || !(g.project_id === owner || g.shared || actor.isAdmin)) throw notFound.security_group(id);
    }
    return unique;
  }

  async function insertPort(trx: Trx, spec: PortSpec): Promise<string> {
    const id = newId();
    const ts = nowTs();
    const owner = spec.deviceOwner ?? '';
    const portSecurity = spec.portSecurity ?? !!spec.network.port_security_enabled;
    let sgs = spec.securityGroups;
    if (sgs === undefined)
      sgs = portSecurity && !isNetworkDevice(owner) && spec.defaultSecurityGroup ? [spec.defaultSecurityGroup] : [];
    if (!portSecurity && sgs.length)
      throw nerr(
        400,
        'PortSecurityAndIPRequiredForSecurityGroups',
        'Port security must be enabled and port must have an IP address in order to use security groups.',
      );
    if (!portSecurity && spec.allowedAddressPairs?.length)
      throw nerr(
        409,
        'AddressPairAndPortSecurityRequired',
        'Port Security must be enabled in order to have allowed address pairs on a port.',
      );
    checkPairs(spec.allowedAddressPairs ?? []);
    // Port creation shares the network row, network deletion takes it exclusively (PostgreSQL).
    if (nx.postgres)
      await trx.selectFrom('net_networks').select('id').where('id', '=', spec.network.id).forShare().execute();
    let mac = spec.mac;
    for (let attempt = 0; ; attempt++) {
      const candidate = mac ?? randomMac();
      const hostId = spec.hostId ?? '';
      const r = await trx
        .insertInto('net_ports')
        .values({
          id,
          name: spec.name ?? '',
          network_id: spec.network.id,
          project_id: spec.owner,
          mac_address: candidate,
          admin_state_up: spec.adminStateUp === false ? 0 : 1,
          status: 'DOWN',
          device_id: spec.deviceId ?? '',
          device_owner: owner,
          port_security_enabled: portSecurity ? 1 : 0,
          allowed_address_pairs: j(spec.allowedAddressPairs ?? []),
          binding_host_id: hostId,
          ...bindingFor(hostId),
          binding_vnic_type: spec.vnicType ?? 'normal',
          binding_profile: j(spec.profile ?? {}),
          dns_name: spec.dnsName ?? '',
          description: spec.description ?? '',
          revision_number: 0,
          created_at: ts,
          updated_at: ts,
        })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst();
      if (Number(r.numInsertedOrUpdatedRows ?? 0n) > 0) {
        mac = candidate;
        break;
      }
      if (mac)
        throw nerr(
          409,
          'MacAddressInUse',
          `Unable to complete operation for network ${spec.network.id}. The mac address ${mac} is in use.`,
        );
      if (attempt > 16)
        throw nerr(503, 'MacAddressGenerationFailure', `Unable to generate unique mac on network ${spec.network.id}.`);
    }
    const ipam = new Ipam(trx, spec.network, id, mac, owner);
    if (spec.fixedIps === undefined) await ipam.defaults({ ipv4Only: spec.ipv4Only, subnetId: spec.subnetFilter });
    else for (const f of spec.fixedIps) await ipam.request(f);
    if (sgs.length)
      await trx
        .insertInto('net_port_security_groups')
        .values(sgs.map((g) => ({ port_id: id, security_group_id: g })))
        .execute();
    if (spec.tags?.length) await setTags(trx, 'ports', id, spec.tags);
    return id;
  }

  function checkPairs(pairs: { ip_address: string; mac_address?: string }[]) {
    const seen = new Set<string>();
    for (const p of pairs) {
      const k = `${p.ip_address}|${p.mac_address ?? ''}`;
      if (seen.has(k))
        throw nerr(
          400,
          'DuplicateAddressPairInRequest',
          `Request contains duplicate address pair: mac_address ${p.mac_address ?? 'None'} ip_address ${p.ip_address}.`,
        );
      seen.add(k);
    }
  }

  async function createOne(actor: NeutronActor, body: Record<string, unknown>): Promise<View> {
    if (body.network_id === undefined)
      throw badRequest("Failed to parse request. Required attribute 'network_id' not specified");
    const net = await n.networks.row(actor, uuid(body.network_id, 'network_id') as string);
    const owner0 = (body.project_id ?? body.tenant_id ?? actor.projectId) as string;
    const pt = portTarget({ project_id: owner0, device_owner: String(body.device_owner ?? '') }, net);
    const a = parseBody(nx, actor, 'create', 'port', SPEC, body, pt);
    const owner = ownerOf(actor, a);
    if (!actor.isAdmin && net.project_id !== owner && !net.shared)
      throw nerr(404, 'HTTPNotFound', 'The resource could not be found.');
    nx.enforce(actor, 'create_port', pt);
    if (a.fixed_ips)
      for (const f of a.fixed_ips as { subnet_id?: string; ip_address?: string }[]) {
        if (f.ip_address) nx.enforce(actor, 'create_port:fixed_ips:ip_address', pt);
        if (f.subnet_id) nx.enforce(actor, 'create_port:fixed_ips:subnet_id', pt);
      }
    if (a.mac_address && !isUnicastMac(a.mac_address as string))
      throw invalidAttr('mac_address', `'${a.mac_address}' is not a valid MAC address`);
    const deviceOwner = (a.device_owner as string | undefined) ?? '';
    const portSecurity = (a.port_security_enabled as boolean | undefined) ?? !!net.port_security_enabled;
    const defaultSg =
      a.security_groups === undefined && portSecurity && !isNetworkDevice(deviceOwner)
        ? await n.ensureDefaultSecurityGroup(owner)
        : undefined;
    const id = await nx.write(async (trx) => {
      await checkQuota(trx, nx, owner, 'port');
      const sgs = Array.isArray(a.security_groups)
        ? await resolveGroups(trx, actor, owner, a.security_groups as string[])
        : undefined;
      const hostId = a['binding:host_id'] as string | undefined;
      return insertPort(trx, {
        network: net,
        owner,
        name: a.name as string | undefined,
        description: a.description as string | undefined,
        adminStateUp: a.admin_state_up as boolean | undefined,
        deviceId: a.device_id as string | undefined,
        deviceOwner,
        mac: a.mac_address as string | undefined,
        fixedIps: a.fixed_ips as PortSpec['fixedIps'],
        securityGroups: a.security_groups === null ? [] : sgs,
        defaultSecurityGroup: defaultSg,
        portSecurity,
        allowedAddressPairs: (a.allowed_address_pairs as PortSpec['allowedAddressPairs']) ?? undefined,
        hostId,
        profile: a['binding:profile'] as Record<string, unknown> | undefined,
        vnicType: a['binding:vnic_type'] as string | undefined,
        dnsName: a.dns_name as string | undefined,
        tags: a.tags as string[] | undefined,
      });
    });
    return show(actor, id);
  }

  async function update(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    const net = (await db.selectFrom('net_networks').selectAll().where('id', '=', r.network_id).executeTakeFirst())!;
    const pt = portTarget(r, net);
    nx.enforce(actor, 'update_port', pt);
    const a = parseBody(nx, actor, 'update', 'port', SPEC, body, {
      ...pt,
      ...(typeof body.device_owner === 'string'
        ? { device_owner: body.device_owner, network_device: tf(isNetworkDevice(body.device_owner)) }
        : {}),
    });
    if (a.fixed_ips)
      for (const f of a.fixed_ips as { subnet_id?: string; ip_address?: string }[]) {
        if (f.ip_address) nx.enforce(actor, 'update_port:fixed_ips:ip_address', pt);
        if (f.subnet_id) nx.enforce(actor, 'update_port:fixed_ips:subnet_id', pt);
      }
    if (a.mac_address && !isUnicastMac(a.mac_address as string))
      throw invalidAttr('mac_address', `'${a.mac_address}' is not a valid MAC address`);
    const set: Record<string, unknown> = {};
    for (const k of ['name', 'description', 'device_id', 'device_owner', 'dns_name'] as const)
      if (present(a, k)) set[k] = a[k];
    if (present(a, 'admin_state_up')) set.admin_state_up = a.admin_state_up ? 1 : 0;
    if (present(a, 'port_security_enabled')) set.port_security_enabled = a.port_security_enabled ? 1 : 0;
    if (present(a, 'allowed_address_pairs')) {
      checkPairs((a.allowed_address_pairs as { ip_address: string }[] | null) ?? []);
      set.allowed_address_pairs = j(a.allowed_address_pairs ?? []);
    }
    if (present(a, 'binding:host_id')) {
      const host = a['binding:host_id'] as string;
      set.binding_host_id = host;
      Object.assign(set, bindingFor(host));
      if (!host) set.status = 'DOWN';
    }
    if (present(a, 'binding:profile')) set.binding_profile = j(a['binding:profile']);
    if (present(a, 'binding:vnic_type')) set.binding_vnic_type = a['binding:vnic_type'];
    if (present(a, 'mac_address') && a.mac_address !== r.mac_address) {
      if (r.binding_host_id && r.status === 'ACTIVE')
        throw nerr(
          409,
          'PortBound',
          `Unable to complete operation on port ${id}, port is already bound, port type: bridge, old_mac ${r.mac_address}, new_mac ${a.mac_address}.`,
        );
      set.mac_address = a.mac_address;
    }
    await nx.write(async (trx) => {
      const current = (await views(actor, [r], trx))[0];
      const portSecurity = present(a, 'port_security_enabled')
        ? (a.port_security_enabled as boolean)
        : !!r.port_security_enabled;
      let sgs: string[] = current.security_groups;
      if (present(a, 'security_groups'))
        sgs = await resolveGroups(trx, actor, r.project_id, (a.security_groups as string[] | null) ?? []);
      if (!portSecurity && sgs.length)
        throw nerr(
          409,
          'PortSecurityPortHasSecurityGroup',
          'Port has security group associated. Cannot disable port security or ip address until security group is removed',
        );
      const pairs = present(a, 'allowed_address_pairs')
        ? ((a.allowed_address_pairs as unknown[] | null) ?? [])
        : JSON.parse(r.allowed_address_pairs);
      if (!portSecurity && pairs.length)
        throw nerr(
          409,
          'AddressPairAndPortSecurityRequired',
          'Port Security must be enabled in order to have allowed address pairs on a port.',
        );
      if (present(a, 'security_groups')) {
        await trx.deleteFrom('net_port_security_groups').where('port_id', '=', id).execute();
        if (sgs.length)
          await trx
            .insertInto('net_port_security_groups')
            .values(sgs.map((g) => ({ port_id: id, security_group_id: g })))
            .execute();
      }
      if (present(a, 'mac_address') && a.mac_address !== r.mac_address) {
        const clash = await trx
          .selectFrom('net_ports')
          .select('id')
          .where('network_id', '=', r.network_id)
          .where('mac_address', '=', a.mac_address as string)
          .executeTakeFirst();
        if (clash)
          throw nerr(
            409,
            'MacAddressInUse',
            `Unable to complete operation for network ${r.network_id}. The mac address ${a.mac_address} is in use.`,
          );
      }
      if (present(a, 'fixed_ips')) {
        const ipam = new Ipam(
          trx,
          net,
          id,
          (set.mac_address as string) ?? r.mac_address,
          (set.device_owner as string) ?? r.device_owner,
        );
        const old: FixedIp[] = current.fixed_ips;
        const keep = new Set<FixedIp>();
        const wanted: { subnet_id?: string; ip_address?: string }[] = [];
        for (const f of a.fixed_ips as { subnet_id?: string; ip_address?: string }[]) {
          const match = old.find(
            (o) =>
              !keep.has(o) &&
              (f.ip_address
                ? o.ip_address === f.ip_address && (!f.subnet_id || o.subnet_id === f.subnet_id)
                : o.subnet_id === f.subnet_id),
          );
          if (match) keep.add(match);
          else wanted.push(f);
        }
        await ipam.release(old.filter((o) => !keep.has(o)));
        for (const f of wanted) await ipam.request(f);
      }
      await bump(trx, 'net_ports', id, set);
    });
    return show(actor, id);
  }

  /** Removes a port and everything hanging off it; floating IPs on it are disassociated. */
  async function deletePortRows(trx: Trx, id: string): Promise<void> {
    const fips = await trx.selectFrom('net_floatingips').select('id').where('port_id', '=', id).execute();
    for (const f of fips)
      await bump(trx, 'net_floatingips', f.id, {
        port_id: null,
        fixed_ip_address: null,
        router_id: null,
        status: 'DOWN',
      });
    await trx.deleteFrom('net_ip_allocations').where('port_id', '=', id).execute();
    await trx.deleteFrom('net_port_security_groups').where('port_id', '=', id).execute();
    await deleteTags(trx, id);
    await trx.deleteFrom('net_ports').where('id', '=', id).execute();
  }

  async function remove(actor: NeutronActor, id: string): Promise<void> {
    const r = await row(actor, id);
    nx.enforce(actor, 'delete_port', portTarget(r, await netOf(r.network_id)));
    if (L3_OWNERS.includes(r.device_owner))
      throw nerr(
        409,
        'L3PortInUse',
        `Port ${id} has owner ${r.device_owner} and therefore cannot be deleted directly via the port API.`,
      );
    await nx.write((trx) => deletePortRows(trx, id));
  }

  async function list(actor: NeutronActor, hint: Map<string, string[]>): Promise<View[]> {
    let q = db.selectFrom('net_ports').selectAll();
    for (const col of ['id', 'network_id', 'device_id', 'device_owner', 'mac_address'] as const) {
      const v = hint.get(col);
      if (v?.length) q = q.where(col, 'in', v);
    }
    if (!actor.isAdmin)
      q = q.where((eb) =>
        eb.or([
          eb('project_id', '=', actor.projectId),
          eb('network_id', 'in', eb.selectFrom('net_networks').select('id').where('project_id', '=', actor.projectId)),
        ]),
      );
    const rows = await q.execute();
    const nets = new Map<string, { project_id: string; shared: number }>();
    const netIds = [...new Set(rows.map((r) => r.network_id))];
    for (const chunk of chunks(netIds))
      for (const x of await db
        .selectFrom('net_networks')
        .select(['id', 'project_id', 'shared'])
        .where('id', 'in', chunk)
        .execute())
        nets.set(x.id, x);
    return views(
      actor,
      rows.filter((r) => nx.allowed(actor, 'get_port', portTarget(r, nets.get(r.network_id) ?? { project_id: '' }))),
    );
  }

  /** The agent reports a port plugged (ACTIVE) or unplugged (DOWN); no-op when unchanged. */
  async function setStatus(id: string, status: string): Promise<void> {
    if (!['ACTIVE', 'DOWN', 'BUILD', 'ERROR'].includes(status)) throw badRequest(`Invalid port status ${status}`);
    const r = await db.selectFrom('net_ports').select('status').where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound.port(id);
    if (r.status === status) return;
    await nx.write((trx) => bump(trx, 'net_ports', id, { status }));
  }

  return {
    singular: 'port',
    plural: 'ports',
    path: 'ports',
    tagType: 'ports',
    table: 'net_ports',
    notFound: notFound.port,
    known: KNOWN,
    custom: { fixed_ips: fixedIpsFilter },
    list,
    show,
    create: createOne,
    update,
    remove,
    insertPort,
    deletePortRows,
    row,
    views,
    setStatus,
    fixedIps,
    async updatable(actor, id) {
      const r = await row(actor, id);
      nx.enforce(actor, 'update_port', portTarget(r, await netOf(r.network_id)));
      return (await views(actor, [r]))[0];
    },
  };
}
