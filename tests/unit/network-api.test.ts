/**
 * The in-process Neutron API the Zun facade uses: same views and errors as HTTP, `onChange` and the
 * `network_revision` marker after every committed write, the race-safe default network and security group.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { resolveConfig } from '../../src/core/config/config.js';
import { ApiError } from '../../src/core/http/errors.js';
import { PolicyEngine } from '../../src/core/policy/engine.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { createNetworkService, NETWORK_REVISION_KEY, type NeutronApi } from '../../src/services/network/index.js';
import { applyFilters, paginate, parseListQuery, sortViews } from '../../src/services/network/list-query.js';
import { fingerprint, validateRule } from '../../src/services/network/resources/security-groups.js';

const admin = { projectId: 'p-admin', isAdmin: true };
const alice = { projectId: 'p-alice', userId: 'u-alice', isAdmin: false };
const bob = { projectId: 'p-bob', userId: 'u-bob', isAdmin: false };

async function rejects(p: Promise<unknown>, status: number, kind: string): Promise<ApiError> {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err, `expected ${status} ${kind}`).toBeInstanceOf(ApiError);
  expect([err.status, err.kind]).toEqual([status, kind]);
  return err;
}

describe('NeutronApi (in-process)', () => {
  let store: Store;
  let api: NeutronApi;
  let changes = 0;
  const revision = async () =>
    (await store.db.selectFrom('meta').select('value').where('key', '=', NETWORK_REVISION_KEY).executeTakeFirst())
      ?.value;

  beforeAll(async () => {
    store = await openStore('sqlite::memory:');
    const config = resolveConfig({ dataDir: '/tmp/krater-unit-network', cloudsYaml: false });
    api = createNetworkService(config, store, new PolicyEngine(), { onChange: () => changes++ }).api;
  });
  afterAll(async () => {
    await store.close();
  });

  test('default network: created once under concurrent first use, with a subnet; recreated when deleted', async () => {
    const before = changes;
    const nets = await Promise.all(Array.from({ length: 8 }, () => api.ensureDefaultNetwork(alice.projectId)));
    expect(new Set(nets.map((n) => n.id)).size).toBe(1);
    expect(nets[0]).toMatchObject({ name: 'default', project_id: alice.projectId, shared: false });
    expect(nets[0].subnets).toHaveLength(1);
    const subnets = await api.listSubnets(alice, { network_id: nets[0].id });
    expect(subnets[0]).toMatchObject({ cidr: '10.0.0.0/24', gateway_ip: '10.0.0.1', ip_version: 4 });
    expect(changes).toBeGreaterThan(before);
    expect(await api.listNetworks(alice, { tenant_id: alice.projectId, shared: 'False' })).toHaveLength(1);
    // Another project gets its own (overlapping addresses are fine: separate segments).
    const bobs = await api.ensureDefaultNetwork(bob.projectId);
    expect(bobs.id).not.toBe(nets[0].id);
    await rejects(api.getNetwork(bob, nets[0].id), 404, 'NetworkNotFound');
  });

  test('default security group: one per project under concurrency, Neutron rules', async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, () => api.ensureDefaultSecurityGroup('p-carol')));
    expect(new Set(ids).size).toBe(1);
    const [sg] = await api.listSecurityGroups({ projectId: 'p-carol', isAdmin: false }, { name: 'default' });
    expect(sg.id).toBe(ids[0]);
    const rules = sg.security_group_rules.map(
      (r: any) => `${r.direction}/${r.ethertype}/${r.remote_group_id === sg.id}`,
    );
    expect(rules.sort()).toEqual(['egress/IPv4/false', 'egress/IPv6/false', 'ingress/IPv4/true', 'ingress/IPv6/true']);
  });

  test('ports the way Zun makes, binds, unbinds and deletes them; onChange and network_revision follow', async () => {
    const [net] = await api.listNetworks(alice, { name: 'default' });
    const rev0 = await revision();
    const calls0 = changes;
    const port = await api.createPort(admin, {
      network_id: net.id,
      tenant_id: alice.projectId,
      device_id: 'c-1',
      device_owner: 'compute:zun',
      'binding:host_id': 'node1',
    });
    expect(port).toMatchObject({ project_id: alice.projectId, status: 'DOWN', 'binding:vif_type': 'bridge' });
    expect(port.security_groups).toHaveLength(1);
    expect(await revision()).not.toBe(rev0);
    expect(changes).toBe(calls0 + 1);
    // The owner sees it without the binding attributes.
    const seen = await api.getPort(alice, port.id);
    expect(seen).not.toHaveProperty('binding:host_id');
    expect((await api.listPorts(alice, { device_id: 'c-1' })).map((p) => p.id)).toEqual([port.id]);
    await api.setPortStatus(port.id, 'ACTIVE');
    const active = await api.getPort(admin, port.id);
    expect(active.status).toBe('ACTIVE');
    expect(active.revision_number).toBe(1);
    const unbound = await api.updatePort(admin, port.id, {
      device_id: '',
      device_owner: '',
      'binding:host_id': null,
      mac_address: port.mac_address,
      'binding:profile': {},
    });
    expect(unbound).toMatchObject({
      device_id: '',
      'binding:host_id': '',
      'binding:vif_type': 'unbound',
      status: 'DOWN',
    });
    await rejects(api.updatePort(alice, port.id, { 'binding:host_id': 'x' }), 403, 'PolicyNotAuthorized');
    await rejects(api.createPort(bob, { network_id: net.id }), 404, 'NetworkNotFound');
    await api.deletePort(alice, port.id);
    await rejects(api.getPort(admin, port.id), 404, 'PortNotFound');
  });

  test('exposed ports: a per-container group with one ingress rule per port, then deleted', async () => {
    const sg = await api.createSecurityGroup(admin, { name: 'zun-c-2', tenant_id: alice.projectId });
    const rule = await api.createSecurityGroupRule(admin, {
      security_group_id: sg.id,
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 80,
      port_range_max: 80,
      remote_ip_prefix: '0.0.0.0/0',
    });
    expect(rule).toMatchObject({ project_id: alice.projectId, remote_ip_prefix: '0.0.0.0/0' });
    await rejects(
      api.createSecurityGroupRule(admin, {
        security_group_id: sg.id,
        direction: 'ingress',
        protocol: '6',
        port_range_min: 80,
        port_range_max: 80,
      }),
      409,
      'SecurityGroupRuleExists',
    );
    await api.deleteSecurityGroup(admin, sg.id);
    expect(await api.listSecurityGroups(alice, { name: 'zun-c-2' })).toEqual([]);
  });
});

describe('list queries', () => {
  const views = [
    { id: 'a', name: 'x', shared: true, tags: ['t1'], created_at: '1', subnets: ['s1'] },
    { id: 'b', name: 'y', shared: false, tags: ['t1', 't2'], created_at: '2', subnets: [] },
    { id: 'c', name: 'z', shared: false, tags: [], created_at: '3', subnets: ['s1', 's2'] },
  ];
  const known = new Set(['id', 'name', 'shared', 'subnets', 'created_at']);
  const ids = (q: Record<string, string | string[]>) => applyFilters(views, parseListQuery(q), known).map((v) => v.id);

  test('filters: OR on repeats, booleans, lists contain, tags', () => {
    expect(ids({ name: ['x', 'z'] })).toEqual(['a', 'c']);
    expect(ids({ shared: 'True' })).toEqual(['a']);
    expect(ids({ shared: 'false' })).toEqual(['b', 'c']);
    expect(ids({ subnets: 's2' })).toEqual(['c']);
    expect(ids({ tags: 't1,t2' })).toEqual(['b']);
    expect(ids({ 'tags-any': 't2' })).toEqual(['b']);
    expect(ids({ 'not-tags': 't1' })).toEqual(['c']);
    expect(ids({ 'not-tags-any': ['t2', 't1'] })).toEqual(['c']);
    expect(() => ids({ bogus: '1' })).toThrow(/invalid attribute for filtering/);
  });

  test('sorting and paging', () => {
    const lq = parseListQuery({ sort_key: 'name', sort_dir: 'desc', limit: '2' });
    const sorted = sortViews(views, lq, known);
    expect(sorted.map((v) => v.id)).toEqual(['c', 'b', 'a']);
    const page = paginate(
      sorted,
      lq,
      'http://h/v2.0/networks',
      'sort_key=name&sort_dir=desc&limit=2',
      () => new Error('x'),
    );
    expect(page.items.map((v) => v.id)).toEqual(['c', 'b']);
    expect(page.links).toEqual([
      { rel: 'next', href: 'http://h/v2.0/networks?sort_key=name&sort_dir=desc&limit=2&marker=b' },
    ]);
    const second = paginate(
      sorted,
      parseListQuery({ limit: '2', marker: 'b' }),
      'u',
      'limit=2&marker=b',
      () => new Error(),
    );
    expect(second.items.map((v) => v.id)).toEqual(['a']);
    expect(second.links.map((l) => l.rel)).toEqual(['previous']);
    expect(() => parseListQuery({ sort_key: ['a', 'b'], sort_dir: 'asc' })).toThrow(/sort_keys and sort_dirs/);
  });
});

describe('security group rule semantics', () => {
  const base = { direction: 'ingress', ethertype: 'IPv4', remote_ip_prefix: null, remote_group_id: null };
  const rule = (protocol: string | null, min: number | null, max: number | null) => ({
    ...base,
    protocol,
    port_range_min: min,
    port_range_max: max,
  });
  test('valid and invalid ranges', () => {
    expect(() => validateRule(rule('tcp', 22, 22))).not.toThrow();
    expect(() => validateRule(rule('icmp', 8, 0))).not.toThrow();
    expect(() => validateRule(rule('icmp', null, null))).not.toThrow();
    expect(() => validateRule(rule('tcp', 23, 22))).toThrow(/port_range_min must be <= port_range_max/);
    expect(() => validateRule(rule('udp', 5, null))).toThrow(/port_range_min must be <= port_range_max/);
    expect(() => validateRule(rule('icmp', null, 3))).toThrow(/ICMP type \(port-range-min\) is missing/);
    expect(() => validateRule(rule('ipv6-icmp', 1, 1))).toThrow(/Invalid ethertype IPv4/);
    expect(() => validateRule(rule(null, 1, 2))).toThrow(/Must also specify protocol/);
  });
  test('fingerprints treat names and numbers, and 0.0.0.0/0 and no prefix, alike', () => {
    expect(fingerprint(rule('tcp', 80, 80))).toBe(fingerprint(rule('6', 80, 80)));
    expect(fingerprint({ ...rule('tcp', 80, 80), remote_ip_prefix: '0.0.0.0/0' })).toBe(
      fingerprint(rule('tcp', 80, 80)),
    );
    expect(fingerprint(rule('tcp', 80, 80))).not.toBe(fingerprint(rule('udp', 80, 80)));
  });
});
