/**
 * Networks: one L2 segment each. Visible to their project, and to everyone when `shared` or `router:external`.
 * Deleting one that still has ports (other than `network:dhcp`) is 409 NetworkInUse.
 */
import type { NetNetworkRow } from '../../../core/store/schema.js';
import { type AttrMap, int, nullable, oneOf, ownerOf, parseBody, str, tags as tagList, toBool } from '../attributes.js';
import { type NeutronActor, newId, nowTs, type Trx, target, tf } from '../context.js';
import { nerr, notFound } from '../errors.js';
import type { View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { networkView } from '../views.js';
import { bump, checkQuota, deleteTags, loadTags, present, type ResourceHandler, setTags } from './shared.js';

const SPEC: AttrMap = {
  name: { post: true, put: true, convert: str(255) },
  admin_state_up: { post: true, put: true, convert: toBool },
  shared: { post: true, put: true, convert: toBool, policy: true },
  'router:external': { post: true, put: true, convert: toBool, policy: true },
  mtu: { post: true, put: true, convert: int(68, 9216) },
  port_security_enabled: { post: true, put: true, convert: toBool },
  'provider:network_type': { post: true, convert: oneOf(['local', 'flat', 'vlan', 'vxlan']), policy: true },
  'provider:physical_network': { post: true, convert: nullable(str(64)), policy: true },
  'provider:segmentation_id': { post: true, convert: nullable(int(1, 16777215)), policy: true },
  dns_domain: { post: true, put: true, convert: str(255) },
  tags: { post: true, convert: tagList },
};

const KNOWN = new Set([
  'id',
  'name',
  'admin_state_up',
  'status',
  'subnets',
  'shared',
  'router:external',
  'mtu',
  'port_security_enabled',
  'availability_zone_hints',
  'availability_zones',
  'ipv4_address_scope',
  'ipv6_address_scope',
  'l2_adjacency',
  'is_default',
  'dns_domain',
  'provider:network_type',
  'provider:physical_network',
  'provider:segmentation_id',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

const PROVIDER = ['provider:network_type', 'provider:physical_network', 'provider:segmentation_id'];

/** Policy target of a network (shared/external as 'True'/'False', as the rules compare them). */
export const networkTarget = (row: NetNetworkRow) =>
  target(row.project_id, { id: row.id, shared: tf(row.shared), 'router:external': tf(row.external) });

export function networksHandler(n: Neutron): ResourceHandler & {
  row(actor: NeutronActor, id: string, db?: Trx): Promise<NetNetworkRow>;
  views(actor: NeutronActor, rows: NetNetworkRow[]): Promise<View[]>;
  ensureDefault(projectId: string): Promise<View>;
} {
  const { nx } = n;
  const db = nx.db;

  const visible = (actor: NeutronActor, row: NetNetworkRow) => nx.allowed(actor, 'get_network', networkTarget(row));

  async function views(actor: NeutronActor, rows: NetNetworkRow[]): Promise<View[]> {
    const ids = rows.map((r) => r.id);
    const subnets = new Map<string, string[]>();
    if (ids.length) {
      const subs = await db
        .selectFrom('net_subnets')
        .select(['id', 'network_id'])
        .where('network_id', 'in', ids)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      for (const s of subs) subnets.set(s.network_id, [...(subnets.get(s.network_id) ?? []), s.id]);
    }
    const tags = await loadTags(db, 'networks', ids);
    const hide = nx.allowed(actor, 'get_network:provider:network_type', target(actor.projectId)) ? [] : PROVIDER;
    return rows.map((r) => networkView(r, subnets.get(r.id) ?? [], tags.get(r.id) ?? [], hide));
  }

  async function row(actor: NeutronActor, id: string, q: Trx | typeof db = db): Promise<NetNetworkRow> {
    const r = await q.selectFrom('net_networks').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !visible(actor, r)) throw notFound.network(id);
    return r;
  }

  async function show(actor: NeutronActor, id: string): Promise<View> {
    return (await views(actor, [await row(actor, id)]))[0];
  }

  async function insert(trx: Trx, owner: string, a: Record<string, unknown>): Promise<string> {
    const id = newId();
    const ts = nowTs();
    const type = (a['provider:network_type'] as string | undefined) ?? 'local';
    if (type === 'vlan' && a['provider:segmentation_id'] != null && (a['provider:segmentation_id'] as number) > 4094)
      throw nerr(
        400,
        'InvalidInput',
        'Invalid input for operation: segmentation_id requires 1 <= id <= 4094 for vlan.',
      );
    await trx
      .insertInto('net_networks')
      .values({
        id,
        name: (a.name as string) ?? '',
        project_id: owner,
        admin_state_up: a.admin_state_up === false ? 0 : 1,
        status: 'ACTIVE',
        shared: a.shared ? 1 : 0,
        external: a['router:external'] ? 1 : 0,
        mtu: (a.mtu as number) ?? nx.settings.mtu,
        port_security_enabled: a.port_security_enabled === false ? 0 : 1,
        network_type: type,
        physical_network: (a['provider:physical_network'] as string | null) ?? null,
        segmentation_id: (a['provider:segmentation_id'] as number | null) ?? null,
        dns_domain: (a.dns_domain as string | undefined) ?? null,
        description: (a.description as string) ?? '',
        revision_number: 0,
        created_at: ts,
        updated_at: ts,
      })
      .execute();
    if (Array.isArray(a.tags) && a.tags.length) await setTags(trx, 'networks', id, a.tags as string[]);
    return id;
  }

  async function create(actor: NeutronActor, body: Record<string, unknown>): Promise<View> {
    const a = parseBody(nx, actor, 'create', 'network', SPEC, body, target(actor.projectId));
    const owner = ownerOf(actor, a);
    nx.enforce(actor, 'create_network', target(owner));
    // Neutron creates the project's default security group when the project first uses the network API.
    await n.ensureDefaultSecurityGroup(owner);
    const id = await nx.write(async (trx) => {
      await checkQuota(trx, nx, owner, 'network');
      return insert(trx, owner, a);
    });
    return show(actor, id);
  }

  async function update(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    nx.enforce(actor, 'update_network', networkTarget(r));
    const a = parseBody(nx, actor, 'update', 'network', SPEC, body, networkTarget(r));
    const set: Record<string, unknown> = {};
    if (present(a, 'name')) set.name = a.name;
    if (present(a, 'description')) set.description = a.description;
    if (present(a, 'admin_state_up')) set.admin_state_up = a.admin_state_up ? 1 : 0;
    if (present(a, 'shared')) set.shared = a.shared ? 1 : 0;
    if (present(a, 'router:external')) set.external = a['router:external'] ? 1 : 0;
    if (present(a, 'mtu')) set.mtu = a.mtu;
    if (present(a, 'port_security_enabled')) set.port_security_enabled = a.port_security_enabled ? 1 : 0;
    if (present(a, 'dns_domain')) set.dns_domain = a.dns_domain;
    await nx.write(async (trx) => {
      if (set.external === 0 && r.external) {
        const inUse = await trx
          .selectFrom('net_ports')
          .select('id')
          .where('network_id', '=', id)
          .where('device_owner', 'in', ['network:router_gateway', 'network:floatingip'])
          .executeTakeFirst();
        if (inUse)
          throw nerr(
            409,
            'ExternalNetworkInUse',
            `External network ${id} cannot be updated to non-external, since it has existing gateway ports.`,
          );
      }
      if (set.shared === 0 && r.shared) {
        const foreign = await trx
          .selectFrom('net_ports')
          .select('id')
          .where('network_id', '=', id)
          .where('project_id', '!=', r.project_id)
          .where('project_id', '!=', '')
          .executeTakeFirst();
        if (foreign)
          throw nerr(
            409,
            'InvalidSharedSetting',
            `Unable to reconfigure sharing settings for network ${id}. Multiple tenants are using it.`,
          );
      }
      await bump(trx, 'net_networks', id, set);
    });
    return show(actor, id);
  }

  async function remove(actor: NeutronActor, id: string): Promise<void> {
    const r = await row(actor, id);
    nx.enforce(actor, 'delete_network', networkTarget(r));
    await nx.write(async (trx) => {
      // Port creation holds a share lock on the network row: no port slips in between the check and the delete.
      if (nx.postgres) await trx.selectFrom('net_networks').select('id').where('id', '=', id).forUpdate().execute();
      const ports = await trx
        .selectFrom('net_ports')
        .select(['id', 'device_owner'])
        .where('network_id', '=', id)
        .execute();
      if (ports.some((p) => p.device_owner !== 'network:dhcp'))
        throw nerr(
          409,
          'NetworkInUse',
          `Unable to complete operation on network ${id}. There are one or more ports still in use on the network.`,
        );
      for (const p of ports) await n.deletePortRows(trx, p.id);
      const subnets = await trx.selectFrom('net_subnets').select('id').where('network_id', '=', id).execute();
      for (const s of subnets) await n.deleteSubnetRows(trx, s.id);
      await deleteTags(trx, id);
      await trx.deleteFrom('net_networks').where('id', '=', id).execute();
    });
  }

  async function list(actor: NeutronActor, hint: Map<string, string[]>): Promise<View[]> {
    let q = db.selectFrom('net_networks').selectAll();
    const ids = hint.get('id');
    if (ids?.length) q = q.where('id', 'in', ids);
    const names = hint.get('name');
    if (names?.length) q = q.where('name', 'in', names);
    if (!actor.isAdmin)
      q = q.where((eb) =>
        eb.or([eb('project_id', '=', actor.projectId), eb('shared', '=', 1), eb('external', '=', 1)]),
      );
    const rows = (await q.execute()).filter((r) => visible(actor, r));
    return views(actor, rows);
  }

  /** The project's default network (`default`, 10.0.0.0/24 unless configured), created once even under races. */
  async function ensureDefault(projectId: string): Promise<View> {
    const cfg = nx.settings.defaultNetwork;
    const actor: NeutronActor = { projectId, isAdmin: true };
    const key = `network_default:${projectId}`;
    const existing = async () => {
      const m = await db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst();
      if (!m) return null;
      const r = await db.selectFrom('net_networks').selectAll().where('id', '=', m.value).executeTakeFirst();
      return { marker: m.value, row: r ?? null };
    };
    const found = await existing();
    if (found?.row) return (await views(actor, [found.row]))[0];
    if (!cfg.enabled)
      throw nerr(
        404,
        'NetworkNotFound',
        `Project ${projectId} has no default network (default networks are disabled).`,
      );
    await n.ensureDefaultSecurityGroup(projectId);
    const netId = await nx.write(async (trx) => {
      // The meta row is the claim: whoever inserts it (or swaps a stale one) creates the network, in the same
      // transaction; everyone else reads the winner's network.
      const id = newId();
      if (found) {
        const swapped = await trx
          .updateTable('meta')
          .set({ value: id })
          .where('key', '=', key)
          .where('value', '=', found.marker)
          .executeTakeFirst();
        if (Number(swapped.numUpdatedRows) === 0) return null;
      } else {
        const claimed = await trx
          .insertInto('meta')
          .values({ key, value: id })
          .onConflict((oc) => oc.column('key').doNothing())
          .executeTakeFirst();
        if (Number(claimed.numInsertedOrUpdatedRows ?? 0n) === 0) return null;
      }
      const ts = nowTs();
      await trx
        .insertInto('net_networks')
        .values({
          id,
          name: cfg.name,
          project_id: projectId,
          admin_state_up: 1,
          status: 'ACTIVE',
          shared: 0,
          external: 0,
          mtu: nx.settings.mtu,
          port_security_enabled: 1,
          network_type: 'local',
          physical_network: null,
          segmentation_id: null,
          dns_domain: null,
          description: 'Default network created by Krater',
          revision_number: 0,
          created_at: ts,
          updated_at: ts,
        })
        .execute();
      await n.insertSubnet(trx, actor, {
        network: { id, project_id: projectId },
        owner: projectId,
        attrs: { name: `${cfg.name}-subnet`, ip_version: 4, cidr: cfg.cidr },
      });
      return id;
    });
    if (netId === null) {
      const again = await existing();
      if (!again?.row) throw nerr(409, 'Conflict', 'The default network is being created concurrently; retry.');
      return (await views(actor, [again.row]))[0];
    }
    return show(actor, netId);
  }

  return {
    singular: 'network',
    plural: 'networks',
    path: 'networks',
    tagType: 'networks',
    table: 'net_networks',
    notFound: notFound.network,
    known: KNOWN,
    list,
    show,
    create,
    update,
    remove,
    row,
    views,
    ensureDefault,
    async updatable(actor, id) {
      const r = await row(actor, id);
      nx.enforce(actor, 'update_network', networkTarget(r));
      return (await views(actor, [r]))[0];
    },
  };
}
