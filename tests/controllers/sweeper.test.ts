import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControllers } from '../../src/app/controllers.js';
import type { AgentDirectory } from '../../src/compute/agent-port.js';
import { type Actor, ContainerApi } from '../../src/compute/container-api.js';
import { INTERRUPTED_CREATE } from '../../src/compute/interrupted.js';
import { ContainerNetworking, DEVICE_OWNER, type NeutronClient } from '../../src/compute/networking.js';
import { ContainerRepo } from '../../src/compute/repo.js';
import { SWEEPER_ID, sweeper } from '../../src/controllers/sweeper.js';
import { controllerSettings } from '../../src/core/config/controllers.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { sleep } from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/**
 * The sweeper of interrupted creates (issue 12, item 3) on a real SQLite store with an in-process ContainerApi. A
 * crash in the middle of a create is reproduced by removing what the create would have written after the crash (the
 * agent task, the action) and by backdating rows past the grace period. Neutron is a fake that keeps its ports in
 * the store's `net_ports` (where the sweeper looks for orphans) and records deletes and updates. Runs on SQLite and
 * on PostgreSQL (the sweeper's queries use correlated subqueries both must accept).
 */
describe.each(['sqlite', 'postgresql'])(
  'sweeper on %s: interrupted creates are rolled back, orphaned ports released',
  (kind) => {
    let store: Store;
    let pg: TestDatabase | undefined;
    let dir = '';
    let repo: ContainerRepo;
    let api: ContainerApi;
    const host = `sweep-${randomUUID().slice(0, 8)}`;
    const project = randomUUID().replace(/-/g, '');
    const actor: Actor = { projectId: project, userId: 'u-sweep', roles: ['member'], isAdmin: false, requestId: 'r-1' };
    const deleted: string[] = [];
    const unbound: string[] = [];
    const log = pino({ level: 'silent' });
    const longAgo = new Date(Date.now() - 10 * 60_000).toISOString();

    /** A Neutron that makes ports as Krater's does (bound at creation, revision 0) in the store's `net_ports`. */
    const neutron = (): NeutronClient => {
      const ts = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      const listPorts = async (_a: unknown, f: Record<string, string | string[]>) => {
        const rows = await store.db
          .selectFrom('net_ports')
          .selectAll()
          .where('device_id', '=', String(f.device_id))
          .execute();
        return rows.map((r) => ({ ...r, fixed_ips: [] }));
      };
      return {
        listNetworks: async () => [{ id: 'net-1', created_at: '2026-01-01T00:00:00Z' }],
        listPorts,
        getPort: async () => {
          throw new Error('unused');
        },
        createPort: async (_a, body) => {
          const id = randomUUID();
          await store.db
            .insertInto('net_ports')
            .values({
              id,
              name: '',
              network_id: body.network_id,
              project_id: body.project_id,
              mac_address: `fa:16:3e:${id.slice(0, 2)}:${id.slice(2, 4)}:${id.slice(4, 6)}`,
              admin_state_up: 1,
              status: 'DOWN',
              device_id: body.device_id ?? '',
              device_owner: body.device_owner ?? '',
              port_security_enabled: 1,
              allowed_address_pairs: '[]',
              binding_host_id: body['binding:host_id'] ?? '',
              binding_vif_type: 'bridge',
              binding_vif_details: '{}',
              binding_vnic_type: 'normal',
              binding_profile: '{}',
              dns_name: '',
              description: '',
              revision_number: 0,
              created_at: ts(),
              updated_at: ts(),
            })
            .execute();
          return { id, network_id: body.network_id, fixed_ips: [{ ip_address: '10.0.0.9', subnet_id: 'sub-1' }] };
        },
        updatePort: async (_a, id, body) => {
          unbound.push(id);
          await store.db
            .updateTable('net_ports')
            .set({ device_id: body.device_id ?? '', device_owner: body.device_owner ?? '', revision_number: 2 })
            .where('id', '=', id)
            .execute();
          return { id };
        },
        deletePort: async (_a, id) => {
          deleted.push(id);
          await store.db.deleteFrom('net_ports').where('id', '=', id).execute();
        },
        listSecurityGroups: async () => [],
        createSecurityGroup: async () => ({ id: 'sg' }),
        deleteSecurityGroup: async () => undefined,
        createSecurityGroupRule: async () => ({}),
        ensureDefaultNetwork: async () => ({ id: 'net-1' }),
      };
    };
    let networking: ContainerNetworking;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'krater-sweeper-'));
      if (kind === 'postgresql') pg = await createTestDatabase();
      store = await openStore(pg ? pg.url : `sqlite:${join(dir, 'krater.db')}`);
      repo = new ContainerRepo(store.db);
      await store.db
        .insertInto('compute_hosts')
        .values({
          uuid: randomUUID(),
          hostname: host,
          info: JSON.stringify({ cpus: 64, mem_total: 262144, runtimes: ['runc'] }),
          created_at: new Date().toISOString(),
          updated_at: null,
          rpc_url: null,
          rpc_secret: null,
        })
        .execute();
      const agents: AgentDirectory = {
        forHost: async () => undefined,
        wake: () => undefined,
        schedulableHosts: async () => [host],
      };
      networking = new ContainerNetworking(neutron());
      api = new ContainerApi(repo, agents, networking);
    }, 120_000);
    afterAll(async () => {
      await store?.close();
      await pg?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    const sweepOnce = () =>
      sweeper({ repo, networking, intervalMs: 60_000, graceMs: 60_000 }).reconcile(SWEEPER_ID, {
        signal: new AbortController().signal,
        attempt: 1,
        owner: 'test',
        enqueue: async () => undefined,
        log,
      });
    const create = async (name: string) =>
      api.create(actor, { spec: { name, image: 'busybox', limits: { memoryMiB: 64 } } });
    const portsOf = (uuid: string) =>
      store.db.selectFrom('net_ports').select('id').where('device_id', '=', uuid).execute();
    /** What a crash right after the row was written leaves: no task (and, if asked, no action either). */
    const crashAfterRow = async (uuid: string, opts: { noAction?: boolean } = {}) => {
      await store.db.deleteFrom('agent_tasks').where('container_uuid', '=', uuid).execute();
      if (opts.noAction) await store.db.deleteFrom('container_actions').where('container_uuid', '=', uuid).execute();
    };
    const age = (uuid: string) =>
      store.db
        .updateTable('containers')
        .set({ created_at: longAgo, updated_at: longAgo })
        .where('uuid', '=', uuid)
        .execute();

    it('rolls an old Creating container with no task back to Error: reason, action finished, ports released', async () => {
      const c = await create('cut-short');
      const ports = await portsOf(c.uuid);
      expect(ports).toHaveLength(1);
      await crashAfterRow(c.uuid);
      await age(c.uuid);

      await expect(sweepOnce()).resolves.toEqual({ requeueAfterMs: 60_000 });
      const row = await repo.get(c.uuid);
      expect(row).toMatchObject({
        status: 'Error',
        status_reason: INTERRUPTED_CREATE,
        task_state: null,
        addresses: null,
      });
      expect(deleted).toContain(ports[0]!.id);
      expect(await portsOf(c.uuid)).toHaveLength(0);
      const [action] = await repo.listActions(c.uuid);
      expect(action).toMatchObject({ action: 'create', request_id: 'r-1', message: 'Error' });
      expect(action!.finish_time).not.toBeNull();
      expect(await repo.actionEvents(action!.id)).toMatchObject([
        { event: 'compute__do_container_create', result: 'Error', traceback: INTERRUPTED_CREATE },
      ]);
      // A second sweep finds nothing more to do (and records nothing twice).
      await sweepOnce();
      expect(await repo.listActions(c.uuid)).toHaveLength(1);
      expect(await repo.actionEvents(action!.id)).toHaveLength(1);
    });

    it('releases the ports of a create cut short after they were made but before the row recorded them', async () => {
      const c = await create('ports-unrecorded');
      const ports = await portsOf(c.uuid);
      expect(ports).toHaveLength(1);
      await crashAfterRow(c.uuid);
      await store.db.updateTable('containers').set({ addresses: null }).where('uuid', '=', c.uuid).execute();
      await age(c.uuid);
      await sweepOnce();
      expect(await repo.get(c.uuid)).toMatchObject({ status: 'Error', status_reason: INTERRUPTED_CREATE });
      expect(deleted).toContain(ports[0]!.id);
      expect(await portsOf(c.uuid)).toHaveLength(0);
    });

    it('finishes releasing the ports of a rollback a crash cut short', async () => {
      const c = await create('rollback-cut-short');
      const ports = await portsOf(c.uuid);
      await crashAfterRow(c.uuid);
      // The sweeper's first step committed (Error, addresses cleared), then it died before the ports went.
      await store.db
        .updateTable('containers')
        .set({ status: 'Error', status_reason: INTERRUPTED_CREATE, addresses: null })
        .where('uuid', '=', c.uuid)
        .execute();
      await age(c.uuid);
      await sweepOnce();
      expect(deleted).toContain(ports[0]!.id);
      expect(await portsOf(c.uuid)).toHaveLength(0);
    });

    it('records the create action when the crash came before it', async () => {
      const c = await create('no-action');
      await crashAfterRow(c.uuid, { noAction: true });
      await age(c.uuid);
      await sweepOnce();
      expect(await repo.get(c.uuid)).toMatchObject({ status: 'Error', status_reason: INTERRUPTED_CREATE });
      const actions = await repo.listActions(c.uuid);
      expect(actions).toHaveLength(1);
      expect(actions[0]).toMatchObject({ action: 'create', user_id: 'u-sweep', message: 'Error' });
    });

    it('leaves an old Creating container with its task, and a young one without, alone', async () => {
      const queued = await create('queued');
      await age(queued.uuid);
      const young = await create('young');
      await crashAfterRow(young.uuid);
      await sweepOnce();
      for (const c of [queued, young]) {
        expect(await repo.get(c.uuid)).toMatchObject({ status: 'Creating', status_reason: null });
        expect(await portsOf(c.uuid)).toHaveLength(1);
        expect((await repo.listActions(c.uuid)).every((a) => a.finish_time === null)).toBe(true);
      }
    });

    it("deletes Zun's old ports whose container row was never written, keeps used, young and users' ports", async () => {
      const live = await create('live');
      const livePort = (await portsOf(live.uuid))[0]!.id;
      const make = (device: string) =>
        networking.bindPort(
          { projectId: project, isAdmin: false },
          { uuid: device, project_id: project, host },
          {},
          null,
        );
      const orphan = (await make(randomUUID())).id as string;
      const youngOrphan = (await make(randomUUID())).id as string;
      const usersPort = (await make(randomUUID())).id as string;
      const foreign = randomUUID();
      await store.db.updateTable('net_ports').set({ revision_number: 3 }).where('id', '=', usersPort).execute();
      // A port nobody bound to Zun (another device owner) is never the sweeper's business.
      await store.db
        .insertInto('net_ports')
        .values({
          id: foreign,
          name: '',
          network_id: 'net-1',
          project_id: project,
          mac_address: 'fa:16:3e:00:00:01',
          device_id: randomUUID(),
          device_owner: 'compute:nova',
          description: '',
          revision_number: 0,
          created_at: longAgo,
          updated_at: longAgo,
        } as never)
        .execute();
      await store.db
        .updateTable('net_ports')
        .set({ created_at: longAgo })
        .where('id', 'in', [livePort, orphan, usersPort])
        .execute();

      await sweepOnce();
      const left = async (id: string) =>
        store.db.selectFrom('net_ports').select(['device_id', 'device_owner']).where('id', '=', id).executeTakeFirst();
      expect(deleted).toContain(orphan);
      expect(await left(orphan)).toBeUndefined();
      expect(await left(livePort)).toMatchObject({ device_id: live.uuid, device_owner: DEVICE_OWNER });
      expect(await left(youngOrphan)).toMatchObject({ device_owner: DEVICE_OWNER });
      expect(await left(foreign)).toMatchObject({ device_owner: 'compute:nova' });
      // A port at a later revision may be the user's own (`--net port=`): unbound and kept, not deleted.
      expect(deleted).not.toContain(usersPort);
      expect(unbound).toContain(usersPort);
      expect(await left(usersPort)).toMatchObject({ device_id: '', device_owner: '' });
    });

    it('runs at every start of the control plane', async () => {
      const c = await create('before-restart');
      await crashAfterRow(c.uuid);
      await age(c.uuid);
      // The interval is long: only the sweep every start enqueues can roll it back in time.
      const settings = { ...controllerSettings({}), pollMs: 50, sweepIntervalMs: 3_600_000, gcIntervalMs: 3_600_000 };
      const manager = await startControllers(store, log, undefined, settings, { containers: api });
      try {
        for (let i = 0; i < 200 && (await repo.get(c.uuid))?.status !== 'Error'; i++) await sleep(50);
        expect(await repo.get(c.uuid)).toMatchObject({ status: 'Error', status_reason: INTERRUPTED_CREATE });
        expect(await portsOf(c.uuid)).toHaveLength(0);
      } finally {
        await manager.close();
      }
    });
  },
);
