import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePublishList } from '../../src/compute/publish.js';
import { ContainerRepo } from '../../src/compute/repo.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/** The published-port claims in both stores: 409 for the same socket or an overlap with 0.0.0.0 (also for
 * concurrent claims), the claim freed with its container, the project's usage counted. */
for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`published-port claims (${kind})`, () => {
    let store: Store;
    let pg: TestDatabase | undefined;
    let dir = '';
    let repo: ContainerRepo;
    const project = randomUUID().replace(/-/g, '');

    beforeAll(async () => {
      if (kind === 'postgres') pg = await createTestDatabase();
      dir = mkdtempSync(join(tmpdir(), 'krater-claims-'));
      store = await openStore(pg ? pg.url : `sqlite:${join(dir, 'krater.db')}`);
      repo = new ContainerRepo(store.db);
    }, 120_000);
    afterAll(async () => {
      await store?.close();
      await pg?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    const container = (host = 'h1') => ({ uuid: randomUUID(), project_id: project, host });
    const claim = (c: ReturnType<typeof container>, spec: string) =>
      repo.claimPublishedPorts(c, parsePublishList(spec));

    it('refuses the same socket and 0.0.0.0 overlaps either way, on the same host only', async () => {
      const a = container();
      await claim(a, '127.0.0.1:8080:80,0.0.0.0:9090:90');
      await expect(claim(container(), '127.0.0.1:8080:81')).rejects.toMatchObject({ status: 409 });
      await expect(claim(container(), '0.0.0.0:8080:81')).rejects.toMatchObject({ status: 409 });
      await expect(claim(container(), '127.0.0.2:9090:81')).rejects.toMatchObject({ status: 409 });
      await claim(container(), '127.0.0.2:8080:80');
      await claim(container(), '127.0.0.1:8080:80/udp');
      await claim(container('h2'), '0.0.0.0:8080:80');
      // A refused claim leaves nothing behind: its first, free binding was given back.
      await expect(claim(container(), '127.0.0.1:7000:80,127.0.0.1:8080:80')).rejects.toMatchObject({ status: 409 });
      await claim(container(), '127.0.0.1:7000:80');
      expect((await repo.quotaUsage(project)).published_ports).toBe(6);
      await repo.remove(a.uuid);
      await claim(container(), '0.0.0.0:9090:80');
    });

    it('concurrent claims of one socket: never two', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => claim(container(), i % 2 ? '0.0.0.0:6000:80' : '127.0.0.1:6000:80')),
      );
      expect(results.filter((r) => r.status === 'fulfilled').length).toBeLessThanOrEqual(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ status: 409 });
    });
  });
}
