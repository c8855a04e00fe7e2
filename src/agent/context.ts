import type { FastifyBaseLogger } from 'fastify';
import type { ContainerRepo } from '../compute/repo.js';
import type { Store } from '../core/store/db.js';
import type { ContainerRow } from '../core/store/schema.js';
import type { Engine } from '../engine/engine.js';
import type { AgentNetwork } from './network.js';

/** Engine container ids: Zun names its engine containers `zun-<uuid>`. */
export const engineId = (uuid: string) => `zun-${uuid}`;

/** What the executor needs of the host's image side (src/images/host.ts; a stand-in in unit tests). */
export interface AgentImageWork {
  /** The engine's image reference for a container, pulled or imported first as its policy says. */
  ensureForContainer(c: ContainerRow): Promise<string>;
  commit(
    c: ContainerRow,
    engineId: string,
    params: { imageId: string; repository: string; tag: string },
  ): Promise<void>;
  /** `image_pull` / `image_delete` of a `zun_images` row. */
  runTask(action: string, imageUuid: string): Promise<void>;
}

/** Timings the agent's tests shorten (production uses the defaults). */
export interface AgentTiming {
  /** Back-off before the n-th automatic restart (default `restartDelayMs` of src/compute/states.ts). */
  restartDelayMs(restartCount: number): number;
  /** A healthcheck's interval of `seconds` in milliseconds. */
  healthIntervalMs(seconds: number): number;
  /** How long an exit with 137 waits for containerd's OOM event, which may trail the exit. */
  oomGraceMs: number;
  /** Re-adoption after an exit watch lost its task. */
  readoptDelayMs: number;
}

/** What the agent's parts share: the host, the store, the engine and the other parts' entry points. */
export interface AgentContext {
  readonly host: string;
  readonly store: Store;
  readonly repo: ContainerRepo;
  readonly log: FastifyBaseLogger;
  readonly engine: Engine;
  readonly imageWork: AgentImageWork;
  /** The network side (absent with `KRATER_NETWORKING=none`). */
  readonly network: AgentNetwork | undefined;
  /** Why containerd is unavailable right now (undefined: it is up). */
  readonly engineDown: string | undefined;
  /** The agent is stopping: nothing new is started. */
  readonly closed: boolean;
  readonly timing: AgentTiming;
  /** Zun `runtime` names → containerd runtime types (runc included). */
  readonly runtimes: Record<string, string>;
  /** Tells the task pump that tasks are queued. */
  wake(): void;
}

/**
 * The work of one container runs in order (its tasks, automatic restarts); different containers run concurrently.
 * Keyed by the task's subject (a container uuid, or `image:<uuid>`).
 */
export class Lanes {
  private readonly busy = new Map<string, Promise<void>>();

  /** Runs `fn` after the earlier work of `key` (whether that succeeded or not); rejects with `fn`'s error. */
  run(key: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.busy.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.busy.set(key, next);
    void next
      .finally(() => {
        if (this.busy.get(key) === next) this.busy.delete(key);
      })
      .catch(() => undefined);
    return next;
  }

  has(key: string): boolean {
    return this.busy.has(key);
  }

  async settle(): Promise<void> {
    await Promise.allSettled([...this.busy.values()]);
  }
}
