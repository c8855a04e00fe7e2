/**
 * Subnet pools: prefixes from which subnets are allocated by prefix length (`subnet_allocation`). A pool in use by
 * subnets cannot be deleted; its prefixes may only grow.
 */
import type { NetSubnetPoolRow } from '../../../core/store/schema.js';
import {
  type AttrMap,
  cidr,
  int,
  list,
  nullable,
  ownerOf,
  parseBody,
  str,
  tags as tagList,
  toBool,
} from '../attributes.js';
import { type NeutronActor, newId, nowTs, target, tf } from '../context.js';
import { badRequest, invalidAttr, nerr, notFound } from '../errors.js';
import { bits, type Cidr, formatCidr, parseCidr, within } from '../ipam.js';
import type { View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { subnetPoolView } from '../views.js';
import { bump, checkQuota, deleteTags, j, loadTags, present, type ResourceHandler, setTags } from './shared.js';

const SPEC: AttrMap = {
  name: { post: true, put: true, convert: str(255) },
  prefixes: { post: true, put: true, required: true, convert: list(cidr) },
  default_prefixlen: { post: true, put: true, convert: int(0, 128) },
  min_prefixlen: { post: true, put: true, convert: int(0, 128) },
  max_prefixlen: { post: true, put: true, convert: int(0, 128) },
  shared: { post: true, convert: toBool, policy: true },
  is_default: { post: true, put: true, convert: toBool, policy: true },
  default_quota: { post: true, put: true, convert: nullable(int(0, 2 ** 31 - 1)) },
  address_scope_id: {
    post: true,
    put: true,
    convert: (v, a) => {
      if (v !== null) throw invalidAttr(a, 'address scopes are not supported');
      return null;
    },
  },
  tags: { post: true, convert: tagList },
};

const KNOWN = new Set([
  'id',
  'name',
  'ip_version',
  'prefixes',
  'default_prefixlen',
  'min_prefixlen',
  'max_prefixlen',
  'shared',
  'is_default',
  'default_quota',
  'address_scope_id',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

const poolTarget = (r: NetSubnetPoolRow) => target(r.project_id, { id: r.id, shared: tf(r.shared) });

/** Sorted, de-duplicated prefixes with those contained in another dropped (Neutron compacts the list). */
function compact(prefixes: Cidr[]): Cidr[] {
  const sorted = [...prefixes].sort((a, b) =>
    a.network < b.network ? -1 : a.network > b.network ? 1 : a.prefix - b.prefix,
  );
  return sorted.filter((p, i) => !sorted.some((q, k) => k !== i && within(p, q) && (q.prefix < p.prefix || k < i)));
}

function bounds(version: 4 | 6, a: Record<string, unknown>, old?: NetSubnetPoolRow) {
  const max = (a.max_prefixlen as number | undefined) ?? (old ? Number(old.max_prefixlen) : bits(version));
  const min = (a.min_prefixlen as number | undefined) ?? (old ? Number(old.min_prefixlen) : version === 4 ? 8 : 64);
  const def = (a.default_prefixlen as number | undefined) ?? (old ? Number(old.default_prefixlen) : min);
  if (max > bits(version)) throw badRequest(`Illegal prefix bounds: max_prefixlen ${max} for IPv${version}`);
  if (!(min <= def && def <= max))
    throw nerr(
      400,
      'IllegalSubnetPoolPrefixBounds',
      `Illegal prefix bounds: prefix_type=default_prefixlen, prefixlen=${def}, base_prefix_type=min_prefixlen, base_prefixlen=${min}.`,
    );
  return { min, def, max };
}

export function subnetPoolsHandler(n: Neutron): ResourceHandler {
  const { nx } = n;
  const db = nx.db;
  const visible = (actor: NeutronActor, r: NetSubnetPoolRow) => nx.allowed(actor, 'get_subnetpool', poolTarget(r));

  async function views(rows: NetSubnetPoolRow[]) {
    const tags = await loadTags(
      db,
      'subnetpools',
      rows.map((r) => r.id),
    );
    return rows.map((r) => subnetPoolView(r, tags.get(r.id) ?? []));
  }
  async function row(actor: NeutronActor, id: string) {
    const r = await db.selectFrom('net_subnetpools').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !visible(actor, r)) throw notFound.subnetpool(id);
    return r;
  }
  const show = async (actor: NeutronActor, id: string) => (await views([await row(actor, id)]))[0];

  function parsePrefixes(list: string[]): { version: 4 | 6; prefixes: Cidr[] } {
    if (!list.length) throw badRequest('Invalid input for prefixes. Reason: at least one prefix is required.');
    const parsed = list.map((p) => parseCidr(p)!);
    const version = parsed[0].version;
    if (parsed.some((p) => p.version !== version))
      throw nerr(400, 'PrefixVersionMismatch', 'Cannot mix IPv4 and IPv6 prefixes in a subnet pool.');
    return { version, prefixes: compact(parsed) };
  }

  async function create(actor: NeutronActor, body: Record<string, unknown>): Promise<View> {
    const a = parseBody(nx, actor, 'create', 'subnetpool', SPEC, body, target(actor.projectId));
    const owner = ownerOf(actor, a);
    nx.enforce(actor, 'create_subnetpool', target(owner));
    const { version, prefixes } = parsePrefixes(a.prefixes as string[]);
    const b = bounds(version, a);
    const id = newId();
    const ts = nowTs();
    await nx.write(async (trx) => {
      await checkQuota(trx, nx, owner, 'subnetpool');
      await trx
        .insertInto('net_subnetpools')
        .values({
          id,
          name: (a.name as string) ?? '',
          project_id: owner,
          ip_version: version,
          prefixes: j(prefixes.map(formatCidr)),
          default_prefixlen: b.def,
          min_prefixlen: b.min,
          max_prefixlen: b.max,
          shared: a.shared ? 1 : 0,
          is_default: a.is_default ? 1 : 0,
          default_quota: (a.default_quota as number | null) ?? null,
          address_scope_id: null,
          description: (a.description as string) ?? '',
          revision_number: 0,
          created_at: ts,
          updated_at: ts,
        })
        .execute();
      if (Array.isArray(a.tags) && a.tags.length) await setTags(trx, 'subnetpools', id, a.tags as string[]);
    });
    return show(actor, id);
  }

  async function update(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View> {
    const r = await row(actor, id);
    nx.enforce(actor, 'update_subnetpool', poolTarget(r));
    const a = parseBody(nx, actor, 'update', 'subnetpool', SPEC, body, poolTarget(r));
    const version = Number(r.ip_version) as 4 | 6;
    const set: Record<string, unknown> = {};
    for (const k of ['name', 'description', 'default_quota'] as const) if (present(a, k)) set[k] = a[k];
    if (present(a, 'is_default')) set.is_default = a.is_default ? 1 : 0;
    if (present(a, 'prefixes')) {
      const next = parsePrefixes(a.prefixes as string[]);
      if (next.version !== version)
        throw nerr(400, 'PrefixVersionMismatch', 'Cannot mix IPv4 and IPv6 prefixes in a subnet pool.');
      const old = (JSON.parse(r.prefixes) as string[]).map((p) => parseCidr(p)!);
      if (!old.every((o) => next.prefixes.some((p) => within(o, p))))
        throw nerr(
          400,
          'IllegalSubnetPoolPrefixUpdate',
          'Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.',
        );
      set.prefixes = j(next.prefixes.map(formatCidr));
    }
    if (present(a, 'min_prefixlen') || present(a, 'max_prefixlen') || present(a, 'default_prefixlen')) {
      const b = bounds(version, a, r);
      Object.assign(set, { min_prefixlen: b.min, max_prefixlen: b.max, default_prefixlen: b.def });
    }
    await nx.write((trx) => bump(trx, 'net_subnetpools', id, set));
    return show(actor, id);
  }

  async function remove(actor: NeutronActor, id: string): Promise<void> {
    const r = await row(actor, id);
    nx.enforce(actor, 'delete_subnetpool', poolTarget(r));
    await nx.write(async (trx) => {
      const used = await trx
        .selectFrom('net_subnetpool_allocations')
        .select('subnet_id')
        .where('subnetpool_id', '=', id)
        .executeTakeFirst();
      if (used)
        throw nerr(
          409,
          'SubnetPoolInUse',
          `Subnet pool ${id} could not be deleted: Subnet pool is in use by one or more subnets.`,
        );
      await deleteTags(trx, id);
      await trx.deleteFrom('net_subnetpools').where('id', '=', id).execute();
    });
  }

  return {
    singular: 'subnetpool',
    plural: 'subnetpools',
    path: 'subnetpools',
    tagType: 'subnetpools',
    table: 'net_subnetpools',
    notFound: notFound.subnetpool,
    known: KNOWN,
    async list(actor) {
      let q = db.selectFrom('net_subnetpools').selectAll();
      if (!actor.isAdmin) q = q.where((eb) => eb.or([eb('project_id', '=', actor.projectId), eb('shared', '=', 1)]));
      return views((await q.execute()).filter((r) => visible(actor, r)));
    },
    show,
    create,
    update,
    remove,
    async updatable(actor, id) {
      const r = await row(actor, id);
      nx.enforce(actor, 'update_subnetpool', poolTarget(r));
      return (await views([r]))[0];
    },
  };
}
