import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentDirectory } from '../../src/compute/agent-port.js';
import { type Actor, ContainerApi } from '../../src/compute/container-api.js';
import { ComputeError } from '../../src/compute/errors.js';
import type { ContainerNetworking } from '../../src/compute/networking.js';
import { parsePublishList } from '../../src/compute/publish.js';
import { ContainerRepo } from '../../src/compute/repo.js';
import { openStore, type Store } from '../../src/core/store/db.js';

/**
 * `ContainerApi` called in-process, as the coming controllers will, on a real SQLite store: the agent directory is
 * a fake that offers two hosts and records wake-ups; Neutron is a fake that allocates no addresses.
 */
describe('ContainerApi (in-process, SQLite store)', () => {
  let store: Store;
  let dir = '';
  let repo: ContainerRepo;
  let api: ContainerApi;
  const woken: string[] = [];
  const hostA = `api-test-a-${randomUUID().slice(0, 8)}`;
  const hostB = `api-test-b-${randomUUID().slice(0, 8)}`;
  const project = randomUUID().replace(/-/g, '');
  const actor: Actor = {
    projectId: project,
    userId: 'u-1',
    roles: ['member'],
    isAdmin: false,
    requestId: 'req-test-1',
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'krater-container-api-'));
    store = await openStore(`sqlite:${join(dir, 'krater.db')}`);
    repo = new ContainerRepo(store.db);
    const now = new Date().toISOString();
    // Host A reports 1 CPU and 1 GiB (room for 16 CPUs and 1.5 GiB of claims); host B is big.
    for (const [hostname, info] of [
      [hostA, { cpus: 1, mem_total: 1024, runtimes: ['runc'] }],
      [hostB, { cpus: 64, mem_total: 262144, runtimes: ['runc'] }],
    ] as const)
      await store.db
        .insertInto('compute_hosts')
        .values({
          uuid: randomUUID(),
          hostname,
          info: JSON.stringify(info),
          created_at: now,
          updated_at: null,
          rpc_url: null,
          rpc_secret: null,
        })
        .execute();
    await store.db
      .insertInto('quotas')
      .values([
        { scope: `project:${project}`, resource: 'containers', hard_limit: 4 },
        { scope: `project:${project}`, resource: 'published_ports', hard_limit: 2 },
      ])
      .execute();
    const agents: AgentDirectory = {
      forHost: async () => undefined,
      wake: (host) => void woken.push(host),
      schedulableHosts: async () => [hostA, hostB],
    };
    const networking = {
      allocate: async () => ({}),
      releaseAll: async () => undefined,
      resolveSecurityGroups: async () => [],
      exposePorts: async () => 'sg',
    } as unknown as ContainerNetworking;
    // Pack: the fuller host is taken while it has room, so these tests know where each container lands.
    api = new ContainerApi(repo, agents, networking, 'pack');
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const tasks = (uuid: string) =>
    store.db.selectFrom('agent_tasks').selectAll().where('container_uuid', '=', uuid).execute();

  it('schedules onto the first host with room, records the action and queues the create task', async () => {
    const c = await api.create(actor, {
      spec: { name: 'web', image: 'busybox', limits: { cpu: 0.5, memoryMiB: 1024 }, environment: { A: '1' } },
      run: true,
    });
    expect(c.host).toBe(hostA);
    expect(c.status).toBe('Creating');
    expect(c.limits).toEqual({ cpu: 0.5, memoryMiB: 1024, diskGiB: null });
    expect(c.environment).toEqual({ A: '1' });
    expect(c.desired).toBe('running');
    const row = await repo.get(c.uuid);
    expect(row).toMatchObject({ host: hostA, memory: '1024', project_id: project, user_id: 'u-1' });
    const actions = await repo.listActions(c.uuid);
    expect(actions).toHaveLength(1);
    expect(actions[0]).toMatchObject({ action: 'create', request_id: 'req-test-1', user_id: 'u-1', finish_time: null });
    const queued = await tasks(c.uuid);
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ host: hostA, action: 'create', state: 'pending', action_id: actions[0].id });
    expect(JSON.parse(queued[0].params)).toEqual({ run: true });
    expect(woken).toContain(hostA);

    // Host A now holds 1 GiB of its 1.5 GiB: the next 1 GiB container goes to host B.
    const d = await api.create(actor, { spec: { name: 'db', image: 'busybox', limits: { memoryMiB: 1024 } } });
    expect(d.host).toBe(hostB);
    expect(d.desired).toBe('stopped');
  });

  it('refuses a host port another container holds on the host with a 409, leaving nothing behind', async () => {
    const spec = (name: string, ports: string) => ({
      name,
      image: 'busybox',
      limits: { memoryMiB: 64 },
      publishedPorts: parsePublishList(ports),
    });
    const a = await api.create(actor, { spec: spec('pub-a', '127.0.0.1:18080:80'), host: hostB });
    expect(a.publishedPorts).toEqual([{ hostIp: '127.0.0.1', hostPort: 18080, containerPort: 80, protocol: 'tcp' }]);
    const before = (await repo.quotaUsage(project)).containers;
    const refused = await api.create(actor, { spec: spec('pub-b', '0.0.0.0:18080:81'), host: hostB }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ComputeError);
    expect(refused).toMatchObject({ status: 409, klass: 'Conflict' });
    // The refused container's row (written before the claim) is gone again, and so is any claim of it.
    expect((await repo.quotaUsage(project)).containers).toBe(before);
    expect(await store.db.selectFrom('containers').select('uuid').where('name', '=', 'pub-b').execute()).toHaveLength(
      0,
    );
    expect((await repo.quotaUsage(project)).published_ports).toBe(1);
  });

  it('refuses over quota with a 403 OverQuota and writes nothing', async () => {
    // published_ports: 2 allowed, 1 held; three more asked.
    const over = await api
      .create(actor, {
        spec: {
          name: 'too-many-ports',
          image: 'busybox',
          publishedPorts: parsePublishList('127.0.0.1:18081:80,127.0.0.1:18082:80'),
        },
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(over).toMatchObject({ status: 403, klass: 'OverQuota' });
    expect((over as Error).message).toContain('published_ports');
    // containers: 4 allowed, 3 held (web, db, pub-a).
    await api.create(actor, { spec: { name: 'fourth', image: 'busybox', limits: { memoryMiB: 64 } } });
    const fifth = await api
      .create(actor, { spec: { name: 'fifth', image: 'busybox', limits: { memoryMiB: 64 } } })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(fifth).toMatchObject({ status: 403, klass: 'OverQuota' });
    expect((fifth as Error).message).toBe("Quota exceeded for resources: ['containers']");
    expect(await store.db.selectFrom('containers').select('uuid').where('name', '=', 'fifth').execute()).toHaveLength(
      0,
    );
  });

  it('a requested host that does not exist is a 404; a project-less actor is refused', async () => {
    // Another project (this one is at its quota now).
    const other: Actor = { ...actor, projectId: randomUUID().replace(/-/g, '') };
    await expect(
      api.create(other, { spec: { name: 'nowhere', image: 'busybox' }, host: 'no-such-host' }),
    ).rejects.toMatchObject({ status: 404, klass: 'RequestedHostNotFound' });
    await expect(
      api.create({ ...actor, projectId: undefined }, { spec: { name: 'x1', image: 'busybox' } }),
    ).rejects.toMatchObject({ status: 403 });
  });

  it('actions and delete: state checks, action records with the actor, tasks for the host', async () => {
    const c = await api.get(actor, 'web');
    // Creating: not startable yet.
    await expect(api.action(actor, c.uuid, { action: 'start' })).rejects.toMatchObject({
      status: 409,
      klass: 'InvalidStateException',
    });
    await repo.update(c.uuid, { status: 'Running' });
    await api.action({ ...actor, requestId: 'req-stop' }, c.uuid, { action: 'stop', timeout: 3 });
    const stop = await repo.findAction(c.uuid, 'req-stop');
    expect(stop).toMatchObject({ action: 'stop', user_id: 'u-1' });
    const queued = (await tasks(c.uuid)).find((t) => t.action_id === stop?.id);
    expect(queued).toMatchObject({ host: hostA, action: 'stop' });
    expect(JSON.parse(queued!.params)).toEqual({ timeout: 3 });
    // Another project does not see it at all.
    await expect(api.delete({ ...actor, projectId: 'other' }, 'web')).rejects.toMatchObject({ status: 404 });
    await expect(api.delete(actor, 'web')).rejects.toMatchObject({ status: 409 });
    await api.delete({ ...actor, requestId: 'req-del' }, 'web', { force: true });
    expect(await repo.get(c.uuid)).toMatchObject({ status: 'Deleting', desired: 'deleted' });
    expect(await repo.findAction(c.uuid, 'req-del')).toMatchObject({ action: 'delete' });
  });

  it('update: limits in units, quota-checked, and a resize task for the host', async () => {
    const d = await api.get(actor, 'db');
    await repo.update(d.uuid, { status: 'Running' });
    const u = await api.update(actor, d.uuid, { memoryMiB: 2048, cpu: 2, name: 'db2' });
    expect(u.limits).toMatchObject({ cpu: 2, memoryMiB: 2048 });
    expect(u.name).toBe('db2');
    expect((await repo.get(d.uuid))?.memory).toBe('2048');
    expect((await tasks(d.uuid)).some((t) => t.action === 'update_resources')).toBe(true);
  });
});
