/**
 * The Neutron v2.0 facade over raw HTTP, as clients see it: envelopes, status codes, errors, filters, fields,
 * paging, tags, `.json`, other projects' resources, IPAM under concurrency, quotas. Runs `krater api --workers 2`
 * once on SQLite and once on PostgreSQL, so concurrent requests land in two processes sharing one store.
 *
 *   npx vitest run tests/network/neutron-http.test.ts
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { describeHttp, type HttpResult, Krater } from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { projectUser } from '../image/helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 300_000 });

const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const MAC = /^fa:16:3e(:[0-9a-f]{2}){3}$/;

const stores = [{ store: 'sqlite' }, { store: 'postgres' }] as const;

describe.each(stores)('Neutron over HTTP on $store', ({ store }) => {
  let k: Krater;
  let db: TestDatabase | undefined;
  let admin = '';
  let adminProject = '';
  let user = { projectId: '', userId: '', token: '' };

  const N = '/network/v2.0';
  async function call(method: string, path: string, token: string, body?: unknown): Promise<HttpResult> {
    return k.http(method, `${N}${path}`, { token, body });
  }
  async function ok(method: string, path: string, token: string, body: unknown, status: number): Promise<any> {
    const r = await call(method, path, token, body);
    expect(r.status, describeHttp(method, path, r)).toBe(status);
    return r.json;
  }
  async function fails(
    method: string,
    path: string,
    token: string,
    body: unknown,
    status: number,
    type: string,
    msg?: RegExp,
  ) {
    const r = await call(method, path, token, body);
    expect(r.status, describeHttp(method, path, r)).toBe(status);
    expect(r.json?.NeutronError?.type, describeHttp(method, path, r)).toBe(type);
    expect(r.json.NeutronError.detail).toBe('');
    if (msg) expect(r.json.NeutronError.message).toMatch(msg);
    return r.json.NeutronError;
  }

  beforeAll(async () => {
    if (store === 'postgres') db = await createTestDatabase();
    k = await Krater.start({ database: db?.url, mode: 'api', args: ['--workers', '2'] });
    const t = await k.passwordToken();
    admin = t.token;
    adminProject = t.body.token.project.id;
    user = await projectUser(k, admin, `neutron-user-${store}`);
  });

  afterAll(async () => {
    await k?.destroy();
    await db?.drop();
  });

  test('version document, resources, 401 and .json suffixes', async () => {
    const root = await k.http('GET', '/network/');
    expect(root.status).toBe(200);
    expect(root.json.versions[0]).toMatchObject({ id: 'v2.0', status: 'CURRENT' });
    expect(root.json.versions[0].links[0].href).toBe(`${k.baseUrl}/network/v2.0/`);
    const noToken = await k.http('GET', `${N}/networks`);
    expect(noToken.status).toBe(401);
    expect(noToken.headers.get('www-authenticate')).toContain('/identity/v3');
    const res = await ok('GET', '', admin, undefined, 200);
    expect(res.resources.map((r: any) => r.collection)).toEqual(
      expect.arrayContaining(['networks', 'ports', 'security-groups']),
    );
    expect((await ok('GET', '/networks.json', admin, undefined, 200)).networks).toBeInstanceOf(Array);
    const exts = (await ok('GET', '/extensions.json', admin, undefined, 200)).extensions.map((e: any) => e.alias);
    expect(exts).toEqual(
      expect.arrayContaining(['subnet_allocation', 'standard-attr-tag', 'security-group', 'router', 'quotas']),
    );
    expect((await ok('GET', '/extensions/router', admin, undefined, 200)).extension.alias).toBe('router');
    await fails('GET', '/extensions/no-such-thing', admin, undefined, 404, 'HTTPNotFound');
    await fails('GET', '/nothing-here', admin, undefined, 404, 'HTTPNotFound');
  });

  let netId = '';
  let subnetId = '';

  test('network lifecycle: create 201 with standard attributes, show, partial PUT, delete 204, then 404', async () => {
    const created = (await ok('POST', '/networks', user.token, { network: { name: 'n1', description: 'first' } }, 201))
      .network;
    expect(created).toMatchObject({
      name: 'n1',
      description: 'first',
      admin_state_up: true,
      status: 'ACTIVE',
      shared: false,
      'router:external': false,
      mtu: 1500,
      port_security_enabled: true,
      subnets: [],
      tags: [],
      revision_number: 0,
      project_id: user.projectId,
      tenant_id: user.projectId,
    });
    expect(created.created_at).toMatch(TS);
    expect(created.updated_at).toMatch(TS);
    expect(created).not.toHaveProperty('provider:network_type');
    netId = created.id;
    const shown = (await ok('GET', `/networks/${netId}.json`, user.token, undefined, 200)).network;
    expect(shown.id).toBe(netId);
    const updated = (await ok('PUT', `/networks/${netId}`, user.token, { network: { name: 'n1b' } }, 200)).network;
    expect(updated).toMatchObject({ name: 'n1b', description: 'first', revision_number: 1 });
    // Admin sees provider attributes; non-admins cannot set admin-only ones.
    expect((await ok('GET', `/networks/${netId}`, admin, undefined, 200)).network['provider:network_type']).toBe(
      'local',
    );
    await fails('POST', '/networks', user.token, { network: { name: 'x', shared: true } }, 403, 'PolicyNotAuthorized');
    await fails(
      'PUT',
      `/networks/${netId}`,
      user.token,
      { network: { 'router:external': true } },
      403,
      'PolicyNotAuthorized',
    );
    await fails(
      'POST',
      '/networks',
      user.token,
      { network: { name: 'x', foo: 1 } },
      400,
      'HTTPBadRequest',
      /Unrecognized attribute\(s\) 'foo'/,
    );
    await fails('POST', '/networks', user.token, { net: {} }, 400, 'HTTPBadRequest');
    await fails('POST', '/networks', user.token, { network: { admin_state_up: 'maybe' } }, 400, 'HTTPBadRequest');
    const gone = (await ok('POST', '/networks', user.token, { network: { name: 'gone' } }, 201)).network;
    const del = await call('DELETE', `/networks/${gone.id}`, user.token);
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    const e = await fails('GET', `/networks/${gone.id}`, user.token, undefined, 404, 'NetworkNotFound');
    expect(e.message).toBe(`Network ${gone.id} could not be found.`);
  });

  test('subnets: IPv4 defaults, gateway null, IPv6 SLAAC, overlap and malformed CIDRs', async () => {
    const s = (
      await ok(
        'POST',
        '/subnets',
        user.token,
        { subnet: { network_id: netId, ip_version: 4, cidr: '10.20.0.0/24', name: 's4' } },
        201,
      )
    ).subnet;
    expect(s).toMatchObject({
      cidr: '10.20.0.0/24',
      gateway_ip: '10.20.0.1',
      allocation_pools: [{ start: '10.20.0.2', end: '10.20.0.254' }],
      enable_dhcp: true,
      dns_nameservers: [],
      host_routes: [],
      ip_version: 4,
      subnetpool_id: null,
      ipv6_ra_mode: null,
      ipv6_address_mode: null,
      revision_number: 0,
      tenant_id: user.projectId,
    });
    subnetId = s.id;
    const v6 = (
      await ok(
        'POST',
        '/subnets',
        user.token,
        {
          subnet: {
            network_id: netId,
            ip_version: 6,
            cidr: 'fd00:20::/64',
            ipv6_address_mode: 'slaac',
            ipv6_ra_mode: 'slaac',
          },
        },
        201,
      )
    ).subnet;
    expect(v6).toMatchObject({
      gateway_ip: 'fd00:20::1',
      allocation_pools: [{ start: 'fd00:20::2', end: 'fd00:20::ffff:ffff:ffff:ffff' }],
    });
    expect((await ok('GET', `/networks/${netId}`, user.token, undefined, 200)).network.subnets.sort()).toEqual(
      [s.id, v6.id].sort(),
    );
    // A gateway-less network.
    const n2 = (await ok('POST', '/networks', user.token, { network: { name: 'nogw' } }, 201)).network;
    const s2 = (
      await ok(
        'POST',
        '/subnets',
        user.token,
        { subnet: { network_id: n2.id, ip_version: 4, cidr: '10.21.0.0/29', gateway_ip: null } },
        201,
      )
    ).subnet;
    expect(s2).toMatchObject({ gateway_ip: null, allocation_pools: [{ start: '10.21.0.1', end: '10.21.0.6' }] });
    await fails(
      'POST',
      '/subnets',
      user.token,
      { subnet: { network_id: netId, ip_version: 4, cidr: '10.20.0.128/25' } },
      400,
      'InvalidInput',
      /overlaps with another subnet/,
    );
    await fails(
      'POST',
      '/subnets',
      user.token,
      { subnet: { network_id: netId, ip_version: 4, cidr: '10.300.0.0/24' } },
      400,
      'HTTPBadRequest',
      /not a valid IP subnet/,
    );
    await fails(
      'POST',
      '/subnets',
      user.token,
      { subnet: { network_id: netId, ip_version: 4, cidr: '10.22.0.5/24' } },
      400,
      'HTTPBadRequest',
      /10\.22\.0\.0\/24' is recommended/,
    );
    await fails(
      'POST',
      '/subnets',
      user.token,
      {
        subnet: {
          network_id: netId,
          ip_version: 4,
          cidr: '10.23.0.0/24',
          allocation_pools: [{ start: '10.23.0.1', end: '10.23.0.9' }],
        },
      },
      409,
      'GatewayConflictWithAllocationPools',
    );
    const upd = (
      await ok(
        'PUT',
        `/subnets/${s2.id}`,
        user.token,
        { subnet: { dns_nameservers: ['1.1.1.1'], name: 'renamed' } },
        200,
      )
    ).subnet;
    expect(upd).toMatchObject({ dns_nameservers: ['1.1.1.1'], name: 'renamed', revision_number: 1 });
    await fails(
      'PUT',
      `/subnets/${s2.id}`,
      user.token,
      { subnet: { cidr: '10.99.0.0/24' } },
      400,
      'HTTPBadRequest',
      /read-only attribute cidr/,
    );
  });

  test('ports: MACs, fixed IPs by subnet and address, dual stack, bad and taken addresses, filters', async () => {
    const p = (
      await ok('POST', '/ports', user.token, { port: { network_id: netId, name: 'p1', device_id: 'dev-1' } }, 201)
    ).port;
    expect(p.mac_address).toMatch(MAC);
    expect(p).toMatchObject({
      status: 'DOWN',
      device_id: 'dev-1',
      device_owner: '',
      admin_state_up: true,
      port_security_enabled: true,
      allowed_address_pairs: [],
    });
    expect(p.security_groups).toHaveLength(1);
    // One IPv4 address and the SLAAC (EUI-64) address of the IPv6 subnet.
    expect(p.fixed_ips).toHaveLength(2);
    expect(p.fixed_ips[0].subnet_id).toBe(subnetId);
    const mac = p.mac_address.split(':').map((x: string) => Number.parseInt(x, 16));
    expect(p.fixed_ips[1].ip_address).toBe(
      `fd00:20::${((mac[0] ^ 2) * 256 + mac[1]).toString(16)}:${mac[2].toString(16)}ff:fe${mac[3].toString(16).padStart(2, '0')}:${(mac[4] * 256 + mac[5]).toString(16)}`,
    );
    expect(p).not.toHaveProperty('binding:host_id');
    const q = (
      await ok(
        'POST',
        '/ports',
        user.token,
        {
          port: {
            network_id: netId,
            fixed_ips: [{ subnet_id: subnetId, ip_address: '10.20.0.77' }],
            security_groups: [],
          },
        },
        201,
      )
    ).port;
    expect(q.fixed_ips).toEqual([{ subnet_id: subnetId, ip_address: '10.20.0.77' }]);
    expect(q.security_groups).toEqual([]);
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, fixed_ips: [{ ip_address: '10.20.0.77' }] } },
      409,
      'IpAddressAlreadyAllocated',
      /10\.20\.0\.77 already allocated/,
    );
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, fixed_ips: [{ subnet_id: subnetId, ip_address: '10.99.0.5' }] } },
      400,
      'InvalidIpForSubnet',
    );
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, fixed_ips: [{ ip_address: '192.168.9.9' }] } },
      400,
      'InvalidIpForNetwork',
    );
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, mac_address: 'fa:16:3e:zz:00:01' } },
      400,
      'HTTPBadRequest',
      /not a valid MAC address/,
    );
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, mac_address: p.mac_address } },
      409,
      'MacAddressInUse',
    );
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, 'binding:host_id': 'h1' } },
      403,
      'PolicyNotAuthorized',
    );
    await fails(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, port_security_enabled: false, security_groups: [p.security_groups[0]] } },
      400,
      'PortSecurityAndIPRequiredForSecurityGroups',
    );
    await fails(
      'PUT',
      `/ports/${p.id}`,
      user.token,
      { port: { port_security_enabled: false } },
      409,
      'PortSecurityPortHasSecurityGroup',
    );
    const off = (await ok('PUT', `/ports/${q.id}`, user.token, { port: { port_security_enabled: false } }, 200)).port;
    expect(off).toMatchObject({ port_security_enabled: false, revision_number: 1 });
    // Admins bind ports (what Zun does); the binding becomes visible to admins only.
    const bound = (
      await ok(
        'PUT',
        `/ports/${p.id}`,
        admin,
        { port: { 'binding:host_id': 'node1', device_owner: 'compute:zun' } },
        200,
      )
    ).port;
    expect(bound).toMatchObject({
      'binding:host_id': 'node1',
      'binding:vif_type': 'bridge',
      'binding:vnic_type': 'normal',
      device_owner: 'compute:zun',
    });
    await fails(
      'PUT',
      `/ports/${p.id}`,
      user.token,
      { port: { 'binding:host_id': 'node2' } },
      403,
      'PolicyNotAuthorized',
    );
    // Zun's unbind.
    const unbound = (
      await ok(
        'PUT',
        `/ports/${p.id}`,
        admin,
        {
          port: {
            device_id: '',
            device_owner: '',
            'binding:host_id': null,
            mac_address: p.mac_address,
            'binding:profile': {},
          },
        },
        200,
      )
    ).port;
    expect(unbound).toMatchObject({ 'binding:host_id': '', 'binding:vif_type': 'unbound', device_id: '' });
    await ok('PUT', `/ports/${p.id}`, user.token, { port: { device_id: 'dev-1' } }, 200);
    // kuryr's lookup and zunclient's device_id filter.
    const byIp = (
      await ok(
        'GET',
        `/ports?fixed_ips=subnet_id=${subnetId}&fixed_ips=ip_address=10.20.0.77`,
        user.token,
        undefined,
        200,
      )
    ).ports;
    expect(byIp.map((x: any) => x.id)).toEqual([q.id]);
    expect((await ok('GET', '/ports?device_id=dev-1', user.token, undefined, 200)).ports.map((x: any) => x.id)).toEqual(
      [p.id],
    );
    expect(
      (await ok('GET', '/ports?fixed_ips=ip_address_substr=10.20.0.7', user.token, undefined, 200)).ports.map(
        (x: any) => x.id,
      ),
    ).toContain(q.id);
    // Replacing fixed IPs keeps what is asked again and releases the rest.
    const moved = (
      await ok('PUT', `/ports/${q.id}`, user.token, { port: { fixed_ips: [{ ip_address: '10.20.0.78' }] } }, 200)
    ).port;
    expect(moved.fixed_ips).toEqual([{ subnet_id: subnetId, ip_address: '10.20.0.78' }]);
    await ok(
      'POST',
      '/ports',
      user.token,
      { port: { network_id: netId, fixed_ips: [{ ip_address: '10.20.0.77' }] } },
      201,
    );
  });

  test('bulk create is all or nothing', async () => {
    const two = (
      await ok(
        'POST',
        '/ports',
        user.token,
        {
          ports: [
            { network_id: netId, name: 'b1' },
            { network_id: netId, name: 'b2' },
          ],
        },
        201,
      )
    ).ports;
    expect(two.map((x: any) => x.name)).toEqual(['b1', 'b2']);
    await fails(
      'POST',
      '/ports',
      user.token,
      {
        ports: [
          { network_id: netId, name: 'b3' },
          { network_id: netId, fixed_ips: [{ ip_address: '10.20.0.78' }] },
        ],
      },
      409,
      'IpAddressAlreadyAllocated',
    );
    expect((await ok('GET', '/ports?name=b3', user.token, undefined, 200)).ports).toEqual([]);
    const nets = (
      await ok('POST', '/networks', user.token, { networks: [{ name: 'bulk-a' }, { name: 'bulk-b' }] }, 201)
    ).networks;
    expect(nets).toHaveLength(2);
  });

  test('filters (OR, booleans, tenant_id), fields, sorting, paging with links, tags', async () => {
    for (const name of ['pg-a', 'pg-b', 'pg-c', 'pg-d', 'pg-e'])
      await ok('POST', '/networks', user.token, { network: { name, admin_state_up: name !== 'pg-e' } }, 201);
    const or = (await ok('GET', '/networks?name=pg-a&name=pg-c', user.token, undefined, 200)).networks
      .map((n: any) => n.name)
      .sort();
    expect(or).toEqual(['pg-a', 'pg-c']);
    for (const v of ['False', 'false'])
      expect(
        (await ok('GET', `/networks?admin_state_up=${v}`, user.token, undefined, 200)).networks.map((n: any) => n.name),
      ).toEqual(['pg-e']);
    const mine = (await ok('GET', `/networks?tenant_id=${user.projectId}&shared=False`, user.token, undefined, 200))
      .networks;
    expect(mine.length).toBeGreaterThanOrEqual(7);
    await fails(
      'GET',
      '/networks?no_such_attr=1',
      user.token,
      undefined,
      400,
      'HTTPBadRequest',
      /invalid attribute for filtering/,
    );
    const slim = (await ok('GET', '/networks?name=pg-a&fields=id&fields=name', user.token, undefined, 200)).networks;
    expect(Object.keys(slim[0]).sort()).toEqual(['id', 'name']);
    expect(
      Object.keys((await ok('GET', `/networks/${netId}?fields=name`, user.token, undefined, 200)).network),
    ).toEqual(['name']);
    const desc = (await ok('GET', '/networks?sort_key=name&sort_dir=desc', user.token, undefined, 200)).networks.map(
      (n: any) => n.name,
    );
    expect(desc).toEqual([...desc].sort().reverse());
    // Paging: follow `next` links to the end and back with `previous`.
    const seen: string[] = [];
    let url: string | undefined =
      `${k.baseUrl}${N}/networks?sort_key=name&sort_dir=asc&limit=2&name=pg-a&name=pg-b&name=pg-c&name=pg-d&name=pg-e`;
    let last: any;
    while (url) {
      const r = await k.http('GET', url, { token: user.token });
      expect(r.status).toBe(200);
      last = r.json;
      seen.push(...r.json.networks.map((n: any) => n.name));
      url = r.json.networks_links?.find((l: any) => l.rel === 'next')?.href;
    }
    expect(seen).toEqual(['pg-a', 'pg-b', 'pg-c', 'pg-d', 'pg-e']);
    const prev = last.networks_links.find((l: any) => l.rel === 'previous').href;
    expect((await k.http('GET', prev, { token: user.token })).json.networks.map((n: any) => n.name)).toEqual([
      'pg-c',
      'pg-d',
    ]);
    // Tags API and tag filters.
    const a = (await ok('GET', '/networks?name=pg-a', user.token, undefined, 200)).networks[0].id;
    const b = (await ok('GET', '/networks?name=pg-b', user.token, undefined, 200)).networks[0].id;
    expect((await call('PUT', `/networks/${a}/tags/red`, user.token)).status).toBe(201);
    expect((await call('GET', `/networks/${a}/tags/red`, user.token)).status).toBe(204);
    await fails('GET', `/networks/${a}/tags/blue`, user.token, undefined, 404, 'TagNotFound');
    expect((await ok('PUT', `/networks/${b}/tags`, user.token, { tags: ['red', 'blue'] }, 200)).tags).toEqual([
      'blue',
      'red',
    ]);
    expect((await ok('POST', `/networks/${a}/tags`, user.token, { tags: ['green'] }, 200)).tags).toEqual([
      'green',
      'red',
    ]);
    expect((await ok('GET', `/networks/${a}/tags`, user.token, undefined, 200)).tags).toEqual(['green', 'red']);
    const names = async (q: string) =>
      (await ok('GET', `/networks?${q}`, user.token, undefined, 200)).networks
        .map((n: any) => n.name)
        .filter((x: string) => x.startsWith('pg-'))
        .sort();
    expect(await names('tags=red,blue')).toEqual(['pg-b']);
    expect(await names('tags-any=green,blue')).toEqual(['pg-a', 'pg-b']);
    expect(await names('not-tags=red,blue')).toEqual(['pg-a', 'pg-c', 'pg-d', 'pg-e']);
    expect(await names('not-tags-any=red')).toEqual(['pg-c', 'pg-d', 'pg-e']);
    const rev = (await ok('GET', `/networks/${a}`, user.token, undefined, 200)).network.revision_number;
    expect(rev).toBeGreaterThanOrEqual(2);
    expect((await call('DELETE', `/networks/${a}/tags/red`, user.token)).status).toBe(204);
    expect((await call('DELETE', `/networks/${a}/tags`, user.token)).status).toBe(204);
    expect((await ok('GET', `/networks/${a}`, user.token, undefined, 200)).network.tags).toEqual([]);
  });

  test("another project's resources are invisible (404), its networks unusable", async () => {
    const other = await projectUser(k, admin, `neutron-other-${store}`);
    await fails('GET', `/networks/${netId}`, other.token, undefined, 404, 'NetworkNotFound');
    await fails('PUT', `/networks/${netId}`, other.token, { network: { name: 'x' } }, 404, 'NetworkNotFound');
    await fails('DELETE', `/networks/${netId}`, other.token, undefined, 404, 'NetworkNotFound');
    await fails('GET', `/subnets/${subnetId}`, other.token, undefined, 404, 'SubnetNotFound');
    await fails('POST', '/ports', other.token, { port: { network_id: netId } }, 404, 'NetworkNotFound');
    const ports = (await ok('GET', '/ports', user.token, undefined, 200)).ports;
    await fails('GET', `/ports/${ports[0].id}`, other.token, undefined, 404, 'PortNotFound');
    expect((await ok('GET', '/networks', other.token, undefined, 200)).networks.map((n: any) => n.id)).not.toContain(
      netId,
    );
    expect((await ok('GET', '/ports', other.token, undefined, 200)).ports).toEqual([]);
    await fails(
      'POST',
      '/networks',
      other.token,
      { network: { tenant_id: user.projectId } },
      400,
      'HTTPBadRequest',
      /requires admin privileges/,
    );
    // Its first security group list creates its default group.
    const sgs = (await ok('GET', '/security-groups', other.token, undefined, 200)).security_groups;
    expect(sgs.map((g: any) => g.name)).toEqual(['default']);
    expect(sgs[0].security_group_rules).toHaveLength(4);
    // … and does not see ours.
    const ours = (await ok('GET', '/security-groups?name=default', user.token, undefined, 200)).security_groups;
    expect(ours).toHaveLength(1);
    await fails('GET', `/security-groups/${ours[0].id}`, other.token, undefined, 404, 'SecurityGroupNotFound');
    // Shared networks are usable by everyone.
    const shared = (await ok('POST', '/networks', admin, { network: { name: 'shared-net', shared: true } }, 201))
      .network;
    await ok(
      'POST',
      '/subnets',
      admin,
      { subnet: { network_id: shared.id, ip_version: 4, cidr: '10.30.0.0/24' } },
      201,
    );
    const sp = (await ok('POST', '/ports', other.token, { port: { network_id: shared.id } }, 201)).port;
    expect(sp.project_id).toBe(other.projectId);
  });

  test('IPAM under concurrency: 30 parallel creates on a /27 never share an address, the 30th fails', async () => {
    const net = (await ok('POST', '/networks', admin, { network: { name: 'small' } }, 201)).network;
    await ok('POST', '/subnets', admin, { subnet: { network_id: net.id, ip_version: 4, cidr: '10.40.0.0/27' } }, 201);
    const results = await Promise.all(
      Array.from({ length: 30 }, () => call('POST', '/ports', admin, { port: { network_id: net.id } })),
    );
    const created = results.filter((r) => r.status === 201);
    const failed = results.filter((r) => r.status !== 201);
    expect(created).toHaveLength(29);
    expect(failed.map((r) => r.json?.NeutronError?.type)).toEqual(['IpAddressGenerationFailure']);
    const ips = created.map((r) => r.json.port.fixed_ips[0].ip_address);
    expect(new Set(ips).size).toBe(29);
    expect(new Set(created.map((r) => r.json.port.mac_address)).size).toBe(29);
    await fails(
      'POST',
      '/ports',
      admin,
      { port: { network_id: net.id } },
      409,
      'IpAddressGenerationFailure',
      new RegExp(`No more IP addresses available on network ${net.id}`),
    );
    // In use: the network and the subnet cannot go while ports hold addresses.
    await fails('DELETE', `/networks/${net.id}`, admin, undefined, 409, 'NetworkInUse');
    const sub = (await ok('GET', `/subnets?network_id=${net.id}`, admin, undefined, 200)).subnets[0];
    await fails('DELETE', `/subnets/${sub.id}`, admin, undefined, 409, 'SubnetInUse');
    await Promise.all(created.map((r) => ok('DELETE', `/ports/${r.json.port.id}`, admin, undefined, 204)));
    await ok('DELETE', `/networks/${net.id}`, admin, undefined, 204);
    await fails('GET', `/subnets/${sub.id}`, admin, undefined, 404, 'SubnetNotFound');
  });

  test('security groups and rules: defaults, validation, duplicates, in use', async () => {
    const sg = (
      await ok('POST', '/security-groups', user.token, { security_group: { name: 'web', description: 'd' } }, 201)
    ).security_group;
    expect(sg.security_group_rules.map((r: any) => `${r.direction}/${r.ethertype}`).sort()).toEqual([
      'egress/IPv4',
      'egress/IPv6',
    ]);
    expect(sg).toMatchObject({ stateful: true, tenant_id: user.projectId, tags: [] });
    const rule = {
      security_group_id: sg.id,
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 80,
      port_range_max: 80,
      remote_ip_prefix: '10.0.0.7/8',
    };
    const r = (await ok('POST', '/security-group-rules', user.token, { security_group_rule: rule }, 201))
      .security_group_rule;
    expect(r).toMatchObject({
      ethertype: 'IPv4',
      remote_ip_prefix: '10.0.0.0/8',
      protocol: 'tcp',
      remote_group_id: null,
    });
    await fails(
      'POST',
      '/security-group-rules',
      user.token,
      { security_group_rule: rule },
      409,
      'SecurityGroupRuleExists',
      new RegExp(r.id),
    );
    const bad = async (extra: Record<string, unknown>, type: string) =>
      fails(
        'POST',
        '/security-group-rules',
        user.token,
        { security_group_rule: { security_group_id: sg.id, direction: 'ingress', ...extra } },
        400,
        type,
      );
    await bad({ protocol: 'tcp', port_range_min: 90, port_range_max: 80 }, 'SecurityGroupInvalidPortRange');
    await bad({ protocol: 'tcp', port_range_min: 1, port_range_max: 70000 }, 'HTTPBadRequest');
    await bad({ protocol: 'tcp', port_range_min: 0, port_range_max: 10 }, 'SecurityGroupInvalidPortValue');
    await bad({ protocol: 'icmp', port_range_max: 3 }, 'SecurityGroupMissingIcmpType');
    await bad({ protocol: 'icmp', port_range_min: 300 }, 'SecurityGroupInvalidIcmpValue');
    await bad({ protocol: 'gre', port_range_min: 1, port_range_max: 2 }, 'SecurityGroupInvalidProtoForPortRange');
    await bad({ protocol: 'bogus' }, 'SecurityGroupRuleInvalidProtocol');
    await bad({ port_range_min: 1, port_range_max: 2 }, 'SecurityGroupProtocolRequiredWithPorts');
    await bad({ remote_ip_prefix: '::/0' }, 'SecurityGroupRuleParameterConflict');
    await bad({ direction: 'sideways' }, 'HTTPBadRequest');
    await fails(
      'POST',
      '/security-group-rules',
      user.token,
      {
        security_group_rule: {
          security_group_id: sg.id,
          direction: 'ingress',
          remote_group_id: '00000000-0000-0000-0000-000000000000',
        },
      },
      404,
      'SecurityGroupNotFound',
    );
    const icmp = (
      await ok(
        'POST',
        '/security-group-rules',
        user.token,
        {
          security_group_rule: {
            security_group_id: sg.id,
            direction: 'ingress',
            protocol: 'icmp',
            port_range_min: 8,
            port_range_max: 0,
            remote_group_id: sg.id,
          },
        },
        201,
      )
    ).security_group_rule;
    expect(icmp).toMatchObject({ port_range_min: 8, port_range_max: 0, remote_group_id: sg.id });
    const listed = (
      await ok('GET', `/security-group-rules?security_group_id=${sg.id}&direction=ingress`, user.token, undefined, 200)
    ).security_group_rules;
    expect(listed).toHaveLength(2);
    expect((await call('DELETE', `/security-group-rules/${icmp.id}`, user.token)).status).toBe(204);
    const def = (await ok('GET', '/security-groups?name=default', user.token, undefined, 200)).security_groups[0];
    await fails('DELETE', `/security-groups/${def.id}`, user.token, undefined, 409, 'SecurityGroupCannotRemoveDefault');
    await fails(
      'POST',
      '/security-groups',
      user.token,
      { security_group: { name: 'default' } },
      409,
      'SecurityGroupDefaultAlreadyExists',
    );
    const port = (
      await ok('POST', '/ports', user.token, { port: { network_id: netId, security_groups: [sg.id] } }, 201)
    ).port;
    expect(port.security_groups).toEqual([sg.id]);
    await fails('DELETE', `/security-groups/${sg.id}`, user.token, undefined, 409, 'SecurityGroupInUse');
    await ok('DELETE', `/ports/${port.id}`, user.token, undefined, 204);
    await ok('DELETE', `/security-groups/${sg.id}`, user.token, undefined, 204);
  });

  test('subnet pools: allocation by prefix length, no overlap, in use', async () => {
    const pool = (
      await ok(
        'POST',
        '/subnetpools',
        user.token,
        { subnetpool: { name: 'pool', prefixes: ['10.100.0.0/16'], default_prefixlen: 24 } },
        201,
      )
    ).subnetpool;
    expect(pool).toMatchObject({
      ip_version: 4,
      min_prefixlen: 8,
      max_prefixlen: 32,
      default_prefixlen: 24,
      prefixes: ['10.100.0.0/16'],
    });
    const net = (await ok('POST', '/networks', user.token, { network: { name: 'pooled' } }, 201)).network;
    const a = (
      await ok(
        'POST',
        '/subnets',
        user.token,
        { subnet: { network_id: net.id, ip_version: 4, subnetpool_id: pool.id, prefixlen: 26 } },
        201,
      )
    ).subnet;
    expect(a).toMatchObject({ cidr: '10.100.0.0/26', subnetpool_id: pool.id, gateway_ip: '10.100.0.1' });
    const net2 = (await ok('POST', '/networks', user.token, { network: { name: 'pooled2' } }, 201)).network;
    const b = (
      await ok(
        'POST',
        '/subnets',
        user.token,
        { subnet: { network_id: net2.id, ip_version: 4, subnetpool_id: pool.id } },
        201,
      )
    ).subnet;
    expect(b.cidr).toBe('10.100.1.0/24');
    await fails(
      'POST',
      '/subnets',
      user.token,
      { subnet: { network_id: net2.id, ip_version: 4, subnetpool_id: pool.id, prefixlen: 4 } },
      400,
      'IllegalSubnetPoolPrefixBounds',
    );
    await fails('DELETE', `/subnetpools/${pool.id}`, user.token, undefined, 409, 'SubnetPoolInUse');
    await ok('DELETE', `/subnets/${a.id}`, user.token, undefined, 204);
    await ok('DELETE', `/subnets/${b.id}`, user.token, undefined, 204);
    await ok('DELETE', `/subnetpools/${pool.id}`, user.token, undefined, 204);
  });

  test('routers and floating IPs: gateway, interfaces, overlap, association rules', async () => {
    const ext = (
      await ok('POST', '/networks', admin, { network: { name: `ext-${store}`, 'router:external': true } }, 201)
    ).network;
    await ok('POST', '/subnets', admin, { subnet: { network_id: ext.id, ip_version: 4, cidr: '172.30.0.0/24' } }, 201);
    // External networks are visible to every project.
    expect(
      (await ok('GET', '/networks?router:external=True', user.token, undefined, 200)).networks.map((n: any) => n.id),
    ).toContain(ext.id);
    const router = (
      await ok(
        'POST',
        '/routers',
        user.token,
        { router: { name: 'r1', external_gateway_info: { network_id: ext.id } } },
        201,
      )
    ).router;
    expect(router.external_gateway_info).toMatchObject({ network_id: ext.id, enable_snat: true });
    expect(router.external_gateway_info.external_fixed_ips[0].ip_address).toMatch(/^172\.30\.0\./);
    await fails(
      'PUT',
      `/routers/${router.id}`,
      user.token,
      { router: { external_gateway_info: { network_id: ext.id, enable_snat: false } } },
      403,
      'PolicyNotAuthorized',
    );
    const port = (await ok('POST', '/ports', user.token, { port: { network_id: netId } }, 201)).port;
    const fip = (await ok('POST', '/floatingips', user.token, { floatingip: { floating_network_id: ext.id } }, 201))
      .floatingip;
    expect(fip).toMatchObject({ status: 'DOWN', port_id: null, router_id: null, floating_network_id: ext.id });
    await fails(
      'PUT',
      `/floatingips/${fip.id}`,
      user.token,
      { floatingip: { port_id: port.id } },
      404,
      'ExternalGatewayForFloatingIPNotFound',
    );
    const info = await ok(
      'PUT',
      `/routers/${router.id}/add_router_interface`,
      user.token,
      { subnet_id: subnetId },
      200,
    );
    expect(info).toMatchObject({
      id: router.id,
      subnet_id: subnetId,
      subnet_ids: [subnetId],
      network_id: netId,
      tenant_id: user.projectId,
    });
    const ifPort = (await ok('GET', `/ports/${info.port_id}`, user.token, undefined, 200)).port;
    expect(ifPort).toMatchObject({
      device_owner: 'network:router_interface',
      device_id: router.id,
      fixed_ips: [{ subnet_id: subnetId, ip_address: '10.20.0.1' }],
    });
    await fails('DELETE', `/ports/${ifPort.id}`, user.token, undefined, 409, 'L3PortInUse');
    // A second network with an overlapping subnet cannot join the same router.
    const n3 = (await ok('POST', '/networks', user.token, { network: { name: 'overlap' } }, 201)).network;
    const s3 = (
      await ok(
        'POST',
        '/subnets',
        user.token,
        { subnet: { network_id: n3.id, ip_version: 4, cidr: '10.20.0.0/16' } },
        201,
      )
    ).subnet;
    await fails(
      'PUT',
      `/routers/${router.id}/add_router_interface`,
      user.token,
      { subnet_id: s3.id },
      400,
      'BadRequest',
      /overlaps with cidr/,
    );
    const assoc = (await ok('PUT', `/floatingips/${fip.id}`, user.token, { floatingip: { port_id: port.id } }, 200))
      .floatingip;
    expect(assoc).toMatchObject({
      port_id: port.id,
      router_id: router.id,
      fixed_ip_address: port.fixed_ips[0].ip_address,
      status: 'ACTIVE',
    });
    await fails(
      'PUT',
      `/routers/${router.id}/remove_router_interface`,
      user.token,
      { subnet_id: subnetId },
      409,
      'RouterInterfaceInUseByFloatingIP',
    );
    await fails(
      'PUT',
      `/routers/${router.id}`,
      user.token,
      { router: { external_gateway_info: {} } },
      409,
      'RouterExternalGatewayInUseByFloatingIp',
    );
    await fails('DELETE', `/routers/${router.id}`, user.token, undefined, 409, 'RouterInUse');
    const dis = (await ok('PUT', `/floatingips/${fip.id}`, user.token, { floatingip: { port_id: null } }, 200))
      .floatingip;
    expect(dis).toMatchObject({ port_id: null, router_id: null, fixed_ip_address: null, status: 'DOWN' });
    const removed = await ok(
      'PUT',
      `/routers/${router.id}/remove_router_interface`,
      user.token,
      { subnet_id: subnetId },
      200,
    );
    expect(removed.port_id).toBe(ifPort.id);
    await fails('GET', `/ports/${ifPort.id}`, user.token, undefined, 404, 'PortNotFound');
    await fails(
      'PUT',
      `/routers/${router.id}/remove_router_interface`,
      user.token,
      { subnet_id: subnetId },
      404,
      'RouterInterfaceNotFoundForSubnet',
    );
    await ok('DELETE', `/floatingips/${fip.id}`, user.token, undefined, 204);
    await ok('DELETE', `/routers/${router.id}`, user.token, undefined, 204);
    // The gateway port went with the router: the external network can be deleted.
    await ok('DELETE', `/networks/${ext.id}`, admin, undefined, 204);
  });

  test('quotas: show, defaults, details, set (admin only), enforced with OverQuota', async () => {
    const q = (await ok('GET', `/quotas/${user.projectId}`, user.token, undefined, 200)).quota;
    expect(q).toMatchObject({
      network: 100,
      subnet: 100,
      port: 500,
      router: 10,
      floatingip: 50,
      security_group: 10,
      security_group_rule: 100,
      subnetpool: -1,
    });
    await fails(
      'PUT',
      `/quotas/${user.projectId}`,
      user.token,
      { quota: { network: 1000 } },
      403,
      'PolicyNotAuthorized',
    );
    await fails('GET', `/quotas/${adminProject}`, user.token, undefined, 403, 'HTTPForbidden');
    const used = (await ok('GET', `/quotas/${user.projectId}/details`, user.token, undefined, 200)).quota.network
      .used as number;
    const set = (await ok('PUT', `/quotas/${user.projectId}`, admin, { quota: { network: used + 1 } }, 200)).quota;
    expect(set.network).toBe(used + 1);
    expect((await ok('GET', `/quotas/${user.projectId}/default`, user.token, undefined, 200)).quota.network).toBe(100);
    expect((await ok('GET', '/quotas', admin, undefined, 200)).quotas.map((x: any) => x.project_id)).toContain(
      user.projectId,
    );
    await ok('POST', '/networks', user.token, { network: { name: 'last-one' } }, 201);
    await fails(
      'POST',
      '/networks',
      user.token,
      { network: { name: 'one-too-many' } },
      409,
      'OverQuota',
      /Quota exceeded for resources: \['network'\]/,
    );
    await fails(
      'PUT',
      `/quotas/${user.projectId}`,
      admin,
      { quota: { networks: 3 } },
      400,
      'HTTPBadRequest',
      /Unrecognized attribute/,
    );
    expect((await call('DELETE', `/quotas/${user.projectId}`, admin)).status).toBe(204);
    await ok('POST', '/networks', user.token, { network: { name: 'one-too-many' } }, 201);
  });
});
