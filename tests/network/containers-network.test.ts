import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataplaneTag } from '../../src/app/control-plane.js';
import { startCloud, waitContainer, waitGone, ZUN } from '../containers/fixtures.js';
import { fetchUntil, freePort, type Krater, sleep } from '../helpers/krater.js';

/**
 * Containers on Neutron networks with the real kernel dataplane, driven as users do: the openstack CLI for
 * networks, subnets, routers, floating IPs and `appcontainer`, HTTP for what the CLI cannot express.
 */
let k: Krater;
let token: string;
let tag: string;
const ids: Record<string, string> = {};
// A /16 of our own for this run, so that parallel workloads on the machine never see the same addresses.
const o2 = randomInt(100, 250);
const NET1 = `10.${o2}.1.0/24`;
const NET2 = `10.${o2}.2.0/24`;
const PUBLIC = `10.${o2}.250.0/24`;
const V6 = `fd${randomInt(16, 255).toString(16)}:${randomInt(4096, 65535).toString(16)}::/64`;

const osc = (args: string[], opts: { json?: boolean; cloud?: string } = {}) => k.oscOk(args, opts);
const appc = (args: string[], opts: { json?: boolean; cloud?: string } = {}) => osc(['appcontainer', ...args], opts);

async function exec(id: string, command: string, tok = token): Promise<{ output: string; exit_code: number }> {
  const r = await k.http('POST', `/container/v1/containers/${id}/execute?run=true`, {
    token: tok,
    headers: ZUN(),
    body: { command: `sh -c '${command.replace(/'/g, "'\\''")}'` },
  });
  expect(r.status, r.text).toBe(200);
  return r.json;
}

async function runContainer(name: string, args: string[], opts: { cloud?: string } = {}): Promise<any> {
  await appc(['run', '--name', name, ...args], { json: false, ...opts });
  const c = await appc(['show', name], opts);
  const tok = opts.cloud === 'demo' ? (await k.passwordToken('demo', 'demo-secret', 'demo')).token : token;
  return waitContainer(k, tok, c.uuid, (x) => x.status === 'Running', 'Running');
}

const addrOf = (c: any, net: string, version = 4): string =>
  (c.addresses[net] as any[]).find((a) => a.version === version).addr;

function kernelObjects(): { links: string[]; netns: string[]; nft: string[] } {
  const links = (JSON.parse(execFileSync('ip', ['-j', 'link'], { encoding: 'utf8' })) as any[])
    .map((l) => l.ifname as string)
    .filter((n) => n.includes(tag));
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.includes(tag));
  const ruleset = JSON.parse(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' })).nftables as any[];
  const nft = ruleset.filter((o) => o.table && String(o.table.name).includes(tag)).map((o) => o.table.name);
  return { links, netns, nft };
}

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
  tag = dataplaneTag(k.dataDir);
  await osc(['project', 'create', 'demo']);
  await osc(['user', 'create', '--project', 'demo', '--password', 'demo-secret', 'demo']);
  await osc(['role', 'add', '--project', 'demo', '--user', 'demo', 'member'], { json: false });
  k.addPasswordCloud('demo', 'demo', 'demo-secret', 'demo');
}, 180_000);

afterAll(async () => {
  await k?.destroy();
});

