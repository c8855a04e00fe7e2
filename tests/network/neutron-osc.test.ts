/**
 * The real Debian `openstack` CLI (python3-openstackclient 6 / openstacksdk 0.101) and the `neutron` CLI (quota
 * commands; `openstack quota show/set` need a compute endpoint) against `krater api`. Tests share one Krater and run
 * in order: later ones use what earlier ones made. Independent commands run in parallel (each CLI start costs ~2 s).
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

  /** `openstack <cmd>` (words split on spaces), JSON output; throws with the CLI's output on failure. */
  const os = (cmd: string) => k.oscOk(cmd.split(' '));
  async function fails(cmd: string, pattern: RegExp): Promise<OscResult> {
    const r = await k.osc(cmd.split(' '));
    expect(r.code, describeOsc(r)).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`, describeOsc(r)).toMatch(pattern);
    return r;
  }
  /** The `neutron` CLI (python-neutronclient) with the same clouds.yaml. */
  function neutron(cmd: string): Promise<string> {
    const env = { ...process.env, OS_CLIENT_CONFIG_FILE: k.cloudsYaml, HOME: k.homeDir, PYTHONWARNINGS: 'ignore' };
    return new Promise((resolve, reject) => {
      execFile('neutron', ['--os-cloud', 'krater', ...cmd.split(' ')], { env, timeout: 60_000 }, (err, out, errOut) =>
        err ? reject(new Error(`neutron ${cmd}: ${errOut}${out}`)) : resolve(out),
      );
    });
  }

  test('networks and subnets: create, list, show, set, tags', async () => {
    const net = await os('network create osc-net --description made-by-osc --tag blue');
    expect(net).toMatchObject({ name: 'osc-net', description: 'made-by-osc', status: 'ACTIVE', mtu: 1500 });
    expect(net).toMatchObject({ shared: false, tags: ['blue'], 'router:external': false });
    const [v4, v6, list] = await Promise.all([
      os('subnet create osc-v4 --network osc-net --subnet-range 10.50.0.0/24 --dns-nameserver 9.9.9.9'),
      os('subnet create osc-v6 --network osc-net --ip-version 6 --subnet-range fd50::/64 --ipv6-address-mode slaac'),
      os('network list --tags blue'),
    ]);
    expect(v4).toMatchObject({ cidr: '10.50.0.0/24', gateway_ip: '10.50.0.1', dns_nameservers: ['9.9.9.9'] });
    expect(v4.allocation_pools).toEqual([{ start: '10.50.0.2', end: '10.50.0.254' }]);
    expect(v6).toMatchObject({ cidr: 'fd50::/64', ip_version: 6, ipv6_address_mode: 'slaac' });
    expect(list.map((n: any) => n.Name)).toEqual(['osc-net']);
    await Promise.all([
      os('network set osc-net --name osc-net2 --mtu 1400'),
      os('subnet set osc-v4 --no-dhcp --gateway none'),
    ]);
    const [shown, sub, subnets] = await Promise.all([
      os('network show osc-net2'),
      os('subnet show osc-v4'),
      os('subnet list --network osc-net2'),
      fails('subnet create bad --network osc-net2 --subnet-range 10.50.0.0/25', /overlaps with another subnet/),
    ]);
    expect(shown).toMatchObject({ name: 'osc-net2', mtu: 1400 });
    // Each change (tags, subnets joining, the update) bumped the revision.
    expect(shown.revision_number).toBeGreaterThanOrEqual(3);
    expect(shown.subnets.sort()).toEqual([v4.id, v6.id].sort());
    expect(sub).toMatchObject({ enable_dhcp: false, gateway_ip: null });
    expect(subnets.map((s: any) => s.Name).sort()).toEqual(['osc-v4', 'osc-v6']);
  });

  test('subnet pools', async () => {
    const [, pool] = await Promise.all([
      os('network create pooled'),
      os('subnet pool create osc-pool --pool-prefix 10.60.0.0/16 --default-prefix-length 24'),
    ]);
    expect(pool).toMatchObject({ prefixes: ['10.60.0.0/16'], default_prefixlen: 24, ip_version: 4 });
    const s = await os('subnet create from-pool --network pooled --subnet-pool osc-pool --prefix-length 26');
    expect(s).toMatchObject({ cidr: '10.60.0.0/26', subnetpool_id: pool.id });
    const [pools] = await Promise.all([
      os('subnet pool list'),
      fails('subnet pool delete osc-pool', /in use|Failed to delete/),
    ]);
    expect(pools.map((p: any) => p.Name)).toContain('osc-pool');
  });

  test('ports: create with fixed IPs, list and filter, set, bad addresses, network in use', async () => {
    const p = await os(
      'port create osc-port --network osc-net2 --fixed-ip subnet=osc-v4,ip-address=10.50.0.10 --device dev-osc',
    );
    expect(p.mac_address).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    expect(p.fixed_ips.map((f: any) => f.ip_address)).toContain('10.50.0.10');
    expect(p).toMatchObject({ status: 'DOWN', device_id: 'dev-osc', port_security_enabled: true });
    const [byDevice, byIp] = await Promise.all([
      os('port list --device-id dev-osc'),
      os('port list --fixed-ip ip-address=10.50.0.10'),
      os('port set osc-port --name osc-port2 --description renamed'),
      fails('port create dup --network osc-net2 --fixed-ip ip-address=10.50.0.10', /already allocated/),
      fails('port create out --network osc-net2 --fixed-ip subnet=osc-v4,ip-address=10.51.0.10', /not a valid IP/),
      fails('network delete osc-net2', /in use|Failed to delete/),
    ]);
    expect(byDevice.map((x: any) => x.ID)).toEqual([p.id]);
    expect(byIp.map((x: any) => x.ID)).toEqual([p.id]);
    expect(await os('port show osc-port2')).toMatchObject({ description: 'renamed', device_id: 'dev-osc' });
  });

  test('security groups and rules', async () => {
    const sg = await os('security group create osc-web --description web');
    expect(sg.rules).toHaveLength(2);
    const rule = await os('security group rule create osc-web --protocol tcp --dst-port 80:81 --remote-ip 10.0.0.0/8');
    expect(rule).toMatchObject({ port_range_min: 80, port_range_max: 81, remote_ip_prefix: '10.0.0.0/8' });
    expect(rule).toMatchObject({ direction: 'ingress', protocol: 'tcp', ether_type: 'IPv4' });
    const [, icmp] = await Promise.all([
      fails(
        'security group rule create osc-web --protocol tcp --dst-port 80:81 --remote-ip 10.0.0.0/8',
        /already exists/,
      ),
      os('security group rule create osc-web --protocol icmp --icmp-type 8 --remote-group osc-web'),
    ]);
    expect(icmp).toMatchObject({ protocol: 'icmp', port_range_min: 8, remote_group_id: sg.id });
    const [rules, groups] = await Promise.all([os('security group rule list osc-web'), os('security group list')]);
    expect(rules).toHaveLength(4);
    expect(groups.map((g: any) => g.Name).sort()).toEqual(['default', 'osc-web']);
    // The rename only after the lookups by the old name (in parallel it raced them).
    await os('security group set osc-web --name osc-web2');
    const [shown] = await Promise.all([
      os('security group show osc-web2'),
      os('port set osc-port2 --security-group osc-web2'),
    ]);
    expect(shown.description).toBe('web');
    expect((await os('port show osc-port2')).security_group_ids).toContain(sg.id);
    await fails('security group delete osc-web2', /in use|Failed to delete/);
    await Promise.all([
      os('port unset osc-port2 --security-group osc-web2'),
      os(`security group rule delete ${rule.id}`),
    ]);
    await os('security group delete osc-web2');
  });

  test('routers and floating IPs', async () => {
    await Promise.all([
      os('network create osc-public --external'),
      os('subnet set osc-v4 --gateway 10.50.0.1'),
      os('router create osc-router'),
    ]);
    await os('subnet create osc-public-v4 --network osc-public --subnet-range 172.31.0.0/24');
    await Promise.all([
      os('router set osc-router --external-gateway osc-public'),
      os('router add subnet osc-router osc-v4'),
    ]);
    const r = await os('router show osc-router');
    expect(r.external_gateway_info.external_fixed_ips[0].ip_address).toMatch(/^172\.31\.0\./);
    expect(r.interfaces_info.map((i: any) => i.ip_address)).toEqual(['10.50.0.1']);
    const fip = await os('floating ip create osc-public');
    expect(fip.floating_ip_address).toMatch(/^172\.31\.0\./);
    await os(`floating ip set --port osc-port2 ${fip.id}`);
    const [shown, byPort] = await Promise.all([
      os(`floating ip show ${fip.id}`),
      os('floating ip list --port osc-port2'),
    ]);
    expect(shown).toMatchObject({ fixed_ip_address: '10.50.0.10', router_id: r.id, status: 'ACTIVE' });
    expect(byPort.map((f: any) => f.ID)).toEqual([fip.id]);
    await os(`floating ip unset --port ${fip.id}`);
    expect((await os(`floating ip show ${fip.id}`)).port_id).toBeNull();
    await Promise.all([os(`floating ip delete ${fip.id}`), os('router remove subnet osc-router osc-v4')]);
    await os('router unset --external-gateway osc-router');
    await os('router delete osc-router');
    expect(await os('router list')).toEqual([]);
  });

  test('extensions and quotas', async () => {
    const project = (await k.passwordToken()).body.token.project.id;
    const [extensions, detail] = await Promise.all([
      os('extension list --network'),
      os('quota list --network --detail'),
      neutron(`quota-update --tenant-id ${project} --network 20 --port 30`),
    ]);
    const aliases = extensions.map((e: any) => e.Alias);
    expect(aliases).toEqual(expect.arrayContaining(['subnet_allocation', 'standard-attr-tag', 'router', 'quotas']));
    expect(detail.find((q: any) => q.Resource === 'subnets')).toMatchObject({ Limit: 100 });
    const [shown, listed] = await Promise.all([
      neutron(`quota-show --tenant-id ${project} -f json`),
      os('quota list --network'),
    ]);
    expect(JSON.parse(shown)).toMatchObject({ network: 20, port: 30, router: 10 });
    expect(listed.find((q: any) => q['Project ID'] === project)).toMatchObject({ Networks: 20, Ports: 30 });
  });

  test('deletes', async () => {
    await os('port delete osc-port2');
    await os('subnet delete osc-v4 osc-v6');
    await os('network delete osc-net2 osc-public');
    const [list] = await Promise.all([
      os('network list'),
      fails('network show osc-net2', /No Network found|could not be found/),
    ]);
    expect(list.map((n: any) => n.Name)).not.toContain('osc-net2');
  });
});
