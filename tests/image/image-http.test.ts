/**
 * The Glance v2 facade over plain HTTP against a running `krater up`, once on SQLite and once on PostgreSQL:
 * discovery, schemas, create/upload/download, json-patch, tags, listing filters/sort/paging, visibility across
 * projects, protected images, deactivation, the storage quota, aborted uploads and the error envelopes.
 *
 *   npx vitest run tests/image/image-http.test.ts
 *
 * The tests of one store share one Krater and run in order.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { describeHttp, Krater } from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { expectStatus, imageFiles, md5, projectUser, raw, sha512, waitFor } from './helpers.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 900_000 });

const QUOTA = 1024 * 1024;
const PATCH_TYPE = 'application/openstack-images-v2.1-json-patch';
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const BASE_PROPERTIES = [
  'id',
  'name',
  'status',
  'visibility',
  'protected',
  'os_hidden',
  'owner',
  'container_format',
  'disk_format',
  'size',
  'virtual_size',
  'checksum',
  'os_hash_algo',
  'os_hash_value',
  'min_disk',
  'min_ram',
  'tags',
  'created_at',
  'updated_at',
  'self',
  'file',
  'schema',
];

const stores = [{ store: 'sqlite' }, { store: 'postgres' }] as const;

describe.each(stores)('Glance v2 over HTTP on $store', ({ store }) => {
  let k: Krater;
  let db: TestDatabase | undefined;
  let admin = '';
  let adminProject = '';
  let other: { projectId: string; userId: string; token: string };
  const data = randomBytes(200 * 1024 + 3);
  let uploaded = ''; // an active image of the admin project holding `data`

  const url = (path: string) => `${k.baseUrl}/image${path}`;
  const api = (
    method: string,
    path: string,
    opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
  ) => k.http(method, url(path), { token: opts.token ?? admin, body: opts.body, headers: opts.headers });
  const patch = (id: string, ops: unknown, token = admin, type = PATCH_TYPE) =>
    api('PATCH', `/v2/images/${id}`, { token, body: ops, headers: { 'Content-Type': type } });
  const create = async (body: Record<string, unknown>, token = admin) => {
    const r = await api('POST', '/v2/images', { token, body });
    expectStatus('POST', '/v2/images', r, 201);
    return r.json;
  };
  const upload = (id: string, body: Buffer, token = admin) =>
    raw(url(`/v2/images/${id}/file`), 'PUT', { token, body, headers: { 'Content-Type': 'application/octet-stream' } });
  const listIds = async (query: string, token = admin) => {
    const r = await api('GET', `/v2/images${query}`, { token });
    expectStatus('GET', query, r, 200);
    return (r.json.images as any[]).map((i) => i.id);
  };

  beforeAll(async () => {
    if (store === 'postgres') db = await createTestDatabase();
    // purge: the agent's private containerd stops with Krater.
    k = await Krater.start({
      database: db?.url,
      env: { KRATER_IMAGE_QUOTA_BYTES: String(QUOTA), KRATER_AGENT_SHUTDOWN: 'purge' },
    });
    const t = await k.passwordToken();
    admin = t.token;
    adminProject = t.body.token.project.id;
    other = await projectUser(k, admin, `img-other-${store}`);
  });

  afterAll(async () => {
    try {
      await k?.destroy();
    } finally {
      await db?.drop();
    }
  });

  test('discovery: GET /image → 300 version list; the catalog has the unversioned image endpoint', async () => {
    for (const path of ['/image', '/image/']) {
      const r = await k.http('GET', `${k.baseUrl}${path}`);
      expectStatus('GET', path, r, 300);
      const versions = r.json?.versions as any[];
      expect(Array.isArray(versions), describeHttp('GET', path, r)).toBe(true);
      expect(versions.find((v) => v.status === 'CURRENT')?.id).toMatch(/^v2\.\d+$/);
      expect(versions.map((v) => v.id)).toContain('v2.0');
      for (const v of versions) expect(v.links[0]).toEqual({ rel: 'self', href: `${k.baseUrl}/image/v2/` });
    }
    const cat = await k.http('GET', '/identity/v3/auth/catalog', { token: admin });
    const glance = (cat.json.catalog as any[]).find((s) => s.type === 'image');
    expect(glance?.name).toBe('glance');
    expect(glance.endpoints.find((e: any) => e.interface === 'public')?.url).toBe(`${k.baseUrl}/image`);
  });

  test('schemas: base properties listed, custom properties are strings', async () => {
    const s = await api('GET', '/v2/schemas/image');
    expectStatus('GET', '/v2/schemas/image', s, 200);
    expect(s.json.name).toBe('image');
    expect(s.json.additionalProperties).toEqual({ type: 'string' });
    for (const p of BASE_PROPERTIES) expect(Object.keys(s.json.properties), p).toContain(p);
    expect(s.json.properties.status.readOnly).toBe(true);
    expect(s.json.properties.container_format.enum).toEqual(expect.arrayContaining([null, 'docker', 'bare']));
    expect(s.json.links.map((l: any) => l.rel)).toEqual(['self', 'enclosure', 'describedby']);
    const list = await api('GET', '/v2/schemas/images');
    expectStatus('GET', '/v2/schemas/images', list, 200);
    expect(list.json.name).toBe('images');
    expect(list.json.properties.images.items.name).toBe('image');
    expect(Object.keys(list.json.properties)).toEqual(expect.arrayContaining(['images', 'first', 'next', 'schema']));
    const member = await api('GET', '/v2/schemas/member');
    expect(member.json.properties.status.enum).toEqual(['pending', 'accepted', 'rejected']);
  });

  test('create: base attributes, client id, custom top-level string properties; read-only → 403; bad values → 400', async () => {
    const id = randomUUID();
    const r = await api('POST', '/v2/images', {
      body: {
        id,
        name: 'full',
        container_format: 'docker',
        disk_format: 'raw',
        visibility: 'private',
        protected: false,
        os_hidden: false,
        tags: ['a', 'b', 'a'],
        min_disk: 1,
        min_ram: 64,
        os_distro: 'fedora-coreos',
        magnum_driver: 'k8s',
      },
    });
    expectStatus('POST', '/v2/images', r, 201);
    expect(r.headers.get('location')).toBe(`${k.baseUrl}/image/v2/images/${id}`);
    const img = r.json;
    expect(img).toMatchObject({
      id,
      name: 'full',
      status: 'queued',
      container_format: 'docker',
      disk_format: 'raw',
      visibility: 'private',
      protected: false,
      os_hidden: false,
      owner: adminProject,
      min_disk: 1,
      min_ram: 64,
      os_distro: 'fedora-coreos',
      magnum_driver: 'k8s',
    });
    expect(img.tags.sort()).toEqual(['a', 'b']);
    expect([img.size, img.virtual_size, img.checksum, img.os_hash_algo, img.os_hash_value]).toEqual([
      null,
      null,
      null,
      null,
      null,
    ]);
    expect(img.self).toBe(`/v2/images/${id}`);
    expect(img.file).toBe(`/v2/images/${id}/file`);
    expect(img.schema).toBe('/v2/schemas/image');
    expect(img.created_at).toMatch(TIME);
    expect(img.updated_at).toMatch(TIME);
    for (const p of BASE_PROPERTIES) expect(Object.keys(img), p).toContain(p);

    const shown = await api('GET', `/v2/images/${id}`);
    expect(shown.json).toEqual(img);

    const dup = await api('POST', '/v2/images', { body: { id, name: 'dup' } });
    expectStatus('POST', 'duplicate id', dup, 409);
    for (const [body, status] of [
      [{ name: 'ro', status: 'active' }, 403],
      [{ name: 'ro', size: 5 }, 403],
      [{ name: 'ro', checksum: 'x' }, 403],
      [{ name: 'rs', deleted: 'x' }, 403],
      [{ name: 'bad', os_distro: 5 }, 400],
      [{ name: 'bad', container_format: 'tarball' }, 400],
      [{ name: 'bad', id: 'not-a-uuid' }, 400],
      [{ name: 'bad', min_ram: -1 }, 400],
      [{ name: 'bad', tags: 'x' }, 400],
    ] as const) {
      const bad = await api('POST', '/v2/images', { body });
      expectStatus('POST', JSON.stringify(body), bad, status);
    }
    // Publicizing is an admin right.
    const pub = await api('POST', '/v2/images', { token: other.token, body: { name: 'p', visibility: 'public' } });
    expectStatus('POST', 'public by a member', pub, 403);
    const foreign = await api('POST', '/v2/images', { token: other.token, body: { name: 'p', owner: adminProject } });
    expectStatus('POST', 'owner of another project', foreign, 403);
  });

  test('upload and download: queued → active with size, MD5 and SHA-512; 204 before data; 409 on a second upload; Range', async () => {
    const img = await create({ name: 'data', container_format: 'docker', disk_format: 'raw', visibility: 'public' });
    uploaded = img.id;
    const before = await raw(url(`/v2/images/${img.id}/file`), 'GET', { token: admin });
    expect(before.status).toBe(204);

    const up = await upload(img.id, data);
    expect(up.status, up.body.toString()).toBe(204);
    const active = (await api('GET', `/v2/images/${img.id}`)).json;
    expect(active).toMatchObject({
      status: 'active',
      size: data.length,
      checksum: md5(data),
      os_hash_algo: 'sha512',
      os_hash_value: sha512(data),
    });
    expect(imageFiles(k, img.id)).toEqual([img.id]);

    const again = await upload(img.id, data);
    expect(again.status).toBe(409);

    const down = await raw(url(`/v2/images/${img.id}/file`), 'GET', { token: other.token });
    expect(down.status).toBe(200);
    expect(down.headers.get('content-type')).toBe('application/octet-stream');
    expect(down.headers.get('content-md5')).toBe(md5(data));
    expect(down.body.equals(data)).toBe(true);

    const part = await raw(url(`/v2/images/${img.id}/file`), 'GET', {
      token: admin,
      headers: { Range: 'bytes=100-1123' },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-1123/${data.length}`);
    expect(part.body.equals(data.subarray(100, 1124))).toBe(true);
    const tail = await raw(url(`/v2/images/${img.id}/file`), 'GET', { token: admin, headers: { Range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(tail.body.equals(data.subarray(data.length - 10))).toBe(true);
    const beyond = await raw(url(`/v2/images/${img.id}/file`), 'GET', {
      token: admin,
      headers: { Range: `bytes=${data.length}-` },
    });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${data.length}`);

    // Formats must be set first; the data must be application/octet-stream.
    const bare = await create({ name: 'noformat' });
    expect((await upload(bare.id, Buffer.from('x'))).status).toBe(400);
    const wrongType = await raw(url(`/v2/images/${bare.id}/file`), 'PUT', {
      token: admin,
      body: Buffer.from('{}'),
      headers: { 'Content-Type': 'application/json' },
    });
    expect(wrongType.status).toBe(415);
    expect((await api('GET', `/v2/images/${bare.id}`)).json.status).toBe('queued');
  });

  test('PATCH: only the v2.1 json-patch media type; add/replace/remove on names, tags and properties', async () => {
    const img = await create({ name: 'patch-me', os_distro: 'x', magnum_driver: 'd', tags: ['t0'] });
    for (const type of ['application/json', 'application/json-patch+json']) {
      const r = await patch(img.id, [{ op: 'replace', path: '/name', value: 'x' }], admin, type);
      expectStatus('PATCH', type, r, 415);
    }
    const r = await patch(img.id, [
      { op: 'replace', path: '/name', value: 'patched' },
      { op: 'add', path: '/hw_arch', value: 'x86_64' },
      { op: 'replace', path: '/os_distro', value: 'fedora-coreos' },
      { op: 'remove', path: '/magnum_driver' },
      { op: 'replace', path: '/tags', value: ['t1', 't2'] },
      { op: 'replace', path: '/container_format', value: 'docker' },
      { op: 'replace', path: '/disk_format', value: 'qcow2' },
      { op: 'replace', path: '/min_ram', value: 128 },
    ]);
    expectStatus('PATCH', 'ops', r, 200);
    expect(r.json).toMatchObject({
      name: 'patched',
      hw_arch: 'x86_64',
      os_distro: 'fedora-coreos',
      container_format: 'docker',
      disk_format: 'qcow2',
      min_ram: 128,
    });
    expect(r.json.magnum_driver).toBeUndefined();
    expect(r.json.tags.sort()).toEqual(['t1', 't2']);
    expect((await api('GET', `/v2/images/${img.id}`)).json).toEqual(r.json);

    for (const [ops, status] of [
      [[{ op: 'remove', path: '/name' }], 403],
      [[{ op: 'replace', path: '/status', value: 'active' }], 403],
      [[{ op: 'replace', path: '/id', value: randomUUID() }], 403],
      [[{ op: 'replace', path: '/nothere', value: 'x' }], 409],
      [[{ op: 'remove', path: '/nothere' }], 409],
      [[{ op: 'add', path: '/num', value: 1 }], 400],
      [[{ op: 'replace', path: '/visibility', value: 'public' }], 200],
    ] as const) {
      const res = await patch(img.id, ops);
      expectStatus('PATCH', JSON.stringify(ops), res, status);
    }
    // Another project may not modify it, even though it can see it (it is public now).
    expectStatus(
      'PATCH',
      'by another project',
      await patch(img.id, [{ op: 'replace', path: '/name', value: 'mine' }], other.token),
      403,
    );
    // Formats are fixed once the image has data.
    expectStatus(
      'PATCH',
      'formats of an active image',
      await patch(uploaded, [{ op: 'replace', path: '/disk_format', value: 'qcow2' }]),
      403,
    );
  });

  test('tags: PUT and DELETE /v2/images/{id}/tags/{tag}', async () => {
    const img = await create({ name: 'tagged', tags: ['one'] });
    expectStatus('PUT', 'tag', await api('PUT', `/v2/images/${img.id}/tags/two`), 204);
    expectStatus('PUT', 'tag again', await api('PUT', `/v2/images/${img.id}/tags/two`), 204);
    expect((await api('GET', `/v2/images/${img.id}`)).json.tags.sort()).toEqual(['one', 'two']);
    expectStatus('DELETE', 'tag', await api('DELETE', `/v2/images/${img.id}/tags/one`), 204);
    expectStatus('DELETE', 'missing tag', await api('DELETE', `/v2/images/${img.id}/tags/one`), 404);
    expect((await api('GET', `/v2/images/${img.id}`)).json.tags).toEqual(['two']);
    expectStatus(
      'PUT',
      'tag by another project',
      await api('PUT', `/v2/images/${img.id}/tags/x`, { token: other.token }),
      404,
    );
  });

  test('list: equality, in:, tags (ANDed), custom properties, sizes, times, os_hidden, sorting and paging', async () => {
    const names = ['lst-c', 'lst-a', 'lst-e', 'lst-b', 'lst-d'];
    const ids: Record<string, string> = {};
    for (const [i, name] of names.entries()) {
      const img = await create({
        name,
        tags: i % 2 ? ['lst', 'odd'] : ['lst'],
        container_format: i < 2 ? 'docker' : 'bare',
        disk_format: 'raw',
        ...(i < 2 ? { tier: 'gold' } : {}),
      });
      ids[name] = img.id;
    }
    const hidden = await create({ name: 'lst-hidden', tags: ['lst'], os_hidden: true });
    const byNames = async (q: string) =>
      (await listIds(q))
        .map((id) => Object.keys(ids).find((n) => ids[n] === id) ?? (id === hidden.id ? 'lst-hidden' : id))
        .sort();

    expect(await byNames('?tag=lst')).toEqual(['lst-a', 'lst-b', 'lst-c', 'lst-d', 'lst-e']);
    expect(await byNames('?tag=lst&tag=odd')).toEqual(['lst-a', 'lst-b']);
    expect(await byNames('?tag=lst&tier=gold')).toEqual(['lst-a', 'lst-c']);
    expect(await byNames('?tag=lst&container_format=docker')).toEqual(['lst-a', 'lst-c']);
    expect(await byNames('?name=in:lst-b,lst-d,nope')).toEqual(['lst-b', 'lst-d']);
    expect(await byNames('?tag=lst&status=active')).toEqual([]);
    expect(await byNames('?tag=lst&os_hidden=true')).toEqual(['lst-hidden']);
    expect(await byNames('?name=lst-e')).toEqual(['lst-e']);
    expect(await byNames('?tag=lst&created_at=lt:2000-01-01T00:00:00Z')).toEqual([]);
    expect((await byNames('?tag=lst&created_at=gte:2000-01-01T00:00:00Z')).length).toBe(5);
    expect((await byNames('?tag=lst&updated_at=lte:2999-01-01T00:00:00Z')).length).toBe(5);
    expect(await listIds(`?size_min=${data.length}&size_max=${data.length}&id=${uploaded}`)).toEqual([uploaded]);
    expect(await listIds(`?size_min=${data.length + 1}&id=${uploaded}`)).toEqual([]);
    expect(await listIds(`?id=in:${uploaded},${ids['lst-a']}&sort=name:asc`)).toEqual([uploaded, ids['lst-a']]);

    const asc = await listIds('?tag=lst&sort=name:asc');
    expect(asc).toEqual(['lst-a', 'lst-b', 'lst-c', 'lst-d', 'lst-e'].map((n) => ids[n]));
    expect(await listIds('?tag=lst&sort_key=name&sort_dir=desc')).toEqual([...asc].reverse());

    // Paging: limit, marker and `next` (relative to the unversioned endpoint), only while more remain.
    let next: string | undefined = '/v2/images?tag=lst&sort=name:asc&limit=2';
    const pages: string[][] = [];
    while (next) {
      const r = await api('GET', next);
      expectStatus('GET', next, r, 200);
      expect(r.json.schema).toBe('/v2/schemas/images');
      expect(r.json.first).toMatch(/^\/v2\/images/);
      pages.push(r.json.images.map((i: any) => i.id));
      next = r.json.next;
      expect(pages.length).toBeLessThan(5);
    }
    expect(pages).toEqual([asc.slice(0, 2), asc.slice(2, 4), asc.slice(4)]);
    expect(await listIds(`?tag=lst&sort=name:asc&marker=${ids['lst-b']}`)).toEqual(asc.slice(2));

    for (const q of [
      '?limit=x',
      '?limit=-1',
      '?sort_key=bogus',
      '?sort_dir=sideways',
      `?marker=${randomUUID()}`,
      '?created_at=gt:yesterday',
      '?protected=maybe',
    ]) {
      const r = await api('GET', `/v2/images${q}`);
      expectStatus('GET', q, r, 400);
    }
  });

  test('visibility: private, shared (+members), public and community images across projects', async () => {
    const priv = await create({ name: 'vis-private', visibility: 'private' });
    const shared = await create({ name: 'vis-shared' });
    const pub = await create({ name: 'vis-public', visibility: 'public' });
    const comm = await create({ name: 'vis-community', visibility: 'community' });
    const o = other.token;

    expectStatus('GET', 'private by another project', await api('GET', `/v2/images/${priv.id}`, { token: o }), 404);
    expectStatus('GET', 'shared, not a member', await api('GET', `/v2/images/${shared.id}`, { token: o }), 404);
    expectStatus('GET', 'public', await api('GET', `/v2/images/${pub.id}`, { token: o }), 200);
    expectStatus('GET', 'community', await api('GET', `/v2/images/${comm.id}`, { token: o }), 200);
    let listed = await listIds('?limit=1000', o);
    expect(listed).toContain(pub.id);
    for (const id of [priv.id, shared.id, comm.id]) expect(listed).not.toContain(id);
    expect(await listIds('?visibility=community', o)).toContain(comm.id);
    expect(await listIds('?visibility=all&limit=1000', o)).toContain(comm.id);
    expect(await listIds('?limit=1000')).toEqual(expect.arrayContaining([priv.id, shared.id, pub.id, comm.id]));
    expect(await listIds('?visibility=private&limit=1000', o)).not.toContain(priv.id);

    // Sharing: a pending member can see the image; it is listed once accepted.
    const add = await api('POST', `/v2/images/${shared.id}/members`, { body: { member: other.projectId } });
    expectStatus('POST', 'member', add, 200);
    expect(add.json).toMatchObject({
      image_id: shared.id,
      member_id: other.projectId,
      status: 'pending',
      schema: '/v2/schemas/member',
    });
    expectStatus(
      'POST',
      'member of a private image',
      await api('POST', `/v2/images/${priv.id}/members`, { body: { member: other.projectId } }),
      403,
    );
    expectStatus('GET', 'shared, pending member', await api('GET', `/v2/images/${shared.id}`, { token: o }), 200);
    expect(await listIds('?limit=1000', o)).not.toContain(shared.id);
    expect(await listIds('?member_status=pending&limit=1000', o)).toContain(shared.id);
    expectStatus(
      'PUT',
      'bad member status',
      await api('PUT', `/v2/images/${shared.id}/members/${other.projectId}`, { token: o, body: { status: 'maybe' } }),
      400,
    );
    const accept = await api('PUT', `/v2/images/${shared.id}/members/${other.projectId}`, {
      token: o,
      body: { status: 'accepted' },
    });
    expectStatus('PUT', 'member accepts', accept, 200);
    listed = await listIds('?limit=1000', o);
    expect(listed).toContain(shared.id);
    const members = await api('GET', `/v2/images/${shared.id}/members`);
    expect(members.json.members.map((m: any) => [m.member_id, m.status])).toEqual([[other.projectId, 'accepted']]);
    expectStatus(
      'PATCH',
      'member modifies',
      await patch(shared.id, [{ op: 'replace', path: '/name', value: 'x' }], o),
      403,
    );
    expectStatus(
      'DELETE',
      'member removal',
      await api('DELETE', `/v2/images/${shared.id}/members/${other.projectId}`),
      204,
    );
    expectStatus('GET', 'shared after removal', await api('GET', `/v2/images/${shared.id}`, { token: o }), 404);

    // Others cannot delete what they can see; the admin sees the other project's private images.
    expectStatus('DELETE', 'public by another project', await api('DELETE', `/v2/images/${pub.id}`, { token: o }), 403);
    const mine = await create({ name: 'vis-other-private', visibility: 'private' }, o);
    expect(mine.owner).toBe(other.projectId);
    expectStatus('GET', 'admin sees all', await api('GET', `/v2/images/${mine.id}`), 200);
    expect(await listIds('?limit=1000', o)).toContain(mine.id);
  });

  test('protected images cannot be deleted; deleting removes the data', async () => {
    const img = await create({ name: 'guarded', protected: true, container_format: 'bare', disk_format: 'raw' });
    expect((await upload(img.id, Buffer.from('some bytes'))).status).toBe(204);
    expectStatus('DELETE', 'protected', await api('DELETE', `/v2/images/${img.id}`), 403);
    expectStatus('PATCH', 'unprotect', await patch(img.id, [{ op: 'replace', path: '/protected', value: false }]), 200);
    expect(imageFiles(k, img.id)).toEqual([img.id]);
    expectStatus('DELETE', 'unprotected', await api('DELETE', `/v2/images/${img.id}`), 204);
    expectStatus('GET', 'deleted', await api('GET', `/v2/images/${img.id}`), 404);
    expect(imageFiles(k, img.id)).toEqual([]);
    expectStatus('DELETE', 'again', await api('DELETE', `/v2/images/${img.id}`), 404);
  });

  test('deactivate / reactivate: admin only; deactivated data is not downloadable by others', async () => {
    expectStatus(
      'POST',
      'deactivate by a member',
      await api('POST', `/v2/images/${uploaded}/actions/deactivate`, { token: other.token }),
      403,
    );
    expectStatus('POST', 'deactivate', await api('POST', `/v2/images/${uploaded}/actions/deactivate`), 204);
    expect((await api('GET', `/v2/images/${uploaded}`)).json.status).toBe('deactivated');
    expect((await raw(url(`/v2/images/${uploaded}/file`), 'GET', { token: other.token })).status).toBe(403);
    expect((await raw(url(`/v2/images/${uploaded}/file`), 'GET', { token: admin })).status).toBe(200);
    expectStatus('POST', 'reactivate', await api('POST', `/v2/images/${uploaded}/actions/reactivate`), 204);
    expect((await api('GET', `/v2/images/${uploaded}`)).json.status).toBe('active');
    const queued = await create({ name: 'not-active' });
    expectStatus(
      'POST',
      'deactivate a queued image',
      await api('POST', `/v2/images/${queued.id}/actions/deactivate`),
      403,
    );
  });

  test('storage quota per project → 413; the image stays queued and nothing is left on disk', async () => {
    const o = other.token;
    const img = await create({ name: 'quota', container_format: 'bare', disk_format: 'raw' }, o);
    const declared = await upload(img.id, Buffer.alloc(QUOTA + 1), o);
    expect(declared.status).toBe(413);
    expect((await api('GET', `/v2/images/${img.id}`, { token: o })).json.status).toBe('queued');

    // Chunked (no Content-Length): refused mid-stream.
    const chunk = Buffer.alloc(64 * 1024, 1);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= QUOTA + chunk.length) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const chunked = await raw(url(`/v2/images/${img.id}/file`), 'PUT', {
      token: o,
      body: stream,
      headers: { 'Content-Type': 'application/octet-stream' },
    }).catch((err) => ({ status: -1, body: Buffer.from(String(err)) }));
    expect(chunked.status, chunked.body.toString()).toBe(413);
    expect((await api('GET', `/v2/images/${img.id}`, { token: o })).json.status).toBe('queued');
    expect(imageFiles(k, img.id)).toEqual([]);

    // Within the quota it works (the admin project's images do not count against this project).
    const small = Buffer.alloc(QUOTA / 2, 2);
    expect((await upload(img.id, small, o)).status).toBe(204);
    const img2 = await create({ name: 'quota-2', container_format: 'bare', disk_format: 'raw' }, o);
    expect((await upload(img2.id, small, o)).status).toBe(204);
    const img3 = await create({ name: 'quota-3', container_format: 'bare', disk_format: 'raw' }, o);
    expect((await upload(img3.id, Buffer.alloc(1), o)).status).toBe(413);
  });

  test('an aborted upload returns the image to queued and leaves no partial file', async () => {
    const img = await create({ name: 'aborted', container_format: 'bare', disk_format: 'raw' });
    const u = new URL(url(`/v2/images/${img.id}/file`));
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'PUT',
      // Within the project's remaining quota, so the upload really starts.
      headers: {
        'X-Auth-Token': admin,
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(600 * 1024),
      },
    });
    req.on('error', () => {});
    req.write(Buffer.alloc(128 * 1024, 3));
    await waitFor('the upload to start', async () =>
      (await api('GET', `/v2/images/${img.id}`)).json.status === 'saving' ? true : undefined,
    );
    // The status turns saving just before the partial file is opened.
    await waitFor('the partial file', async () =>
      imageFiles(k, img.id).some((n) => n.endsWith('.part')) ? true : undefined,
    );
    req.destroy();
    await waitFor('the image to return to queued', async () =>
      (await api('GET', `/v2/images/${img.id}`)).json.status === 'queued' ? true : undefined,
    );
    await waitFor('the partial file to go', async () => (imageFiles(k, img.id).length === 0 ? true : undefined));
    // And it can be uploaded again.
    expect((await upload(img.id, Buffer.from('retry'))).status).toBe(204);
    expect((await api('GET', `/v2/images/${img.id}`)).json).toMatchObject({
      status: 'active',
      size: 5,
      checksum: md5(Buffer.from('retry')),
    });
  });

  test('errors: Glance envelope as JSON when asked for, HTML otherwise; 401 without a token', async () => {
    const missing = `/v2/images/${randomUUID()}`;
    const j = await api('GET', missing);
    expectStatus('GET', missing, j, 404);
    expect(j.json).toEqual({
      code: '404 Not Found',
      title: 'Not Found',
      message: expect.stringContaining('No image found'),
    });
    const h = await raw(url(missing), 'GET', { token: admin, headers: { Accept: '*/*' } });
    expect(h.status).toBe(404);
    expect(h.headers.get('content-type')).toMatch(/^text\/html/);
    expect(h.body.toString()).toContain('404 Not Found');
    const byName = await api('GET', '/v2/images/lst-a');
    expectStatus('GET', 'by name', byName, 404);
    const anon = await k.http('GET', url('/v2/images'));
    expectStatus('GET', 'no token', anon, 401);
    expect(anon.headers.get('www-authenticate')).toBe(`Keystone uri="${k.baseUrl}/identity/v3"`);
    expect(anon.headers.get('x-openstack-request-id')).toMatch(/^req-/);
  });
});
