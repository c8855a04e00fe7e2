/**
 * The Glance facade driven by the real clients: `openstack image …` (python3-openstackclient, which talks to Glance
 * through openstacksdk) and `glance` (python3-glanceclient, which loads /v2/schemas/image and verifies hashes on
 * download; Zun's Glance driver uses it).
 *
 *   npx vitest run tests/image/image-osc.test.ts
 *
 * The tests share one Krater and run in order.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { Krater } from '../helpers/krater.js';
import { imageFiles, md5, sha512 } from './helpers.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 300_000 });

const NAME = 'osc-alpine';

function glance(k: Krater, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = k.oscEnv({
    OS_CLIENT_CONFIG_FILE: undefined,
    OS_AUTH_URL: k.identityUrl,
    OS_USERNAME: 'admin',
    OS_PASSWORD: k.adminPassword,
    OS_PROJECT_NAME: 'admin',
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_IDENTITY_API_VERSION: '3',
  });
  return new Promise((resolve) => {
    execFile('glance', args, { env, timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

/** glance's table output → { property: value } (continuation lines of long values are joined). */
function glanceTable(out: string): Record<string, string> {
  const props: Record<string, string> = {};
  let last = '';
  for (const line of out.split('\n')) {
    const m = /^\|\s*(\S*)\s*\|\s*(.*?)\s*\|$/.exec(line);
    if (!m || m[1] === 'Property') continue;
    if (m[1] === '') props[last] += m[2];
    else {
      last = m[1];
      props[last] = m[2];
    }
  }
  return props;
}

describe('images with the openstack and glance CLIs', () => {
  let k: Krater;
  let token = '';
  let file = '';
  let data: Buffer;
  let id = '';

  const show = async (ref: string) => (await k.http('GET', `/image/v2/images/${ref}`, { token })).json;

  beforeAll(async () => {
    k = await Krater.start({ env: { KRATER_AGENT_SHUTDOWN: 'purge', KRATER_IMAGE_QUOTA_BYTES: '2m' } });
    token = (await k.passwordToken()).token;
    data = randomBytes(256 * 1024 + 11);
    file = join(k.workDir, 'image.tar');
    writeFileSync(file, data);
    // A second image the filters must leave out.
    const other = await k.http('POST', '/image/v2/images', {
      token,
      body: { name: 'osc-other', container_format: 'bare', disk_format: 'raw', tags: ['latest'] },
    });
    expect(other.status).toBe(201);
  });

  afterAll(async () => {
    await k?.destroy();
  });

  test('image create --file with formats, a property and a tag: active with size and hashes', async () => {
    const created = await k.oscOk([
      'image',
      'create',
      '--file',
      file,
      '--container-format',
      'docker',
      '--disk-format',
      'raw',
      '--property',
      'os_distro=fedora-coreos',
      '--tag',
      'latest',
      NAME,
    ]);
    expect(created.name).toBe(NAME);
    id = created.id;
    const img = await show(id);
    expect(img).toMatchObject({
      name: NAME,
      status: 'active',
      container_format: 'docker',
      disk_format: 'raw',
      size: data.length,
      checksum: md5(data),
      os_hash_algo: 'sha512',
      os_hash_value: sha512(data),
      os_distro: 'fedora-coreos',
    });
    expect(img.tags).toContain('latest');
  });

  test('image list with filters', async () => {
    const all = await k.oscOk(['image', 'list']);
    expect(all.map((i: any) => i.Name).sort()).toEqual(['osc-alpine', 'osc-other']);
    const filtered = await k.oscOk([
      'image',
      'list',
      '--property',
      'os_distro=fedora-coreos',
      '--tag',
      'latest',
      '--status',
      'active',
    ]);
    expect(filtered.map((i: any) => i.ID)).toEqual([id]);
  });

  test('image show resolves the name', async () => {
    const shown = await k.oscOk(['image', 'show', NAME]);
    expect(shown).toMatchObject({ id, name: NAME, status: 'active', checksum: md5(data), size: data.length });
    expect(shown.properties?.os_distro).toBe('fedora-coreos');
  });

  test('image set --property --tag', async () => {
    await k.oscOk(['image', 'set', '--property', 'magnum_driver=k8s_fcos', '--tag', 'v1', NAME]);
    const img = await show(id);
    expect(img.magnum_driver).toBe('k8s_fcos');
    expect(img.os_distro).toBe('fedora-coreos');
    expect([...img.tags].sort()).toEqual(['latest', 'v1']);
  });

  test('image save --file: the same bytes', async () => {
    const out = join(k.workDir, 'saved.tar');
    await k.oscOk(['image', 'save', '--file', out, NAME]);
    const saved = readFileSync(out);
    expect(saved.length).toBe(data.length);
    expect(md5(saved)).toBe(md5(data));
  });

  test('glanceclient: image-create with a property and --file, image-download verifies the hash, errors are readable', async () => {
    const created = await glance(k, [
      'image-create',
      '--name',
      'gc-image',
      '--property',
      'os_distro=debian',
      '--container-format',
      'docker',
      '--disk-format',
      'raw',
      '--file',
      file,
    ]);
    expect(created.code, created.stderr).toBe(0);
    const props = glanceTable(created.stdout);
    expect(props).toMatchObject({
      name: 'gc-image',
      status: 'active',
      os_distro: 'debian',
      checksum: md5(data),
      os_hash_value: sha512(data),
    });
    const out = join(k.workDir, 'gc.tar');
    const down = await glance(k, ['image-download', '--file', out, props.id]);
    expect(down.code, down.stderr).toBe(0);
    expect(md5(readFileSync(out))).toBe(md5(data));
    const again = await glance(k, ['image-upload', '--file', file, props.id]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('409 Conflict');
  });

  test('over the storage quota: the CLI reports the 413 (no broken pipe) and no image is left', async () => {
    const big = join(k.workDir, 'big.tar');
    writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, 1));
    const r = await k.osc([
      'image',
      'create',
      '--file',
      big,
      '--container-format',
      'docker',
      '--disk-format',
      'raw',
      'osc-too-big',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/413|quota/);
    expect(r.stderr).not.toMatch(/Broken pipe/i);
    const left = await k.http('GET', '/image/v2/images?name=osc-too-big', { token });
    expect(left.json.images).toEqual([]);
  });

  test('image delete: gone, data removed', async () => {
    expect(imageFiles(k, id)).toEqual([id]);
    await k.oscOk(['image', 'delete', NAME]);
    expect((await k.http('GET', `/image/v2/images/${id}`, { token })).status).toBe(404);
    expect(imageFiles(k, id)).toEqual([]);
  });
});
