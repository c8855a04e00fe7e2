/**
 * Zun's image side end to end on `krater up` (real containerd) with real docker-registry instances: containers
 * from registry images (pull policies, failures as status_reason, registry credentials), `/v1/registries`,
 * `/v1/images`, commit into Glance then run with `image_driver: glance` (also through `openstack appcontainer`),
 * and the `krater pull/images/rmi/save/load` CLI.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxArchive, startCloud, waitContainer, waitGone, ZUN } from '../containers/fixtures.js';
import { type Krater, REPO_ROOT, sleep } from '../helpers/krater.js';
import { type RunningRegistry, skopeoPush, startRegistry } from './registry-helpers.js';

const skip = (() => {
  if (process.getuid?.() !== 0) return 'needs root';
  try {
    execFileSync('sh', ['-c', 'command -v docker-registry && command -v containerd && command -v skopeo'], {
      stdio: 'ignore',
    });
    return undefined;
  } catch {
    return 'docker-registry, containerd or skopeo not installed';
  }
})();

let k: Krater;
let token: string;
let reg: RunningRegistry;
let breg: RunningRegistry;

const api = (method: string, path: string, body?: unknown, t = token) =>
  k.http(method, `/container/v1${path}`, { token: t, headers: ZUN(), body });
const run = async (body: Record<string, unknown>) => {
  const r = await api('POST', '/containers?run=true', body);
  expect(r.status, r.text).toBe(202);
  return r.json;
};
const logs = async (id: string) => (await api('GET', `/containers/${id}/logs`)).json as string;
const settled = (c: any) => c.task_state === null && c.status !== 'Creating';

/** `krater <args>` as a user would run it (clouds.yaml from the harness). */
function krater(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'bin/krater.js'), ...args],
      { env: k.oscEnv({ OS_CLOUD: 'krater' }), timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe.skipIf(!!skip)('Zun images, registries and commit', () => {
  beforeAll(async () => {
    const archive = busyboxArchive();
    [reg, breg] = await Promise.all([
      startRegistry(),
      startRegistry({ auth: { kind: 'basic', username: 'carol', password: 'c4rol' } }),
    ]);
    await Promise.all([
      skopeoPush(`oci-archive:${archive}`, `${reg.host}/kr/busybox:1.0`),
      skopeoPush(`oci-archive:${archive}`, `${reg.host}/kr/busybox:cli`),
      skopeoPush(`oci-archive:${archive}`, `${breg.host}/team/tools:2`, { creds: 'carol:c4rol' }),
    ]);
    k = await startCloud();
    token = (await k.passwordToken()).token;
  });
  afterAll(async () => {
    await k?.destroy();
    await reg?.stop();
    await breg?.stop();
  });

  it('runs a container from a registry image; pull failures become the status_reason', async () => {
    const c = await run({ image: `${reg.host}/kr/busybox:1.0`, command: ['echo', 'from the registry'] });
    const done = await waitContainer(k, token, c.uuid, (x) => settled(x) && x.status === 'Stopped', 'Stopped');
    expect(done.status_reason).toBeNull();
    expect(await logs(c.uuid)).toBe('from the registry\n');

    const missing = await run({ image: `${reg.host}/kr/nothing:1`, command: ['true'] });
    const err = await waitContainer(k, token, missing.uuid, (x) => x.status === 'Error', 'Error');
    expect(err.status_reason).toMatch(
      /^Image 127\.0\.0\.1:\d+\/kr\/nothing:1 could not be found: manifest .* not found in registry .*HTTP 404/,
    );
    expect(err.task_state).toBeNull();

    const glanceMissing = await run({ image: 'busybox2', image_driver: 'glance', command: ['true'] });
    expect(
      (await waitContainer(k, token, glanceMissing.uuid, (x) => x.status === 'Error', 'Error')).status_reason,
    ).toBe('Image busybox2 could not be found.');

    const never = await run({ image: `${reg.host}/kr/busybox:cli`, image_pull_policy: 'never', command: ['true'] });
    expect((await waitContainer(k, token, never.uuid, (x) => x.status === 'Error', 'Error')).status_reason).toBe(
      `Image ${reg.host}/kr/busybox:cli not present with pull policy of Never`,
    );

    const unauth = await run({ image: `${breg.host}/team/tools:2`, command: ['true'] });
    expect((await waitContainer(k, token, unauth.uuid, (x) => x.status === 'Error', 'Error')).status_reason).toMatch(
      /^Failed to pull image .*requires authentication \(HTTP 401\)/,
    );
    for (const id of [c.uuid, missing.uuid, glanceMissing.uuid, never.uuid, unauth.uuid])
      await api('DELETE', `/containers/${id}?force=true`);
  });

  it('keeps per-project registry credentials (password encrypted, rendered ***) and pulls with them', async () => {
    const created = await api('POST', '/registries', {
      registry: { name: 'teamreg', domain: breg.host, username: 'carol', password: 'c4rol' },
    });
    expect(created.status, `${created.text}\n${k.output().slice(-3000)}`).toBe(201);
    const r = created.json.registry;
    expect(r).toMatchObject({
      name: 'teamreg',
      domain: breg.host,
      username: 'carol',
      password: '***',
      uuid: expect.any(String),
    });
    expect(created.headers.get('location')).toContain(`/v1/registries/${r.uuid}`);
    // Never stored in clear.
    expect(readFileSync(join(k.dataDir, 'krater.db')).includes(Buffer.from('c4rol'))).toBe(false);
    // Its key is in the store, sealed under the master key (shared by every replica), not in a file of its own.
    expect(existsSync(join(k.dataDir, 'keys', 'registry.key'))).toBe(false);
    expect(existsSync(join(k.dataDir, 'keys', 'master.key'))).toBe(true);

    expect((await api('GET', '/registries')).json).toMatchObject({
      registries: [expect.objectContaining({ uuid: r.uuid, password: '***' })],
      next: null,
    });
    expect((await api('GET', '/registries/teamreg')).json.registry.uuid).toBe(r.uuid);
    expect((await api('GET', '/registries?colour=x')).status).toBe(400);
    expect((await api('POST', '/registries', { registry: { name: 'x' } })).status).toBe(400);

    // A name without a registry is looked up in the container's registry, with its credentials.
    const c = await run({ image: 'team/tools:2', registry: 'teamreg', command: ['echo', 'private image'] });
    const done = await waitContainer(k, token, c.uuid, (x) => settled(x) && x.status === 'Stopped', 'Stopped', 60_000);
    expect(done.status_reason).toBeNull();
    expect(await logs(c.uuid)).toBe('private image\n');
    const row = await api('GET', `/containers/${c.uuid}`);
    expect(row.json.registry_id ?? r.uuid).toBe(r.uuid);

    const unknown = await api('POST', '/containers', { image: 'team/tools:2', registry: 'nope' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.errors[0]).toMatchObject({
      code: 'container.registry-not-found',
      detail: 'Registry nope could not be found.',
    });

    // A wrong password is the registry's refusal.
    const patched = await api('PATCH', `/registries/${r.uuid}`, { registry: { password: 'wrong' } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.registry.password).toBe('***');
    const bad = await run({ image: 'team/tools:2', registry: r.uuid, image_pull_policy: 'always', command: ['true'] });
    expect((await waitContainer(k, token, bad.uuid, (x) => x.status === 'Error', 'Error')).status_reason).toMatch(
      /refused access to team\/tools for user carol \(HTTP 401/,
    );

    for (const id of [c.uuid, bad.uuid]) await api('DELETE', `/containers/${id}?force=true`);
    expect((await api('DELETE', `/registries/${r.uuid}`)).status).toBe(204);
    expect((await api('GET', `/registries/${r.uuid}`)).status).toBe(404);
  });

  it('pulls images onto a host through /v1/images, refuses deleting one in use, searches', async () => {
    const host = (await api('GET', '/hosts')).json.hosts[0].hostname;
    const pulled = await api('POST', '/images', { repo: `${reg.host}/kr/busybox:1.0`, host });
    expect(pulled.status, pulled.text).toBe(202);
    const img = pulled.json;
    expect(img).toMatchObject({ repo: `${reg.host}/kr/busybox`, tag: '1.0', host, image_id: null });
    let shown: any;
    for (let i = 0; i < 100; i++) {
      shown = (await api('GET', `/images/${img.uuid}`)).json;
      if (shown.image_id) break;
      await sleep(100);
    }
    expect(shown).toMatchObject({
      uuid: img.uuid,
      image_id: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      size: expect.any(Number),
    });
    expect((await api('GET', '/images')).json.images.map((i: any) => i.uuid)).toContain(img.uuid);
    expect((await api('POST', '/images', { repo: `${reg.host}/kr/busybox:1.0`, host })).status).toBe(409);
    expect((await api('POST', '/images', { repo: 'busybox', host: 'no-such-host' })).status).toBe(400);

    const c = await run({ image: `${reg.host}/kr/busybox:1.0`, command: ['sleep', '300'] });
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const refused = await api('DELETE', `/images/${img.uuid}`);
    expect(refused.status).toBe(409);
    expect(refused.json.errors[0].detail).toContain(c.uuid);
    await api('DELETE', `/containers/${c.uuid}?force=true`);
    await waitGone(k, token, c.uuid);
    expect((await api('DELETE', `/images/${img.uuid}`)).status).toBe(200);
    for (let i = 0; i < 100 && (await api('GET', `/images/${img.uuid}`)).status === 200; i++) await sleep(100);
    expect((await api('GET', `/images/${img.uuid}`)).status).toBe(400);

    const search = await api('GET', `/images/${encodeURIComponent(`${reg.host}/kr/busy`)}/search`);
    expect(search.status, search.text).toBe(200);
    expect(search.json).toEqual(
      expect.arrayContaining([{ name: `${reg.host}/kr/busybox`, description: '', is_automated: false, metadata: {} }]),
    );
    const exact = await api('GET', `/images/${encodeURIComponent(`${reg.host}/kr/busy`)}/search?exact_match=true`);
    expect(exact.json).toEqual([]);
  });

  it('refuses the admin image API to non-admins', async () => {
    const pid = (await k.http('GET', '/identity/v3/projects?name=admin', { token })).json.projects[0].id;
    const uname = `imguser${Date.now()}`;
    const u = await k.http('POST', '/identity/v3/users', {
      token,
      body: { user: { name: uname, password: 'Passw0rd!x', default_project_id: pid } },
    });
    const member = (await k.http('GET', '/identity/v3/roles?name=member', { token })).json.roles[0].id;
    await k.http('PUT', `/identity/v3/projects/${pid}/users/${u.json.user.id}/roles/${member}`, { token });
    const t = (await k.passwordToken(uname, 'Passw0rd!x', 'admin')).token;
    expect((await api('GET', '/images', undefined, t)).status).toBe(403);
    expect((await api('POST', '/images', { repo: 'busybox' }, t)).status).toBe(403);
    const s = await api('GET', '/images/busybox/search?image_driver=glance', undefined, t);
    expect(s.status, s.text).toBe(200);
  });

  it('commits a running container into a Glance image and runs it with image_driver glance', async () => {
    const c = await run({
      name: 'tocommit',
      image: 'busybox',
      command: ['sh', '-c', 'echo committed-data > /marker; exec sleep 300'],
    });
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    await sleep(200);
    const commit = await api('POST', `/containers/${c.uuid}/commit?repository=mycommit&tag=v1`);
    expect(commit.status, commit.text).toBe(202);
    const imageId = commit.json.uuid;
    let g: any;
    for (let i = 0; i < 200; i++) {
      g = (await k.http('GET', `/image/v2/images/${imageId}`, { token })).json;
      if (g.status === 'active') break;
      await sleep(100);
    }
    expect(g).toMatchObject({
      name: 'mycommit',
      status: 'active',
      container_format: 'docker',
      disk_format: 'raw',
      tags: ['v1'],
      owner: expect.any(String),
    });
    const data = await fetch(`${k.baseUrl}/image/v2/images/${imageId}/file`, { headers: { 'X-Auth-Token': token } });
    const bytes = Buffer.from(await data.arrayBuffer());
    expect(createHash('md5').update(bytes).digest('hex')).toBe(g.checksum);
    expect(bytes.length).toBe(g.size);
    // Still running after the pause/unpause around the commit; the action is recorded.
    expect((await api('GET', `/containers/${c.uuid}`)).json.status).toBe('Running');
    const actions = (await api('GET', `/containers/${c.uuid}/container_actions`)).json.containerActions;
    const ca = actions.find((a: any) => a.action === 'commit');
    expect(ca).toMatchObject({ request_id: commit.headers.get('x-openstack-request-id'), message: null });
    expect(ca.finish_time).not.toBeNull();

    const fromGlance = await run({ image: 'mycommit', image_driver: 'glance', command: ['cat', '/marker'] });
    const done = await waitContainer(
      k,
      token,
      fromGlance.uuid,
      (x) => settled(x) && x.status === 'Stopped',
      'Stopped',
      60_000,
    );
    expect(done.status_reason).toBeNull();
    expect(await logs(fromGlance.uuid)).toBe('committed-data\n');
    const byId = await run({ image: imageId, image_driver: 'glance', command: ['cat', '/marker'] });
    await waitContainer(k, token, byId.uuid, (x) => settled(x) && x.status === 'Stopped', 'Stopped', 60_000);
    expect(await logs(byId.uuid)).toBe('committed-data\n');

    // The real zunclient: `openstack appcontainer run --image-driver glance`.
    const osc = await k.osc(
      [
        'appcontainer',
        'run',
        '-f',
        'json',
        '--wait',
        '--name',
        'fromglance',
        '--image-driver',
        'glance',
        'mycommit',
        'sh',
        '-c',
        'cat /marker; sleep 300',
      ],
      { json: false, timeoutMs: 120_000 },
    );
    expect(osc.code, osc.stderr).toBe(0);
    const shown = await api('GET', '/containers/fromglance');
    expect(shown.json).toMatchObject({ status: 'Running', image: 'mycommit', image_driver: 'glance' });
    expect(await logs('fromglance')).toContain('committed-data');

    const glanceSearch = await api('GET', '/images/mycom/search?image_driver=glance');
    expect(glanceSearch.json.map((x: any) => x.id)).toContain(imageId);
    for (const id of [c.uuid, fromGlance.uuid, byId.uuid, 'fromglance'])
      await api('DELETE', `/containers/${id}?force=true`);
    const bad = await api('POST', `/containers/${fromGlance.uuid}/commit`);
    expect([400, 404]).toContain(bad.status);
  });

  it('krater pull / images / save / rmi / load', async () => {
    const ref = `${reg.host}/kr/busybox:cli`;
    const pulled = await krater(['pull', ref]);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout).toMatch(/[0-9a-f]{12}: (Download complete|Already exists)/);
    expect(pulled.stdout).toContain(`for ${ref}`);
    const images = await krater(['images']);
    expect(images.stdout).toMatch(new RegExp(`${reg.host.replace(/\./g, '\\.')}/kr/busybox\\s+cli\\s+[0-9a-f]{12}`));
    const file = join(k.workDir, 'saved.tar');
    const saved = await krater(['save', '-o', file, ref]);
    expect(saved.code, saved.stderr).toBe(0);
    expect(
      JSON.parse(execFileSync('skopeo', ['inspect', `docker-archive:${file}`], { encoding: 'utf8' })).Layers.length,
    ).toBe(1);
    expect((await krater(['rmi', ref])).stdout).toBe(`Untagged: ${ref}\n`);
    expect((await krater(['images'])).stdout).not.toContain('kr/busybox   cli');
    const missing = await krater(['rmi', ref]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('No such image');
    const loaded = await krater(['load', '-i', file]);
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.stdout).toBe(`Loaded image: ${ref}\n`);
    // In use: refused.
    const c = await run({ image: ref, command: ['sleep', '300'], image_pull_policy: 'never' });
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const inUse = await krater(['rmi', ref]);
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toContain(`in use by container ${c.uuid}`);
    await api('DELETE', `/containers/${c.uuid}?force=true`);
    const bad = await krater(['pull', `${reg.host}/kr/nothing:1`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/not found in registry/);
  });
});
