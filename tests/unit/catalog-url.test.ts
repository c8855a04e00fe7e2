/**
 * The catalog follows the deployment's configured public URL, not whichever replica started last (issue 12, item 1):
 * a `krater api` replica without `--public-url` leaves an existing catalog alone; `krater up` follows its bind/port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/core/config/config.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { bootstrapIdentity } from '../../src/services/identity/bootstrap.js';
import { IdentityRepo } from '../../src/services/identity/repo.js';

const dir = mkdtempSync(join(tmpdir(), 'krater-catalog-'));
let store: Store | undefined;
afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const entries = (base: string) => [{ type: 'identity', name: 'keystone', url: `${base}/identity/v3` }];

async function urls(repo: IdentityRepo): Promise<string[]> {
  return (await repo.db.selectFrom('endpoints').select('url').execute()).map((r) => r.url).sort();
}

describe('catalog URL across replicas', () => {
  it('moves only for a configured public URL (or krater up), never to an unconfigured replica', async () => {
    process.env.KRATER_ADMIN_PASSWORD = 'catalog-test-password';
    store = await openStore(`sqlite:${join(dir, 'krater.db')}`);
    const repo = new IdentityRepo(store);
    const lb = resolveConfig({ dataDir: dir, publicUrl: 'http://lb.example:8786', cloudsYaml: false });
    expect(lb.publicUrlConfigured).toBe(true);
    await bootstrapIdentity(repo, lb, entries(lb.publicUrl));
    expect(await urls(repo)).toEqual(Array(3).fill('http://lb.example:8786/identity/v3'));

    // A replica started without --public-url: its derived URL is not the deployment's.
    const bare = resolveConfig({ dataDir: dir, port: 9999, cloudsYaml: false });
    expect(bare.publicUrlConfigured).toBe(false);
    const kept = await bootstrapIdentity(repo, bare, entries(bare.publicUrl));
    expect(kept.catalogKeptAt).toBe('http://lb.example:8786/identity/v3');
    expect(await urls(repo)).toEqual(Array(3).fill('http://lb.example:8786/identity/v3'));

    // Another replica with the same configured URL: nothing to say, nothing changed.
    expect((await bootstrapIdentity(repo, lb, entries(lb.publicUrl))).catalogKeptAt).toBeUndefined();

    // `krater up` (a single process) follows its own address.
    await bootstrapIdentity(repo, bare, entries(bare.publicUrl), { catalogFollowsBind: true });
    expect(await urls(repo)).toEqual(Array(3).fill('http://127.0.0.1:9999/identity/v3'));
    delete process.env.KRATER_ADMIN_PASSWORD;
  });
});
