/**
 * Registry pulls into a real, private containerd from a real docker-registry started by the test: by tag and by
 * digest, a multi-arch index, token and basic auth, a corrupt blob, a connection cut mid-blob, concurrent pulls.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound } from '../../src/engine/containerd-client.js';
import { chainIds, resolveImage } from '../../src/engine/image-import.js';
import { ImagePuller, type PullProgress } from '../../src/images/pull.js';
import { buildBusybox, type EngineFixture, engineTestsUnavailable, startFixture } from '../engine/helpers.js';
import {
  buildTestImage,
  type RunningRegistry,
  sha256,
  skopeoPush,
  startFakeRegistry,
  startProxy,
  startRegistry,
  writeOciLayout,
} from './registry-helpers.js';

const skip =
  engineTestsUnavailable() ??
  (() => {
    try {
      execFileSync('sh', ['-c', 'command -v docker-registry && command -v openssl'], { stdio: 'ignore' });
      return undefined;
    } catch {
      return 'docker-registry or openssl not installed';
    }
  })();

describe.skipIf(!!skip)('registry pulls into containerd', () => {
  let fx: EngineFixture;
  let reg: RunningRegistry;
  let puller: ImagePuller;
  let archive: string;
  /** The busybox image as pushed: its manifest digest in the registry. */
  let manifestDigest: string;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    fx = await startFixture();
    archive = buildBusybox(join(fx.tmp, 'busybox.oci.tar'));
    reg = await startRegistry();
    await skopeoPush(`oci-archive:${archive}`, `${reg.host}/kr/busybox:1.0`);
    const inspect = JSON.parse(
      execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/kr/busybox:1.0`], {
        encoding: 'utf8',
      }),
    );
    manifestDigest = inspect.Digest;
    puller = new ImagePuller(fx.client);
  });

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await reg?.stop();
    await fx?.cleanup();
  });

  /** No ingest in progress, no temporary lease left. */
  async function expectNothingHalfWritten(): Promise<void> {
    const statuses = await fx.client.unary<{ statuses: unknown[] }>('content', 'ListStatuses', { filters: [] });
    expect(statuses.statuses ?? []).toEqual([]);
    const leases = await fx.client.leases.list();
    expect(leases.filter((l) => l.labels['krater.io/temporary'])).toEqual([]);
  }

  it('pulls by tag: blobs in the content store, image recorded and unpacked, progress per layer', async () => {
    const events: PullProgress[] = [];
    const r = await puller.pull(`${reg.host}/kr/busybox:1.0`, { onProgress: (e) => events.push(e) });
    expect(r.name).toBe(`${reg.host}/kr/busybox:1.0`);
    expect(r.target.digest).toBe(manifestDigest);
    expect(r.layers.length).toBe(1);
    expect(r.downloaded).toBe(1);
    const img = await fx.client.images.get(r.name);
    expect(img.target.digest).toBe(manifestDigest);
    const resolved = await resolveImage(fx.client, r.name);
    expect(resolved.chainId).toBe(chainIds(resolved.diffIds).at(-1));
    expect(await fx.client.snapshots.stat(resolved.chainId)).toBeDefined();
    const layer = r.layers[0]!;
    const info = await fx.client.content.info(layer.digest);
    expect(info.labels['containerd.io/uncompressed']).toBe(r.diffIds[0]);
    // Per-layer progress with byte counts, ending with the layer downloaded and the image done.
    const mine = events.filter((e) => e.digest === layer.digest);
    expect(mine.some((e) => e.status === 'waiting')).toBe(true);
    expect(mine.at(-1)).toMatchObject({ status: 'downloaded', current: Number(layer.size), total: Number(layer.size) });
    expect(events.at(-1)).toMatchObject({ status: 'done' });
    await expectNothingHalfWritten();
  });

  it('pulls by digest and reuses the layers already present', async () => {
    const ref = `${reg.host}/kr/busybox@${manifestDigest}`;
    const r = await puller.pull(ref);
    expect(r.name).toBe(ref);
    expect(r.downloaded).toBe(0);
    expect((await fx.client.images.get(ref)).target.digest).toBe(manifestDigest);
  });

  it('refuses an unknown tag and an unknown repository with the registry’s reason', async () => {
    await expect(puller.pull(`${reg.host}/kr/busybox:nope`)).rejects.toThrow(
      /manifest 127\.0\.0\.1:\d+\/kr\/busybox:nope not found in registry .*HTTP 404.*MANIFEST_UNKNOWN/,
    );
    await expect(puller.pull(`${reg.host}/kr/nothing:1`)).rejects.toThrow(/not found in registry .*HTTP 404/);
    await expect(puller.pull('Bad_Name')).rejects.toThrow(/invalid reference format/);
    await expect(puller.pull('127.0.0.1:1/kr/busybox:1')).rejects.toThrow(/cannot connect to registry 127\.0\.0\.1:1/);
  });

  it('pulls a multi-arch index: only the linux/amd64 manifest is fetched; other platforms on request', async () => {
    const amd = buildTestImage({ 'multi.txt': `amd64 ${Date.now()}` }, { arch: 'amd64' });
    // The arm64 image shares the layer; only its config differs.
    const arm = buildTestImage(
      {},
      { arch: 'arm64', layers: [amd.blobs.get(amd.layerDigests[0]!)!], diffIds: amd.diffIds },
    );
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: arm.manifestDigest,
            size: arm.manifest.length,
            platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
          },
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: amd.manifestDigest,
            size: amd.manifest.length,
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      }),
    );
    const blobs = new Map([...amd.blobs, ...arm.blobs, [sha256(index), index]]);
    const layout = join(fx.tmp, 'multi-layout');
    writeOciLayout(
      layout,
      blobs,
      { mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha256(index), size: index.length },
      'multi',
    );
    await skopeoPush(`oci:${layout}:multi`, `${reg.host}/kr/multi:1`, { all: true });

    const r = await puller.pull(`${reg.host}/kr/multi:1`, { platform: { os: 'linux', architecture: 'amd64' } });
    expect(r.target).toMatchObject({ media_type: 'application/vnd.oci.image.index.v1+json', digest: sha256(index) });
    expect(r.manifest.digest).toBe(amd.manifestDigest);
    expect(r.config.digest).toBe(amd.configDigest);
    await expect(fx.client.content.info(arm.manifestDigest)).rejects.toSatisfy(isNotFound);
    const resolved = await resolveImage(fx.client, r.name, { os: 'linux', architecture: 'amd64' });
    expect(resolved.manifest.digest).toBe(amd.manifestDigest);

    const a = await puller.pull(`${reg.host}/kr/multi:1`, {
      platform: { os: 'linux', architecture: 'arm64' },
      unpack: false,
    });
    expect(a.config.digest).toBe(arm.configDigest);
    expect(a.downloaded).toBe(0);
    await expect(
      puller.pull(`${reg.host}/kr/multi:1`, { platform: { os: 'linux', architecture: 's390x' } }),
    ).rejects.toThrow(/has no manifest for linux\/s390x \(available: linux\/arm64\/v8, linux\/amd64\)/);
    await expectNothingHalfWritten();
  });

  it('authenticates with a token server (the WWW-Authenticate: Bearer dance) and refuses bad credentials', async () => {
    const treg = await startRegistry({ auth: { kind: 'token', username: 'alice', password: 's3cret' } });
    cleanups.push(() => treg.stop());
    await skopeoPush(`oci-archive:${archive}`, `${treg.host}/kr/private:1`, { creds: 'alice:s3cret' });
    await expect(puller.pull(`${treg.host}/kr/private:1`)).rejects.toThrow(
      /token server 127\.0\.0\.1:\d+ refused anonymous access to 127\.0\.0\.1:\d+ \(HTTP 401/,
    );
    await expect(
      puller.pull(`${treg.host}/kr/private:1`, { credentials: { username: 'alice', password: 'wrong' } }),
    ).rejects.toThrow(/rejected the credentials of alice/);
    treg.tokenRequests.length = 0;
    const r = await puller.pull(`${treg.host}/kr/private:1`, {
      credentials: { username: 'alice', password: 's3cret' },
    });
    expect(r.target.digest).toBe(manifestDigest);
    // One token for the repository, fetched with the credentials, reused for every request of the pull.
    expect(treg.tokenRequests).toEqual([
      { authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}`, scope: 'repository:kr/private:pull' },
    ]);
    await expectNothingHalfWritten();
  });

  it('authenticates with basic auth (htpasswd)', async () => {
    const breg = await startRegistry({ auth: { kind: 'basic', username: 'bob', password: 'pa55' } });
    cleanups.push(() => breg.stop());
    await skopeoPush(`oci-archive:${archive}`, `${breg.host}/kr/basic:1`, { creds: 'bob:pa55' });
    await expect(puller.pull(`${breg.host}/kr/basic:1`)).rejects.toThrow(
      /requires authentication \(HTTP 401\) and no credentials were given/,
    );
    await expect(
      puller.pull(`${breg.host}/kr/basic:1`, { credentials: { username: 'bob', password: 'nope' } }),
    ).rejects.toThrow(/refused access to kr\/basic for user bob \(HTTP 401/);
    const r = await puller.pull(`${breg.host}/kr/basic:1`, { credentials: { username: 'bob', password: 'pa55' } });
    expect(r.target.digest).toBe(manifestDigest);
  });

  it('rejects a blob whose digest does not match, leaving nothing half-written', async () => {
    const img = buildTestImage({ 'bad.txt': `corrupt me ${Date.now()} ${'x'.repeat(4096)}` });
    const fake = await startFakeRegistry(
      img.blobs,
      new Map([['kr/bad:1', { mediaType: 'application/vnd.oci.image.manifest.v1+json', body: img.manifest }]]),
      { corrupt: img.layerDigests[0] },
    );
    cleanups.push(() => fake.stop());
    await expect(puller.pull(`${fake.host}/kr/bad:1`)).rejects.toThrow(
      new RegExp(
        `layer ${img.layerDigests[0]} of ${fake.host.replace(/\./g, '\\.')}/kr/bad:1 failed verification: the registry sent \\d+ bytes with digest sha256:[0-9a-f]{64}`,
      ),
    );
    await expect(fx.client.content.info(img.layerDigests[0]!)).rejects.toSatisfy(isNotFound);
    await expect(fx.client.images.get(`${fake.host}/kr/bad:1`)).rejects.toSatisfy(isNotFound);
    await expectNothingHalfWritten();
  });

  it('resumes a layer download when the connection drops mid-blob (Range), and shares concurrent pulls', async () => {
    // A layer of incompressible data no other test has, so every byte comes over the wire.
    const img = buildTestImage({ 'big.bin': randomBytes(768 * 1024).toString('base64') });
    const layout = join(fx.tmp, 'big-layout');
    writeOciLayout(
      layout,
      img.blobs,
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: img.manifestDigest,
        size: img.manifest.length,
      },
      'big',
    );
    await skopeoPush(`oci:${layout}:big`, `${reg.host}/kr/big:1`);
    const layerDigest = img.layerDigests[0]!;
    const layerSize = img.blobs.get(layerDigest)!.length;
    const layerPath = `/v2/kr/big/blobs/${layerDigest}`;
    // The first two GETs of the layer are cut after 64 KiB and 200 KiB of their bodies.
    const proxy = await startProxy(reg.port, (req, nth) =>
      req.url === layerPath && nth <= 2 ? (nth === 1 ? 65536 : 204800) : undefined,
    );
    cleanups.push(() => proxy.stop());
    const events: PullProgress[] = [];
    const ref = `${proxy.host}/kr/big:1`;
    const [r1, r2] = await Promise.all([puller.pull(ref, { onProgress: (e) => events.push(e) }), puller.pull(ref)]);
    expect(r1).toBe(r2);
    expect(r1.downloaded).toBe(1);
    const gets = proxy.log.filter((l) => l.path === layerPath);
    // Each retry asks for exactly the bytes not yet received (what arrived before a cut may be a little less than
    // what the proxy sent).
    const resumedAt = events.filter((e) => e.status === 'retrying').map((e) => e.current!);
    expect(resumedAt.length).toBe(2);
    expect(resumedAt[0]).toBeGreaterThan(0);
    expect(resumedAt[0]).toBeLessThanOrEqual(65536);
    expect(resumedAt[1]).toBeGreaterThan(resumedAt[0]!);
    expect(resumedAt[1]).toBeLessThanOrEqual(resumedAt[0]! + 204800);
    expect(gets.map((g) => g.range)).toEqual([undefined, `bytes=${resumedAt[0]}-`, `bytes=${resumedAt[1]}-`]);
    expect((await fx.client.content.info(layerDigest)).size).toBe(String(layerSize));
    const resolved = await resolveImage(fx.client, ref);
    expect(await fx.client.snapshots.stat(resolved.chainId)).toBeDefined();
    // Another name of the same image: nothing is downloaded again.
    const before = proxy.log.length;
    const again = await puller.pull(`${proxy.host}/kr/big@${img.manifestDigest}`);
    expect(again.downloaded).toBe(0);
    expect(proxy.log.slice(before).filter((l) => l.path.includes('/blobs/'))).toEqual([]);
    await expectNothingHalfWritten();
  });
});
