/**
 * Units of the Glance facade that need no server: list query parsing and ordering, json-patch application, Range
 * parsing, the upload pump, the filesystem data store, the error envelopes and the default policies.
 *
 *   npx vitest run tests/image/image-units.test.ts
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, test } from 'vitest';
import { ApiError } from '../../src/core/http/errors.js';
import { PolicyEngine } from '../../src/core/policy/engine.js';
import { openStore } from '../../src/core/store/db.js';
import type { ImageRow } from '../../src/core/store/schema.js';
import { applyPatch, parsePatch } from '../../src/services/image/attributes.js';
import { FilesystemImageStore } from '../../src/services/image/data-store.js';
import { recoverStalledUploads, renderGlanceError } from '../../src/services/image/index.js';
import { compareRows, parseListQuery, splitInList } from '../../src/services/image/list-query.js';
import { imagePolicies } from '../../src/services/image/policies.js';
import { type ImageRecord, ImageRepo } from '../../src/services/image/repo.js';
import { parseRange, receive } from '../../src/services/image/routes/data.js';

function row(over: Partial<ImageRow> = {}): ImageRow {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    name: 'img',
    status: 'queued',
    visibility: 'shared',
    protected: 0,
    os_hidden: 0,
    owner: 'p1',
    container_format: null,
    disk_format: null,
    size: null,
    virtual_size: null,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    min_disk: 0,
    min_ram: 0,
    location: null,
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

function statusOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return (err as ApiError).status;
  }
  return undefined;
}

describe('list query', () => {
  test('defaults: limit 25, created_at desc then id desc, hidden images excluded, accepted members', () => {
    const q = parseListQuery({}, 25, 1000);
    expect(q.limit).toBe(25);
    expect(q.sort).toEqual([
      { key: 'created_at', dir: 'desc' },
      { key: 'id', dir: 'desc' },
    ]);
    expect(q.filter.osHidden).toBe(false);
    expect(q.filter.memberStatus).toBe('accepted');
    expect(q.filter.visibility).toBeUndefined();
  });

  test('filters: in: lists, repeated tags, sizes, time operators, custom properties', () => {
    const q = parseListQuery(
      {
        name: 'in:a,"b,c",d',
        status: 'active',
        tag: ['x', 'y'],
        size_min: '10',
        size_max: '20',
        created_at: 'gte:2026-01-01T00:00:00Z',
        updated_at: 'lt:2026-02-01T00:00:00',
        os_distro: 'fedora-coreos',
        protected: 'False',
        os_hidden: 'true',
        visibility: 'community',
        member_status: 'all',
        limit: '5000',
      },
      25,
      1000,
    );
    expect(q.filter.columns).toEqual({ name: ['a', 'b,c', 'd'], status: ['active'] });
    expect(q.filter.tags).toEqual(['x', 'y']);
    expect([q.filter.sizeMin, q.filter.sizeMax]).toEqual([10, 20]);
    expect(q.filter.times).toEqual([
      { column: 'created_at', op: 'gte', ms: Date.parse('2026-01-01T00:00:00Z') },
      { column: 'updated_at', op: 'lt', ms: Date.parse('2026-02-01T00:00:00Z') },
    ]);
    expect(q.filter.properties).toEqual({ os_distro: 'fedora-coreos' });
    expect(q.filter.protected).toBe(false);
    expect(q.filter.osHidden).toBe(true);
    expect(q.filter.visibility).toBe('community');
    expect(q.filter.memberStatus).toBe('all');
    expect(q.limit).toBe(1000);
  });

  test('sorting: sort=k:dir,k2 (default desc) and repeated sort_key/sort_dir; bad input is 400', () => {
    expect(parseListQuery({ sort: 'name:asc,size' }, 25, 1000).sort).toEqual([
      { key: 'name', dir: 'asc' },
      { key: 'size', dir: 'desc' },
      { key: 'created_at', dir: 'asc' },
      { key: 'id', dir: 'asc' },
    ]);
    expect(
      parseListQuery({ sort_key: ['name', 'size'], sort_dir: ['asc', 'desc'] }, 25, 1000).sort.slice(0, 2),
    ).toEqual([
      { key: 'name', dir: 'asc' },
      { key: 'size', dir: 'desc' },
    ]);
    expect(parseListQuery({ sort_key: 'name', sort_dir: 'asc' }, 25, 1000).sort.map((s) => s.dir)).toEqual([
      'asc',
      'asc',
      'asc',
    ]);
    expect(statusOf(() => parseListQuery({ sort_key: 'bogus' }, 25, 1000))).toBe(400);
    expect(statusOf(() => parseListQuery({ sort_dir: 'up' }, 25, 1000))).toBe(400);
    expect(statusOf(() => parseListQuery({ sort: 'name', sort_key: 'name' }, 25, 1000))).toBe(400);
    expect(
      statusOf(() => parseListQuery({ sort_key: ['name', 'size', 'id'], sort_dir: ['asc', 'desc'] }, 25, 1000)),
    ).toBe(400);
    expect(statusOf(() => parseListQuery({ limit: '-1' }, 25, 1000))).toBe(400);
    expect(statusOf(() => parseListQuery({ limit: 'ten' }, 25, 1000))).toBe(400);
    expect(statusOf(() => parseListQuery({ created_at: 'gt:yesterday' }, 25, 1000))).toBe(400);
    expect(statusOf(() => parseListQuery({ protected: 'maybe' }, 25, 1000))).toBe(400);
    expect(statusOf(() => parseListQuery({ visibility: 'everyone' }, 25, 1000))).toBe(400);
  });

  test('in: quoting', () => {
    expect(splitInList('a,b')).toEqual(['a', 'b']);
    expect(splitInList('"a,b",c')).toEqual(['a,b', 'c']);
    expect(splitInList('"say \\"hi\\""')).toEqual(['say "hi"']);
    expect(statusOf(() => splitInList('"open'))).toBe(400);
  });

  test('ordering: NULLs first ascending, numbers numerically, ties broken by later keys', () => {
    const a = row({ id: 'a', size: 9, name: null });
    const b = row({ id: 'b', size: 10, name: 'x' });
    const sort = parseListQuery({ sort: 'size:asc' }, 25, 1000).sort;
    expect([b, a].sort((x, y) => compareRows(x, y, sort)).map((r) => r.id)).toEqual(['a', 'b']);
    const byName = parseListQuery({ sort: 'name:asc' }, 25, 1000).sort;
    expect([b, a].sort((x, y) => compareRows(x, y, byName)).map((r) => r.id)).toEqual(['a', 'b']);
    const byNameDesc = parseListQuery({ sort: 'name:desc' }, 25, 1000).sort;
    expect([a, b].sort((x, y) => compareRows(x, y, byNameDesc)).map((r) => r.id)).toEqual(['b', 'a']);
  });
});

describe('json-patch', () => {
  const rec = (): ImageRecord => ({ row: row(), properties: { os_distro: 'x' }, tags: ['latest'] });

  test('add upserts, replace needs an existing property, remove deletes; base attributes validate', () => {
    const out = applyPatch(
      rec(),
      parsePatch([
        { op: 'replace', path: '/name', value: 'renamed' },
        { op: 'add', path: '/os_distro', value: 'y' },
        { op: 'add', path: '/new', value: 'v' },
        { op: 'replace', path: '/new', value: 'w' },
        { op: 'add', path: '/a~1b', value: 'slash' },
        { op: 'replace', path: '/tags', value: ['t1', 't2', 't1'] },
        { op: 'replace', path: '/min_ram', value: 512 },
        { op: 'replace', path: '/container_format', value: 'docker' },
        { op: 'replace', path: '/protected', value: true },
      ]),
    );
    expect(out.row.name).toBe('renamed');
    expect(out.properties).toEqual({ os_distro: 'y', new: 'w', 'a/b': 'slash' });
    expect(out.tags).toEqual(['t1', 't2']);
    expect(out.row.min_ram).toBe(512);
    expect(out.row.container_format).toBe('docker');
    expect(out.row.protected).toBe(1);
    const removed = applyPatch(out, parsePatch([{ op: 'remove', path: '/new' }]));
    expect(removed.properties.new).toBeUndefined();
  });

  test('tag list indices as openstacksdk computes them', () => {
    const out = applyPatch(
      rec(),
      parsePatch([
        { op: 'add', path: '/tags/1', value: 'b' },
        { op: 'add', path: '/tags/-', value: 'c' },
      ]),
    );
    expect(out.tags).toEqual(['latest', 'b', 'c']);
    expect(applyPatch(out, parsePatch([{ op: 'remove', path: '/tags/0' }])).tags).toEqual(['b', 'c']);
    expect(statusOf(() => applyPatch(out, parsePatch([{ op: 'remove', path: '/tags/7' }])))).toBe(400);
  });

  test('errors: read-only 403, reserved 403, base remove 403, missing property 409, bad values 400', () => {
    const status = (ops: unknown) => statusOf(() => applyPatch(rec(), parsePatch(ops)));
    expect(status([{ op: 'replace', path: '/status', value: 'active' }])).toBe(403);
    expect(status([{ op: 'replace', path: '/id', value: 'x' }])).toBe(403);
    expect(status([{ op: 'replace', path: '/size', value: 1 }])).toBe(403);
    expect(status([{ op: 'add', path: '/deleted', value: 'x' }])).toBe(403);
    expect(status([{ op: 'add', path: '/os_glance_foo', value: 'x' }])).toBe(403);
    expect(status([{ op: 'remove', path: '/name' }])).toBe(403);
    expect(status([{ op: 'remove', path: '/nope' }])).toBe(409);
    expect(status([{ op: 'replace', path: '/nope', value: 'x' }])).toBe(409);
    expect(status([{ op: 'add', path: '/prop', value: 1 }])).toBe(400);
    expect(status([{ op: 'replace', path: '/visibility', value: 'everyone' }])).toBe(400);
    expect(status([{ op: 'replace', path: '/disk_format', value: 'tarball' }])).toBe(400);
    expect(status([{ op: 'replace', path: '/min_disk', value: -1 }])).toBe(400);
    expect(status([{ op: 'move', path: '/name', from: '/x' }])).toBe(400);
    expect(status([{ op: 'add', path: 'name', value: 'x' }])).toBe(400);
    expect(status([{ op: 'add', path: '/name' }])).toBe(400);
    expect(status({ op: 'add' })).toBe(400);
  });
});

describe('Range', () => {
  test('single byte ranges; suffix ranges; unsatisfiable; ignored when malformed', () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=90-500', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-500', 100)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=9-1', 100)).toBeNull();
    expect(parseRange('bytes=0-1,5-6', 100)).toBeNull();
    expect(parseRange('items=0-1', 100)).toBeNull();
  });
});

describe('upload pump and filesystem store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'krater-image-unit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tooBig = () => new ApiError(413, 'too big');

  test('streams, hashes and commits; the file appears only on commit', async () => {
    const store = new FilesystemImageStore(dir);
    const data = Buffer.alloc(3 * 1024 * 1024 + 7, 7);
    const w = await store.begin('img-1');
    const got = await receive(
      Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
      w.stream,
      data.length,
      tooBig,
    );
    expect(got.size).toBe(data.length);
    expect(got.checksum).toBe(createHash('md5').update(data).digest('hex'));
    expect(got.hashValue).toBe(createHash('sha512').update(data).digest('hex'));
    expect(existsSync(join(dir, 'img-1'))).toBe(false);
    const loc = await w.commit();
    expect(readFileSync(join(dir, 'img-1')).equals(data)).toBe(true);
    const chunks: Buffer[] = [];
    for await (const c of (await store.open(loc, { start: 1, end: 3 }))!) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from([7, 7, 7]));
    await store.delete(loc);
    expect(await store.open(loc)).toBeNull();
  });

  test('over the cap: 413, the rest is drained, abort leaves no file', async () => {
    const store = new FilesystemImageStore(dir);
    const w = await store.begin('img-2');
    const src = new PassThrough();
    const p = receive(src, w.stream, 10, tooBig);
    src.write(Buffer.alloc(8));
    src.write(Buffer.alloc(8));
    src.end(Buffer.alloc(1000));
    await expect(p).rejects.toMatchObject({ status: 413 });
    await w.abort();
    expect(readdirSync(dir).filter((n) => n.includes('img-2'))).toEqual([]);
  });

  test('a client that goes away: 400, abort leaves no file', async () => {
    const store = new FilesystemImageStore(dir);
    const w = await store.begin('img-3');
    const src = new PassThrough();
    const p = receive(src, w.stream, 1e9, tooBig);
    src.write(Buffer.alloc(100));
    src.destroy();
    await expect(p).rejects.toMatchObject({ status: 400 });
    await w.abort();
    expect(readdirSync(dir).filter((n) => n.includes('img-3'))).toEqual([]);
  });
});

describe('error envelopes', () => {
  const req = (accept?: string) => ({ headers: accept === undefined ? {} : { accept } }) as any;
  const err = { status: 404, message: 'No image found with ID x', headers: {}, internal: false };

  test('JSON when asked for, HTML by default (what glanceclient can parse), plain text on request', () => {
    expect(renderGlanceError(err, req('application/json')).body).toEqual({
      code: '404 Not Found',
      title: 'Not Found',
      message: 'No image found with ID x',
    });
    const html = renderGlanceError(err, req());
    expect(html.headers?.['Content-Type']).toMatch(/^text\/html/);
    expect(String(html.body)).toContain('<h1>404 Not Found</h1>');
    expect(String(renderGlanceError(err, req('*/*')).body)).toContain('<title>404 Not Found</title>');
    const text = renderGlanceError({ ...err, message: '<b>' }, req('text/plain'));
    expect(text.headers?.['Content-Type']).toMatch(/^text\/plain/);
    expect(String(text.body)).toMatch(/^404 Not Found\n\n<b>/);
    expect(String(renderGlanceError({ ...err, message: '<b>' }, req()).body)).toContain('&lt;b&gt;');
  });
});