describe('containers on tenant networks', () => {
  it('creates networks, subnets (v4 and v6) with the openstack CLI', async () => {
    ids.net1 = (await osc(['network', 'create', 'net1'])).id;
    ids.sub1 = (await osc(['subnet', 'create', '--network', 'net1', '--subnet-range', NET1, 'sub1'])).id;
    ids.sub1v6 = (
      await osc(['subnet', 'create', '--network', 'net1', '--ip-version', '6', '--subnet-range', V6, 'sub1v6'])
    ).id;
    ids.net2 = (await osc(['network', 'create', 'net2'])).id;
    ids.sub2 = (await osc(['subnet', 'create', '--network', 'net2', '--subnet-range', NET2, 'sub2'])).id;
  });

  it('two containers on one network reach each other by IP and by name, over IPv4 and IPv6', async () => {
    const a1 = await runContainer('a1', ['--net', 'network=net1', 'busybox', 'sleep', '3600']);
    const a2 = await runContainer('a2', ['--net', 'network=net1', 'busybox', 'sleep', '3600']);
    ids.a1 = a1.uuid;
    ids.a2 = a2.uuid;
    expect(Object.keys(a1.addresses)).toEqual([ids.net1]);
    expect((a1.addresses[ids.net1] as any[]).map((a) => a.version).sort()).toEqual([4, 6]);
    const ports = await osc(['port', 'list', '--device-id', a1.uuid, '--long']);
    expect(ports).toHaveLength(1);
    const port = await osc(['port', 'show', ports[0].ID]);
    expect(port).toMatchObject({ device_owner: 'compute:zun', status: 'ACTIVE', binding_host_id: expect.any(String) });
    // The network's name server has its own port, up once the agent runs it.
    const dhcp = await osc(['port', 'list', '--network', 'net1', '--device-owner', 'network:dhcp']);
    expect(dhcp.map((p: any) => p.Status)).toEqual(['ACTIVE']);

    const ip2 = addrOf(a2, ids.net1);
    let r = await exec(a1.uuid, `ping -c1 -W2 ${ip2}`);
    expect(r.exit_code, r.output).toBe(0);
    r = await exec(a1.uuid, 'ping -c1 -W2 a2');
    expect(r.exit_code, r.output).toBe(0);
    // The name has both addresses; busybox takes whichever the resolver lists first.
    expect(
      [ip2, addrOf(a2, ids.net1, 6)].some((ip) => r.output.includes(ip)),
      r.output,
    ).toBe(true);
    r = await exec(a1.uuid, 'ping -4 -c1 -W2 a2');
    expect(r.output).toContain(ip2);
    r = await exec(a2.uuid, `ping6 -c1 -W2 ${addrOf(a1, ids.net1, 6)}`);
    expect(r.exit_code, r.output).toBe(0);
    r = await exec(a1.uuid, 'hostname; cat /etc/hosts');
    expect(r.output).toContain(a1.hostname ?? a1.uuid.slice(0, 12));
  });

  it('a security group rule opens TCP/80 and nothing else', async () => {
    ids.sg = (await osc(['security', 'group', 'create', 'web-sg'])).id;
    await osc(['security', 'group', 'rule', 'create', '--ingress', '--protocol', 'tcp', '--dst-port', '80', 'web-sg']);
    const web = await runContainer('web', [
      '--net',
      'network=net1',
      '--security-group',
      'web-sg',
      'busybox',
      'sh',
      '-c',
      'mkdir -p /www && echo hello-web > /www/index.html && httpd -p 80 -h /www && httpd -p 81 -h /www && sleep 3600',
    ]);
    ids.web = web.uuid;
    expect(web.security_groups).toEqual([ids.sg]);
    const ip = addrOf(web, ids.net1);
    await sleep(300);
    let r = await exec(ids.a1!, `timeout 3 wget -q -O- http://${ip}:80/`);
    expect(r.output).toContain('hello-web');
    r = await exec(ids.a1!, `timeout 2 wget -q -O- http://${ip}:81/ || echo blocked`);
    expect(r.output).toContain('blocked');
    r = await exec(ids.a1!, `ping -c1 -W1 ${ip} || echo blocked`);
    expect(r.output).toContain('blocked');
  });

  it('exposed_ports open exactly the exposed port', async () => {
    const exposed = await runContainer('exposed', [
      '--net',
      'network=net1',
      '--expose-port',
      '8080',
      'busybox',
      'sh',
      '-c',
      'mkdir -p /www && echo exposed > /www/index.html && httpd -p 8080 -h /www && httpd -p 8081 -h /www && sleep 3600',
    ]);
    ids.exposed = exposed.uuid;
    const groups = await osc(['security', 'group', 'list']);
    expect(groups.map((g: any) => g.Name)).toContain(`zun-${exposed.uuid}`);
    const ip = addrOf(exposed, ids.net1);
    let r = await exec(ids.a1!, `timeout 3 wget -q -O- http://${ip}:8080/`);
    expect(r.output).toContain('exposed');
    r = await exec(ids.a1!, `timeout 2 wget -q -O- http://${ip}:8081/ || echo blocked`);
    expect(r.output).toContain('blocked');
  });

  it("another project's containers cannot reach ours", async () => {
    await osc(['network', 'create', 'demo-net'], { cloud: 'demo' });
    await osc(['subnet', 'create', '--network', 'demo-net', '--subnet-range', NET1, 'demo-sub'], { cloud: 'demo' });
    const d1 = await runContainer('d1', ['busybox', 'sleep', '3600'], { cloud: 'demo' });
    ids.d1 = d1.uuid;
    const demoToken = (await k.passwordToken('demo', 'demo-secret', 'demo')).token;
    const theirs = addrOf(await waitContainer(k, token, ids.a2!, () => true, 'shown'), ids.net1);
    const r = await exec(d1.uuid, `ping -c1 -W1 ${theirs} || echo unreachable`, demoToken);
    // Same CIDR, different segment: the address either does not exist there or is the demo container itself.
    const mine = addrOf(d1, Object.keys(d1.addresses)[0]!);
    if (mine !== theirs) expect(r.output).toContain('unreachable');
    // And the demo project does not see our network at all.
    const nets = await osc(['network', 'list'], { cloud: 'demo' });
    expect(nets.map((n: any) => n.Name)).not.toContain('net1');
  });

  it('a floating IP reaches a container from the host', async () => {
    ids.pub = (await osc(['network', 'create', '--external', 'public'])).id;
    await osc(['subnet', 'create', '--network', 'public', '--subnet-range', PUBLIC, '--no-dhcp', 'public-sub']);
    ids.router = (await osc(['router', 'create', 'r1'])).id;
    await osc(['router', 'set', '--external-gateway', 'public', 'r1'], { json: false });
    await osc(['router', 'add', 'subnet', 'r1', 'sub1'], { json: false });
    const fip = await osc(['floating', 'ip', 'create', 'public']);
    ids.fip = fip.id;
    const webPort = (await osc(['port', 'list', '--device-id', ids.web!]))[0].ID;
    await osc(['floating', 'ip', 'set', '--port', webPort, fip.id], { json: false });
    const addr = fip.floating_ip_address as string;
    const body = await fetchUntil(`http://${addr}:80/`, 'hello-web');
    expect(body, `http://${addr}/ from the host\n${k.output().slice(-2000)}`).toContain('hello-web');
    const shown = await osc(['floating', 'ip', 'show', fip.id]);
    expect(shown).toMatchObject({ port_id: webPort, router_id: ids.router, status: 'ACTIVE' });
  });

  it('a published port answers on 127.0.0.1', async () => {
    const port = await freePort();
    const r = await k.http('POST', '/container/v1/containers?run=true', {
      token,
      headers: ZUN(),
      body: {
        name: 'pub',
        image: 'busybox',
        command: ['sh', '-c', 'mkdir -p /www && echo published > /www/index.html && httpd -f -p 80 -h /www'],
        labels: { 'krater.publish': `127.0.0.1:${port}:80/tcp` },
        nets: [{ network: 'net1' }],
      },
    });
    expect(r.status, r.text).toBe(202);
    ids.pub1 = r.json.uuid;
    await waitContainer(k, token, r.json.uuid, (x) => x.status === 'Running', 'Running');
    expect(await fetchUntil(`http://127.0.0.1:${port}/`, 'published')).toContain('published');
  });

  it('attaches and detaches a network on a running container', async () => {
    await appc(['network', 'attach', '--network', 'net2', 'a1'], { json: false });
    let nets: any[] = [];
    for (let i = 0; i < 50; i++) {
      nets = await appc(['network', 'list', 'a1']);
      if (nets.length === 2) break;
      await sleep(200);
    }
    expect(nets.map((n) => n.net_id).sort()).toEqual([ids.net1, ids.net2].sort());
    let r = await exec(ids.a1!, 'ip -o addr show dev eth1');
    for (let i = 0; i < 50 && r.exit_code !== 0; i++) {
      await sleep(200);
      r = await exec(ids.a1!, 'ip -o addr show dev eth1');
    }
    expect(r.output).toContain(`10.${o2}.2.`);
    await appc(['network', 'detach', '--network', 'net2', 'a1'], { json: false });
    for (let i = 0; i < 50; i++) {
      r = await exec(ids.a1!, 'ip -o link show dev eth1 || echo gone');
      if (r.output.includes('gone')) break;
      await sleep(200);
    }
    expect(r.output).toContain('gone');
    expect(
      (await osc(['port', 'list', '--network', 'net2', '--long'])).filter(
        (p: any) => p['Device Owner'] !== 'network:dhcp',
      ),
    ).toEqual([]);
  });

  it('adds a security group to a container (Zun ≤ 1.14)', async () => {
    const v = ['--os-container-api-version', '1.14'];
    // a2 serves on TCP/80; web is not in `default`, so a2's groups keep it out until web-sg is added.
    const ip = addrOf(await waitContainer(k, token, ids.a2!, () => true, 'shown'), ids.net1);
    await exec(ids.a2!, 'mkdir -p /www && echo a2-web > /www/index.html && httpd -p 80 -h /www');
    let r = await exec(ids.web!, `timeout 2 wget -q -O- http://${ip}:80/ || echo blocked`);
    expect(r.output).toContain('blocked');
    await osc([...v, 'appcontainer', 'add', 'security', 'group', 'a2', 'web-sg'], { json: false });
    // `port list --long` asks for a field Neutron does not have (security_group_ids): `port show` has them.
    const portId = (await osc(['port', 'list', '--device-id', ids.a2!]))[0].ID;
    expect((await osc(['port', 'show', portId])).security_group_ids).toContain(ids.sg);
    for (let i = 0; i < 25 && !r.output.includes('a2-web'); i++) {
      r = await exec(ids.web!, `timeout 2 wget -q -O- http://${ip}:80/ || true`);
      if (!r.output.includes('a2-web')) await sleep(200);
    }
    expect(r.output).toContain('a2-web');
  });

  it('after deleting everything, no veth, bridge, netns or nft rule is left', async () => {
    for (const name of ['a1', 'a2', 'web', 'exposed', 'pub'])
      await appc(['delete', '--force', name], { json: false }).catch(() => undefined);
    // A member may not force-delete (Zun's policy); `--stop` is theirs to use.
    await appc(['delete', '--stop', 'd1'], { json: false, cloud: 'demo' });
    for (const id of [ids.a1, ids.a2, ids.web, ids.exposed, ids.pub1]) await waitGone(k, token, id!);
    const demoToken = (await k.passwordToken('demo', 'demo-secret', 'demo')).token;
    await waitGone(k, demoToken, ids.d1!);
    await osc(['floating', 'ip', 'delete', ids.fip!], { json: false });
    await osc(['router', 'remove', 'subnet', 'r1', 'sub1'], { json: false });
    await osc(['router', 'delete', 'r1'], { json: false });
    for (const n of ['net1', 'net2', 'public']) await osc(['network', 'delete', n], { json: false });
    await osc(['network', 'delete', 'demo-net'], { json: false, cloud: 'demo' });
    await osc(['security', 'group', 'delete', 'web-sg'], { json: false });
    let left = kernelObjects();
    for (let i = 0; i < 50 && (left.links.length || left.netns.length); i++) {
      await sleep(200);
      left = kernelObjects();
    }
    // The instance's own host tables and its pool of ready namespaces stay while Krater runs; nothing per
    // network, port or router remains.
    const pooled = left.links.filter((l) => l.startsWith(`kp${tag}`));
    expect(left.links.filter((l) => !pooled.includes(l))).toEqual([]);
    // Pooled namespaces are endpoint namespaces not yet given out: one per pooled veth, nothing else.
    expect(left.netns.filter((n) => !n.startsWith(`krater-${tag}-e-`))).toEqual([]);
    expect(left.netns).toHaveLength(pooled.length);
    expect((await osc(['port', 'list'])).length).toBe(0);
  });

  it('stopping Krater (purge) leaves no kernel object of it behind', async () => {
    await k.stop();
    expect(kernelObjects()).toEqual({ links: [], netns: [], nft: [] });
  });
});
