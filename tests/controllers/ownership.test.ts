import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControllers } from '../../src/app/controllers.js';
import type { AgentDirectory } from '../../src/compute/agent-port.js';
import { type Actor, ContainerApi } from '../../src/compute/container-api.js';
import type { ContainerSpec } from '../../src/compute/model.js';
import { type OwnerKind, validOwnerRef } from '../../src/compute/ownership.js';
import { ContainerRepo } from '../../src/compute/repo.js';
import type { ControllerDeps } from '../../src/controllers/controller.js';
import { GC_ID, GC_KIND } from '../../src/controllers/garbage-collector.js';
import { controllerSettings } from '../../src/core/config/controllers.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { sleep } from '../helpers/krater.js';

/**
 * Owner references (issue 11, item 6) on a real SQLite store: containers created in-process with an owner go when
 * their owner goes — a container owner, and a test-only kind whose owners live in a set — through the garbage
 * collector the control plane starts; an owner that vanished while no collector ran (a crash) is caught at the next
 * start. No host is schedulable here, so containers stay host-less and a delete removes the row at once.
 */
describe('ownership: owned containers are deleted with their owner', () => {
  let store: Store;
  let dir = '';
  let api: ContainerApi;
  const parents = new Set<string>(['p1']);
  const testKind = (deps: ControllerDeps): [] => {
    const kind: OwnerKind = {
      kind: 'test.parent',
      existing: async (ids) => new Set(ids.filter((id) => parents.has(id))),
    };
    deps.owners.register(kind);
    return [];
  };
  const actor: Actor = { projectId: 'proj-own', userId: 'u-own', roles: ['member'], isAdmin: false };
  const spec = (name: string) => ({ name, image: 'busybox', command: ['sleep', '60'] }) as unknown as ContainerSpec;
  const exists = async (uuid: string) =>
    !!(await store.db.selectFrom('containers').select('uuid').where('uuid', '=', uuid).executeTakeFirst());
  const settings = { ...controllerSettings({}), pollMs: 50, gcIntervalMs: 200 };
  const log = pino({ level: 'silent' });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'krater-ownership-'));
    store = await openStore(`sqlite:${join(dir, 'krater.db')}`);
    const agents: AgentDirectory = {
      forHost: async () => undefined,
      wake: () => undefined,
      schedulableHosts: async () => [],
    };
    api = new ContainerApi(new ContainerRepo(store.db), agents);
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const until = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await sleep(50);
    }
    throw new Error(`timed out: ${what}`);
  };

  it('refuses malformed owner references', async () => {
    expect(validOwnerRef({ kind: 'capsule', id: 'x' })).toBe(true);
    expect(validOwnerRef({ kind: 'Bad Kind', id: 'x' })).toBe(false);
    expect(validOwnerRef({ kind: 'capsule', id: '' })).toBe(false);
    await expect(
      api.create(actor, { spec: spec('bad-owner'), owner: { kind: '../x', id: 'y' } }),
    ).rejects.toMatchObject({ status: 400 });
  });

  it('deletes what a deleted container owned, keeps what live owners and unknown kinds own', async () => {
    const parent = await api.create(actor, { spec: spec('parent') });
    const c1 = await api.create(actor, { spec: spec('child-1'), owner: { kind: 'container', id: parent.uuid } });
    const c2 = await api.create(actor, { spec: spec('child-2'), owner: { kind: 'container', id: parent.uuid } });
    const kept = await api.create(actor, { spec: spec('of-p1'), owner: { kind: 'test.parent', id: 'p1' } });
    const unknown = await api.create(actor, { spec: spec('of-unknown'), owner: { kind: 'test.unknown', id: 'z' } });
    // Owned containers are ordinary containers of their project.
    expect((await api.get(actor, c1.uuid)).owner).toEqual({ kind: 'container', id: parent.uuid });
    expect((await api.get(actor, 'child-2')).uuid).toBe(c2.uuid);

    const manager = await startControllers(store, log, testKind, settings, { containers: api });
    try {
      await sleep(400); // a few sweeps with every owner alive: nothing goes
      for (const c of [parent, c1, c2, kept, unknown]) expect(await exists(c.uuid)).toBe(true);
      await api.delete(actor, parent.uuid);
      await until('the children of the deleted parent are deleted', async () => {
        return !(await exists(c1.uuid)) && !(await exists(c2.uuid));
      });
      await sleep(400);
      expect(await exists(kept.uuid)).toBe(true);
      expect(await exists(unknown.uuid)).toBe(true);
    } finally {
      await manager.close();
    }
  });

  it('an owner gone while no collector ran (a crash) takes its containers at the next start', async () => {
    const owned = await api.create(actor, { spec: spec('orphan-to-be'), owner: { kind: 'test.parent', id: 'p1' } });
    parents.delete('p1'); // no process is running the collector now
    await sleep(300);
    expect(await exists(owned.uuid)).toBe(true);
    // A sweep far in the future: only the enqueue every start makes can find the orphan in time.
    const manager = await startControllers(
      store,
      log,
      testKind,
      { ...settings, gcIntervalMs: 3_600_000 },
      {
        containers: api,
      },
    );
    try {
      await until('the orphan is deleted after the restart', async () => !(await exists(owned.uuid)));
      const queued = await store.db
        .selectFrom('controller_queue')
        .selectAll()
        .where('kind', '=', GC_KIND)
        .where('object_id', '=', GC_ID)
        .executeTakeFirst();
      expect(queued).toBeTruthy();
    } finally {
      await manager.close();
    }
  });
});
