/**
 * A multi-machine Krater deployment on one machine, for end-to-end tests (issue 12, item 7):
 *
 *   - a private PostgreSQL database (tests/helpers/postgres.ts);
 *   - an underlay: a Linux bridge of its own in the root namespace, on a private /24 (`.1` is the root namespace's
 *     address), guarded so nothing from it leaves the machine (`FORWARD -i BR ! -o BR -j DROP`, machine.md §12);
 *   - HAProxy (Debian's) on the underlay address: the deployment's public URL (HTTP, round robin with health checks
 *     over the replicas) and a TCP forward to PostgreSQL (which listens on loopback only) for the hosts;
 *   - N `krater api` replicas on the underlay address, one master key, one image directory, `--public-url` = HAProxy;
 *   - M "hosts": each a network namespace attached to the underlay by a veth, with its own address (`.11`, `.12`, …),
 *     running `krater agent` (entered with `nsenter --net`, so mounts stay in the root mount namespace and survive an
 *     agent restart) with its own data dir and hence its own private containerd; RPC bound on its underlay address.
 *
 *   const mh = await MultiHost.start({ hosts: 3, replicas: 2 });
 *   await mh.http('lb', 'GET', '/identity/v3');          // through HAProxy; 0, 1 … for one replica
 *   await mh.hosts[0].kill('SIGKILL'); await mh.hosts[0].start();
 *   const left = await mh.destroy();                    // stops everything; reports what it had to clean itself
 *
 * Every name on the machine is unique (`kmh<6 hex>` prefix); every process is ended by its PID; a process exit
 * (crash, Ctrl-C) still kills the processes and removes the namespaces, the bridge and the FORWARD rule.
 * KRATER_E2E_KEEP=1 keeps the work dir.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import {
  cleanEnv,
  ensureBuilt,
  freePort,
  type HttpOptions,
  type HttpResult,
  http,
  REPO_ROOT,
  sleep,
} from './krater.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';

const KRATER_BIN = join(REPO_ROOT, 'bin/krater.js');

/** Runs a command synchronously; throws with its stderr. */
function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}
/** Same, ignoring failure (cleanup). */
function shQuiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 30_000 });
  } catch {}
}

/** Keeps the last `max` characters written to it. */
class Tail {
  private buf = '';
  constructor(private readonly max = 128 * 1024) {}
  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    if (this.buf.length > this.max) this.buf = this.buf.slice(-this.max);
  }
  toString(): string {
    return this.buf;
  }
}

/** A spawned process with its output kept; ended by PID. */
class Proc {
  proc?: ChildProcess;
  readonly log = new Tail();
  private exited?: Promise<void>;
  constructor(readonly label: string) {}

  spawn(cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    this.log.push(`\n[multihost] starting ${this.label}: ${cmd} ${args.join(' ')}\n`);
    const p = spawn(cmd, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    live.add(p);
    p.stdout?.on('data', (c) => this.log.push(c));
    p.stderr?.on('data', (c) => this.log.push(c));
    this.exited = new Promise((resolve) => {
      p.once('exit', (code, signal) => {
        live.delete(p);
        this.log.push(`\n[multihost] ${this.label} exited: code=${code} signal=${signal}\n`);
        resolve();
      });
      p.once('error', (err) => {
        live.delete(p);
        this.log.push(`\n[multihost] ${this.label} spawn error: ${err.message}\n`);
        resolve();
      });
    });
    return p;
  }

  get alive(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
  async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<void> {
    if (!this.alive) return;
    this.proc!.kill(signal);
    const timedOut = await Promise.race([this.exited!.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut) {
      this.log.push(`\n[multihost] ${this.label} ignored ${signal} for ${graceMs} ms: SIGKILL\n`);
      this.proc!.kill('SIGKILL');
      await this.exited;
    }
  }

  output(): string {
    return this.log.toString();
  }
}

/** Processes of this test process, and the network objects it made: removed even if it exits without destroy(). */
const live = new Set<ChildProcess>();
const exitCleanups = new Set<() => void>();
process.once('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {}
  }
  for (const c of exitCleanups) c();
});

/** One `krater api` replica: its own data dir and port on the underlay address. */
export class Replica extends Proc {
  port = 0;
  constructor(
    readonly mh: MultiHost,
    readonly name: string,
    readonly dataDir: string,
  ) {
    super(`replica ${name}`);
    mkdirSync(dataDir, { recursive: true });
  }

