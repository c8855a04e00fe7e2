/**
 * Routers: a gateway port on an external network (`external_gateway_info`, SNAT on by default) and interface ports
 * on tenant subnets (each holding its subnet's gateway address), plus static routes. Subnets on one router must not
 * overlap; a router with interfaces cannot be deleted; a gateway or interface a floating IP needs cannot go.
 */
import type { NetPortRow, NetRouterRow } from '../../../core/store/schema.js';
import {
  type AttrMap,
  ipAddress,
  list,
  ownerOf,
  parseBody,
  str,
  tags as tagList,
  toBool,
  uuid,
} from '../attributes.js';
import { type NeutronActor, newId, nowTs, type Trx, target } from '../context.js';
import { invalidAttr, nerr, notFound } from '../errors.js';
import { contains, formatCidr, overlaps, parseCidr, parseIp } from '../ipam.js';
import type { View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { type FixedIp, routerView } from '../views.js';
import { bump, checkQuota, deleteTags, j, loadTags, present, type ResourceHandler, setTags } from './shared.js';

const badRouter = (msg: string) => nerr(400, 'BadRequest', `Bad router request: ${msg}.`);

interface GatewayInfo {
  network_id: string;
  enable_snat?: boolean;
  external_fixed_ips?: { subnet_id?: string; ip_address?: string }[];
}

const gatewayInfo = (v: unknown, a: string): GatewayInfo | null => {
  if (v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalidAttr(a, `'${JSON.stringify(v)}' is not a dictionary`);
  const g = v as Record<string, unknown>;
  if (Object.keys(g).length === 0) return null;
  const extra = Object.keys(g).filter((k) => !['network_id', 'enable_snat', 'external_fixed_ips'].includes(k));
  if (extra.length) throw invalidAttr(a, `Unexpected keys supplied: ${extra.join(', ')}`);
  if (g.network_id === undefined)
    throw invalidAttr(a, "Validation of dictionary's keys failed. Expected keys: {'network_id'}");
  const out: GatewayInfo = { network_id: uuid(g.network_id, a) as string };
  if (g.enable_snat !== undefined) out.enable_snat = toBool(g.enable_snat, a) as boolean;
  if (g.external_fixed_ips !== undefined)
    out.external_fixed_ips = list((x, at) => {
      const f = x as Record<string, unknown>;
      if (!f || typeof f !== 'object') throw invalidAttr(at, 'invalid external fixed IP');
      const o: { subnet_id?: string; ip_address?: string } = {};
      if (f.subnet_id !== undefined) o.subnet_id = uuid(f.subnet_id, at) as string;
      if (f.ip_address !== undefined) o.ip_address = ipAddress(f.ip_address, at) as string;
      return o;
    })(g.external_fixed_ips, a) as GatewayInfo['external_fixed_ips'];
  return out;
};

const route = (v: unknown, a: string) => {
  const r = v as Record<string, unknown>;
  if (!r || typeof r !== 'object' || r.destination === undefined || r.nexthop === undefined)
    throw invalidAttr(a, `Invalid data format for route: '${JSON.stringify(v)}'`);
  const d = parseCidr(r.destination);
  if (!d) throw invalidAttr(a, `'${String(r.destination)}' is not a valid IP subnet`);
  return { destination: formatCidr(d), nexthop: ipAddress(r.nexthop, a) as string };
};

const SPEC: AttrMap = {
  name: { post: true, put: true, convert: str(255) },
  admin_state_up: { post: true, put: true, convert: toBool },
  external_gateway_info: { post: true, put: true, convert: gatewayInfo },
  routes: { put: true, convert: list(route, 30) },
  tags: { post: true, convert: tagList },
};

const KNOWN = new Set([
  'id',
  'name',
  'admin_state_up',
  'status',
  'external_gateway_info',
  'routes',
  'availability_zone_hints',
  'availability_zones',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

const routerTarget = (r: { id?: string; project_id: string }) => target(r.project_id, { id: r.id });

export function routersHandler(n: Neutron): ResourceHandler & {
  addInterface(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View>;
  removeInterface(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View>;
} {
  const { nx } = n;
  const db = nx.db;

  async function views(rows: NetRouterRow[]) {
    const gw = await n.ports.fixedIps(rows.map((r) => r.gw_port_id).filter((x): x is string => !!x));
    const tags = await loadTags(
      db,
      'routers',
      rows.map((r) => r.id),
    );
    return rows.map((r) => routerView(r, (r.gw_port_id && gw.get(r.gw_port_id)) || [], tags.get(r.id) ?? []));
  }
  async function row(actor: NeutronActor, id: string) {
    const r = await db.selectFrom('net_routers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !nx.allowed(actor, 'get_router', routerTarget(r))) throw notFound.router(id);
    return r;
  }
  const show = async (actor: NeutronActor, id: string) => (await views([await row(actor, id)]))[0];

  function enforceGateway(
    actor: NeutronActor,
    op: 'create' | 'update',
    r: { project_id: string },
    g: GatewayInfo | null,
  ) {
    const t = routerTarget(r);
    nx.enforce(actor, `${op}_router:external_gateway_info`, t);
    if (!g) return;
    nx.enforce(actor, `${op}_router:external_gateway_info:network_id`, t);
    if (g.enable_snat !== undefined) nx.enforce(actor, `${op}_router:external_gateway_info:enable_snat`, t);
    if (g.external_fixed_ips?.some((f) => f.ip_address))
      nx.enforce(actor, `${op}_router:external_gateway_info:external_fixed_ips`, t);
  }

  async function interfacePorts(trx: Trx | typeof db, routerId: string): Promise<NetPortRow[]> {
    return trx
      .selectFrom('net_ports')
      .selectAll()
      .where('device_id', '=', routerId)
      .where('device_owner', '=', 'network:router_interface')
      .execute();
  }

  async function clearGateway(trx: Trx, r: NetRouterRow) {
    if (!r.gw_network_id) return;
    const fip = await trx.selectFrom('net_floatingips').select('id').where('router_id', '=', r.id).executeTakeFirst();
    if (fip)
      throw nerr(
        409,
        'RouterExternalGatewayInUseByFloatingIp',
        `Gateway cannot be updated for router ${r.id}, since a gateway to external network ${r.gw_network_id} is required by one or more floating IPs.`,
      );
    if (r.gw_port_id) await n.deletePortRows(trx, r.gw_port_id);
  }

  async function setGateway(
    trx: Trx,
    actor: NeutronActor,
    r: NetRouterRow,
    g: GatewayInfo | null,
  ): Promise<Record<string, unknown>> {
    if (!g) {
      await clearGateway(trx, r);
      return { gw_network_id: null, gw_port_id: null, enable_snat: 1 };
    }
    const net = await trx.selectFrom('net_networks').selectAll().where('id', '=', g.network_id).executeTakeFirst();
    if (
      !net ||
      !nx.allowed(actor, 'get_network', {
        ...target(net.project_id),
        'router:external': net.external ? 'True' : 'False',
        shared: net.shared ? 'True' : 'False',
      })
    )
      throw notFound.network(g.network_id);
    if (!net.external) throw badRouter(`Network ${g.network_id} is not an external network`);
    const snat = g.enable_snat === undefined ? 1 : g.enable_snat ? 1 : 0;
    if (r.gw_network_id === g.network_id && !g.external_fixed_ips) return { enable_snat: snat };
    if (r.gw_network_id !== g.network_id) await clearGateway(trx, r);
    else if (r.gw_port_id) await n.deletePortRows(trx, r.gw_port_id);
    const portId = await n.ports.insertPort(trx, {
      network: net,
      owner: '',
      deviceId: r.id,
      deviceOwner: 'network:router_gateway',
      fixedIps: g.external_fixed_ips,
      securityGroups: [],
      portSecurity: false,
    });
    return { gw_network_id: net.id, gw_port_id: portId, enable_snat: snat };
  }

  async function create(actor: NeutronActor, body: Record<string, unknown>): Promise<View> {
    const a = parseBody(nx, actor, 'create', 'router', SPEC, body, target(actor.projectId));
    const owner = ownerOf(actor, a);
    nx.enforce(actor, 'create_router', target(owner));
    if (present(a, 'external_gateway_info'))
      enforceGateway(actor, 'create', { project_id: owner }, a.external_gateway_info as GatewayInfo | null);
    const id = newId();
    const ts = nowTs();
    await nx.write(async (trx) => {
      await checkQuota(trx, nx, owner, 'router');
      const row: NetRouterRow = {
        id,
        name: (a.name as string) ?? '',
        project_id: owner,
        admin_state_up: a.admin_state_up === false ? 0 : 1,
        status: 'ACTIVE',
        gw_network_id: null,
        gw_port_id: null,
        enable_snat: 1,
        routes: '[]',
        host: null,
        description: (a.description as string) ?? '',
        revision_number: 0,
        created_at: ts,
        updated_at: ts,
      };
      await trx.insertInto('net_routers').values(row).execute();
      if (a.external_gateway_info) {
        const set = await setGateway(trx, actor, row, a.external_gateway_info as GatewayInfo);
        await trx.updateTable('net_routers').set(set).where('id', '=', id).execute();
      }
      if (Array.isArray(a.tags) && a.tags.length) await setTags(trx, 'routers', id, a.tags as string[]);
    });
    return show(actor, id);
  }

  /** Subnet ids the router is attached to (its interfaces). */
  async function attachedSubnets(trx: Trx | typeof db, routerId: string) {
    const ports = await interfacePorts(trx, routerId);
    const ips = await n.ports.fixedIps(
      ports.map((p) => p.id),
      trx as Trx,
    );
    return ports.flatMap((p) => (ips.get(p.id) ?? []).map((f) => ({ ...f, port_id: p.id })));
  }

  async function update(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    nx.enforce(actor, 'update_router', routerTarget(r));
    const a = parseBody(nx, actor, 'update', 'router', SPEC, body, routerTarget(r));
    if (present(a, 'external_gateway_info'))
      enforceGateway(actor, 'update', r, a.external_gateway_info as GatewayInfo | null);
    await nx.write(async (trx) => {
      const set: Record<string, unknown> = {};
      for (const k of ['name', 'description'] as const) if (present(a, k)) set[k] = a[k];
      if (present(a, 'admin_state_up')) set.admin_state_up = a.admin_state_up ? 1 : 0;
      if (present(a, 'external_gateway_info'))
        Object.assign(set, await setGateway(trx, actor, r, a.external_gateway_info as GatewayInfo | null));
      if (present(a, 'routes')) {
        const routes = a.routes as { destination: string; nexthop: string }[];
        const attached = await attachedSubnets(trx, id);
        const gwIps =
          r.gw_port_id || set.gw_port_id
            ? ((await n.ports.fixedIps([(set.gw_port_id as string) ?? r.gw_port_id!], trx)).values().next().value ?? [])
            : [];
        const subnetIds = [...new Set([...attached, ...gwIps].map((f) => f.subnet_id))];
        const cidrs = subnetIds.length
          ? (await trx.selectFrom('net_subnets').select('cidr').where('id', 'in', subnetIds).execute()).map(
              (s) => parseCidr(s.cidr)!,
            )
          : [];
        for (const rt of routes) {
          const hop = parseIp(rt.nexthop)!;
          if (!cidrs.some((c) => contains(c, hop)))
            throw nerr(
              400,
              'InvalidRoutes',
              `Invalid format for routes: ${JSON.stringify(rt)}, the nexthop does not belong to router's connected subnet.`,
            );
        }
        set.routes = j(routes);
      }
      await bump(trx, 'net_routers', id, set);
    });
    return show(actor, id);
  }

  async function remove(actor: NeutronActor, id: string): Promise<void> {
    const r = await row(actor, id);
    nx.enforce(actor, 'delete_router', routerTarget(r));
    await nx.write(async (trx) => {
      if ((await interfacePorts(trx, id)).length) throw nerr(409, 'RouterInUse', `Router ${id} still has ports`);
      await clearGateway(trx, r);
      await deleteTags(trx, id);
      await trx.deleteFrom('net_routers').where('id', '=', id).execute();
    });
  }

  function interfaceInfo(r: NetRouterRow, port: { id: string; network_id: string }, subnetIds: string[]): View {
    return {
      id: r.id,
      tenant_id: r.project_id,
      project_id: r.project_id,
      port_id: port.id,
      network_id: port.network_id,
      subnet_id: subnetIds[0],
      subnet_ids: subnetIds,
    };
  }

  async function checkOverlap(trx: Trx, routerId: string, subnetIds: string[]) {
    const attached = await attachedSubnets(trx, routerId);
    const ids = [...new Set([...attached.map((a) => a.subnet_id), ...subnetIds])];
    const rows = await trx.selectFrom('net_subnets').select(['id', 'cidr']).where('id', 'in', ids).execute();
    const byId = new Map(rows.map((s) => [s.id, s]));
    for (const sid of subnetIds) {
      if (attached.some((a) => a.subnet_id === sid)) throw badRouter(`Router already has a port on subnet ${sid}`);
      const mine = byId.get(sid)!;
      for (const other of attached) {
        const o = byId.get(other.subnet_id)!;
        if (overlaps(parseCidr(mine.cidr)!, parseCidr(o.cidr)!))
          throw badRouter(`Cidr ${mine.cidr} of subnet ${sid} overlaps with cidr ${o.cidr} of subnet ${o.id}`);
      }
    }
  }

  async function addInterface(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    nx.enforce(actor, 'add_router_interface', routerTarget(r));
    if (!body || typeof body !== 'object') throw badRouter('Either subnet_id or port_id must be specified');
    const { subnet_id: subnetId, port_id: portId } = body as { subnet_id?: unknown; port_id?: unknown };
    if (subnetId && portId) throw badRouter('Cannot specify both subnet-id and port-id');
    if (!subnetId && !portId) throw badRouter('Either subnet_id or port_id must be specified');
    if (subnetId) {
      const s = await n.subnets.row(actor, uuid(subnetId, 'subnet_id') as string);
      if (!s.gateway_ip) throw badRouter(`Subnet for router interface must have a gateway IP`);
      const net = (await db.selectFrom('net_networks').selectAll().where('id', '=', s.network_id).executeTakeFirst())!;
      if (net.external) throw badRouter(`Router interface cannot be attached to external network ${net.id}`);
      const newPort = await nx.write(async (trx) => {
        await checkOverlap(trx, id, [s.id]);
        const pid = await n.ports.insertPort(trx, {
          network: net,
          owner: s.project_id,
          deviceId: id,
          deviceOwner: 'network:router_interface',
          fixedIps: [{ subnet_id: s.id, ip_address: s.gateway_ip! }],
          securityGroups: [],
          portSecurity: false,
        });
        await bump(trx, 'net_routers', id);
        return pid;
      });
      return interfaceInfo(r, { id: newPort, network_id: net.id }, [s.id]);
    }
    const p = await n.ports.row(actor, uuid(portId, 'port_id') as string);
    if (p.device_id)
      throw nerr(
        409,
        'PortInUse',
        `Unable to complete operation on port ${p.id} for network ${p.network_id}. Port already has an attached device ${p.device_id}.`,
      );
    const subnetIds = await nx.write(async (trx) => {
      const ips = (await n.ports.fixedIps([p.id], trx)).get(p.id) ?? [];
      if (!ips.length) throw badRouter(`Router port must have at least one fixed IP`);
      const net = await trx
        .selectFrom('net_networks')
        .select('external')
        .where('id', '=', p.network_id)
        .executeTakeFirst();
      if (net?.external) throw badRouter(`Router interface cannot be attached to external network ${p.network_id}`);
      const sids = [...new Set(ips.map((f: FixedIp) => f.subnet_id))];
      await checkOverlap(trx, id, sids);
      await bump(trx, 'net_ports', p.id, { device_id: id, device_owner: 'network:router_interface' });
      await bump(trx, 'net_routers', id);
      return sids;
    });
    return interfaceInfo(r, p, subnetIds);
  }

  async function removeInterface(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    nx.enforce(actor, 'remove_router_interface', routerTarget(r));
    const { subnet_id: subnetId, port_id: portId } = (body ?? {}) as { subnet_id?: string; port_id?: string };
    if (!subnetId && !portId) throw badRouter('Either subnet_id or port_id must be specified');
    return nx.write(async (trx) => {
      const attached = await attachedSubnets(trx, id);
      let mine: typeof attached;
      if (portId) {
        mine = attached.filter((a) => a.port_id === portId);
        if (!mine.length)
          throw nerr(404, 'RouterInterfaceNotFound', `Router ${id} does not have an interface with id ${portId}`);
        if (subnetId && !mine.some((m) => m.subnet_id === subnetId))
          throw nerr(
            409,
            'SubnetMismatchForPort',
            `Subnet on port ${portId} does not match the requested subnet ${subnetId}.`,
          );
      } else {
        mine = attached.filter((a) => a.subnet_id === subnetId);
        if (!mine.length)
          throw nerr(404, 'RouterInterfaceNotFoundForSubnet', `Router ${id} has no interface on subnet ${subnetId}`);
      }
      const subnets = [...new Set(mine.map((m) => m.subnet_id))];
      const cidrs = (await trx.selectFrom('net_subnets').select('cidr').where('id', 'in', subnets).execute()).map(
        (s) => parseCidr(s.cidr)!,
      );
      const fips = await trx
        .selectFrom('net_floatingips')
        .select(['fixed_ip_address'])
        .where('router_id', '=', id)
        .execute();
      if (fips.some((f) => f.fixed_ip_address && cidrs.some((c) => contains(c, parseIp(f.fixed_ip_address)!))))
        throw nerr(
          409,
          'RouterInterfaceInUseByFloatingIP',
          `Router interface for subnet ${subnets[0]} on router ${id} cannot be deleted, as it is required by one or more floating IPs.`,
        );
      const port = (await trx
        .selectFrom('net_ports')
        .selectAll()
        .where('id', '=', mine[0].port_id)
        .executeTakeFirst())!;
      const all = attached.filter((a) => a.port_id === port.id);
      if (portId || all.length === mine.length) await n.deletePortRows(trx, port.id);
      else
        for (const m of mine)
          await trx
            .deleteFrom('net_ip_allocations')
            .where('port_id', '=', port.id)
            .where('subnet_id', '=', m.subnet_id)
            .execute();
      await bump(trx, 'net_routers', id);
      return interfaceInfo(r, port, subnets);
    });
  }

  return {
    singular: 'router',
    plural: 'routers',
    path: 'routers',
    tagType: 'routers',
    table: 'net_routers',
    notFound: notFound.router,
    known: KNOWN,
    async list(actor) {
      let q = db.selectFrom('net_routers').selectAll();
      if (!actor.isAdmin) q = q.where('project_id', '=', actor.projectId);
      return views((await q.execute()).filter((r) => nx.allowed(actor, 'get_router', routerTarget(r))));
    },
    show,
    create,
    update,
    remove,
    addInterface,
    removeInterface,
    async updatable(actor, id) {
      const r = await row(actor, id);
      nx.enforce(actor, 'update_router', routerTarget(r));
      return (await views([r]))[0];
    },
  };
}
