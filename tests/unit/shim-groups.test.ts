import { describe, expect, it } from 'vitest';
import { SharedExclusiveLock, ShimGroupLocks } from '../../src/engine/shim-groups.js';

/** A promise to resolve by hand. */
function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => {
    open = r;
  });
  return { p, open };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('SharedExclusiveLock', () => {
  it('runs shared holders together, an exclusive one alone, in arrival order', async () => {
    const lock = new SharedExclusiveLock();
    const log: string[] = [];
    const g1 = gate();
    const g2 = gate();
    const g3 = gate();
    const s1 = lock.withShared(async () => {
      log.push('s1');
      await g1.p;
      log.push('s1 done');
    });
    const s2 = lock.withShared(async () => {
      log.push('s2');
      await g2.p;
      log.push('s2 done');
    });
    const x = lock.withExclusive(async () => {
      log.push('x');
      await g3.p;
      log.push('x done');
    });
    // Arrives after the exclusive waiter: waits behind it.
    const s3 = lock.withShared(async () => {
      log.push('s3');
    });
    await tick();
    expect(log).toEqual(['s1', 's2']);
    g1.open();
    await tick();
    expect(log).toEqual(['s1', 's2', 's1 done']);
    g2.open();
    await tick();
    expect(log).toEqual(['s1', 's2', 's1 done', 's2 done', 'x']);
    g3.open();
    await Promise.all([s1, s2, x, s3]);
    expect(log).toEqual(['s1', 's2', 's1 done', 's2 done', 'x', 'x done', 's3']);
    expect(lock.idle).toBe(true);
  });

  it('releases on failure', async () => {
    const lock = new SharedExclusiveLock();
    await expect(lock.withExclusive(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(lock.withShared(async () => 1)).resolves.toBe(1);
    expect(lock.idle).toBe(true);
  });
});

describe('ShimGroupLocks', () => {
  it('keeps groups apart and forgets idle ones', async () => {
    const locks = new ShimGroupLocks();
    const g = gate();
    const order: string[] = [];
    const a = locks.exclusive('a', async () => {
      await g.p;
      order.push('a');
    });
    // Another group does not wait for group a.
    await locks.shared('b', async () => {
      order.push('b');
    });
    expect(order).toEqual(['b']);
    g.open();
    await a;
    expect(order).toEqual(['b', 'a']);
    expect((locks as unknown as { locks: Map<string, unknown> }).locks.size).toBe(0);
  });
});
