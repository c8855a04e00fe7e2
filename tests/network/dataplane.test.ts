/**
 * The kernel dataplane against the real kernel (root; real namespaces, bridges, nftables, dnsmasq), driven directly
 * with hand-written desired states. Every object carries a random tag; afterAll purges it even on failure.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dataplane } from '../../src/network/dataplane.js';
import type {
  DesiredEndpoint,
  DesiredInterface,
  DesiredNetwork,
  DesiredRouter,
  DesiredState,
  FirewallRule,
} from '../../src/network/types.js';

const isRoot = process.getuid?.() === 0;
const haveTools = ['/usr/sbin/ip', '/usr/sbin/nft', '/usr/sbin/dnsmasq', '/bin/busybox'].every(existsSync);

const tag = `t${randomBytes(2).toString('hex').slice(0, 3)}`;
const silent = {
  debug() {},
  info() {},
  warn: (o: object, m?: string) => console.warn(m, o),
  error: (o: object, m?: string) => console.error(m, o),
};

function sh(argv: string[], timeoutMs = 5000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}
const inNs = (ns: string, argv: string[]) => sh(['ip', 'netns', 'exec', ns, ...argv]);
/** An HTTP GET with busybox nc (busybox-static's wget crashes with -T here). */
const httpGet = (ns: string, host: string, port: number, timeoutS: number) =>
  sh([
    'ip',
    'netns',
    'exec',
    ns,
    'sh',
    '-c',
    `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w ${timeoutS} ${host} ${port}`,
  ]);
const nsName = (p: string) => p.split('/').pop()!;

// ---- the desired state -------------------------------------------------------------------------------------

const netA: DesiredNetwork = { id: randomUUID(), mtu: 1450, hostAddresses: [] };
const netB: DesiredNetwork = { id: randomUUID(), mtu: 1450, hostAddresses: [] }; // same CIDR as A
const ext: DesiredNetwork = { id: randomUUID(), mtu: 1500, hostAddresses: ['192.168.251.1/24'] };
const dnsPortA = randomUUID();
netA.dns = {
  portId: dnsPortA,
  mac: 'fa:16:3e:00:a0:02',
  addresses: ['10.91.0.2/24', 'fd91:91::2/64'],
  domain: 'krater.test',
  records: [],
};

const rule = (r: Partial<FirewallRule> & Pick<FirewallRule, 'direction' | 'ethertype'>): FirewallRule => ({
  protocol: null,
  portMin: null,
  portMax: null,
  remotePrefix: null,
  remoteAddresses: null,
  ...r,
});
const egressAny = [rule({ direction: 'egress', ethertype: 'IPv4' }), rule({ direction: 'egress', ethertype: 'IPv6' })];

let macN = 0x10;
function itf(
  net: DesiredNetwork,
  addresses: string[],
  rules: FirewallRule[],
  extra: Partial<DesiredInterface> = {},
): DesiredInterface {
  return {
    portId: randomUUID(),
    networkId: net.id,
    ifname: 'eth0',
    mac: `fa:16:3e:00:01:${(macN++).toString(16).padStart(2, '0')}`,
    mtu: net.mtu,
    addresses,
    routes: [],
    portSecurity: true,
    allowedAddressPairs: [],
    rules,
    ...extra,
  };
}
function endpoint(
  hostname: string,
  interfaces: DesiredInterface[],
  extra: Partial<DesiredEndpoint> = {},
): DesiredEndpoint {
  return {
    id: randomUUID(),
    hostname,
    interfaces,
    nameservers: ['10.91.0.2'],
    search: ['krater.test'],
    published: [],
    publishing: false,
    ...extra,
  };
}

