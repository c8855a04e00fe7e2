/**
 * Security groups and their rules. A project's `default` group is created on its first use of the API (one per
 * project, also under concurrency: `net_default_security_groups` is keyed by project); it allows all egress and
 * ingress from its own members. New groups get the two egress rules. Identical rules collide on their fingerprint
 * (409 SecurityGroupRuleExists).
 */
import type { NetSecurityGroupRow, NetSecurityGroupRuleRow } from '../../../core/store/schema.js';
import {
  type AttrMap,
  nullable,
  oneOf,
  ownerOf,
  parseBody,
  str,
  tags as tagList,
  toBool,
  uuid,
} from '../attributes.js';
import { type NeutronActor, newId, nowTs, type Trx, target } from '../context.js';
import { badRequest, invalidAttr, nerr, notFound } from '../errors.js';
import { formatCidr, parseCidr } from '../ipam.js';
import type { View } from '../list-query.js';
import type { Neutron } from '../service.js';
import { ruleView, securityGroupView } from '../views.js';
import { bump, checkQuota, chunks, deleteTags, loadTags, present, type ResourceHandler, setTags } from './shared.js';

/** Neutron's protocol names and their IP protocol numbers. */
export const IP_PROTOCOLS: Record<string, number> = {
  ah: 51,
  dccp: 33,
  egp: 8,
  esp: 50,
  gre: 47,
  hopopt: 0,
  icmp: 1,
  igmp: 2,
  ip: 0,
  ipip: 4,
  'ipv6-encap': 41,
  'ipv6-frag': 44,
  'ipv6-icmp': 58,
  icmpv6: 58,
  'ipv6-nonxt': 59,
  'ipv6-opts': 60,
  'ipv6-route': 43,
  ospf: 89,
  pgm: 113,
  rsvp: 46,
  sctp: 132,
  tcp: 6,
  udp: 17,
  udplite: 136,
  vrrp: 112,
};
const PORT_PROTOCOLS = new Set([6, 17, 132, 33, 136]);
const ICMP_PROTOCOLS = new Set([1, 58]);

const GROUP_SPEC: AttrMap = {
  name: { post: true, put: true, convert: str(255) },
  stateful: { post: true, put: true, convert: toBool },
  tags: { post: true, convert: tagList },
};

const port = (v: unknown) => {
  if (v === null) return null;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535)
    throw badRequest(`Invalid value for port ${String(v)}`);
  return n;
};

const RULE_SPEC: AttrMap = {
  security_group_id: { post: true, required: true, convert: uuid },
  direction: { post: true, required: true, convert: oneOf(['ingress', 'egress']) },
  ethertype: { post: true, convert: oneOf(['IPv4', 'IPv6']) },
  protocol: {
    post: true,
    convert: (v, a) => {
      if (v === null) return null;
      const s = typeof v === 'number' ? String(v) : v;
      if (typeof s !== 'string') throw invalidAttr(a, `'${JSON.stringify(v)}' is not a valid protocol`);
      const l = s.toLowerCase();
      if (l === 'any') return null;
      if (l in IP_PROTOCOLS || (/^\d{1,3}$/.test(l) && Number(l) <= 255)) return l;
      throw nerr(
        400,
        'SecurityGroupRuleInvalidProtocol',
        `Security group rule protocol ${s} not supported. Only protocol values [${Object.keys(IP_PROTOCOLS)
          .map((p) => `'${p}'`)
          .join(', ')}, None] and integer representations [0 to 255] are supported.`,
      );
    },
  },
  port_range_min: { post: true, convert: port },
  port_range_max: { post: true, convert: port },
  remote_ip_prefix: {
    post: true,
    convert: nullable((v, a) => {
      const c = parseCidr(v);
      if (!c) throw invalidAttr(a, `'${String(v)}' is not a valid IP subnet`);
      return formatCidr(c);
    }),
  },
  remote_group_id: { post: true, convert: nullable(uuid) },
  remote_address_group_id: {
    post: true,
    convert: (v, a) => {
      if (v !== null) throw invalidAttr(a, 'address groups are not supported');
      return null;
    },
  },
};

