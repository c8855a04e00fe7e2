/**
 * Running the kernel tools (ip, nft, sysctl, conntrack) with as few process spawns as possible: `ip -batch -` and
 * `nft -f -` read many commands from stdin, and `nsenter --net=` runs one in a network namespace (cheaper than
 * `ip netns exec`, which also unshares a mount namespace and remounts /sys).
 */
import { spawn } from 'node:child_process';

export class CommandError extends Error {
  constructor(
    readonly command: string[],
    readonly code: number | null,
    readonly stderr: string,
    readonly input?: string,
  ) {
    super(`${command.join(' ')} failed (${code}): ${stderr.trim() || '(no output)'}`);
    this.name = 'CommandError';
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, feeding `input` on stdin; never throws for a non-zero exit (see `run`). */
export function runRaw(argv: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
    child.stdin.on('error', () => {
      /* the tool exited before reading everything: its exit code tells */
    });
    child.stdin.end(input ?? '');
  });
}

/** Runs a command; rejects with a CommandError on a non-zero exit. */
export async function run(argv: string[], input?: string): Promise<string> {
  const r = await runRaw(argv, input);
  if (r.code !== 0) throw new CommandError(argv, r.code, r.stderr, input);
  return r.stdout;
}

export const netnsPath = (netns: string): string => `/run/netns/${netns}`;

/** argv prefix running a command inside a named network namespace. */
export const inNetns = (netns: string | undefined, argv: string[]): string[] =>
  netns ? ['nsenter', `--net=${netnsPath(netns)}`, ...argv] : argv;

/** `ip -batch -` (in the host namespace or, with `netns`, inside it); a no-op for no lines. */
export async function ipBatch(lines: string[], netns?: string): Promise<void> {
  if (lines.length === 0) return;
  const argv = netns ? ['ip', '-n', netns, '-batch', '-'] : ['ip', '-batch', '-'];
  await run(argv, `${lines.join('\n')}\n`);
}

/** One `ip -j` command whose JSON output is parsed (empty output → []). */
export async function ipJson<T = any>(args: string[], netns?: string): Promise<T[]> {
  const argv = netns ? ['ip', '-n', netns, '-j', ...args] : ['ip', '-j', ...args];
  const out = (await run(argv)).trim();
  return out ? (JSON.parse(out) as T[]) : [];
}

/** `nft -f -` with a whole transaction (atomic: all of it or nothing). */
export async function nftApply(script: string, netns?: string): Promise<void> {
  if (!script.trim()) return;
  await run(inNetns(netns, ['nft', '-f', '-']), script);
}

/** Writes sysctls inside a namespace (or the host when netns is undefined — only ever per-interface keys of ours). */
export async function sysctl(values: Record<string, string>, netns?: string): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  if (args.length === 0) return;
  await run(inNetns(netns, ['sysctl', '-q', '-w', ...args]));
}

/**
 * A tool process started ahead of time, blocked reading its stdin (`ip -batch -`, `nft -f -`): spawning, loading
 * libraries and entering the namespace happen off the critical path; `run` only writes the commands and waits. A
 * prepared process that died meanwhile (or was used) falls back to a fresh spawn.
 */
export class Prepared {
  private readonly child: ReturnType<typeof spawn>;
  private readonly result: Promise<RunResult>;
  private exited = false;
  private used = false;

  constructor(readonly argv: string[]) {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.stdin!.on('error', () => undefined);
    this.result = new Promise((resolve) => {
      child.on('error', (e) => {
        this.exited = true;
        resolve({ code: -1, stdout: '', stderr: e.message });
      });
      child.on('close', (code) => {
        this.exited = true;
        resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
      });
    });
    // Idle, it must not keep the process alive.
    this.setRef(false);
  }

  get usable(): boolean {
    return !this.used && !this.exited;
  }

  async run(input: string): Promise<string> {
    if (!this.usable) return run(this.argv, input);
    this.used = true;
    this.setRef(true);
    this.child.stdin!.end(input);
    const r = await this.result;
    if (r.code !== 0) throw new CommandError(this.argv, r.code, r.stderr, input);
    return r.stdout;
  }

  /** Lets an unused process exit (EOF: nothing to do). */
  close(): void {
    if (this.used) return;
    this.used = true;
    this.child.stdin!.end();
  }

  private setRef(on: boolean): void {
    const handles = [this.child, this.child.stdin, this.child.stdout, this.child.stderr] as unknown as {
      ref?: () => void;
      unref?: () => void;
    }[];
    for (const h of handles) (on ? h?.ref : h?.unref)?.call(h);
  }
}

export const prepareIpBatch = (netns?: string): Prepared =>
  new Prepared(netns ? ['ip', '-n', netns, '-batch', '-'] : ['ip', '-batch', '-']);
export const prepareNft = (netns?: string): Prepared => new Prepared(inNetns(netns, ['nft', '-f', '-']));
