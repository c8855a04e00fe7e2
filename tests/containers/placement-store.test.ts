import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentDirectory } from '../../src/compute/agent-port.js';
import { type Actor, ContainerApi } from '../../src/compute/container-api.js';
import { ContainerRepo } from '../../src/compute/repo.js';
import { hostUsage, RAM_ALLOCATION_RATIO } from '../../src/compute/scheduler.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/**
 * Atomic placement (issue 12, item 2) on a real store: bursts of concurrent `ContainerApi.create` calls never
 * over-book a host — on PostgreSQL through two API "replicas" (each its own connection pool and ContainerApi) — and
 * a burst spreads across hosts. The agent directory is a fake offering the test's hosts; no networking.
 */
for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`atomic placement (${kind})`, () => {
    const stores: Store[] = [];
    let pg: TestDatabase | undefined;
    let dir = '';
    let apis: ContainerApi[] = [];
    const tag = randomUUID().slice(0, 8);
    const project = randomUUID().replace(/-/g, '');
    const actor: Actor = { projectId: project, userId: 'u-1', roles: ['member'], isAdmin: false };
    let offered: string[] = [];

    const addHost = async (hostname: string, cpus: number, memTotal: number) =>
      stores[0].db
        .insertInto('compute_hosts')
        .values({
          uuid: randomUUID(),
          hostname,
          info: JSON.stringify({ cpus, mem_total: memTotal, runtimes: ['runc'] }),
          created_at: new Date().toISOString(),
          updated_at: null,
          rpc_url: null,
          rpc_secret: null,
        })
        .execute();

    beforeAll(async () => {
      if (kind === 'postgres') pg = await createTestDatabase();
      dir = mkdtempSync(join(tmpdir(), 'krater-placement-'));
      const url = pg ? pg.url : `sqlite:${join(dir, 'krater.db')}`;
      // PostgreSQL: two replicas over one database. SQLite serves one API process.
      for (let i = 0; i < (pg ? 2 : 1); i++) stores.push(await openStore(url));
      await stores[0].db
        .insertInto('quotas')
        .values(
          ['containers', 'cpu', 'memory'].map((resource) => ({
            scope: `project:${project}`,
            resource,
            hard_limit: 1_000_000,
          })),
        )
        .execute();
      const agents: AgentDirectory = {
        forHost: async () => undefined,
        wake: () => undefined,
        schedulableHosts: async () => offered,
      };
      apis = stores.map((s) => new ContainerApi(new ContainerRepo(s.db), agents));
    }, 120_000);
    afterAll(async () => {
      for (const s of stores) await s.close();
      await pg?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    const burst = (n: number, memoryMiB: number) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          apis[i % apis.length].create(actor, {
            spec: { name: `burst-${i}`, image: 'busybox', limits: { cpu: 0.5, memoryMiB } },
          }),
        ),
      );

    it('20 concurrent creates on 2 small hosts: none over-booked, the rest in Error', async () => {
      const small = [`small-a-${tag}`, `small-b-${tag}`];
      // 2 CPUs and 1 GiB each: 1536 MiB of claims, room for three 512 MiB containers.
      for (const h of small) await addHost(h, 2, 1024);
      offered = small;
      const made = await burst(20, 512);
      const placed = made.filter((c) => c.host);
      expect(placed).toHaveLength(6);
      for (const c of made.filter((c) => !c.host)) {
        expect(c.status).toBe('Error');
        expect(c.statusReason).toBe('There are not enough hosts available.');
      }
      const usage = await hostUsage(stores[0].db, small);
      for (const h of small) {
        expect(usage.get(h)?.memory ?? 0).toBeLessThanOrEqual(1024 * RAM_ALLOCATION_RATIO);
        expect(usage.get(h)?.containers).toBe(3);
      }
      const errors = await stores[0].db
        .selectFrom('containers')
        .select('uuid')
        .where('project_id', '=', project)
        .where('status', '=', 'Error')
        .execute();
      expect(errors).toHaveLength(14);
    }, 60_000);

    it('a concurrent burst spreads evenly across equal hosts', async () => {
      const big = [`big-a-${tag}`, `big-b-${tag}`, `big-c-${tag}`];
      for (const h of big) await addHost(h, 32, 65536);
      offered = big;
      const made = await burst(12, 256);
      expect(made.every((c) => c.host && big.includes(c.host))).toBe(true);
      const usage = await hostUsage(stores[0].db, big);
      // Every claim re-weighs what committed before it: equal containers on equal hosts land 4, 4, 4.
      expect(big.map((h) => usage.get(h)?.containers)).toEqual([4, 4, 4]);
    }, 60_000);
  });
}
