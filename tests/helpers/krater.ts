/**
 * End-to-end harness: runs a real `krater up` process and drives it with the real `openstack` CLI and HTTP.
 *
 *   const k = await Krater.start({ database });           // free port, temp data dir, waits for readiness
 *   const r = await k.osc(['project', 'list']);           // openstack --os-cloud krater project list -f json
 *   await k.restart();                                    // same data dir, port and database
 *   await k.destroy();                                    // SIGTERM, await exit, remove the temp dir
 *
 * Environment knobs: KRATER_E2E_TMPDIR (parent of the temp dirs, default os.tmpdir()), KRATER_E2E_KEEP=1 (keep the
 * temp dir for inspection), KRATER_E2E_NO_BUILD=1 (do not rebuild dist/ when it is older than src/).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './postgres.js';

export { REPO_ROOT };

const KRATER_BIN = join(REPO_ROOT, 'bin/krater.js');
const DIST_MAIN = join(REPO_ROOT, 'dist/cli/main.js');

// ---------------------------------------------------------------------------------------------------------------
// Small utilities

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** GETs `url` until its body contains `text` (a server coming up, a forward being set), ~10 s at most; returns the
 * last body ('' when nothing answered). */
export async function fetchUntil(url: string, text: string): Promise<string> {
  let body = '';
  for (let i = 0; i < 50 && !body.includes(text); i++) {
    try {
      body = await (await fetch(url, { signal: AbortSignal.timeout(1000) })).text();
    } catch {
      await sleep(200);
    }
  }
  return body;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** The parent environment without any OS_* (OpenStack client) or KRATER_* variables. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('OS_') || k.startsWith('KRATER_')) continue;
    env[k] = v;
  }
  return env;
}