  get baseUrl(): string {
    return `http://${this.mh.gateway}:${this.port}`;
  }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    const args = [KRATER_BIN, 'api', '--data-dir', this.dataDir, '--bind', this.mh.gateway];
    args.push('--port', String(this.port), '--database', this.mh.db.url, '--public-url', this.mh.publicUrl);
    args.push('--log-level', 'warn', '--no-clouds-yaml');
    this.spawn(process.execPath, args, {
      ...cleanEnv(),
      HOME: this.dataDir,
      ...this.mh.sharedEnv(),
      ...this.mh.opts.replicaEnv,
    });
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (!this.alive) throw new Error(`${this.label} exited before it was ready:\n${this.output()}`);
      const r = await http('GET', `${this.baseUrl}/identity/v3`).catch(() => undefined);
      if (r?.status === 200) return;
      if (Date.now() > deadline) throw new Error(`${this.label} not ready:\n${this.output()}`);
      await sleep(100);
    }
  }
}

/** One "host": a network namespace on the underlay with `krater agent` (and its private containerd) inside. */
export class AgentHost extends Proc {
  rpcUrl = '';
  constructor(
    readonly mh: MultiHost,
    /** The host name the agent registers (`--host`). */
    readonly hostname: string,
    readonly netns: string,
    readonly veth: string,
    /** Its underlay address (no prefix length). */
    readonly address: string,
    readonly dataDir: string,
  ) {
    super(`agent ${hostname}`);
  }

  /** The dataplane tag of this agent's kernel objects (src/app/control-plane.ts `dataplaneTag`). */
  get tag(): string {
    return createHash('sha256').update(this.dataDir).digest('hex').slice(0, 4);
  }

  /** The cgroup parent of its containers (src/app/engine-setup.ts `cgroupParentFor`). */
  get cgroupParent(): string {
    return `/krater-${createHash('sha256').update(this.dataDir).digest('hex').slice(0, 10)}`;
  }

  get containerdSocket(): string {
    return join(this.dataDir, 'agent/containerd/containerd.sock');
  }

  /** Makes the namespace, its veth on the underlay and its address. */
  plug(): void {
    sh('ip', ['netns', 'add', this.netns]);
    sh('ip', ['link', 'add', this.veth, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', this.netns]);
    sh('ip', ['link', 'set', this.veth, 'master', this.mh.bridge, 'up']);
    sh('ip', ['-n', this.netns, 'addr', 'add', `${this.address}/24`, 'dev', 'ul0']);
    sh('ip', ['-n', this.netns, 'link', 'set', 'ul0', 'up']);
    sh('ip', ['-n', this.netns, 'link', 'set', 'lo', 'up']);
  }

  async start(): Promise<void> {
    mkdirSync(this.dataDir, { recursive: true });
    const args = [`--net=/var/run/netns/${this.netns}`, process.execPath, KRATER_BIN, 'agent'];
    args.push('--data-dir', this.dataDir, '--database', this.mh.agentDatabaseUrl, '--host', this.hostname);
    args.push('--bind', this.address, '--port', '0', '--log-level', 'warn');
    this.rpcUrl = '';
    const p = this.spawn('nsenter', args, {
      ...cleanEnv(),
      HOME: this.dataDir,
      KRATER_DEFAULT_IMAGE: this.mh.opts.defaultImage,
      KRATER_AGENT_SHUTDOWN: 'purge',
      KRATER_NETWORKING: 'kernel',
      // The host's underlay address, for the tenant networks' VXLAN tunnels.
      KRATER_TUNNEL_IP: this.address,
      ...this.mh.opts.agentEnv,
    });
    let out = '';
    const deadline = Date.now() + 120_000;
    p.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    for (;;) {
      const m = /RPC at (\S+)/.exec(out);
      if (m) {
        this.rpcUrl = m[1];
        return;
      }
      if (!this.alive) throw new Error(`${this.label} exited before it was ready:\n${this.output()}`);
      if (Date.now() > deadline) throw new Error(`${this.label} not ready:\n${this.output()}`);
      await sleep(100);
    }
  }

  /** `ctr` against this host's containerd (namespace `krater`). */
  ctr(args: string[]): string {
    return sh('ctr', ['--address', this.containerdSocket, '--namespace', 'krater', ...args]);
  }

  /** Task ids and their status on this host's containerd. */
  tasks(): { id: string; status: string }[] {
    return this.ctr(['tasks', 'ls'])
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length >= 3)
      .map(([id, , status]) => ({ id, status }));
  }
}

export interface MultiHostOptions {
  hosts?: number;
  replicas?: number;
  /** The offline image archive each agent imports as `busybox`. */
  defaultImage: string;
  /** Extra environment of every replica (e.g. short controller intervals). */
  replicaEnv?: Record<string, string>;
  /** Extra environment of every agent. */
  agentEnv?: Record<string, string>;
}

/** What a teardown found still there after Krater's own shutdown (and then removed). */
export interface Leftovers {
  processes: string[];
  mounts: string[];
  netns: string[];
  links: string[];
  nftTables: string[];
  cgroups: string[];
}

export class MultiHost {
  readonly id = randomBytes(3).toString('hex');
  readonly workDir: string;
  /** The underlay bridge (root namespace). */
  readonly bridge: string;
  /** First three octets of the underlay /24. */
  readonly subnet: string;
  db!: TestDatabase;
  lbPort = 0;
  pgPort = 0;
  readonly haproxy = new Proc('haproxy');
  readonly replicas: Replica[] = [];
  readonly hosts: AgentHost[] = [];
  adminPassword = '';
  private forwardRule: string[];
  private haproxyConfig: string;