const GROUP_KNOWN = new Set([
  'id',
  'name',
  'stateful',
  'shared',
  'security_group_rules',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);
const RULE_KNOWN = new Set([
  'id',
  'security_group_id',
  'direction',
  'ethertype',
  'protocol',
  'port_range_min',
  'port_range_max',
  'remote_ip_prefix',
  'normalized_cidr',
  'remote_group_id',
  'remote_address_group_id',
  'project_id',
  'description',
  'revision_number',
  'created_at',
  'updated_at',
]);

const protoNumber = (p: string | null) => (p === null ? null : p in IP_PROTOCOLS ? IP_PROTOCOLS[p] : Number(p));

interface RuleInput {
  direction: string;
  ethertype: string;
  protocol: string | null;
  port_range_min: number | null;
  port_range_max: number | null;
  remote_ip_prefix: string | null;
  remote_group_id: string | null;
  description?: string;
}

/** Neutron's rule semantics: port ranges only for port protocols, ICMP type/code, prefix vs ethertype. */
export function validateRule(r: RuleInput): void {
  const num = protoNumber(r.protocol);
  const { port_range_min: min, port_range_max: max } = r;
  if (r.remote_ip_prefix && r.remote_group_id)
    throw nerr(
      400,
      'SecurityGroupRemoteGroupAndRemoteIpPrefix',
      'Only remote_ip_prefix or remote_group_id may be provided.',
    );
  if (r.remote_ip_prefix) {
    const c = parseCidr(r.remote_ip_prefix)!;
    if (`IPv${c.version}` !== r.ethertype)
      throw nerr(
        400,
        'SecurityGroupRuleParameterConflict',
        `Conflicting value ethertype ${r.ethertype} for CIDR ${r.remote_ip_prefix}`,
      );
  }
  if (r.ethertype === 'IPv4' && num === 58)
    throw nerr(400, 'SecurityGroupEthertypeConflictWithProtocol', `Invalid ethertype IPv4 for protocol ${r.protocol}.`);
  if (min === null && max === null) return;
  if (num === null)
    throw nerr(400, 'SecurityGroupProtocolRequiredWithPorts', 'Must also specify protocol if port range is given.');
  if (PORT_PROTOCOLS.has(num)) {
    if (min === 0 || max === 0) throw nerr(400, 'SecurityGroupInvalidPortValue', 'Invalid value for port 0');
    if (min === null || max === null || min > max)
      throw nerr(
        400,
        'SecurityGroupInvalidPortRange',
        'For TCP/UDP protocols, port_range_min must be <= port_range_max',
      );
    return;
  }
  if (ICMP_PROTOCOLS.has(num)) {
    for (const [field, attr, v] of [
      ['type', 'port_range_min', min],
      ['code', 'port_range_max', max],
    ] as const)
      if (v !== null && v > 255)
        throw nerr(
          400,
          'SecurityGroupInvalidIcmpValue',
          `Invalid value for ICMP ${field} (${attr}): ${v}. It must be 0 to 255.`,
        );
    if (min === null && max !== null)
      throw nerr(
        400,
        'SecurityGroupMissingIcmpType',
        `ICMP code (port-range-max) ${max} is provided but ICMP type (port-range-min) is missing.`,
      );
    return;
  }
  throw nerr(
    400,
    'SecurityGroupInvalidProtoForPortRange',
    `Invalid protocol ${r.protocol} for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP.`,
  );
}

/** Normalised content: equal fingerprints mean the same rule (0.0.0.0/0 and ::/0 mean "anywhere", like null). */
export function fingerprint(r: RuleInput): string {
  const prefix = r.remote_ip_prefix === '0.0.0.0/0' || r.remote_ip_prefix === '::/0' ? '' : (r.remote_ip_prefix ?? '');
  return [
    r.direction,
    r.ethertype,
    protoNumber(r.protocol) ?? '',
    r.port_range_min ?? '',
    r.port_range_max ?? '',
    prefix,
    r.remote_group_id ?? '',
  ].join('|');
}

export function securityGroupsHandler(n: Neutron): {
  groups: ResourceHandler & { ensureDefault(projectId: string): Promise<string | undefined> };
  rules: ResourceHandler;
} {
  const { nx } = n;
  const db = nx.db;
  const groupTarget = (g: { id: string; project_id: string }) => target(g.project_id, { id: g.id });

  async function insertRule(trx: Trx, sg: { id: string; project_id: string }, r: RuleInput): Promise<string> {
    const id = newId();
    const ts = nowTs();
    const res = await trx
      .insertInto('net_security_group_rules')
      .values({
        id,
        security_group_id: sg.id,
        project_id: sg.project_id,
        direction: r.direction,
        ethertype: r.ethertype,
        protocol: r.protocol,
        port_range_min: r.port_range_min,
        port_range_max: r.port_range_max,
        remote_ip_prefix: r.remote_ip_prefix,
        remote_group_id: r.remote_group_id,
        remote_address_group_id: null,
        fingerprint: fingerprint(r),
        description: r.description ?? '',
        revision_number: 0,
        created_at: ts,
        updated_at: ts,
      })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    if (Number(res.numInsertedOrUpdatedRows ?? 0n) === 0) {
      const dup = await trx
        .selectFrom('net_security_group_rules')
        .select('id')
        .where('security_group_id', '=', sg.id)
        .where('fingerprint', '=', fingerprint(r))
        .executeTakeFirst();
      throw nerr(
        409,
        'SecurityGroupRuleExists',
        `Security group rule already exists. Rule id is ${dup?.id ?? 'unknown'}.`,
      );
    }
    return id;
  }

  const egress = (ethertype: string): RuleInput => ({
    direction: 'egress',
    ethertype,
    protocol: null,
    port_range_min: null,
    port_range_max: null,
    remote_ip_prefix: null,
    remote_group_id: null,
  });

  async function insertGroup(
    trx: Trx,
    owner: string,
    name: string,
    description: string,
    stateful: boolean,
    isDefault: boolean,
  ) {
    const id = newId();
    const ts = nowTs();
    await trx
      .insertInto('net_security_groups')
      .values({
        id,
        name,
        project_id: owner,
        stateful: stateful ? 1 : 0,
        shared: 0,
        description,
        revision_number: 0,
        created_at: ts,
        updated_at: ts,
      })
      .execute();
    const sg = { id, project_id: owner };
    for (const e of ['IPv4', 'IPv6']) {
      await insertRule(trx, sg, egress(e));
      if (isDefault) await insertRule(trx, sg, { ...egress(e), direction: 'ingress', remote_group_id: id });
    }
    return id;
  }

  /** The project's default group id, created (once) when missing. */
  async function ensureDefault(projectId: string): Promise<string | undefined> {
    if (!projectId) return undefined;
    const read = async () =>
      (
        await db
          .selectFrom('net_default_security_groups')
          .select('security_group_id')
          .where('project_id', '=', projectId)
          .executeTakeFirst()
      )?.security_group_id;
    const have = await read();
    if (have) return have;
    const made = await nx.write(async (trx) => {
      const id = newId();
      const claimed = await trx
        .insertInto('net_default_security_groups')
        .values({ project_id: projectId, security_group_id: id })
        .onConflict((oc) => oc.column('project_id').doNothing())
        .executeTakeFirst();
      if (Number(claimed.numInsertedOrUpdatedRows ?? 0n) === 0) return null;
      const ts = nowTs();
      await trx
        .insertInto('net_security_groups')
        .values({
          id,
          name: 'default',
          project_id: projectId,
          stateful: 1,
          shared: 0,
          description: 'Default security group',
          revision_number: 0,
          created_at: ts,
          updated_at: ts,
        })
        .execute();
      const sg = { id, project_id: projectId };
      for (const e of ['IPv4', 'IPv6']) {
        await insertRule(trx, sg, egress(e));
        await insertRule(trx, sg, { ...egress(e), direction: 'ingress', remote_group_id: id });
      }
      return id;
    });
    return made ?? (await read());
  }

  async function rulesOf(ids: string[]): Promise<Map<string, View[]>> {
    const out = new Map<string, View[]>();
    for (const chunk of chunks(ids)) {
      const rows = await db
        .selectFrom('net_security_group_rules')
        .selectAll()
        .where('security_group_id', 'in', chunk)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      for (const r of rows) out.set(r.security_group_id, [...(out.get(r.security_group_id) ?? []), ruleView(r)]);
    }
    return out;
  }

  async function groupViews(rows: NetSecurityGroupRow[]) {
    const ids = rows.map((r) => r.id);
    const [rules, tags] = await Promise.all([rulesOf(ids), loadTags(db, 'security_groups', ids)]);
    return rows.map((r) => securityGroupView(r, rules.get(r.id) ?? [], tags.get(r.id) ?? []));
  }

  const visibleGroup = (actor: NeutronActor, g: NetSecurityGroupRow) =>
    !!g.shared || nx.allowed(actor, 'get_security_group', groupTarget(g));

  async function groupRow(actor: NeutronActor, id: string) {
    const g = await db.selectFrom('net_security_groups').selectAll().where('id', '=', id).executeTakeFirst();
    if (!g || !visibleGroup(actor, g)) throw notFound.security_group(id);
    return g;
  }

  const showGroup = async (actor: NeutronActor, id: string) => (await groupViews([await groupRow(actor, id)]))[0];

  async function isDefaultGroup(id: string, q: Trx | typeof db = db) {
    return !!(await q
      .selectFrom('net_default_security_groups')
      .select('project_id')
      .where('security_group_id', '=', id)
      .executeTakeFirst());
  }

  const groups: ResourceHandler & { ensureDefault(projectId: string): Promise<string | undefined> } = {
    singular: 'security_group',
    plural: 'security_groups',
    path: 'security-groups',
    tagType: 'security_groups',
    table: 'net_security_groups',
    notFound: notFound.security_group,
    known: GROUP_KNOWN,
    ensureDefault,
    async list(actor, hint) {
      await ensureDefault(actor.projectId);
      let q = db.selectFrom('net_security_groups').selectAll();
      const ids = hint.get('id');
      if (ids?.length) q = q.where('id', 'in', ids);
      if (!actor.isAdmin) q = q.where((eb) => eb.or([eb('project_id', '=', actor.projectId), eb('shared', '=', 1)]));
      return groupViews((await q.execute()).filter((g) => visibleGroup(actor, g)));
    },
    async show(actor, id) {
      await ensureDefault(actor.projectId);
      return showGroup(actor, id);
    },
    async create(actor, body) {
      const a = parseBody(nx, actor, 'create', 'security_group', GROUP_SPEC, body, target(actor.projectId));
      const owner = ownerOf(actor, a);
      nx.enforce(actor, 'create_security_group', target(owner));
      await ensureDefault(owner);
      if (a.name === 'default')
        throw nerr(409, 'SecurityGroupDefaultAlreadyExists', 'Default security group already exists.');
      const id = await nx.write(async (trx) => {
        await checkQuota(trx, nx, owner, 'security_group');
        const id = await insertGroup(
          trx,
          owner,
          (a.name as string) ?? '',
          (a.description as string) ?? '',
          a.stateful !== false,
          false,
        );
        if (Array.isArray(a.tags) && a.tags.length) await setTags(trx, 'security_groups', id, a.tags as string[]);
        return id;
      });
      return showGroup(actor, id);
    },
    async update(actor, id, body) {
      const g = await groupRow(actor, id);
      nx.enforce(actor, 'update_security_group', groupTarget(g));
      const a = parseBody(nx, actor, 'update', 'security_group', GROUP_SPEC, body, groupTarget(g));
      if (present(a, 'name') && a.name !== g.name && (await isDefaultGroup(id)))
        throw nerr(409, 'SecurityGroupCannotUpdateDefault', 'Updating default security group not allowed.');
      const set: Record<string, unknown> = {};
      for (const k of ['name', 'description'] as const) if (present(a, k)) set[k] = a[k];
      if (present(a, 'stateful')) set.stateful = a.stateful ? 1 : 0;
      await nx.write(async (trx) => {
        if (present(a, 'stateful') && Boolean(g.stateful) !== a.stateful) {
          const used = await trx
            .selectFrom('net_port_security_groups')
            .select('port_id')
            .where('security_group_id', '=', id)
            .executeTakeFirst();
          if (used) throw nerr(409, 'SecurityGroupInUse', `Security Group ${id} in use.`);
        }
        await bump(trx, 'net_security_groups', id, set);
      });
      return showGroup(actor, id);
    },
    async remove(actor, id) {
      const g = await groupRow(actor, id);
      nx.enforce(actor, 'delete_security_group', groupTarget(g));
      if (!actor.isAdmin && (await isDefaultGroup(id)))
        throw nerr(409, 'SecurityGroupCannotRemoveDefault', 'Removing default security group not allowed.');
      await nx.write(async (trx) => {
        const used = await trx
          .selectFrom('net_port_security_groups')
          .select('port_id')
          .where('security_group_id', '=', id)
          .executeTakeFirst();
        if (used) throw nerr(409, 'SecurityGroupInUse', `Security Group ${id} in use.`);
        // Rules elsewhere that name this group as their remote go with it (Neutron's cascade).
        await trx
          .deleteFrom('net_security_group_rules')
          .where((eb) => eb.or([eb('security_group_id', '=', id), eb('remote_group_id', '=', id)]))
          .execute();
        await trx.deleteFrom('net_default_security_groups').where('security_group_id', '=', id).execute();
        await deleteTags(trx, id);
        await trx.deleteFrom('net_security_groups').where('id', '=', id).execute();
      });
    },
    async updatable(actor, id) {
      const g = await groupRow(actor, id);
      nx.enforce(actor, 'update_security_group', groupTarget(g));
      return (await groupViews([g]))[0];
    },
  };

  const ruleTarget = (r: NetSecurityGroupRuleRow) =>
    target(r.project_id, { id: r.id, security_group_id: r.security_group_id });

  async function ruleRow(actor: NeutronActor, id: string) {
    const r = await db.selectFrom('net_security_group_rules').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r || !nx.allowed(actor, 'get_security_group_rule', ruleTarget(r))) throw notFound.security_group_rule(id);
    return r;
  }

  const rules: ResourceHandler = {
    singular: 'security_group_rule',
    plural: 'security_group_rules',
    path: 'security-group-rules',
    notFound: notFound.security_group_rule,
    known: RULE_KNOWN,
    async list(actor, hint) {
      let q = db.selectFrom('net_security_group_rules').selectAll();
      const sg = hint.get('security_group_id');
      if (sg?.length) q = q.where('security_group_id', 'in', sg);
      if (!actor.isAdmin) q = q.where('project_id', '=', actor.projectId);
      return (await q.execute())
        .filter((r) => nx.allowed(actor, 'get_security_group_rule', ruleTarget(r)))
        .map(ruleView);
    },
    async show(actor, id) {
      return ruleView(await ruleRow(actor, id));
    },
    async create(actor, body) {
      const a = parseBody(nx, actor, 'create', 'security_group_rule', RULE_SPEC, body, target(actor.projectId));
      ownerOf(actor, a);
      const sg = await groupRow(actor, a.security_group_id as string);
      nx.enforce(actor, 'create_security_group_rule', groupTarget(sg));
      const input: RuleInput = {
        direction: a.direction as string,
        ethertype: (a.ethertype as string) ?? 'IPv4',
        protocol: (a.protocol as string | null) ?? null,
        port_range_min: (a.port_range_min as number | null) ?? null,
        port_range_max: (a.port_range_max as number | null) ?? null,
        remote_ip_prefix: (a.remote_ip_prefix as string | null) ?? null,
        remote_group_id: (a.remote_group_id as string | null) ?? null,
        description: (a.description as string) ?? '',
      };
      validateRule(input);
      if (input.remote_group_id) await groupRow(actor, input.remote_group_id);
      const id = await nx.write(async (trx) => {
        await checkQuota(trx, nx, sg.project_id, 'security_group_rule');
        const id = await insertRule(trx, sg, input);
        await bump(trx, 'net_security_groups', sg.id);
        return id;
      });
      return ruleView(await ruleRow(actor, id));
    },
    async remove(actor, id) {
      const r = await ruleRow(actor, id);
      nx.enforce(actor, 'delete_security_group_rule', ruleTarget(r));
      await nx.write(async (trx) => {
        await trx.deleteFrom('net_security_group_rules').where('id', '=', id).execute();
        await bump(trx, 'net_security_groups', r.security_group_id);
      });
    },
  };

  return { groups, rules };
}
