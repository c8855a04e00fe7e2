/**
 * The controllers' work queue and lease (src/controllers/queue.ts) on SQLite with a hand-moved clock, and the
 * manager's worker bound, renewal and retry (src/controllers/manager.ts) with real timers.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Controller, ReconcileContext } from '../../src/controllers/controller.js';
import { ControllerManager } from '../../src/controllers/manager.js';
import { WorkQueue } from '../../src/controllers/queue.js';
import { openStore, type Store } from '../../src/core/store/db.js';

const LEASE = 10_000;
let store: Store;
let clock: number;
const now = () => clock;
const queue = (owner: string) =>
  new WorkQueue(store.db, { owner, leaseMs: LEASE, backoffMs: 1000, backoffMaxMs: 8000, now });
const row = (kind: string, id: string) =>
  store.db
    .selectFrom('controller_queue')
    .selectAll()
    .where('kind', '=', kind)
    .where('object_id', '=', id)
    .executeTakeFirst();

beforeEach(async () => {
  store = await openStore('sqlite::memory:');
  clock = Date.parse('2030-01-01T00:00:00.000Z');
});
afterEach(async () => {
  await store.close();
});

describe('WorkQueue', () => {
  it('enqueue is idempotent: one row per (kind, id), the earlier due time wins, the generation counts', async () => {
    const q = queue('a');
    await q.enqueue('k', 'x', 5000);
    await q.enqueue('k', 'x', 60_000);
    await q.enqueue('k', 'x', 2000);
    await q.enqueue('other', 'x');
    const r = await row('k', 'x');
    expect(r?.generation).toBe(3);
    expect(r?.not_before).toBe(new Date(clock + 2000).toISOString());
    expect(await store.db.selectFrom('controller_queue').select('kind').execute()).toHaveLength(2);
    // Not due yet: nothing to claim; due: claimed.
    expect(await q.claim(['k'], 10)).toEqual([]);
    clock += 2000;
    expect(await q.claim(['k'], 10)).toEqual([{ kind: 'k', id: 'x', generation: 3, attempts: 0 }]);
  });

  it('claims only the registered kinds, at most `limit`, skipping what the process already runs', async () => {
    const q = queue('a');
    for (const id of ['1', '2', '3', '4']) await q.enqueue('k', id);
    await q.enqueue('z', '9');
    const first = await q.claim(['k'], 2, new Set(['k\u00001']));
    expect(first.map((c) => c.id)).toEqual(['2', '3']);
    const rest = await q.claim(['k'], 10);
    expect(rest.map((c) => c.id).sort()).toEqual(['1', '4']);
    expect(await q.claim(['k'], 10)).toEqual([]);
  });

  it('replicas claiming at the same moment never get the same object (the compare-and-set decides)', async () => {
    const replicas = ['a', 'b', 'c', 'd'].map(queue);
    for (let i = 0; i < 20; i++) await replicas[0].enqueue('k', `o${i}`);
    const claims = (await Promise.all(replicas.map((q) => q.claim(['k'], 20)))).flat();
    const ids = claims.map((c) => c.id);
    expect(ids.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `o${i}`).sort());
  });

  it('a held lease excludes every other replica until it expires; renewal keeps it; then it is taken over', async () => {
    const a = queue('a');
    const b = queue('b');
    await a.enqueue('k', 'x');
    const [claim] = await a.claim(['k'], 1);
    expect(claim).toBeDefined();
    expect(await b.claim(['k'], 1)).toEqual([]);
    clock += LEASE - 1;
    expect(await a.renew(claim)).toBe(true);
    clock += LEASE - 1;
    expect(await b.claim(['k'], 1)).toEqual([]);
    // `a` stops renewing (it died): exactly at expiry the lease still holds, just after it `b` takes over.
    clock += 1;
    expect(await b.claim(['k'], 1)).toEqual([]);
    clock += 1;
    const [taken] = await b.claim(['k'], 1);
    expect(taken?.id).toBe('x');
    expect((await row('k', 'x'))?.lease_owner).toBe('b');
    // The old holder learns it lost the lease, and its late results change nothing.
    expect(await a.renew(claim)).toBe(false);
    await a.done(claim);
    await a.fail(claim, 'late');
    expect(await row('k', 'x')).toMatchObject({ lease_owner: 'b', attempts: 0, last_error: null });
  });

  it('done removes the entry, unless it was enqueued during the reconcile (then it is due again at once)', async () => {
    const q = queue('a');
    await q.enqueue('k', 'x');
    let [c] = await q.claim(['k'], 1);
    await q.done(c);
    expect(await row('k', 'x')).toBeUndefined();

    await q.enqueue('k', 'x');
    [c] = await q.claim(['k'], 1);
    await q.enqueue('k', 'x');
    await q.done(c);
    expect(await row('k', 'x')).toMatchObject({ lease_owner: null, generation: 2 });
    expect((await q.claim(['k'], 1)).map((x) => x.id)).toEqual(['x']);
  });

  it('requeue after N ms releases the lease and makes it due then (sooner if enqueued meanwhile)', async () => {
    const q = queue('a');
    await q.enqueue('k', 'x');
    let [c] = await q.claim(['k'], 1);
    await q.requeue(c, 5000);
    expect(await row('k', 'x')).toMatchObject({ lease_owner: null, not_before: new Date(clock + 5000).toISOString() });
    expect(await q.claim(['k'], 1)).toEqual([]);
    clock += 5000;
    [c] = await q.claim(['k'], 1);
    await q.enqueue('k', 'x');
    await q.requeue(c, 5000);
    expect(await row('k', 'x')).toMatchObject({ not_before: new Date(clock).toISOString() });
  });

  it('failures back off exponentially up to the cap; a success resets the attempts', async () => {
    const q = queue('a');
    await q.enqueue('k', 'x');
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const [c] = await q.claim(['k'], 1);
      expect(c.attempts).toBe(i);
      const delay = await q.fail(c, `boom ${i}`);
      delays.push(delay);
      expect(await row('k', 'x')).toMatchObject({ attempts: i + 1, last_error: `boom ${i}`, lease_owner: null });
      clock += delay - 1;
      expect(await q.claim(['k'], 1)).toEqual([]);
      clock += 1;
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000]);
    const [c] = await q.claim(['k'], 1);
    await q.enqueue('k', 'x');
    await q.done(c);
    expect(await row('k', 'x')).toMatchObject({ attempts: 0, last_error: null });
  });
});

describe('ControllerManager', () => {
  const log = pino({ level: 'silent' });
  const settings = { concurrency: 2, leaseMs: 600, pollMs: 50, backoffMs: 20, backoffMaxMs: 20 };
  const managers: ControllerManager[] = [];
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.close();
  });
  function manager(controller: Controller, owner: string, over: Partial<typeof settings> = {}) {
    const m = new ControllerManager({ store, log, owner, settings: { ...settings, ...over } });
    m.register(controller);
    managers.push(m);
    return m;
  }
  const until = async (cond: () => boolean | Promise<boolean>, what: string) => {
    for (let i = 0; i < 600; i++) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  it('runs at most `concurrency` reconciles at once per process and never one object twice at a time', async () => {
    let active = 0;
    let most = 0;
    const perObject = new Map<string, number>();
    let overlaps = 0;
    const rounds = new Map<string, number>();
    const controller: Controller = {
      kind: 'unit.bounded',
      async reconcile(id) {
        active++;
        most = Math.max(most, active);
        perObject.set(id, (perObject.get(id) ?? 0) + 1);
        if (perObject.get(id)! > 1) overlaps++;
        await new Promise((r) => setTimeout(r, 15));
        perObject.set(id, perObject.get(id)! - 1);
        active--;
        const n = (rounds.get(id) ?? 0) + 1;
        rounds.set(id, n);
        return n < 3 ? { requeueAfterMs: 0 } : 'done';
      },
    };
    const a = manager(controller, 'a');
    const b = manager(controller, 'b');
    a.start();
    b.start();
    for (let i = 0; i < 8; i++) await a.enqueue('unit.bounded', `o${i}`);
    await until(
      async () => (await store.db.selectFrom('controller_queue').select('kind').execute()).length === 0,
      'the queue to drain',
    );
    // Two processes of two workers each: four at most in all, and never one object twice.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(4);
    expect(overlaps).toBe(0);
    expect([...rounds.values()]).toEqual(Array(8).fill(3));
  });

  it('holds the bound with one process: a third object waits for a free worker', async () => {
    const release: (() => void)[] = [];
    const started: string[] = [];
    const m = manager(
      {
        kind: 'unit.blocking',
        async reconcile(id) {
          started.push(id);
          await new Promise<void>((r) => release.push(r));
          return 'done';
        },
      },
      'a',
    );
    m.start();
    for (const id of ['1', '2', '3']) await m.enqueue('unit.blocking', id);
    await until(() => started.length === 2, 'two reconciles');
    // Several polls later the third still waits.
    await new Promise((r) => setTimeout(r, 200));
    expect(started).toHaveLength(2);
    expect(m.inFlight).toBe(2);
    release.shift()!();
    await until(() => started.length === 3, 'the third reconcile');
    for (const r of release) r();
  });

  it('retries a failing reconcile with back-off, counting attempts, until it succeeds', async () => {
    const attempts: number[] = [];
    const m = manager(
      {
        kind: 'unit.flaky',
        async reconcile(_id, ctx: ReconcileContext) {
          attempts.push(ctx.attempt);
          if (ctx.attempt < 3) throw new Error(`failure ${ctx.attempt}`);
          return 'done';
        },
      },
      'a',
    );
    m.start();
    await m.enqueue('unit.flaky', 'x');
    await until(async () => (await row('unit.flaky', 'x')) === undefined && attempts.length === 3, 'success');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('renews the lease while a reconcile outlasts it, and aborts it when the lease is taken', async () => {
    let signal: AbortSignal | undefined;
    const m = manager(
      {
        kind: 'unit.long',
        async reconcile(_id, ctx) {
          signal = ctx.signal;
          await new Promise((r) => ctx.signal.addEventListener('abort', r));
          throw new Error('aborted');
        },
      },
      'a',
      { leaseMs: 300 },
    );
    m.start();
    await m.enqueue('unit.long', 'x');
    await until(() => signal !== undefined, 'the reconcile');
    // Three lease times later it still holds the lease (renewed every third of it).
    await new Promise((r) => setTimeout(r, 900));
    expect(signal!.aborted).toBe(false);
    expect((await row('unit.long', 'x'))?.lease_owner).toBe('a');
    // Someone else takes the row (as after a stall longer than the lease): the next renewal aborts the reconcile.
    await store.db.updateTable('controller_queue').set({ lease_owner: 'b' }).execute();
    await until(() => signal!.aborted, 'the abort');
    expect((await row('unit.long', 'x'))?.lease_owner).toBe('b');
  });

  it('hands the leases back on close', async () => {
    const m = manager(
      {
        kind: 'unit.stop',
        async reconcile(_id, ctx) {
          await new Promise((r) => ctx.signal.addEventListener('abort', r));
          return { requeueAfterMs: 60_000 };
        },
      },
      'a',
    );
    m.start();
    await m.enqueue('unit.stop', 'x');
    await until(async () => (await row('unit.stop', 'x'))?.lease_owner === 'a', 'the claim');
    await m.close();
    expect(await row('unit.stop', 'x')).toMatchObject({ lease_owner: null, attempts: 0 });
  });
});