describe('default policies', () => {
  const engine = new PolicyEngine();
  engine.registerDefaults(imagePolicies);
  const creds = (roles: string[], project = 'p1') => ({
    user_id: 'u',
    project_id: project,
    roles,
    is_admin: roles.includes('admin'),
  });
  const target = (visibility: string, owner = 'p1', member?: string) => ({
    project_id: owner,
    owner,
    visibility,
    member_id: member,
  });

  test('owners modify, readers of other projects see public/community/shared, admins do everything', () => {
    expect(engine.enforce('add_image', target('shared'), creds(['member', 'reader']))).toBe(true);
    expect(engine.enforce('add_image', target('shared', 'p2'), creds(['member', 'reader']))).toBe(false);
    expect(engine.enforce('modify_image', target('private'), creds(['member', 'reader']))).toBe(true);
    expect(engine.enforce('modify_image', target('public', 'p2'), creds(['member', 'reader']))).toBe(false);
    expect(engine.enforce('get_image', target('public', 'p2'), creds(['reader']))).toBe(true);
    expect(engine.enforce('get_image', target('private', 'p2'), creds(['reader']))).toBe(false);
    expect(engine.enforce('publicize_image', target('public'), creds(['member', 'reader']))).toBe(false);
    expect(engine.enforce('publicize_image', target('public'), creds(['admin']))).toBe(true);
    expect(engine.enforce('deactivate', target('public'), creds(['member', 'reader']))).toBe(false);
    expect(engine.enforce('deactivate', target('public', 'p2'), creds(['admin']))).toBe(true);
    expect(engine.enforce('download_image', target('shared', 'p2', 'p1'), creds(['member', 'reader']))).toBe(true);
    expect(engine.enforce('modify_member', { ...target('shared', 'p2'), member_id: 'p1' }, creds(['member']))).toBe(
      true,
    );
    expect(engine.enforce('modify_member', { ...target('shared', 'p2'), member_id: 'p3' }, creds(['member']))).toBe(
      false,
    );
  });
});

