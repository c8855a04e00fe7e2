/**
 * The agent's host: registration as Zun's `zun-compute` service, the heartbeat, the automatic disable while
 * containerd is lost, scheduling's view of hosts, and the choice of dedicated CPUs.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { arch, cpus, freemem, release, totalmem } from 'node:os';
import type { ContainerRepo } from '../compute/repo.js';
import type { Store } from '../core/store/db.js';
import type { ContainerRow } from '../core/store/schema.js';

export const BINARY = 'zun-compute';
/** How a host that lost its containerd shows in `GET /v1/services` (Nova's prefix for automatic disables). */
export const AUTO_DISABLED_PREFIX = 'AUTO: ';

/** Hosts that may take new containers: enabled, not forced down, heartbeat fresh. */
export async function schedulableHosts(store: Store): Promise<string[]> {
  const since = new Date(Date.now() - 180_000).toISOString();
  const rows = await store.db
    .selectFrom('compute_services')
    .select('host')
    .where('binary', '=', BINARY)
    .where('disabled', '=', 0)
    .where('forced_down', '=', 0)
    .where('last_seen_up', '>', since)
    .orderBy('id')
    .execute();
  return rows.map((r) => r.host);
}

export class HostRegistration {
  constructor(
    private readonly opts: {
      store: Store;
      host: string;
      availabilityZone?: string;
      /** Zun `runtime` names offered besides `runc`. */
      runtimes: string[];
    },
  ) {}

  private get db() {
    return this.opts.store.db;
  }

  async register(): Promise<void> {
    const db = this.db;
    const host = this.opts.host;
    const now = new Date().toISOString();
    const info = this.hostInfo();
    const existing = await db
      .selectFrom('compute_hosts')
      .select('uuid')
      .where('hostname', '=', host)
      .executeTakeFirst();
    if (existing)
      await db
        .updateTable('compute_hosts')
        .set({ info: JSON.stringify(info), updated_at: now })
        .where('uuid', '=', existing.uuid)
        .execute();
    else
      await db
        .insertInto('compute_hosts')
        .values({ uuid: randomUUID(), hostname: host, info: JSON.stringify(info), created_at: now, updated_at: null })
        .execute();
    const svc = await db
      .selectFrom('compute_services')
      .select('id')
      .where('host', '=', host)
      .where('binary', '=', BINARY)
      .executeTakeFirst();
    if (!svc) {
      await db
        .insertInto('compute_services')
        .values({
          host,
          binary: BINARY,
          availability_zone: this.opts.availabilityZone ?? 'nova',
          disabled: 0,
          disabled_reason: null,
          forced_down: 0,
          report_count: 0,
          last_seen_up: now,
          created_at: now,
          updated_at: null,
        })
        .execute();
    }
    // containerd answers (start got this far): a disable left by an outage before a restart of the agent is undone.
    await this.enableIfAutoDisabled();
    await this.heartbeat();
  }

  /** What the host reports; the API adds the containers' claims (`cpu_used`, `mem_used`, `disk_used`). */
  private hostInfo() {
    const mb = (b: number) => Math.floor(b / 1024 / 1024);
    return {
      mem_total: mb(totalmem()),
      mem_free: mb(freemem()),
      mem_available: mb(freemem()),
      cpus: cpus().length,
      disk_total: 0,
      disk_quota_supported: false,
      architecture: arch() === 'x64' ? 'x86_64' : arch(),
      os_type: 'linux',
      os: 'Debian GNU/Linux',
      kernel_version: release(),
      labels: {},
      runtimes: ['runc', ...this.opts.runtimes],
      enable_cpu_pinning: false,
    };
  }

  async heartbeat(): Promise<void> {
    const now = new Date().toISOString();
    const svc = await this.db
      .selectFrom('compute_services')
      .select(['id', 'report_count'])
      .where('host', '=', this.opts.host)
      .where('binary', '=', BINARY)
      .executeTakeFirst();
    if (svc)
      await this.db
        .updateTable('compute_services')
        .set({ report_count: svc.report_count + 1, last_seen_up: now, updated_at: now })
        .where('id', '=', svc.id)
        .execute();
  }

  /** containerd is gone: the host takes no new containers (the reason shows in `GET /v1/services`). */
  async markEngineLost(reason: string): Promise<void> {
    // An admin's own disable (and its reason) is left alone.
    await this.db
      .updateTable('compute_services')
      .set({
        disabled: 1,
        disabled_reason: `${AUTO_DISABLED_PREFIX}Connection to containerd lost: ${reason}`.slice(0, 255),
        updated_at: new Date().toISOString(),
      })
      .where('host', '=', this.opts.host)
      .where('binary', '=', BINARY)
      .where('disabled', '=', 0)
      .execute();
  }

  /** Undo a disable this agent made because containerd was lost (never an admin's). */
  async enableIfAutoDisabled(): Promise<void> {
    await this.db
      .updateTable('compute_services')
      .set({ disabled: 0, disabled_reason: null, updated_at: new Date().toISOString() })
      .where('host', '=', this.opts.host)
      .where('binary', '=', BINARY)
      .where('disabled_reason', 'like', `${AUTO_DISABLED_PREFIX}%`)
      .execute();
  }
}

/**
 * `cpu_policy=dedicated`: whole host CPUs (as many as `cpu`, rounded up) that no other dedicated container of this
 * host holds, remembered on the row (a rebuilt or healed container keeps its CPUs). One choice at a time.
 */
export class CpuPinning {
  private pinning: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: { store: Store; repo: ContainerRepo; host: string; onlineCpus?: () => number[] },
  ) {}

  pin(c: ContainerRow): Promise<string> {
    const choose = async (): Promise<string> => {
      if (c.cpuset) return c.cpuset;
      const want = Math.max(1, Math.ceil(c.cpu));
      const others = await this.opts.store.db
        .selectFrom('containers')
        .select('cpuset')
        .where('host', '=', this.opts.host)
        .where('uuid', '!=', c.uuid)
        .where('cpuset', 'is not', null)
        .execute();
      const taken = new Set(others.flatMap((o) => o.cpuset!.split(',').map(Number)));
      const free = (this.opts.onlineCpus ?? onlineCpus)().filter((n) => !taken.has(n));
      if (free.length < want)
        throw new Error(`Not enough dedicated CPUs on host ${this.opts.host}: ${want} requested, ${free.length} free`);
      const cpuset = free.slice(0, want).join(',');
      await this.opts.repo.update(c.uuid, { cpuset });
      return cpuset;
    };
    const next = this.pinning.then(choose, choose);
    this.pinning = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }
}

/** This host's online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-3,6`), as numbers. */
function onlineCpus(): number[] {
  try {
    return readFileSync('/sys/devices/system/cpu/online', 'utf8')
      .trim()
      .split(',')
      .flatMap((part) => {
        const [a, b] = part.split('-').map(Number);
        return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
      });
  } catch {
    return cpus().map((_, i) => i);
  }
}
