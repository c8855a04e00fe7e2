/**
 * The real Debian `openstack` CLI (python3-openstackclient 6 / openstacksdk 0.101) and the `neutron` CLI (quota
 * commands; `openstack quota show/set` need a compute endpoint) against `krater api`. Tests share one Krater and run
 * in order: later ones use what earlier ones made.
 *
 *   npx vitest run tests/network/neutron-osc.test.ts
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { describeOsc, Krater, type OscResult } from '../helpers/krater.js';

vi.setConfig({ testTimeout: 90_000, hookTimeout: 300_000 });

describe('Neutron with the openstack CLI', () => {
  let k: Krater;

  beforeAll(async () => {
    k = await Krater.start({ mode: 'api' });
  });
  afterAll(async () => {
    await k?.destroy();
  });

  const osc = (args: string[]) => k.oscOk(args);
  async function oscFails(args: string[], pattern: RegExp): Promise<OscResult> {
    const r = await k.osc(args);
    expect(r.code, describeOsc(r)).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`, describeOsc(r)).toMatch(pattern);
    return r;
  }
  /** Runs the `neutron` CLI (python-neutronclient) with the same clouds.yaml. */
  function neutron(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        'neutron',
        ['--os-cloud', 'krater', ...args],
        {
          env: { ...process.env, OS_CLIENT_CONFIG_FILE: k.cloudsYaml, HOME: k.homeDir, PYTHONWARNINGS: 'ignore' },
          timeout: 60_000,
        },
        (err, stdout, stderr) =>
          err ? reject(new Error(`neutron ${args.join(' ')}: ${stderr}${stdout}`)) : resolve(stdout),
      );
    });
  }

  test('networks and subnets: create, list, show, set, tags', async () => {
    const net = await osc(['network', 'create', 'osc-net', '--description', 'made by osc', '--tag', 'blue']);
    expect(net).toMatchObject({
      name: 'osc-net',
      description: 'made by osc',
      status: 'ACTIVE',
      mtu: 1500,
      shared: false,
    });
    expect(net.tags).toEqual(['blue']);
    const [v4, v6, list] = await Promise.all([
      osc([
        'subnet',
        'create',
        'osc-v4',
        '--network',
        'osc-net',
        '--subnet-range',
        '10.50.0.0/24',
        '--dns-nameserver',
        '9.9.9.9',
      ]),
      osc([
        'subnet',
        'create',
        'osc-v6',
        '--network',
        'osc-net',
        '--ip-version',
        '6',
        '--subnet-range',
        'fd50::/64',
        '--ipv6-ra-mode',
        'slaac',
        '--ipv6-address-mode',
        'slaac',
      ]),
      osc(['network', 'list', '--tags', 'blue']),
    ]);
    expect(v4).toMatchObject({
      cidr: '10.50.0.0/24',
      gateway_ip: '10.50.0.1',
      dns_nameservers: ['9.9.9.9'],
      enable_dhcp: true,
    });
    expect(v4.allocation_pools).toEqual([{ start: '10.50.0.2', end: '10.50.0.254' }]);
    expect(v6).toMatchObject({ cidr: 'fd50::/64', ip_version: 6, ipv6_address_mode: 'slaac' });
    expect(list.map((n: any) => n.Name)).toEqual(['osc-net']);
    await osc(['network', 'set', 'osc-net', '--name', 'osc-net2', '--mtu', '1400']);
    await osc(['subnet', 'set', 'osc-v4', '--no-dhcp', '--gateway', 'none']);
    const [shown, sub] = await Promise.all([osc(['network', 'show', 'osc-net2']), osc(['subnet', 'show', 'osc-v4'])]);
    expect(shown).toMatchObject({ name: 'osc-net2', mtu: 1400 });
    // Each change (tags, subnets joining, the update) bumped the revision.
    expect(shown.revision_number).toBeGreaterThanOrEqual(3);
    expect(shown.subnets.sort()).toEqual([v4.id, v6.id].sort());
    expect(sub).toMatchObject({ enable_dhcp: false, gateway_ip: null });
    const subnets = await osc(['subnet', 'list', '--network', 'osc-net2']);
    expect(subnets.map((s: any) => s.Name).sort()).toEqual(['osc-v4', 'osc-v6']);
    await oscFails(
      ['subnet', 'create', 'bad', '--network', 'osc-net2', '--subnet-range', '10.50.0.0/25'],
      /overlaps with another subnet/,
    );
  });

  test('subnet pools', async () => {
    await osc(['network', 'create', 'pooled']);
    const pool = await osc([
      'subnet',
      'pool',
      'create',
      'osc-pool',
      '--pool-prefix',
      '10.60.0.0/16',
      '--default-prefix-length',
      '24',
    ]);
    expect(pool).toMatchObject({ prefixes: ['10.60.0.0/16'], default_prefixlen: 24, ip_version: 4 });
    const s = await osc([
      'subnet',
      'create',
      'from-pool',
      '--network',
      'pooled',
      '--subnet-pool',
      'osc-pool',
      '--prefix-length',
      '26',
    ]);
    expect(s).toMatchObject({ cidr: '10.60.0.0/26', subnetpool_id: pool.id });
    expect((await osc(['subnet', 'pool', 'list'])).map((p: any) => p.Name)).toContain('osc-pool');
    await oscFails(['subnet', 'pool', 'delete', 'osc-pool'], /in use|Failed to delete/);
  });

  test('ports: create with fixed IPs, list and filter, set, delete', async () => {
    const p = await osc([
      'port',
      'create',
      'osc-port',
      '--network',
      'osc-net2',
      '--fixed-ip',
      'subnet=osc-v4,ip-address=10.50.0.10',
      '--device',
      'dev-osc',
    ]);
    expect(p.mac_address).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    expect(p.fixed_ips.find((f: any) => f.subnet_id && f.ip_address === '10.50.0.10')).toBeTruthy();
    expect(p.status).toBe('DOWN');
    const [byDevice, byIp] = await Promise.all([
      osc(['port', 'list', '--device-id', 'dev-osc']),
      osc(['port', 'list', '--fixed-ip', 'ip-address=10.50.0.10']),
    ]);
    expect(byDevice.map((x: any) => x.ID)).toEqual([p.id]);
    expect(byIp.map((x: any) => x.ID)).toEqual([p.id]);
    await osc(['port', 'set', 'osc-port', '--name', 'osc-port2', '--description', 'renamed']);
    expect(await osc(['port', 'show', 'osc-port2'])).toMatchObject({ description: 'renamed', device_id: 'dev-osc' });
    await oscFails(
      ['port', 'create', 'dup', '--network', 'osc-net2', '--fixed-ip', 'ip-address=10.50.0.10'],
      /already allocated/,
    );
    await oscFails(
      ['port', 'create', 'outside', '--network', 'osc-net2', '--fixed-ip', 'subnet=osc-v4,ip-address=10.51.0.10'],
      /not a valid IP for the specified subnet/,
    );
    await oscFails(['network', 'delete', 'osc-net2'], /in use|Failed to delete/);
  });

  test('security groups and rules', async () => {
    const sg = await osc(['security', 'group', 'create', 'osc-web', '--description', 'web']);
    expect(sg.rules).toHaveLength(2);
    const rule = await osc([
      'security',
      'group',
      'rule',
      'create',
      'osc-web',
      '--protocol',
      'tcp',
      '--dst-port',
      '80:81',
      '--remote-ip',
      '10.0.0.0/8',
    ]);
    expect(rule).toMatchObject({
      port_range_min: 80,
      port_range_max: 81,
      remote_ip_prefix: '10.0.0.0/8',
      direction: 'ingress',
      protocol: 'tcp',
    });
    await oscFails(
      [
        'security',
        'group',
        'rule',
        'create',
        'osc-web',
        '--protocol',
        'tcp',
        '--dst-port',
        '80:81',
        '--remote-ip',
        '10.0.0.0/8',
      ],
      /already exists/,
    );
    const icmp = await osc([
      'security',
      'group',
      'rule',
      'create',
      'osc-web',
      '--protocol',
      'icmp',
      '--icmp-type',
      '8',
      '--remote-group',
      'osc-web',
    ]);
    expect(icmp).toMatchObject({ protocol: 'icmp', port_range_min: 8, remote_group_id: sg.id });
    const [rules, groups] = await Promise.all([
      osc(['security', 'group', 'rule', 'list', 'osc-web']),
      osc(['security', 'group', 'list']),
    ]);
    expect(rules).toHaveLength(4);
    expect(groups.map((g: any) => g.Name).sort()).toEqual(['default', 'osc-web']);
    await osc(['security', 'group', 'set', 'osc-web', '--name', 'osc-web2']);
    expect((await osc(['security', 'group', 'show', 'osc-web2'])).description).toBe('web');
    await osc(['port', 'set', 'osc-port2', '--security-group', 'osc-web2']);
    expect((await osc(['port', 'show', 'osc-port2'])).security_group_ids).toContain(sg.id);
    await oscFails(['security', 'group', 'delete', 'osc-web2'], /in use|Failed to delete/);
    await osc(['port', 'unset', 'osc-port2', '--security-group', 'osc-web2']);
    await osc(['security', 'group', 'rule', 'delete', rule.id]);
    await osc(['security', 'group', 'delete', 'osc-web2']);
  });

  test('routers and floating IPs', async () => {
    await osc(['network', 'create', 'osc-public', '--external']);
    await osc(['subnet', 'create', 'osc-public-v4', '--network', 'osc-public', '--subnet-range', '172.31.0.0/24']);
    await osc(['subnet', 'set', 'osc-v4', '--gateway', '10.50.0.1']);
    await osc(['router', 'create', 'osc-router']);
    await osc(['router', 'set', 'osc-router', '--external-gateway', 'osc-public']);
    await osc(['router', 'add', 'subnet', 'osc-router', 'osc-v4']);
    const r = await osc(['router', 'show', 'osc-router']);
    expect(r.external_gateway_info.network_id).toBeTruthy();
    expect(r.interfaces_info.map((i: any) => i.ip_address)).toEqual(['10.50.0.1']);
    const fip = await osc(['floating', 'ip', 'create', 'osc-public']);
    expect(fip.floating_ip_address).toMatch(/^172\.31\.0\./);
    await osc(['floating', 'ip', 'set', '--port', 'osc-port2', fip.id]);
    expect(await osc(['floating', 'ip', 'show', fip.id])).toMatchObject({
      fixed_ip_address: '10.50.0.10',
      router_id: r.id,
      status: 'ACTIVE',
    });
    expect((await osc(['floating', 'ip', 'list', '--port', 'osc-port2'])).map((f: any) => f.ID)).toEqual([fip.id]);
    await osc(['floating', 'ip', 'unset', '--port', fip.id]);
    expect((await osc(['floating', 'ip', 'show', fip.id])).port_id).toBeNull();
    await osc(['floating', 'ip', 'delete', fip.id]);
    await osc(['router', 'remove', 'subnet', 'osc-router', 'osc-v4']);
    await osc(['router', 'unset', '--external-gateway', 'osc-router']);
    await osc(['router', 'delete', 'osc-router']);
    expect(await osc(['router', 'list'])).toEqual([]);
  });

  test('extensions and quotas', async () => {
    const exts = (await osc(['extension', 'list', '--network'])).map((e: any) => e.Alias);
    expect(exts).toEqual(
      expect.arrayContaining(['subnet_allocation', 'standard-attr-tag', 'router', 'security-group', 'quotas']),
    );
    const detail = await osc(['quota', 'list', '--network', '--detail']);
    expect(detail.find((q: any) => q.Resource === 'networks')).toMatchObject({ Limit: 100 });
    const project = (await k.passwordToken()).body.token.project.id;
    await neutron(['quota-update', '--tenant-id', project, '--network', '20', '--port', '30']);
    const shown = await neutron(['quota-show', '--tenant-id', project, '-f', 'json']);
    expect(JSON.parse(shown)).toMatchObject({ network: 20, port: 30 });
    const listed = await osc(['quota', 'list', '--network']);
    expect(listed.find((q: any) => q['Project ID'] === project)).toMatchObject({ Networks: 20, Ports: 30 });
  });

  test('deletes', async () => {
    await osc(['port', 'delete', 'osc-port2']);
    await osc(['subnet', 'delete', 'osc-v4', 'osc-v6']);
    await osc(['network', 'delete', 'osc-net2', 'osc-public']);
    const nets = (await osc(['network', 'list'])).map((n: any) => n.Name);
    expect(nets).not.toContain('osc-net2');
    await oscFails(['network', 'show', 'osc-net2'], /No Network found|could not be found/);
  });
});