// e1: pingable (v4 and v6) and open to its group; e2: only TCP/80 in; e3/e4 on network B (same CIDR).
const e1 = endpoint('one', [
  itf(
    netA,
    ['10.91.0.11/24', 'fd91:91::11/64'],
    [
      ...egressAny,
      rule({ direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp' }),
      rule({ direction: 'ingress', ethertype: 'IPv6', protocol: 'ipv6-icmp' }),
    ],
    { gateway4: '10.91.0.1' },
  ),
]);
const publishedPort = 20000 + Math.floor(Math.random() * 20000);
const e2 = endpoint(
  'two',
  [
    itf(
      netA,
      ['10.91.0.12/24', 'fd91:91::12/64'],
      [...egressAny, rule({ direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portMin: 80, portMax: 80 })],
      { gateway4: '10.91.0.1' },
    ),
  ],
  {
    published: [
      { hostIp: '127.0.0.1', hostPort: publishedPort, containerPort: 80, protocol: 'tcp' },
      { hostIp: '127.0.0.1', hostPort: publishedPort + 1, containerPort: 7000, protocol: 'udp' },
      { hostIp: '0.0.0.0', hostPort: publishedPort + 2, containerPort: 82, protocol: 'tcp' },
    ],
    publishing: true,
  },
);
const openAll = [...egressAny, rule({ direction: 'ingress', ethertype: 'IPv4' })];
const e3 = endpoint('three', [itf(netB, ['10.91.0.13/24'], openAll)], { nameservers: [] });
const e4 = endpoint('four', [itf(netB, ['10.91.0.11/24'], openAll)], { nameservers: [] }); // = e1's address
// An "upstream" host on the external network: no gateway, so it only answers SNATed traffic.
const e5 = endpoint('upstream', [itf(ext, ['192.168.251.77/24'], [], { portSecurity: false })], { nameservers: [] });

const router: DesiredRouter = {
  id: randomUUID(),
  interfaces: [
    {
      portId: randomUUID(),
      networkId: netA.id,
      mac: 'fa:16:3e:00:a0:01',
      addresses: ['10.91.0.1/24', 'fd91:91::1/64'],
      mtu: 1450,
    },
  ],
  gateway: {
    portId: randomUUID(),
    networkId: ext.id,
    mac: 'fa:16:3e:00:ee:10',
    addresses: ['192.168.251.10/24'],
    mtu: 1500,
    nexthop4: '192.168.251.1',
    snat: true,
  },
  floatingIps: [{ floatingIp: '192.168.251.50', fixedIp: '10.91.0.11' }],
  routes: [],
};

const endpoints = [e1, e2, e3, e4, e5];
netA.dns.records = [
  { name: 'one', addresses: ['10.91.0.11', 'fd91:91::11'] },
  { name: 'two', addresses: ['10.91.0.12', 'fd91:91::12'] },
];
const full = (): DesiredState => ({ networks: [netA, netB, ext], endpoints, routers: [router] });
const empty: DesiredState = { networks: [], endpoints: [], routers: [] };

// ---- leftovers ---------------------------------------------------------------------------------------------

async function leftovers(): Promise<{ links: string[]; netns: string[]; nft: string[]; procs: string[] }> {
  const links = JSON.parse((await sh(['ip', '-j', 'link', 'show'])).out) as { ifname: string }[];
  const netns = await readdir('/run/netns').catch(() => [] as string[]);
  const ruleset = JSON.parse((await sh(['nft', '-j', 'list', 'ruleset'])).out).nftables as any[];
  const procs: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await import('node:fs/promises')
      .then((fs) => fs.readFile(`/proc/${pid}/cmdline`, 'utf8'))
      .catch(() => '');
    if (cmd.includes(`krater-proxy:${tag}:`) || (cmd.includes('dnsmasq') && cmd.includes(stateDir))) procs.push(cmd);
  }
  return {
    links: links.map((l) => l.ifname).filter((n) => n.slice(2, 6) === tag && n.startsWith('k')),
    netns: netns.filter((n) => n.includes(`krater-${tag}-`)),
    nft: ruleset.filter((o) => JSON.stringify(o).includes(`krater-${tag}`)).map((o) => JSON.stringify(o)),
    procs,
  };
}

// ---- the suite ---------------------------------------------------------------------------------------------

let stateDir = '';
let dp: Dataplane;
const servers: ChildProcess[] = [];

describe.skipIf(!isRoot || !haveTools)('network dataplane (real kernel)', () => {
  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), `krater-dp-${tag}-`));
    dp = new Dataplane({ tag, stateDir, log: silent, poolSize: 6 });
    await dp.start();
    await dp.warm();
  });

  afterAll(async () => {
    for (const s of servers) s.kill('SIGKILL');
    const purge = new Dataplane({ tag, stateDir, log: silent, poolSize: 0 });
    await dp?.stop({ purge: true }).catch((err) => console.error('purge failed', err));
    await purge
      .start()
      .then(() => purge.stop({ purge: true }))
      .catch((err) => console.error('purge failed', err));
    await rm(stateDir, { recursive: true, force: true });
  });

  it('creates bridges and DNS, then endpoints through the fast path', async () => {
    await dp.apply({ networks: [netA, netB, ext], endpoints: [], routers: [] });
    for (const ep of endpoints) {
      const nets = [netA, netB, ext].filter((n) => ep.interfaces.some((i) => i.networkId === n.id));
      const paths = await dp.ensureEndpoint(ep, nets);
      expect(paths.netnsPath).toMatch(new RegExp(`^/run/netns/krater-${tag}-e-`));
      expect(existsSync(paths.netnsPath)).toBe(true);
    }
    await dp.apply(full());
    const p1 = dp.endpointPaths(e1.id)!;
    const ns1 = nsName(p1.netnsPath);
    const addr = JSON.parse((await sh(['ip', '-n', ns1, '-j', 'addr', 'show', 'dev', 'eth0'])).out)[0];
    expect(addr.address).toBe(e1.interfaces[0].mac);
    expect(addr.mtu).toBe(1450);
    expect(addr.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`)).toEqual(
      expect.arrayContaining(['10.91.0.11/24', 'fd91:91::11/64']),
    );
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(p1.resolvConf, 'utf8')).toContain('nameserver 10.91.0.2');
    expect(await readFile(p1.hostsFile, 'utf8')).toMatch(/10\.91\.0\.11\tone\.krater\.test one/);
    expect((await readFile(p1.hostnameFile, 'utf8')).trim()).toBe('one');
  });

  it('two endpoints on one network reach each other by IP (v4 and v6) and by name', async () => {
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0);
    expect((await inNs(ns2, ['busybox', 'ping', '-6', '-c1', '-W2', 'fd91:91::11'])).code).toBe(0);
    const r = await inNs(ns2, ['busybox', 'nslookup', 'one', '10.91.0.2']);
    expect(r.out).toContain('10.91.0.11');
    const fq = await inNs(ns2, ['busybox', 'nslookup', 'one.krater.test', '10.91.0.2']);
    expect(fq.out).toContain('10.91.0.11');
    const v6 = await inNs(ns2, ['busybox', 'nslookup', 'two', 'fd91:91::2']);
    expect(v6.out).toContain('10.91.0.12');
  });

  it('a security group opening TCP/80 lets 80 through, not 81, not ping', async () => {
    const ns1 = nsName(dp.endpointPaths(e1.id)!.netnsPath);
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    const www = join(stateDir, 'www');
    await mkdir(www, { recursive: true });
    await writeFile(join(www, 'index.html'), 'hello from two\n');
    for (const port of ['80', '81']) {
      const s = spawn('ip', ['netns', 'exec', ns2, 'busybox', 'httpd', '-f', '-p', port, '-h', www], {
        stdio: 'ignore',
      });
      servers.push(s);
    }
    await new Promise((r) => setTimeout(r, 300));
    const ok = await httpGet(ns1, '10.91.0.12', 80, 2);
    expect(ok.out).toContain('hello from two');
    const closed = await httpGet(ns1, '10.91.0.12', 81, 1);
    expect(closed.out).not.toContain('hello');
    expect((await inNs(ns1, ['busybox', 'ping', '-c1', '-W1', '10.91.0.12'])).code).not.toBe(0);
    // Inside the namespace itself (loopback and own address) nothing is filtered.
    expect((await httpGet(ns2, '127.0.0.1', 81, 2)).out).toContain('hello');
  });

  it('isolates networks, even with the same CIDR', async () => {
    const ns1 = nsName(dp.endpointPaths(e1.id)!.netnsPath);
    const ns3 = nsName(dp.endpointPaths(e3.id)!.netnsPath);
    // e3 (network B) reaches e4 at 10.91.0.11 on its own network, never e1 (same address, network A).
    expect((await inNs(ns3, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0);
    const neigh = (await sh(['ip', '-n', ns3, 'neigh', 'show', '10.91.0.11'])).out;
    expect(neigh).toContain(e4.interfaces[0].mac);
    expect((await inNs(ns1, ['busybox', 'ping', '-c1', '-W1', '10.91.0.13'])).code).not.toBe(0);
    expect((await inNs(ns3, ['busybox', 'ping', '-c1', '-W1', '10.91.0.12'])).code).not.toBe(0);
  });

  it('routes with SNAT and reaches a floating IP from the host', async () => {
    // Host → floating IP → e1.
    expect((await sh(['busybox', 'ping', '-c1', '-W2', '192.168.251.50'])).code).toBe(0);
    // e2 (no floating IP) → the upstream endpoint: answers only because the router SNATs (it has no route back).
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W2', '192.168.251.77'])).code).toBe(0);
    // e1 leaves through its floating IP: the upstream sees 192.168.251.50.
    const ns5 = nsName(dp.endpointPaths(e5.id)!.netnsPath);
    const ns1 = nsName(dp.endpointPaths(e1.id)!.netnsPath);
    await sh(['ip', '-n', ns5, 'neigh', 'flush', 'all']);
    expect((await inNs(ns1, ['busybox', 'ping', '-c1', '-W2', '192.168.251.77'])).code).toBe(0);
    const seen = (await sh(['ip', '-n', ns5, 'neigh', 'show'])).out;
    expect(seen).toContain('192.168.251.50');
  });

  it('publishes ports on 127.0.0.1 and 0.0.0.0 in the kernel (no process), TCP and UDP', async () => {
    const get = (port: number) =>
      fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.text())
        .catch(() => '');
    expect(await get(publishedPort)).toContain('hello from two');
    // A service bound to the container's fixed address only is reached too (DNAT inside the namespace).
    const ns2fixed = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    const www = join(stateDir, 'www');
    servers.push(
      spawn('ip', ['netns', 'exec', ns2fixed, 'busybox', 'httpd', '-f', '-p', '10.91.0.12:82', '-h', www], {
        stdio: 'ignore',
      }),
    );
    let fixed = '';
    for (let i = 0; i < 20 && !fixed; i++) {
      fixed = await get(publishedPort + 2);
      if (!fixed) await new Promise((r) => setTimeout(r, 100));
    }
    expect(fixed).toContain('hello from two');
    // The rules are in Krater's host table; no process serves the port.
    const table = (await sh(['nft', 'list', 'table', 'ip', `krater-${tag}`])).out;
    expect(table).toContain(`127.0.0.1 . tcp . ${publishedPort}`);
    expect((await leftovers()).procs.filter((p) => !p.includes('dnsmasq'))).toEqual([]);
    // The port stops answering when the container stops, and answers again when it starts.
    await dp.setPublishing(e2.id, false);
    expect(await get(publishedPort)).toBe('');
    expect((await sh(['nft', 'list', 'table', 'ip', `krater-${tag}`])).out).not.toContain(`${publishedPort}`);
    await dp.setPublishing(e2.id, true);
    expect(await get(publishedPort)).toContain('hello from two');
    // UDP: an echo server inside the namespace, reached through the host socket.
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    const echo = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns2,
        process.execPath,
        '-e',
        "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7000)",
      ],
      { stdio: 'ignore' },
    );
    servers.push(echo);
    const { createSocket } = await import('node:dgram');
    const client = createSocket('udp4');
    let reply = '';
    client.on('message', (m) => {
      reply = m.toString();
    });
    for (let i = 0; i < 30 && !reply; i++) {
      client.send('ping-udp', publishedPort + 1, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 100));
    }
    client.close();
    expect(reply).toBe('ping-udp');
  });

  it('a host port another program holds is not taken over: binding fails and nothing is diverted', async () => {
    const { createServer } = await import('node:net');
    const holder = createServer((s) => s.end('host service\n'));
    const hostPort = publishedPort + 3;
    await new Promise<void>((r) => holder.listen(hostPort, '127.0.0.1', () => r()));
    try {
      const e = endpoint('taken', [itf(netA, ['10.91.0.31/24'], openAll)], {
        published: [{ hostIp: '127.0.0.1', hostPort, containerPort: 80, protocol: 'tcp' }],
      });
      await dp.ensureEndpoint(e, [netA]);
      await expect(dp.setPublishing(e.id, true)).rejects.toThrow(
        /Bind for 127.0.0.1:\d+\/tcp failed: address already in use/,
      );
      const body = await fetch(`http://127.0.0.1:${hostPort}/`).then(
        (r) => r.text(),
        (err) => String(err),
      );
      expect(body).not.toContain('hello');
      await dp.removeEndpoint(e.id);
    } finally {
      holder.close();
    }
  });

  it('the publish leg carries only published flows: the container cannot open connections to the host through it', async () => {
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    const leg = JSON.parse((await sh(['ip', '-n', ns2, '-j', 'addr', 'show', 'dev', 'pub0'])).out)[0];
    const mine = leg.addr_info.find((a: any) => a.family === 'inet').local as string;
    const hostEnd = mine.replace(/\d+$/, (n) => String(Number(n) - 1));
    const { createServer } = await import('node:net');
    const probe = createServer((s) => s.end('host reached\n'));
    await new Promise<void>((r) => probe.listen(0, '0.0.0.0', () => r()));
    try {
      const port = (probe.address() as { port: number }).port;
      const r = await httpGet(ns2, hostEnd, port, 1);
      expect(r.out).not.toContain('host reached');
    } finally {
      probe.close();
    }
  });

  it('anti-spoofing: a changed MAC or source IP stops traffic', async () => {
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    const mac = e2.interfaces[0].mac;
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0);
    await sh(['ip', '-n', ns2, 'link', 'set', 'dev', 'eth0', 'address', 'fa:16:3e:de:ad:01']);
    await sh(['ip', '-n', ns2, 'neigh', 'flush', 'all']);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W1', '10.91.0.11'])).code).not.toBe(0);
    await sh(['ip', '-n', ns2, 'link', 'set', 'dev', 'eth0', 'address', mac]);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0);
    await sh(['ip', '-n', ns2, 'addr', 'add', '10.91.0.99/24', 'dev', 'eth0']);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W1', '-I', '10.91.0.99', '10.91.0.11'])).code).not.toBe(0);
    await sh(['ip', '-n', ns2, 'addr', 'del', '10.91.0.99/24', 'dev', 'eth0']);
    // An allowed address pair makes that address legitimate.
    e2.interfaces[0].allowedAddressPairs = [{ ipAddress: '10.91.0.99' }];
    await dp.apply(full());
    await sh(['ip', '-n', ns2, 'addr', 'add', '10.91.0.99/24', 'dev', 'eth0']);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W2', '-I', '10.91.0.99', '10.91.0.11'])).code).toBe(0);
    await sh(['ip', '-n', ns2, 'addr', 'del', '10.91.0.99/24', 'dev', 'eth0']);
  });

  it('apply converges after the state file is lost (new process, same tag)', async () => {
    const before = Object.fromEntries(endpoints.map((e) => [e.id, dp.endpointPaths(e.id)!.netnsPath]));
    await dp.stop({ purge: false });
    await rm(join(stateDir, 'state.json'));
    dp = new Dataplane({ tag, stateDir, log: silent, poolSize: 6 });
    await dp.start();
    await dp.apply(full());
    await dp.warm();
    for (const e of endpoints) expect(dp.endpointPaths(e.id)!.netnsPath).toBe(before[e.id]);
    const left = await leftovers();
    expect(left.netns.filter((n) => n.includes('-e-')).length).toBe(endpoints.length + dp.poolAvailable);
    const ns2 = nsName(before[e2.id]);
    expect((await inNs(ns2, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0);
    expect((await inNs(ns2, ['busybox', 'nslookup', 'one', '10.91.0.2'])).out).toContain('10.91.0.11');
    expect((await sh(['busybox', 'ping', '-c1', '-W2', '192.168.251.50'])).code).toBe(0);
    // A second apply with nothing changed is cheap.
    const t0 = performance.now();
    await dp.apply(full());
    console.log(`apply with nothing changed: ${(performance.now() - t0).toFixed(1)} ms`);
  });

  it('removing a floating IP and changing names takes effect', async () => {
    router.floatingIps = [];
    netA.dns!.records = [...netA.dns!.records, { name: 'extra', addresses: ['10.91.0.42'] }];
    await dp.apply(full());
    expect((await sh(['busybox', 'ping', '-c1', '-W1', '192.168.251.50'])).code).not.toBe(0);
    const ns2 = nsName(dp.endpointPaths(e2.id)!.netnsPath);
    expect((await inNs(ns2, ['busybox', 'nslookup', 'extra', '10.91.0.2'])).out).toContain('10.91.0.42');
  });

  it('attaches and detaches a network on an existing endpoint', async () => {
    const ns3 = nsName(dp.endpointPaths(e3.id)!.netnsPath);
    const extra = itf(netA, ['10.91.0.14/24'], openAll, { ifname: 'eth1' });
    e3.interfaces = [...e3.interfaces, extra];
    await dp.ensureEndpoint(e3, [netA, netB]);
    expect(nsName(dp.endpointPaths(e3.id)!.netnsPath)).toBe(ns3);
    const link = JSON.parse((await sh(['ip', '-n', ns3, '-j', 'addr', 'show', 'dev', 'eth1'])).out)[0];
    expect(link.address).toBe(extra.mac);
    expect((await inNs(ns3, ['busybox', 'ping', '-c1', '-W2', '-I', 'eth1', '10.91.0.11'])).code).toBe(0);
    await dp.apply(full());
    e3.interfaces = e3.interfaces.slice(0, 1);
    await dp.apply(full());
    expect((await sh(['ip', '-n', ns3, 'link', 'show', 'dev', 'eth1'])).code).not.toBe(0);
    expect((await sh(['ip', 'link', 'show', 'dev', `kv${tag}${extra.portId.slice(0, 8)}`])).code).not.toBe(0);
    expect((await inNs(ns3, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0); // e4 on B again
  });

  it('measures ensureEndpoint (fast path, pool warm)', async () => {
    const times: number[] = [];
    const made: string[] = [];
    for (let i = 0; i < 30; i++) {
      await dp.warm();
      const ep = endpoint(`bench${i}`, [
        itf(netA, [`10.91.0.${100 + i}/24`, `fd91:91::${(0x100 + i).toString(16)}/64`], e1.interfaces[0].rules, {
          gateway4: '10.91.0.1',
        }),
      ]);
      const t0 = performance.now();
      await dp.ensureEndpoint(ep, [netA]);
      times.push(performance.now() - t0);
      made.push(ep.id);
    }
    times.sort((a, b) => a - b);
    const p = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(1);
    console.log(`ensureEndpoint over ${times.length}: p50 ${p(0.5)} ms, p90 ${p(0.9)} ms, max ${p(1)} ms`);
    const ns = nsName(dp.endpointPaths(made[0])!.netnsPath);
    expect((await inNs(ns, ['busybox', 'ping', '-c1', '-W2', '10.91.0.11'])).code).toBe(0);
    const t0 = performance.now();
    for (const id of made) await dp.removeEndpoint(id);
    console.log(`removeEndpoint: ${((performance.now() - t0) / made.length).toFixed(1)} ms each`);
    expect(existsSync(`/run/netns/${ns}`)).toBe(false);
  });

  it('removing everything from the desired state leaves only the pool; purge leaves nothing', async () => {
    for (const s of servers) s.kill('SIGKILL');
    await dp.apply(empty);
    let left = await leftovers();
    expect(left.links.filter((l) => !l.startsWith(`kp${tag}`))).toEqual([]);
    expect(left.netns.length).toBe(dp.poolAvailable);
    expect(left.procs).toEqual([]);
    await dp.stop({ purge: true });
    left = await leftovers();
    expect(left).toEqual({ links: [], netns: [], nft: [], procs: [] });
  });
});
