/**
 * Floating IPs: an address on an external network (held by a `network:floatingip` port) mapped 1:1 to a fixed
 * IPv4 address of a port. Association needs a router with its gateway on the floating network and an interface on
 * the port's subnet (else 404 ExternalGatewayForFloatingIPNotFound); the router is recorded in `router_id`.
 */
import type { NetFloatingIpRow } from '../../../core/store/schema.js';
import { type AttrMap, ipAddress, nullable, ownerOf, parseBody, tags as tagList, uuid } from '../attributes.js';
import { type NeutronActor, newId, nowTs, type Trx, target } from '../context.js';
import { nerr, notFound } from '../errors.js';
import { parseIp } from '../ipam.js';
import type { View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { floatingIpView } from '../views.js';
import { bump, checkQuota, deleteTags, loadTags, present, type ResourceHandler, setTags } from './shared.js';

const SPEC: AttrMap = {
  floating_network_id: { post: true, required: true, convert: uuid },
  floating_ip_address: { post: true, convert: ipAddress, policy: true },
  subnet_id: { post: true, convert: nullable(uuid) },
  port_id: { post: true, put: true, convert: nullable(uuid) },
  fixed_ip_address: { post: true, put: true, convert: nullable(ipAddress) },
  tags: { post: true, convert: tagList },
};

const KNOWN = new Set([
  'id',
  'floating_ip_address',
  'floating_network_id',
  'router_id',
  'port_id',
  'fixed_ip_address',
  'status',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

const badFip = (msg: string) => nerr(400, 'BadRequest', `Bad floatingip request: ${msg}.`);
const fipTarget = (f: { id?: string; project_id: string }) => target(f.project_id, { id: f.id });

export function floatingIpsHandler(n: Neutron): ResourceHandler {
  const { nx } = n;
  const db = nx.db;

  async function views(rows: NetFloatingIpRow[]) {
    const tags = await loadTags(
      db,
      'floatingips',
      rows.map((r) => r.id),
    );
    return rows.map((r) => floatingIpView(r, tags.get(r.id) ?? []));
  }
  async function row(actor: NeutronActor, id: string) {
    const r = await db.selectFrom('net_floatingips').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !nx.allowed(actor, 'get_floatingip', fipTarget(r))) throw notFound.floatingip(id);
    return r;
  }
  const show = async (actor: NeutronActor, id: string) => (await views([await row(actor, id)]))[0];

  /** Where the floating IP goes: the port's fixed IPv4 address and the router that reaches it. */
  async function association(
    trx: Trx,
    actor: NeutronActor,
    fip: { id: string; project_id: string; floating_network_id: string; floating_ip_address: string },
    portId: string,
    fixed: string | null | undefined,
  ) {
    const port = await n.ports.row(actor, portId, trx);
    if (port.project_id !== fip.project_id && !actor.isAdmin)
      throw badFip(
        `Cannot create floating IP and bind it to Port ${portId}, since that port is owned by a different tenant`,
      );
    const ips = ((await n.ports.fixedIps([port.id], trx)).get(port.id) ?? []).filter(
      (f) => parseIp(f.ip_address)!.version === 4,
    );
    let chosen = ips[0];
    if (fixed) {
      const hit = ips.find((f) => f.ip_address === fixed);
      if (!hit) throw badFip(`Port ${portId} does not have fixed ip ${fixed}`);
      chosen = hit;
    } else if (ips.length > 1)
      throw badFip(
        `Port ${portId} has multiple fixed IPv4 addresses. Must provide a specific IPv4 address when assigning a floating IP`,
      );
    if (!chosen) throw badFip(`Port ${portId} does not have any IPv4 address`);
    // Routers with a gateway on the floating network and an interface on the fixed address's subnet.
    const routers = await trx
      .selectFrom('net_routers')
      .select('id')
      .where('gw_network_id', '=', fip.floating_network_id)
      .execute();
    let routerId: string | null = null;
    if (routers.length) {
      const hit = await trx
        .selectFrom('net_ports')
        .innerJoin('net_ip_allocations', 'net_ip_allocations.port_id', 'net_ports.id')
        .select('net_ports.device_id')
        .where('net_ports.device_owner', '=', 'network:router_interface')
        .where(
          'net_ports.device_id',
          'in',
          routers.map((r) => r.id),
        )
        .where('net_ip_allocations.subnet_id', '=', chosen.subnet_id)
        .orderBy('net_ports.created_at')
        .executeTakeFirst();
      routerId = hit?.device_id ?? null;
    }
    if (!routerId)
      throw nerr(
        404,
        'ExternalGatewayForFloatingIPNotFound',
        `External network ${fip.floating_network_id} is not reachable from subnet ${chosen.subnet_id}.  Therefore, cannot associate Port ${portId} with a Floating IP.`,
      );
    const other = await trx
      .selectFrom('net_floatingips')
      .select(['id', 'floating_ip_address'])
      .where('port_id', '=', port.id)
      .where('fixed_ip_address', '=', chosen.ip_address)
      .where('floating_network_id', '=', fip.floating_network_id)
      .where('id', '!=', fip.id)
      .executeTakeFirst();
    if (other)
      throw nerr(
        409,
        'FloatingIPPortAlreadyAssociated',
        `Cannot associate floating IP ${fip.floating_ip_address} (${fip.id}) with port ${port.id} using fixed IP ${chosen.ip_address}, as that fixed IP already has a floating IP on external network ${fip.floating_network_id}.`,
      );
    return { port_id: port.id, fixed_ip_address: chosen.ip_address, router_id: routerId, status: 'ACTIVE' };
  }

  async function create(actor: NeutronActor, body: Record<string, unknown>): Promise<View> {
    const a = parseBody(nx, actor, 'create', 'floatingip', SPEC, body, target(actor.projectId));
    const owner = ownerOf(actor, a);
    nx.enforce(actor, 'create_floatingip', target(owner));
    const netId = a.floating_network_id as string;
    const net = await db.selectFrom('net_networks').selectAll().where('id', '=', netId).executeTakeFirst();
    if (!net || !(net.external || actor.isAdmin || net.project_id === actor.projectId)) throw notFound.network(netId);
    if (!net.external) throw badFip(`Network ${netId} is not a valid external network`);
    const id = newId();
    await nx.write(async (trx) => {
      await checkQuota(trx, nx, owner, 'floatingip');
      const address = a.floating_ip_address as string | undefined;
      let fixedIps: { subnet_id?: string; ip_address?: string }[] | undefined;
      if (address) fixedIps = [{ ip_address: address, ...(a.subnet_id ? { subnet_id: a.subnet_id as string } : {}) }];
      else if (a.subnet_id) fixedIps = [{ subnet_id: a.subnet_id as string }];
      if (address && parseIp(address)!.version !== 4) throw badFip('Floating IPs must be IPv4 addresses');
      if (a.subnet_id) {
        const s = await trx
          .selectFrom('net_subnets')
          .select(['network_id', 'ip_version'])
          .where('id', '=', a.subnet_id as string)
          .executeTakeFirst();
        if (!s || s.network_id !== netId) throw badFip(`Subnet ${a.subnet_id} does not belong to network ${netId}`);
        if (Number(s.ip_version) !== 4) throw badFip(`Subnet ${a.subnet_id} is not an IPv4 subnet`);
      }
      const portId = await n.ports.insertPort(trx, {
        network: net,
        owner: '',
        deviceId: id,
        deviceOwner: 'network:floatingip',
        fixedIps,
        ipv4Only: true,
        securityGroups: [],
        portSecurity: false,
      });
      const ip = ((await n.ports.fixedIps([portId], trx)).get(portId) ?? []).find(
        (f) => parseIp(f.ip_address)!.version === 4,
      );
      if (!ip) throw badFip(`Network ${netId} has no IPv4 subnet to allocate a floating IP from`);
      const ts = nowTs();
      const base = {
        id,
        project_id: owner,
        floating_network_id: netId,
        floating_ip_address: ip.ip_address,
        floating_port_id: portId,
        port_id: null as string | null,
        fixed_ip_address: null as string | null,
        router_id: null as string | null,
        status: 'DOWN',
        description: (a.description as string) ?? '',
        revision_number: 0,
        created_at: ts,
        updated_at: ts,
      };
      if (a.port_id)
        Object.assign(
          base,
          await association(trx, actor, base, a.port_id as string, a.fixed_ip_address as string | null),
        );
      await trx.insertInto('net_floatingips').values(base).execute();
      if (Array.isArray(a.tags) && a.tags.length) await setTags(trx, 'floatingips', id, a.tags as string[]);
    });
    return show(actor, id);
  }

  async function update(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    nx.enforce(actor, 'update_floatingip', fipTarget(r));
    const a = parseBody(nx, actor, 'update', 'floatingip', SPEC, body, fipTarget(r));
    await nx.write(async (trx) => {
      const set: Record<string, unknown> = {};
      if (present(a, 'description')) set.description = a.description;
      const portId = present(a, 'port_id') ? (a.port_id as string | null) : r.port_id;
      if (present(a, 'port_id') || present(a, 'fixed_ip_address')) {
        if (portId)
          Object.assign(set, await association(trx, actor, r, portId, a.fixed_ip_address as string | null | undefined));
        else Object.assign(set, { port_id: null, fixed_ip_address: null, router_id: null, status: 'DOWN' });
      }
      await bump(trx, 'net_floatingips', id, set);
    });
    return show(actor, id);
  }

  async function remove(actor: NeutronActor, id: string): Promise<void> {
    const r = await row(actor, id);
    nx.enforce(actor, 'delete_floatingip', fipTarget(r));
    await nx.write(async (trx) => {
      await n.deletePortRows(trx, r.floating_port_id);
      await deleteTags(trx, id);
      await trx.deleteFrom('net_floatingips').where('id', '=', id).execute();
    });
  }

  return {
    singular: 'floatingip',
    plural: 'floatingips',
    path: 'floatingips',
    tagType: 'floatingips',
    table: 'net_floatingips',
    notFound: notFound.floatingip,
    known: KNOWN,
    async list(actor, hint) {
      let q = db.selectFrom('net_floatingips').selectAll();
      const ports = hint.get('port_id');
      if (ports?.length) q = q.where('port_id', 'in', ports);
      if (!actor.isAdmin) q = q.where('project_id', '=', actor.projectId);
      return views((await q.execute()).filter((r) => nx.allowed(actor, 'get_floatingip', fipTarget(r))));
    },
    show,
    create,
    update,
    remove,
    async updatable(actor, id) {
      const r = await row(actor, id);
      nx.enforce(actor, 'update_floatingip', fipTarget(r));
      return (await views([r]))[0];
    },
  };
}