describe('uploads interrupted by a dead process', () => {
  test('images stuck in saving without recent data go back to queued; live uploads are left alone', async () => {
    const store = await openStore('sqlite::memory:');
    const dir = mkdtempSync(join(tmpdir(), 'krater-image-recover-'));
    try {
      const repo = new ImageRepo(store.db);
      const data = new FilesystemImageStore(dir);
      const old = new Date(Date.now() - 3600_000).toISOString();
      const ids = [
        '00000000-0000-4000-8000-00000000000a',
        '00000000-0000-4000-8000-00000000000b',
        '00000000-0000-4000-8000-00000000000c',
      ];
      for (const id of ids)
        await repo.create({ row: row({ id, status: 'saving', updated_at: old }), properties: {}, tags: [] });
      await store.db
        .updateTable('images')
        .set({ updated_at: new Date().toISOString() })
        .where('id', '=', ids[2])
        .execute();
      // ids[0]: a stale partial file; ids[1]: a live one (recent writes); ids[2]: started just now.
      const stale = await data.begin(ids[0]);
      stale.stream.write('x');
      const live = await data.begin(ids[1]);
      live.stream.write('y');
      await new Promise((r) => setTimeout(r, 50));
      const stalePart = readdirSync(dir).find((n) => n.includes(ids[0]))!;
      utimesSync(join(dir, stalePart), new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
      expect(await recoverStalledUploads(repo, data, 60_000)).toEqual([ids[0]]);
      expect((await repo.get(ids[0]))?.status).toBe('queued');
      expect((await repo.get(ids[1]))?.status).toBe('saving');
      expect((await repo.get(ids[2]))?.status).toBe('saving');
      expect(readdirSync(dir).some((n) => n.includes(ids[0]))).toBe(false);
      await stale.abort();
      await live.abort();
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
