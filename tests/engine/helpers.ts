/**
 * Shared set-up for the engine tests: a busybox image built offline, a private containerd in a temp dir,
 * and a cleanup that removes everything (containers, mounts, cgroups, temp dirs).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeCgroupTree } from '../../src/engine/cgroups.js';
import type { ContainerdClient } from '../../src/engine/containerd-client.js';
import { ContainerdSupervisor } from '../../src/engine/containerd-supervisor.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the engine tests cannot run here (undefined: they can). */
export function engineTestsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const cmd of ['containerd', 'runc', 'umoci', 'skopeo']) if (!which(cmd)) return `${cmd} not installed`;
  if (!existsSync('/usr/share/gocode/src/github.com/containerd/containerd/api')) {
    return 'golang-github-containerd-containerd-dev not installed';
  }
  return undefined;
}

/** Build (idempotently) the busybox archive with scripts/engine-build-busybox.sh. */
export function buildBusybox(out: string, format: 'oci-archive' | 'docker-archive' = 'oci-archive'): string {
  execFileSync(join(repoRoot, 'scripts/engine-build-busybox.sh'), [out, format], { stdio: 'inherit' });
  return out;
}

export interface EngineFixture {
  tmp: string;
  /** Unique per run: containerd namespace, cgroup parent name. */
  suffix: string;
  namespace: string;
  cgroupParent: string;
  supervisor: ContainerdSupervisor;
  client: ContainerdClient;
  cleanup: () => Promise<void>;
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export function mountsBelow(dir: string): string[] {
  const unescapeOctal = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescapeOctal(l.split(' ')[4] ?? ''))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

export async function startFixture(): Promise<EngineFixture> {
  const suffix = randomBytes(4).toString('hex');
  // Short path: Unix socket paths must stay under 108 bytes.
  const tmp = mkdtempSync(`/tmp/krt-${suffix}-`);
  const namespace = `krater-test-${suffix}`;
  const cgroupParent = `/krater-test-${suffix}`;
  const hadRunContainerd = existsSync('/run/containerd');
  const hadShimDir = existsSync('/run/containerd/s');
  const hadRuncDir = existsSync('/run/containerd/runc');
  const fx: Partial<EngineFixture> & { tmp: string } = { tmp, suffix, namespace, cgroupParent };
  const cleanup = async () => {
    const supervisor = fx.supervisor;
    if (supervisor) {
      // Whatever the tests left: ordered teardown through containerd while it still runs.
      const c = supervisor.client(namespace);
      try {
        for (const t of await c.tasks.list()) {
          await c.tasks.kill(t.id, 9, { all: true }).catch(() => undefined);
          await c.tasks.wait(t.id, '', { timeoutMs: 5000 }).catch(() => undefined);
          await c.tasks.delete(t.id).catch(() => undefined);
        }
        for (const ct of await c.containers.list()) await c.containers.delete(ct.id).catch(() => undefined);
        for (const s of await c.snapshots.list()) await c.snapshots.remove(s.name).catch(() => undefined);
        for (const i of await c.images.list()) await c.images.delete(i.name, true).catch(() => undefined);
        for (const l of await c.leases.list()) await c.leases.delete(l.id, true).catch(() => undefined);
        await c.namespaces.delete(namespace).catch(() => undefined);
      } catch {
        // daemon already gone
      }
      await supervisor.stop();
    }
    for (const mp of mountsBelow(tmp)) {
      try {
        execFileSync('umount', [mp], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
      }
    }
    const left = removeCgroupTree(cgroupParent);
    if (left.length) console.warn(`cgroups still busy: ${left.join(', ')}`);
    if (mountsBelow(tmp).length === 0) await rm(tmp, { recursive: true, force: true });
    // Shims put their sockets in /run/containerd/s; remove the directories if we created them and they are empty.
    // runc's default state dir for our namespace (only used if a container did not set Options.root).
    try {
      rmdirSync(`/run/containerd/runc/${namespace}`);
    } catch {
      // absent
    }
    for (const [dir, had] of [
      ['/run/containerd/runc', hadRuncDir],
      ['/run/containerd/s', hadShimDir],
      ['/run/containerd', hadRunContainerd],
    ] as const) {
      if (!had) {
        try {
          rmdirSync(dir);
        } catch {
          // not empty (someone else's shims) or gone
        }
      }
    }
  };
  fx.cleanup = cleanup;
  try {
    fx.supervisor = await ContainerdSupervisor.start({ dataDir: join(tmp, 'ctd') });
    fx.client = fx.supervisor.client(namespace);
    return fx as EngineFixture;
  } catch (err) {
    await cleanup();
    throw err;
  }
}
