/**
 * Shared runc shims. Containers created with the same `shimGroup` carry containerd's
 * `io.containerd.runc.v2.group` annotation, so the runc shim of the first one serves the others too: a start
 * then skips launching a shim daemon (the largest fixed cost of a start after runc itself) and the host runs one
 * shim per group instead of one per container. The price: a shim that dies takes its group's containers with it.
 *
 * The one hazard is the shim's exit. It shuts itself down when the last task it serves is deleted, but containerd
 * does not wait for that; a task created in the group meanwhile would be handed to the dying shim and be lost.
 * So task creates in a group run together (the shim serves them one by one anyway), while deleting a task runs
 * alone and, when it was the group's last, waits for the shim to be gone before any create proceeds.
 */

/** The annotation the runc v2 shim groups by (containerd 1.6 `runtime/v2/runc/manager`). */
export const RUNC_GROUP_ANNOTATION = 'io.containerd.runc.v2.group';

/** A shared/exclusive lock, first come first served (an exclusive waiter holds back later shared ones). */
export class SharedExclusiveLock {
  private shared = 0;
  private exclusive = false;
  private readonly waiting: { exclusive: boolean; go: () => void }[] = [];

  /** True when nobody holds or waits for the lock. */
  get idle(): boolean {
    return this.shared === 0 && !this.exclusive && this.waiting.length === 0;
  }

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.shared -= 1;
      this.drain();
    }
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.exclusive = false;
      this.drain();
    }
  }

  private acquire(exclusive: boolean): Promise<void> {
    return new Promise((go) => {
      this.waiting.push({ exclusive, go });
      this.drain();
    });
  }

  private drain(): void {
    while (this.waiting.length && !this.exclusive) {
      const next = this.waiting[0];
      if (next.exclusive) {
        if (this.shared > 0) return;
        this.exclusive = true;
      } else {
        this.shared += 1;
      }
      this.waiting.shift();
      next.go();
    }
  }
}

/** One lock per group, dropped when idle. */
export class ShimGroupLocks {
  private readonly locks = new Map<string, SharedExclusiveLock>();

  /** Task creates of a group. */
  shared<T>(group: string, fn: () => Promise<T>): Promise<T> {
    return this.run(group, (l) => l.withShared(fn));
  }

  /** A task delete (possibly the group's last). */
  exclusive<T>(group: string, fn: () => Promise<T>): Promise<T> {
    return this.run(group, (l) => l.withExclusive(fn));
  }

  private async run<T>(group: string, use: (l: SharedExclusiveLock) => Promise<T>): Promise<T> {
    let lock = this.locks.get(group);
    if (!lock) {
      lock = new SharedExclusiveLock();
      this.locks.set(group, lock);
    }
    try {
      return await use(lock);
    } finally {
      if (lock.idle && this.locks.get(group) === lock) this.locks.delete(group);
    }
  }
}
