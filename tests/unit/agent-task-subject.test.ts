/**
 * Migration 0011 on SQLite and PostgreSQL: agent tasks name their subject (`kind` + `container_uuid` or
 * `image_uuid`); image tasks queued before it (their image uuid in `container_uuid`) are moved over, container
 * tasks are left as they were, and `container_uuid` takes NULL.
 */
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskSubject } from '../../src/agent/executor.js';
import { ContainerRepo } from '../../src/compute/repo.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import * as m0011 from '../../src/core/store/migrations/0011_agent_task_subject.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`agent task subjects (${engine})`, () => {
    let store: Store;
    let pg: TestDatabase | undefined;

    beforeAll(async () => {
      if (engine === 'postgres') pg = await createTestDatabase();
      store = await openStore(pg ? pg.url : 'sqlite::memory:');
    }, 120_000);
    afterAll(async () => {
      await store?.close();
      await pg?.drop();
    });

    it('moves queued image tasks to kind image and keeps container tasks', async () => {
      const db = store.db as unknown as Kysely<unknown>;
      await m0011.down(db);
      const now = new Date().toISOString();
      const old = (container_uuid: string, action: string) =>
        (store.db as unknown as Kysely<any>)
          .insertInto('agent_tasks')
          .values({
            host: 'h',
            container_uuid,
            action,
            params: '{}',
            action_id: null,
            state: 'pending',
            created_at: now,
          })
          .execute();
      await old('img-1', 'image_pull');
      await old('ctr-1', 'start');
      await old('img-2', 'image_delete');
      await m0011.up(db);
      const rows = await store.db.selectFrom('agent_tasks').selectAll().orderBy('id').execute();
      expect(rows.map((r) => [r.kind, r.container_uuid, r.image_uuid, r.action])).toEqual([
        ['image', null, 'img-1', 'image_pull'],
        ['container', 'ctr-1', null, 'start'],
        ['image', null, 'img-2', 'image_delete'],
      ]);
      expect(rows.map((r) => taskSubject(r))).toEqual([
        { kind: 'image', id: 'img-1' },
        { kind: 'container', id: 'ctr-1' },
        { kind: 'image', id: 'img-2' },
      ]);
    });

    it('queues new tasks with their subject: images without a container, containers as before', async () => {
      await store.db.deleteFrom('agent_tasks').execute();
      const repo = new ContainerRepo(store.db);
      await repo.enqueueImageTask('h', 'img-3', 'image_pull');
      await repo.enqueue('h', 'ctr-2', 'stop', { timeout: 1 }, null);
      const rows = await store.db.selectFrom('agent_tasks').selectAll().orderBy('id').execute();
      expect(rows.map((r) => [r.kind, r.container_uuid, r.image_uuid, r.action])).toEqual([
        ['image', null, 'img-3', 'image_pull'],
        ['container', 'ctr-2', null, 'stop'],
      ]);
    });
  });
}
