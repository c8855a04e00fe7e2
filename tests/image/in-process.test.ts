/**
 * The Glance port as Zun and the agents use it in-process (`InProcessGlance` over SQLite and a filesystem data
 * store): which images a project may use (private, shared, public, community; another project's private image is
 * not found, exactly like a missing one), the search Zun's `image_driver=glance` answers, and a commit's image
 * from queued to active or deleted.
 *
 *   npx vitest run tests/image/in-process.test.ts
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openStore, type Store } from '../../src/core/store/db.js';
import type { ImageRow } from '../../src/core/store/schema.js';
import type { GlanceImage, GlanceLookup } from '../../src/images/glance-port.js';
import { FilesystemImageStore } from '../../src/services/image/data-store.js';
import { InProcessGlance } from '../../src/services/image/in-process.js';
import { ImageRepo } from '../../src/services/image/repo.js';

let store: Store;
let dir: string;
let repo: ImageRepo;
let glance: InProcessGlance;

const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

async function image(n: number, over: Partial<ImageRow>, tags: string[] = []): Promise<string> {
  const now = new Date().toISOString();
  const row: ImageRow = {
    id: uuid(n),
    name: 'app',
    status: 'active',
    visibility: 'private',
    protected: 0,
    os_hidden: 0,
    owner: 'p1',
    container_format: 'docker',
    disk_format: 'raw',
    size: null,
    virtual_size: null,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    min_disk: 0,
    min_ram: 0,
    location: null,
    created_at: now,
    updated_at: now,
    ...over,
  };
  await repo.create({ row, properties: {}, tags });
  return row.id;
}

const idOf = (r: GlanceLookup) => (r.found ? r.image.id : r.reason);

beforeAll(async () => {
  store = await openStore('sqlite::memory:');
  dir = mkdtempSync(join(tmpdir(), 'krater-glance-port-'));
  repo = new ImageRepo(store.db);
  glance = new InProcessGlance(repo, new FilesystemImageStore(dir));
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('visibleTo: the image a project may run', () => {
  let ids: Record<string, string>;
  beforeAll(async () => {
    ids = {
      priv: await image(1, { name: 'priv' }),
      pub: await image(2, { name: 'pub', visibility: 'public' }),
      comm: await image(3, { name: 'comm', visibility: 'community' }),
      shared: await image(4, { name: 'shared', visibility: 'shared' }),
      sharedNoMember: await image(5, { name: 'lonely', visibility: 'shared' }),
      bare: await image(6, { name: 'bare', container_format: 'bare' }),
      // Same name in two projects: each project sees only its own, so neither is ambiguous.
      mineP1: await image(7, { name: 'dup' }),
      mineP2: await image(8, { name: 'dup', owner: 'p2' }),
      // Two visible images of one name: ambiguous unless a tag tells them apart.
      v1: await image(9, { name: 'multi', visibility: 'public' }, ['v1']),
      v2: await image(10, { name: 'multi', visibility: 'public' }, ['v2']),
    };
    await repo.addMember(ids.shared!, 'p2'); // pending: membership in any status makes it visible
  });

  test('the owner finds its private image by name and by id (any case); another project does not', async () => {
    expect(idOf(await glance.visibleTo('p1', 'priv'))).toBe(ids.priv);
    expect(idOf(await glance.visibleTo('p1', ids.priv!.toUpperCase()))).toBe(ids.priv);
    const byName = await glance.visibleTo('p2', 'priv');
    expect(byName).toEqual({ found: false, reason: 'not_found', message: 'Image priv could not be found.' });
  });

  test("another project's private image answers exactly as an image that does not exist", async () => {
    const theirs = await glance.visibleTo('p2', ids.priv!);
    const none = await glance.visibleTo('p2', uuid(999));
    expect(theirs).toEqual({ found: false, reason: 'not_found', message: `Image ${ids.priv} could not be found.` });
    expect(none).toEqual({ found: false, reason: 'not_found', message: `Image ${uuid(999)} could not be found.` });
    expect(await glance.visibleTo('p2', 'nothing-here')).toMatchObject({ found: false, reason: 'not_found' });
  });

  test('public and community images are visible to every project', async () => {
    for (const p of ['p1', 'p2', 'p3']) {
      expect(idOf(await glance.visibleTo(p, 'pub'))).toBe(ids.pub);
      expect(idOf(await glance.visibleTo(p, ids.comm!))).toBe(ids.comm);
    }
  });

  test('a shared image is visible to its owner and its members only', async () => {
    expect(idOf(await glance.visibleTo('p1', 'shared'))).toBe(ids.shared);
    expect(idOf(await glance.visibleTo('p2', 'shared'))).toBe(ids.shared);
    expect(idOf(await glance.visibleTo('p3', 'shared'))).toBe('not_found');
    expect(idOf(await glance.visibleTo('p2', 'lonely'))).toBe('not_found');
    expect(idOf(await glance.visibleTo('p1', 'lonely'))).toBe(ids.sharedNoMember);
  });

  test('only container format docker counts', async () => {
    expect(idOf(await glance.visibleTo('p1', 'bare'))).toBe('not_found');
    expect(idOf(await glance.visibleTo('p1', ids.bare!))).toBe('not_found');
  });

  test("a name another project also uses is not ambiguous: the other's is invisible", async () => {
    expect(idOf(await glance.visibleTo('p1', 'dup'))).toBe(ids.mineP1);
    expect(idOf(await glance.visibleTo('p2', 'dup'))).toBe(ids.mineP2);
  });

  test('several visible images of one name are ambiguous; a tag picks one', async () => {
    expect(await glance.visibleTo('p3', 'multi')).toEqual({
      found: false,
      reason: 'ambiguous',
      message: 'Multiple images exist with same name multi. Please use the image id instead.',
    });
    expect(idOf(await glance.visibleTo('p3', 'multi:v1'))).toBe(ids.v1);
    expect(idOf(await glance.visibleTo('p3', 'multi:v2'))).toBe(ids.v2);
    expect(idOf(await glance.visibleTo('p3', 'multi:v3'))).toBe('not_found');
  });

  test('search: substring or exact, tags, only what the viewer may see, in Glance’s image view', async () => {
    const names = async (viewer: { projectId?: string; admin: boolean }, q: Parameters<typeof glance.search>[1]) =>
      (await glance.search(viewer, q)).map((v) => v.name as string).sort();
    // `priv` (p1's private image) matches the term but is not p2's to see.
    expect(await names({ projectId: 'p2', admin: false }, { name: 'i', exact: false })).toEqual(['multi', 'multi']);
    expect(await names({ projectId: 'p1', admin: false }, { name: 'i', exact: false })).toEqual([
      'multi',
      'multi',
      'priv',
    ]);
    expect(await names({ projectId: 'p3', admin: false }, { name: 'shared', exact: true })).toEqual([]);
    expect(await names({ projectId: 'p2', admin: false }, { name: 'shared', exact: true })).toEqual(['shared']);
    expect(await names({ admin: true }, { name: 'dup', exact: true })).toEqual(['dup', 'dup']);
    const tagged = await glance.search({ projectId: 'p3', admin: false }, { name: 'multi', exact: true, tag: 'v2' });
    expect(tagged).toHaveLength(1);
    expect(tagged[0]).toMatchObject({
      id: ids.v2,
      tags: ['v2'],
      container_format: 'docker',
      self: `/v2/images/${ids.v2}`,
      file: `/v2/images/${ids.v2}/file`,
    });
  });
});

describe('a commit’s image', () => {
  const md5 = (s: string) => createHash('md5').update(s).digest('hex');
  const parts = () => readdirSync(dir).filter((n) => n.endsWith('.part'));

  test('created queued, private to the project, docker/raw, tagged; found by name:tag, nothing to download', async () => {
    const img = await glance.createFromCommit({ projectId: 'pc', name: 'committed', tag: 'v7' });
    expect(img).toMatchObject({ name: 'committed', status: 'queued', checksum: null, hasData: false });
    const rec = await repo.record(img.id);
    expect(rec?.row).toMatchObject({
      owner: 'pc',
      visibility: 'private',
      container_format: 'docker',
      disk_format: 'raw',
      protected: 0,
    });
    expect(rec?.tags).toEqual(['v7']);
    expect(idOf(await glance.visibleTo('pc', 'committed:v7'))).toBe(img.id);
    expect(idOf(await glance.visibleTo('other', 'committed'))).toBe('not_found');
    expect(await glance.open(img.id)).toBeNull();
  });

  test('finish: the data is stored, the image active with size and hashes; open gives it back with its MD5', async () => {
    const img = await glance.createFromCommit({ projectId: 'pc', name: 'done', tag: 'latest' });
    const data = 'layer bytes '.repeat(1000);
    const active: GlanceImage = await glance.finishCommit(img.id, Readable.from([Buffer.from(data)]));
    expect(active).toMatchObject({ id: img.id, status: 'active', checksum: md5(data), hasData: true });
    const row = await repo.get(img.id);
    expect(row).toMatchObject({
      status: 'active',
      size: data.length,
      os_hash_algo: 'sha512',
      os_hash_value: createHash('sha512').update(data).digest('hex'),
    });
    const opened = await glance.open(img.id);
    expect(opened?.checksum).toBe(md5(data));
    expect(await text(opened!.data)).toBe(data);
    // An image that has data is never filled again.
    await expect(glance.finishCommit(img.id, Readable.from([Buffer.from('other')]))).rejects.toThrow(/not queued/);
    expect((await repo.get(img.id))?.checksum).toBe(md5(data));
  });

  test('a failing data stream leaves the image queued and no partial data', async () => {
    const img = await glance.createFromCommit({ projectId: 'pc', name: 'broken', tag: 'latest' });
    const bad = new Readable({
      read() {
        this.push(Buffer.from('some bytes'));
        this.destroy(new Error('export failed'));
      },
    });
    await expect(glance.finishCommit(img.id, bad)).rejects.toThrow('export failed');
    expect((await repo.get(img.id))?.status).toBe('queued');
    expect(parts()).toEqual([]);
    expect(await glance.open(img.id)).toBeNull();
  });

  test('fail: the image and its data are deleted; finishing it afterwards is refused', async () => {
    const img = await glance.createFromCommit({ projectId: 'pc', name: 'gone', tag: 'latest' });
    await glance.finishCommit(img.id, Readable.from([Buffer.from('x')]));
    const files = readdirSync(dir).length;
    await glance.failCommit(img.id);
    expect(await repo.get(img.id)).toBeNull();
    expect(readdirSync(dir).length).toBe(files - 1);
    expect(await glance.open(img.id)).toBeNull();
    await expect(glance.finishCommit(img.id, Readable.from([Buffer.from('x')]))).rejects.toThrow(/not queued/);
    await glance.failCommit(img.id); // already gone: nothing to do
  });
});