  private constructor(readonly opts: MultiHostOptions) {
    this.workDir = mkdtempSync(join(process.env.KRATER_E2E_TMPDIR ?? '/tmp', 'kmh-'));
    this.bridge = `kmh${this.id}`;
    this.subnet = pickSubnet();
    this.forwardRule = ['FORWARD', '-i', this.bridge, '!', '-o', this.bridge, '-j', 'DROP'];
    this.haproxyConfig = join(this.workDir, 'haproxy.cfg');
    writeFileSync(join(this.workDir, 'master.key'), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    mkdirSync(join(this.workDir, 'images'), { mode: 0o700 });
  }

  /** The root namespace's address on the underlay: HAProxy and the replicas listen there. */
  get gateway(): string {
    return `${this.subnet}.1`;
  }

  /** The deployment's public URL: HAProxy. */
  get publicUrl(): string {
    return `http://${this.gateway}:${this.lbPort}`;
  }

  /** The store as the hosts reach it: through HAProxy's TCP forward on the underlay. */
  get agentDatabaseUrl(): string {
    const u = new URL(this.db.url);
    u.hostname = this.gateway;
    u.port = String(this.pgPort);
    return u.toString();
  }

  /** What every replica shares: the master key (a file, as an operator distributes it) and the image directory. */
  sharedEnv(): Record<string, string> {
    return {
      KRATER_MASTER_KEY_FILE: join(this.workDir, 'master.key'),
      KRATER_IMAGE_DIR: join(this.workDir, 'images'),
      KRATER_NETWORKING: 'kernel',
    };
  }

  static async start(opts: MultiHostOptions): Promise<MultiHost> {
    await ensureBuilt();
    const mh = new MultiHost(opts);
    try {
      await mh.boot(opts.replicas ?? 2, opts.hosts ?? 3);
    } catch (err) {
      await mh.destroy().catch(() => undefined);
      throw err;
    }
    return mh;
  }

  private async boot(replicas: number, hosts: number): Promise<void> {
    this.db = await createTestDatabase();
    this.makeUnderlay();
    for (let i = 0; i < hosts; i++) {
      const h = new AgentHost(
        this,
        `kmh-${this.id}-h${i + 1}`,
        `kmh-${this.id}-h${i + 1}`,
        `kmh${this.id}v${i + 1}`,
        `${this.subnet}.${11 + i}`,
        join(this.workDir, `h${i + 1}`),
      );
      h.plug();
      this.hosts.push(h);
    }
    for (let i = 0; i < replicas; i++)
      this.replicas.push(new Replica(this, `r${i + 1}`, join(this.workDir, `r${i + 1}`)));
    for (const r of this.replicas) r.port = await freePort();
    this.lbPort = await freePort();
    this.pgPort = await freePort();
    await this.startHaproxy();
    // One after the other: the first migrates and bootstraps the empty database.
    for (const r of this.replicas) await r.start();
    this.adminPassword = readFileSync(join(this.replicas[0].dataDir, 'admin-password'), 'utf8').trim();
    await Promise.all(this.hosts.map((h) => h.start()));
  }

  private makeUnderlay(): void {
    exitCleanups.add(this.crashCleanup);
    sh('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${this.gateway}/24`, 'dev', this.bridge]);
    sh('ip', ['link', 'set', this.bridge, 'up']);
    sh('iptables', ['-I', ...this.forwardRule]);
  }

  private async startHaproxy(): Promise<void> {
    const pg = new URL(this.db.url);
    const servers = this.replicas
      .map((r) => `  server ${r.name} ${this.gateway}:${r.port} check inter 500 fall 2 rise 2`)
      .join('\n');
    writeFileSync(
      this.haproxyConfig,
      `global
  maxconn 1024
  nbthread 1
defaults
  mode http
  timeout connect 3s
  timeout client 120s
  timeout server 120s
  timeout tunnel 1h
  retries 2
  option redispatch
frontend api
  bind ${this.gateway}:${this.lbPort}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /identity/v3
  http-check expect status 200
${servers}
listen postgres
  mode tcp
  bind ${this.gateway}:${this.pgPort}
  timeout client 1h
  timeout server 1h
  server pg ${pg.hostname}:${pg.port || 5432}
`,
    );
    this.haproxy.spawn('haproxy', ['-db', '-f', this.haproxyConfig], cleanEnv());
    const deadline = Date.now() + 20_000;
    for (;;) {
      const up = await new Promise<boolean>((resolve) => {
        const s = connect(this.pgPort, this.gateway, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (up) return;
      if (!this.haproxy.alive || Date.now() > deadline)
        throw new Error(`haproxy did not start:\n${this.haproxy.output()}`);
      await sleep(100);
    }
  }

  /** A replica by index, or `lb` (HAProxy). */
  baseUrl(target: number | 'lb'): string {
    return target === 'lb' ? this.publicUrl : this.replicas[target].baseUrl;
  }

  http(target: number | 'lb', method: string, path: string, opts?: HttpOptions): Promise<HttpResult> {
    return http(method, `${this.baseUrl(target)}${path}`, opts);
  }

  /** A password token (project-scoped) through `target`. */
  async token(
    target: number | 'lb',
    user = 'admin',
    password = this.adminPassword,
    project = 'admin',
  ): Promise<string> {
    const auth = {
      identity: { methods: ['password'], password: { user: { name: user, domain: { name: 'Default' }, password } } },
      scope: { project: { name: project, domain: { name: 'Default' } } },
    };
    const r = await this.http(target, 'POST', '/identity/v3/auth/tokens', { body: { auth } });
    const token = r.headers.get('x-subject-token');
    if (r.status !== 201 || !token) throw new Error(`token request failed: ${r.status} ${r.text}`);
    return token;
  }

  /** The tail of every process's output, for failure messages. */
  output(max = 3000): string {
    return [this.haproxy, ...this.replicas, ...this.hosts]
      .map((p) => `--- ${p.label}\n${p.output().slice(-max)}`)
      .join('\n');
  }

  /** What the deployment's processes left on the machine (by name, mount point and PID: nothing foreign). */
  leftovers(): Leftovers {
    const tags = this.hosts.map((h) => h.tag);
    const ours = (name: string) => tags.some((t) => name.startsWith(`krater-${t}-`));
    const netns = listNetns().filter(ours);
    const links = listLinks().filter((l) => tags.some((t) => l.slice(2, 6) === t && l.startsWith('k')));
    const nftTables = listNftTables().filter((t) => tags.some((tag) => t.endsWith(`krater-${tag}`)));
    const cgroups = this.hosts
      .map((h) => `/sys/fs/cgroup/memory${h.cgroupParent}`)
      .filter((d) => existsSync(d))
      .concat(this.hosts.map((h) => `/sys/fs/cgroup/pids${h.cgroupParent}`).filter((d) => existsSync(d)));
    return {
      processes: processesUnder(this.workDir).map((p) => `${p.pid} ${p.cmdline}`),
      mounts: mountsUnder(this.workDir),
      netns,
      links,
      nftTables,
      cgroups,
    };
  }

  /**
   * Stops the agents (SIGTERM: with KRATER_AGENT_SHUTDOWN=purge they remove their containers and stop containerd),
   * the replicas and HAProxy; then looks for what is still there (returned), removes it, and removes the
   * namespaces, veths, bridge, FORWARD rule, database and work dir it made itself.
   */
  async destroy(): Promise<Leftovers> {
    await Promise.all(this.hosts.map((h) => h.kill('SIGTERM', 60_000)));
    await Promise.all(this.replicas.map((r) => r.kill('SIGTERM')));
    await this.haproxy.kill('SIGTERM');
    const left = this.leftovers();
    for (const p of processesUnder(this.workDir)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
    for (const mp of mountsUnder(this.workDir)) shQuiet('umount', ['-l', mp]);
    for (const ns of left.netns) shQuiet('ip', ['netns', 'del', ns]);
    for (const l of left.links) shQuiet('ip', ['link', 'del', l]);
    for (const t of left.nftTables) shQuiet('nft', ['delete', 'table', ...t.split(' ')]);
    for (const c of left.cgroups) shQuiet('rmdir', [c]);
    this.removeNetworkSync();
    exitCleanups.delete(this.crashCleanup);
    await this.db?.drop().catch(() => undefined);
    if (process.env.KRATER_E2E_KEEP === '1') process.stderr.write(`[multihost] keeping ${this.workDir}\n`);
    else if (mountsUnder(this.workDir).length === 0) rmSync(this.workDir, { recursive: true, force: true });
    return left;
  }

  /** Whether anything this harness made on the machine itself is still there (after destroy(): nothing). */
  ownObjects(): string[] {
    const found: string[] = [];
    for (const ns of listNetns()) if (ns.startsWith(`kmh-${this.id}-`)) found.push(`netns ${ns}`);
    for (const l of listLinks()) if (l.startsWith(`kmh${this.id}`)) found.push(`link ${l}`);
    if (forwardRulePresent(this.forwardRule)) found.push(`iptables ${this.forwardRule.join(' ')}`);
    if (existsSync(this.workDir)) found.push(`dir ${this.workDir}`);
    for (const p of [this.haproxy, ...this.replicas, ...this.hosts]) if (p.alive) found.push(`process ${p.label}`);
    return found;
  }

  /** At a process exit without destroy(): the agents' containerd and shims, their namespaces, then the underlay. */
  private crashCleanup = (): void => {
    for (const p of processesUnder(this.workDir)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
    const left = this.leftovers();
    for (const mp of left.mounts) shQuiet('umount', ['-l', mp]);
    for (const ns of left.netns) shQuiet('ip', ['netns', 'del', ns]);
    this.removeNetworkSync();
  };

  private removeNetworkSync = (): void => {
    for (const h of this.hosts) {
      shQuiet('ip', ['link', 'del', h.veth]);
      shQuiet('ip', ['netns', 'del', h.netns]);
    }
    shQuiet('ip', ['link', 'del', this.bridge]);
    while (forwardRulePresent(this.forwardRule)) {
      try {
        sh('iptables', ['-D', ...this.forwardRule]);
      } catch {
        break;
      }
    }
  };
}

function forwardRulePresent(rule: string[]): boolean {
  try {
    execFileSync('iptables', ['-C', ...rule], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A /24 in 10.200.0.0–10.249.255.0 that no interface of the machine uses (first three octets). */
function pickSubnet(): string {
  const used = sh('ip', ['-4', '-o', 'addr', 'show']) + sh('ip', ['-4', 'route', 'show']);
  for (let i = 0; i < 100; i++) {
    const s = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(` ${s}.`)) return s;
  }
  throw new Error('no free private /24 for the underlay');
}

function listNetns(): string[] {
  try {
    return readdirSync('/var/run/netns');
  } catch {
    return [];
  }
}

function listLinks(): string[] {
  return sh('ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((x): x is string => !!x);
}

/** `family name` of every nft table in the root namespace. */
function listNftTables(): string[] {
  try {
    return sh('nft', ['list', 'tables'])
      .split('\n')
      .map((l) => /^table (\S+) (\S+)/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => `${m[1]} ${m[2]}`);
  } catch {
    return [];
  }
}

/** Processes (not this one) whose command line names `dir`, or whose HOME is below it. */
function processesUnder(dir: string): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (!cmdline) continue;
      let match = cmdline.includes(`${dir}/`);
      if (!match)
        match = readFileSync(`/proc/${pid}/environ`, 'utf8')
          .split('\0')
          .some((e) => e.startsWith(`HOME=${dir}/`));
      if (match) out.push({ pid, cmdline });
    } catch {}
  }
  return out;
}

/** Mount points below `dir` (deepest first). */
function mountsUnder(dir: string): string[] {
  const decode = (s: string) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => decode(line.split(' ')[4] ?? ''))
    .filter((mp) => mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}