function applyEnv(env: NodeJS.ProcessEnv, extra: Record<string, string | undefined> | undefined): NodeJS.ProcessEnv {
  for (const [k, v] of Object.entries(extra ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Keeps the last `max` characters written to it. */
class Tail {
  private buf = '';
  constructor(private readonly max = 64 * 1024) {}
  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    if (this.buf.length > this.max) this.buf = this.buf.slice(-this.max);
  }
  toString(): string {
    return this.buf;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Build: dist/ must be current, or the tests would exercise stale code.

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Touched after each build by the harness (tsc may leave unchanged outputs untouched). */
const BUILD_STAMP = join(REPO_ROOT, 'tmp/.e2e-build-stamp');

function builtAt(): number {
  if (!existsSync(DIST_MAIN)) return 0;
  const stamp = existsSync(BUILD_STAMP) ? statSync(BUILD_STAMP).mtimeMs : 0;
  return Math.max(stamp, statSync(DIST_MAIN).mtimeMs);
}

function distIsStale(): boolean {
  if (!existsSync(DIST_MAIN)) return true;
  return newestMtime(join(REPO_ROOT, 'src')) > builtAt();
}

let built: Promise<void> | undefined;

/** Runs `tsc -p tsconfig.json` when dist/ is missing or older than src/ (once per process, serialised by a lock). */
export function ensureBuilt(): Promise<void> {
  built ??= (async () => {
    if (process.env.KRATER_E2E_NO_BUILD === '1') {
      if (!existsSync(DIST_MAIN)) throw new Error(`${DIST_MAIN} is missing: run \`npm run build\``);
      return;
    }
    mkdirSync(join(REPO_ROOT, 'tmp'), { recursive: true });
    const lock = join(REPO_ROOT, 'tmp/.e2e-build.lock');
    const startedAt = Date.now();
    const deadline = Date.now() + 300_000;
    for (;;) {
      try {
        mkdirSync(lock);
        break;
      } catch {
        // Another test worker is building; a lock older than 5 minutes is left over from a killed run.
        try {
          if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true });
        } catch {}
        if (Date.now() > deadline) throw new Error(`timed out waiting for build lock ${lock}`);
        await sleep(250);
      }
    }
    try {
      if (!distIsStale()) return;
      await new Promise<void>((ok, fail) => {
        execFile(
          process.execPath,
          [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(REPO_ROOT, 'tsconfig.json')],
          { cwd: REPO_ROOT, timeout: 300_000, maxBuffer: 32 * 1024 * 1024 },
          (err, stdout, stderr) => {
            if (!err) return ok();
            // tsc still emits on type errors (elsewhere in a tree under development): go on if it emitted.
            if (existsSync(DIST_MAIN) && statSync(DIST_MAIN).mtimeMs >= startedAt - 1000) {
              process.stderr.write(
                `[harness] tsc reported errors (continuing with the emitted dist/):\n${stdout}${stderr}\n`,
              );
              return ok();
            }
            fail(new Error(`build (tsc -p tsconfig.json) failed:\n${stdout}${stderr}`));
          },
        );
      });
      writeFileSync(BUILD_STAMP, `${new Date().toISOString()}\n`);
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  })();
  return built;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed body, or undefined when the body is not JSON. */
  json: any;
}

export interface HttpOptions {
  token?: string;
  headers?: Record<string, string>;
  /** An object is sent as JSON; a string is sent verbatim (with Content-Type: application/json). */
  body?: unknown;
}

/**
 * One request on a fresh TCP connection (no keep-alive), so that consecutive requests to a `--workers N` Krater are
 * spread over its worker processes instead of sticking to one pooled connection.
 */
export function http(method: string, url: string, opts: HttpOptions = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (opts.token) headers['X-Auth-Token'] = opts.token;
  let body: Buffer | undefined;
  if (opts.body !== undefined) {
    body = Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
      headers['Content-Type'] = 'application/json';
    }
    headers['Content-Length'] = String(body.length);
  }
  return new Promise((resolveResult, reject) => {
    const req = httpRequest(url, { method, headers, agent: false, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (Array.isArray(v)) for (const x of v) h.append(k, x);
          else if (v !== undefined) h.set(k, v);
        }
        let json: any;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolveResult({ status: res.statusCode ?? 0, headers: h, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no response within 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** One-line description of an HTTP exchange for assertion messages. */
export function describeHttp(method: string, url: string, r: HttpResult): string {
  const hdrs = [...r.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('; ');
  return `${method} ${url} -> ${r.status} [${hdrs}] ${r.text.slice(0, 800)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// openstack CLI

export interface OscOptions {
  /** Cloud name for `--os-cloud` (default `krater`); `null` passes no `--os-cloud` (authenticate from `env`). */
  cloud?: string | null;
  /** Extra environment; `undefined` removes a variable. Applied after the clean base environment. */
  env?: Record<string, string | undefined>;
  /** Append `-f json` (default: when the command is a list/show/create/issue). */
  json?: boolean;
  timeoutMs?: number;
}

export interface OscResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Parsed stdout when it is JSON, else undefined. */
  json: any;
  /** The command line, for messages. */
  command: string;
}

const JSON_VERBS = new Set(['list', 'show', 'create', 'issue']);

function wantsJson(args: string[]): boolean {
  for (const a of args) {
    if (a.startsWith('-')) return false;
    if (JSON_VERBS.has(a)) return true;
  }
  return false;
}

export function runOpenstack(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 90_000): Promise<OscResult> {
  const command = `openstack ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`;
  return new Promise((resolveResult) => {
    execFile(
      'openstack',
      args,
      { env, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
          code = typeof e.code === 'number' ? e.code : -1;
          if (e.killed) stderr += `\n[harness] killed after ${timeoutMs} ms`;
          else if (typeof e.code === 'string') stderr += `\n[harness] ${e.message}`;
        }
        let json: any;
        try {
          json = stdout.trim() ? JSON.parse(stdout) : undefined;
        } catch {
          json = undefined;
        }
        resolveResult({ code, stdout, stderr, json, command });
      },
    );
  });
}

export function describeOsc(r: OscResult): string {
  return `${r.command} -> exit ${r.code}\n--- stdout\n${r.stdout.slice(0, 2000)}\n--- stderr\n${r.stderr.slice(-3000)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Krater process

export interface StartOptions {
  /** `--database` URL (PostgreSQL); default: Krater's SQLite store in the data dir. */
  database?: string;
  /** Extra environment for the Krater process. */
  env?: Record<string, string | undefined>;
  /** Subcommand: `up` (all-in-one, default) or `api` (control plane only; the one that takes `--workers`). */
  mode?: 'up' | 'api';
  /** Extra arguments, e.g. `['--workers', '2']` (with mode `api`). */
  args?: string[];
  readyTimeoutMs?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when it ignored SIGTERM and had to be killed. */
  killed?: boolean;
}

/** Running Krater processes of this test process: killed if it exits without stopping them (crash, Ctrl-C). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {}
  }
});

export class Krater {
  readonly workDir: string;
  readonly dataDir: string;
  readonly homeDir: string;
  /** The clouds.yaml the harness writes and points the CLI at (OS_CLIENT_CONFIG_FILE). */
  readonly cloudsYaml: string;
  /** The clouds.yaml Krater itself writes (`krater up --clouds-yaml`). */
  readonly kraterCloudsYaml: string;
  port = 0;
  adminPassword = '';
  /** Exit of the last stopped process. */
  lastExit: ExitInfo | undefined;
  private proc: ChildProcess | undefined;
  private exited: Promise<ExitInfo> | undefined;
  private log = new Tail();
  private extraClouds: Record<string, unknown> = {};

  private constructor(private readonly opts: StartOptions) {
    const parent = process.env.KRATER_E2E_TMPDIR ?? tmpdir();
    mkdirSync(parent, { recursive: true });
    this.workDir = mkdtempSync(join(parent, 'krater-e2e-'));
    this.dataDir = join(this.workDir, 'data');
    this.homeDir = join(this.workDir, 'home');
    this.cloudsYaml = join(this.workDir, 'clouds.yaml');
    this.kraterCloudsYaml = join(this.workDir, 'krater-clouds.yaml');
    mkdirSync(this.dataDir);
    mkdirSync(this.homeDir);
  }

  static async start(opts: StartOptions = {}): Promise<Krater> {
    await ensureBuilt();
    const k = new Krater(opts);
    try {
      k.port = await freePort();
      await k.launch();
      k.adminPassword = k.readAdminPassword();
      k.writeCloudsYaml();
    } catch (err) {
      await k.destroy();
      throw err;
    }
    return k;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get identityUrl(): string {
    return `${this.baseUrl}/identity/v3`;
  }

  get running(): boolean {
    return this.proc !== undefined;
  }

  /** stdout+stderr of the Krater process (last 64 KiB, across restarts). */
  output(): string {
    return this.log.toString();
  }

  private args(): string[] {
    const args = [
      KRATER_BIN,
      this.opts.mode ?? 'up',
      '--data-dir',
      this.dataDir,
      '--bind',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--log-level',
      'warn',
      '--clouds-yaml',
      this.kraterCloudsYaml,
    ];
    if (this.opts.database) args.push('--database', this.opts.database);
    args.push(...(this.opts.args ?? []));
    return args;
  }

  private async launch(): Promise<void> {
    // `purge`: stopping Krater also stops the agent's private containerd (the default `keep` leaves it running).
    const env = applyEnv(cleanEnv(), { HOME: this.homeDir, KRATER_AGENT_SHUTDOWN: 'purge', ...this.opts.env });
    this.log.push(`\n[harness] starting: node ${this.args().join(' ')}\n`);
    const proc = spawn(process.execPath, this.args(), { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    live.add(proc);
    proc.on('exit', () => live.delete(proc));
    proc.stdout?.on('data', (c) => this.log.push(c));
    proc.stderr?.on('data', (c) => this.log.push(c));
    this.exited = new Promise<ExitInfo>((r) => {
      proc.on('exit', (code, signal) => {
        this.log.push(`\n[harness] krater exited: code=${code} signal=${signal}\n`);
        r({ code, signal });
      });
      proc.on('error', (err) => {
        this.log.push(`\n[harness] spawn error: ${err.message}\n`);
        r({ code: -1, signal: null });
      });
    });
    let exitedEarly: ExitInfo | undefined;
    void this.exited.then((e) => {
      exitedEarly = e;
    });

    const timeoutMs = this.opts.readyTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let last = 'no attempt yet';
    for (;;) {
      if (exitedEarly) {
        this.proc = undefined;
        this.lastExit = exitedEarly;
        throw new Error(
          `krater exited before becoming ready (code=${exitedEarly.code} signal=${exitedEarly.signal})\n` +
            `--- krater output\n${this.output()}`,
        );
      }
      try {
        const res = await http('GET', this.identityUrl);
        if (res.status === 200) return;
        last = `GET ${this.identityUrl} -> ${res.status}`;
      } catch (err) {
        last = `GET ${this.identityUrl}: ${(err as Error).message}`;
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`krater not ready after ${timeoutMs} ms (last: ${last})\n--- krater output\n${this.output()}`);
      }
      await sleep(100);
    }
  }

  private readAdminPassword(): string {
    const file = join(this.dataDir, 'admin-password');
    if (!existsSync(file)) throw new Error(`${file} missing after startup\n--- krater output\n${this.output()}`);
    const pw = readFileSync(file, 'utf8').trim();
    if (!pw) throw new Error(`${file} is empty`);
    return pw;
  }

  /** The admin cloud `krater` plus any clouds added with addCloud(). JSON is valid YAML. */
  writeCloudsYaml(): void {
    const clouds = {
      clouds: {
        krater: {
          auth: {
            auth_url: this.identityUrl,
            username: 'admin',
            password: this.adminPassword,
            project_name: 'admin',
            user_domain_name: 'Default',
            project_domain_name: 'Default',
          },
          region_name: 'RegionOne',
          interface: 'public',
          identity_api_version: '3',
        },
        ...this.extraClouds,
      },
    };
    writeFileSync(this.cloudsYaml, `${JSON.stringify(clouds, null, 2)}\n`, { mode: 0o600 });
  }

  /** Adds (or replaces) a cloud in the harness clouds.yaml. */
  addCloud(name: string, entry: Record<string, unknown>): void {
    this.extraClouds[name] = { region_name: 'RegionOne', interface: 'public', identity_api_version: '3', ...entry };
    this.writeCloudsYaml();
  }

  /** A password cloud for a user of domain Default scoped to a project. */
  addPasswordCloud(name: string, username: string, password: string, project: string): void {
    this.addCloud(name, {
      auth: {
        auth_url: this.identityUrl,
        username,
        password,
        project_name: project,
        user_domain_name: 'Default',
        project_domain_name: 'Default',
      },
    });
  }

  /** Environment for the CLI: no inherited OS_*, HOME in the temp dir, OS_CLIENT_CONFIG_FILE = harness clouds.yaml. */
  oscEnv(extra?: Record<string, string | undefined>): NodeJS.ProcessEnv {
    return applyEnv(cleanEnv(), {
      HOME: this.homeDir,
      OS_CLIENT_CONFIG_FILE: this.cloudsYaml,
      PYTHONWARNINGS: 'ignore',
      ...extra,
    });
  }

  /** Runs `openstack [--os-cloud <cloud>] <args> [-f json]`; never throws on a non-zero exit. */
  osc(args: string[], opts: OscOptions = {}): Promise<OscResult> {
    const cloud = opts.cloud === undefined ? 'krater' : opts.cloud;
    const full = [...(cloud ? ['--os-cloud', cloud] : []), ...args];
    if (opts.json ?? wantsJson(args)) full.push('-f', 'json');
    return runOpenstack(full, this.oscEnv(opts.env), opts.timeoutMs);
  }

  /** Like osc() but throws (with the command, output and Krater's log tail) on a non-zero exit; returns the JSON. */
  async oscOk(args: string[], opts: OscOptions = {}): Promise<any> {
    const r = await this.osc(args, opts);
    if (r.code !== 0) {
      throw new Error(`${describeOsc(r)}\n--- krater output (tail)\n${this.output().slice(-3000)}`);
    }
    return r.json;
  }

  /** HTTP request to a path under the base URL (e.g. `/identity/v3/projects`) or an absolute URL. */
  http(method: string, pathOrUrl: string, opts?: HttpOptions): Promise<HttpResult> {
    const url = /^https?:/.test(pathOrUrl) ? pathOrUrl : `${this.baseUrl}${pathOrUrl}`;
    return http(method, url, opts);
  }

  /** Issues a token over HTTP (no CLI start-up cost). Scope: project `admin` unless given. */
  async passwordToken(
    username = 'admin',
    password = this.adminPassword,
    project: string | null = 'admin',
  ): Promise<{ token: string; body: any }> {
    const auth: any = {
      identity: {
        methods: ['password'],
        password: { user: { name: username, domain: { name: 'Default' }, password } },
      },
    };
    if (project) auth.scope = { project: { name: project, domain: { name: 'Default' } } };
    const r = await this.http('POST', '/identity/v3/auth/tokens', { body: { auth } });
    const token = r.headers.get('x-subject-token');
    if (r.status !== 201 || !token) {
      throw new Error(`token request failed: ${describeHttp('POST', `${this.identityUrl}/auth/tokens`, r)}`);
    }
    return { token, body: r.json };
  }

  /** SIGTERM, then await exit (SIGKILL after `graceMs`). Returns how it exited. */
  async stop(graceMs = 20_000): Promise<ExitInfo | undefined> {
    const proc = this.proc;
    const exited = this.exited;
    if (!proc || !exited) return this.lastExit;
    this.proc = undefined;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), graceMs);
    });
    let result = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.log.push(`\n[harness] krater did not exit within ${graceMs} ms of SIGTERM; sending SIGKILL\n`);
      proc.kill('SIGKILL');
      result = { ...(await exited), killed: true };
    }
    this.lastExit = result;
    return result;
  }

  /** Stops and starts Krater again on the same data dir, port and database. */
  async restart(): Promise<ExitInfo | undefined> {
    const exit = await this.stop();
    await this.startAgain();
    return exit;
  }

  /** Starts a stopped instance again on the same data dir, port and database. */
  async startAgain(): Promise<void> {
    if (this.proc) throw new Error('krater is still running');
    await this.launch();
    this.adminPassword = this.readAdminPassword();
    this.writeCloudsYaml();
  }

  /**
   * Stops Krater (if running), ends any process still running from the temp dir (e.g. an orphaned containerd of the
   * agent), unmounts what is mounted below it, and removes it (unless KRATER_E2E_KEEP=1). Returns what it had to clean
   * up, so a test may assert that Krater left nothing behind.
   */
  async destroy(): Promise<{ leftoverProcesses: string[]; leftoverMounts: string[] }> {
    await this.stop();
    const leftoverProcesses = await killProcessesUnder(this.workDir);
    if (leftoverProcesses.length > 0) {
      process.stderr.write(
        `[harness] processes left running by krater (killed):\n  ${leftoverProcesses.join('\n  ')}\n`,
      );
    }
    const leftoverMounts = unmountUnder(this.workDir);
    if (leftoverMounts.length > 0) {
      process.stderr.write(`[harness] mounts left by krater (unmounted): ${leftoverMounts.join(', ')}\n`);
    }
    if (process.env.KRATER_E2E_KEEP === '1') {
      process.stderr.write(`[harness] keeping ${this.workDir}\n`);
    } else if (unmountUnder(this.workDir).length === 0) {
      rmSync(this.workDir, { recursive: true, force: true });
    } else {
      process.stderr.write(`[harness] not removing ${this.workDir}: mounts remain below it\n`);
    }
    return { leftoverProcesses, leftoverMounts };
  }

  /** Processes (pid and command line) whose command line or environment refers to this instance's temp dir. */
  processesUsingWorkDir(): string[] {
    return processesUnder(this.workDir).map((p) => `${p.pid} ${p.cmdline}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Leftovers below a temp dir (by PID and mount point only: nothing outside the dir is touched)

interface ProcInfo {
  pid: number;
  cmdline: string;
}

/** Processes other than this one whose command line or HOME lies in `dir` (the harness gives each Krater HOME=dir/home). */
function processesUnder(dir: string): ProcInfo[] {
  const prefix = `${dir}/`;
  const out: ProcInfo[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return out;
  }
  for (const name of pids) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (!cmdline) continue; // kernel thread or zombie
      let match = cmdline.includes(prefix);
      if (!match) {
        const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
        match = env.includes(`HOME=${dir}/home`);
      }
      if (match) out.push({ pid, cmdline });
    } catch {
      // gone, or not readable
    }
  }
  return out;
}

async function killProcessesUnder(dir: string): Promise<string[]> {
  const found = processesUnder(dir);
  for (const p of found) {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {}
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && processesUnder(dir).length > 0) await sleep(100);
  for (const p of processesUnder(dir)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {}
  }
  return found.map((p) => `${p.pid} ${p.cmdline}`);
}

/** Unmounts (lazily, deepest first) every mount point below `dir`; returns the mount points found. */
function unmountUnder(dir: string): string[] {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const decode = (s: string) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
  const points = info
    .split('\n')
    .map((line) => decode(line.split(' ')[4] ?? ''))
    .filter((mp) => mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const mp of points) {
    try {
      execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
    } catch {}
  }
  return points;
}

/** A random suffix for resource names. */
export function uniq(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}
