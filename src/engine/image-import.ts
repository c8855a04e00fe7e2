/**
 * Offline image import: an OCI image layout (tar or directory, e.g. `skopeo copy … oci-archive:`) or a
 * `docker save` archive (`skopeo copy … docker-archive:`) goes into containerd's content store, gets an
 * image record, and is unpacked into the snapshotter so containers can run from it.
 *
 * Sequence (containerd.md §3b): one lease around everything; blobs written with the labels that make
 * GC keep them (manifest → config/layers, config → top snapshot, layer → uncompressed digest); image
 * created (or re-pointed); layers unpacked with Snapshots.Prepare → Diff.Apply → Snapshots.Commit,
 * keyed by chain ID and skipped when present; lease deleted.
 */
import { createHash, randomUUID } from 'node:crypto';
import { arch } from 'node:process';
import {
  type ContainerdClient,
  type Descriptor,
  type Image,
  isAlreadyExists,
  isNotFound,
  type Mount,
} from './containerd-client.js';
import { type FileSource, openFileSource } from './tar-archive.js';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

const isIndexType = (mt: string) => mt === MEDIA_TYPES.ociIndex || mt === MEDIA_TYPES.dockerManifestList;
const isManifestType = (mt: string) => mt === MEDIA_TYPES.ociManifest || mt === MEDIA_TYPES.dockerManifest;

export interface ImportOptions {
  /** Image name to record (default: the archive's ref name / RepoTag, normalised). Only for single-image archives. */
  name?: string;
  /** Normalise names the way Docker does (`busybox` → `docker.io/library/busybox:latest`); default true. */
  normalize?: boolean;
  /** Unpack into the snapshotter (default true). */
  unpack?: boolean;
  /** Snapshotter to unpack into (default: the client's). */
  snapshotter?: string;
  /** Platform to unpack from multi-platform indexes (default linux/<this machine>). */
  platform?: { os: string; architecture: string; variant?: string };
  /** Labels for the image record. */
  labels?: Record<string, string>;
}

export interface ImportedImage {
  name: string;
  /** What the image record points at (manifest or index). */
  target: Descriptor;
  /** Manifest used for unpacking (the platform's manifest when target is an index). */
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
  /** Chain ID of the top layer: the parent snapshot for containers. */
  chainId: string;
  unpacked: boolean;
}

/** Docker-style reference normalisation: adds `docker.io/`, `library/` and `:latest` where missing. */
export function normalizeImageRef(ref: string): string {
  let name = ref;
  let suffix = '';
  const at = name.indexOf('@');
  if (at >= 0) {
    suffix = name.slice(at);
    name = name.slice(0, at);
  }
  const lastSlash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon > lastSlash) {
    suffix = name.slice(colon) + suffix;
    name = name.slice(0, colon);
  } else if (!suffix) {
    suffix = ':latest';
  }
  const first = name.split('/')[0]!;
  const hasRegistry = name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasRegistry) name = `docker.io/${name.includes('/') ? name : `library/${name}`}`;
  return `${name}${suffix}`;
}

/** chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

function goArch(): string {
  return (
    (
      { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' } as Record<
        string,
        string
      >
    )[arch] ?? arch
  );
}

function sha256(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

async function sha256Stream(stream: AsyncIterable<Buffer>): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of stream) h.update(chunk);
  return `sha256:${h.digest('hex')}`;
}

function blobPath(digest: string): string {
  const [alg, hex] = digest.split(':');
  if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex)) throw new Error(`invalid digest ${digest}`);
  return `blobs/${alg}/${hex}`;
}

interface PlannedImage {
  name: string;
  target: Descriptor;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
  /** Blobs to write: descriptor, labels, and where the bytes are. */
  blobs: { desc: Descriptor; labels: Record<string, string>; data: () => AsyncIterable<Buffer> | Buffer }[];
}

/**
 * Import every image in an OCI layout / docker-archive (tar file or OCI layout directory).
 * Returns one entry per image name.
 */
export async function importImageArchive(
  client: ContainerdClient,
  path: string,
  opts: ImportOptions = {},
): Promise<ImportedImage[]> {
  const src = await openFileSource(path);
  try {
    const snapshotter = opts.snapshotter ?? client.snapshotter;
    const platform = opts.platform ?? { os: 'linux', architecture: goArch() };
    let planned: PlannedImage[];
    if (src.resolve('index.json') && src.resolve('oci-layout')) {
      planned = await planOciLayout(src, platform, snapshotter);
    } else if (src.resolve('manifest.json')) {
      planned = await planDockerArchive(src, snapshotter);
    } else {
      throw new Error(`${path}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)`);
    }
    if (planned.length === 0) throw new Error(`${path}: no images found`);
    if (opts.name !== undefined) {
      if (planned.length > 1)
        throw new Error(`${path}: holds ${planned.length} images; cannot name them all ${opts.name}`);
      planned[0]!.name = opts.name;
    }
    for (const p of planned) {
      if (!p.name) throw new Error(`${path}: image ${p.target.digest} has no name; pass one`);
      if (opts.normalize !== false) p.name = normalizeImageRef(p.name);
    }

    return await client.withTemporaryLease(async (leased) => {
      const written = new Set<string>();
      const out: ImportedImage[] = [];
      for (const p of planned) {
        for (const b of p.blobs) {
          if (written.has(b.desc.digest)) continue;
          await leased.content.write({
            ref: `krater-import-${b.desc.digest}`,
            digest: b.desc.digest,
            size: Number(b.desc.size),
            labels: b.labels,
            data: b.data,
          });
          written.add(b.desc.digest);
        }
        const image: Image = { name: p.name, labels: opts.labels ?? {}, target: p.target };
        await leased.images.put(image);
        const chain = chainIds(p.diffIds);
        if (opts.unpack !== false) await unpackLayers(leased, p.layers, p.diffIds, snapshotter);
        out.push({
          name: p.name,
          target: p.target,
          manifest: p.manifest,
          config: p.config,
          layers: p.layers,
          diffIds: p.diffIds,
          chainId: chain[chain.length - 1] ?? '',
          unpacked: opts.unpack !== false,
        });
      }
      return out;
    });
  } finally {
    await src.close();
  }
}

async function planOciLayout(
  src: FileSource,
  platform: NonNullable<ImportOptions['platform']>,
  snapshotter: string,
): Promise<PlannedImage[]> {
  const readJson = async (digest: string) => JSON.parse((await src.read(blobPath(digest))).toString('utf8'));
  const index = JSON.parse((await src.read('index.json')).toString('utf8'));
  const out: PlannedImage[] = [];
  for (const topJson of (index.manifests ?? []) as any[]) {
    const top = toContainerdDescriptor(topJson);
    const name =
      top.annotations?.['io.containerd.image.name'] ?? top.annotations?.['org.opencontainers.image.ref.name'] ?? '';
    const blob = (desc: Descriptor, labels: Record<string, string>) => {
      const p = blobPath(desc.digest);
      if (!src.resolve(p)) throw new Error(`blob ${desc.digest} missing from the archive`);
      if (src.size(p) !== Number(desc.size))
        throw new Error(`blob ${desc.digest}: size ${src.size(p)} != ${desc.size}`);
      return { desc, labels, data: () => src.stream(p) };
    };
    let manifestDesc = top;
    let indexBlob: PlannedImage['blobs'][number] | undefined;
    if (isIndexType(top.media_type)) {
      const idx = await readJson(top.digest);
      const children = ((idx.manifests ?? []) as any[]).map(fromJsonDescriptor);
      const present = children.filter((c) => src.resolve(blobPath(c.digest)));
      const match = present.find((c) => {
        const pl = c.platform as { os?: string; architecture?: string; variant?: string } | undefined;
        return (
          !pl ||
          (pl.os === platform.os &&
            pl.architecture === platform.architecture &&
            (!platform.variant || pl.variant === platform.variant))
        );
      });
      if (!match)
        throw new Error(`index ${top.digest}: no manifest for ${platform.os}/${platform.architecture} in the archive`);
      const labels: Record<string, string> = {};
      present.forEach((c, i) => {
        labels[`containerd.io/gc.ref.content.m.${i}`] = c.digest;
      });
      indexBlob = blob(top, labels);
      manifestDesc = toContainerdDescriptor(match);
    }
    const manifest = await readJson(manifestDesc.digest);
    const mt = manifestDesc.media_type || manifest.mediaType;
    if (!isManifestType(mt)) throw new Error(`unsupported manifest media type ${mt}`);
    manifestDesc = { ...manifestDesc, media_type: mt };
    const config = fromJsonDescriptor(manifest.config);
    const layers = ((manifest.layers ?? []) as any[]).map(fromJsonDescriptor);
    const configJson = await readJson(config.digest);
    const diffIds: string[] = configJson.rootfs?.diff_ids ?? [];
    if (diffIds.length !== layers.length) {
      throw new Error(`config ${config.digest}: ${diffIds.length} diff_ids for ${layers.length} layers`);
    }
    const chain = chainIds(diffIds);
    const mLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': config.digest };
    layers.forEach((l, i) => {
      mLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
    });
    // Children before parents (all under one lease, so the order is for tidiness only).
    const blobs: PlannedImage['blobs'] = [
      ...layers.map((l, i) => blob(l, { 'containerd.io/uncompressed': diffIds[i]! })),
      blob(config, chain.length ? { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: chain[chain.length - 1]! } : {}),
      blob(manifestDesc, mLabels),
      ...(indexBlob ? [indexBlob] : []),
    ];
    out.push({ name, target: top, manifest: manifestDesc, config, layers, diffIds, blobs });
  }
  return out;
}

async function planDockerArchive(src: FileSource, snapshotter: string): Promise<PlannedImage[]> {
  const entries = JSON.parse((await src.read('manifest.json')).toString('utf8')) as {
    Config: string;
    RepoTags?: string[] | null;
    Layers: string[];
  }[];
  const out: PlannedImage[] = [];
  for (const e of entries) {
    const configBuf = await src.read(e.Config);
    const configJson = JSON.parse(configBuf.toString('utf8'));
    const config: Descriptor = {
      media_type: MEDIA_TYPES.dockerConfig,
      digest: sha256(configBuf),
      size: configBuf.length,
    };
    const diffIds: string[] = configJson.rootfs?.diff_ids ?? [];
    if (diffIds.length !== e.Layers.length)
      throw new Error(`${e.Config}: ${diffIds.length} diff_ids for ${e.Layers.length} layers`);
    const blobs: PlannedImage['blobs'] = [];
    const layers: Descriptor[] = [];
    for (const [i, layerPath] of e.Layers.entries()) {
      const p = src.resolve(layerPath);
      if (!p) throw new Error(`layer ${layerPath} missing from the archive`);
      let head: Buffer = Buffer.alloc(0);
      for await (const chunk of src.stream(p)) {
        head = chunk.subarray(0, 2);
        break;
      }
      const gzip = head[0] === 0x1f && head[1] === 0x8b;
      const digest = gzip ? await sha256Stream(src.stream(p)) : diffIds[i]!;
      const desc: Descriptor = {
        media_type: gzip ? MEDIA_TYPES.dockerLayerGzip : MEDIA_TYPES.dockerLayer,
        digest,
        size: src.size(p),
      };
      layers.push(desc);
      // An uncompressed layer's digest is its diffID; containerd verifies it at commit.
      blobs.push({ desc, labels: { 'containerd.io/uncompressed': diffIds[i]! }, data: () => src.stream(p) });
    }
    const chain = chainIds(diffIds);
    blobs.push({
      desc: config,
      labels: chain.length ? { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: chain[chain.length - 1]! } : {},
      data: () => configBuf,
    });
    const manifestJson = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerManifest,
      config: { mediaType: config.media_type, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: l.media_type, digest: l.digest, size: l.size })),
    };
    const manifestBuf = Buffer.from(JSON.stringify(manifestJson));
    const manifest: Descriptor = {
      media_type: MEDIA_TYPES.dockerManifest,
      digest: sha256(manifestBuf),
      size: manifestBuf.length,
    };
    const mLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': config.digest };
    layers.forEach((l, i) => {
      mLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
    });
    blobs.push({ desc: manifest, labels: mLabels, data: () => manifestBuf });
    const tags = e.RepoTags?.length ? e.RepoTags : [''];
    for (const tag of tags) {
      out.push({ name: tag, target: manifest, manifest, config, layers, diffIds, blobs });
    }
  }
  return out;
}

function fromJsonDescriptor(d: any): Descriptor & { platform?: Record<string, string> } {
  return {
    media_type: d.mediaType ?? d.media_type ?? '',
    digest: d.digest,
    size: Number(d.size),
    ...(d.annotations ? { annotations: d.annotations } : {}),
    ...(d.platform ? { platform: d.platform } : {}),
  };
}

function toContainerdDescriptor(d: any): Descriptor {
  const j = fromJsonDescriptor(d);
  return { media_type: j.media_type, digest: j.digest, size: j.size, annotations: j.annotations ?? {} };
}

/**
 * Unpack layers into the snapshotter (idempotent: layers whose chain ID exists are skipped).
 * `client` should carry a lease so new snapshots survive until the image's config references them.
 */
export async function unpackLayers(
  client: ContainerdClient,
  layers: Descriptor[],
  diffIds: string[],
  snapshotter = client.snapshotter,
): Promise<string> {
  const chain = chainIds(diffIds);
  let parent = '';
  for (const [i, layer] of layers.entries()) {
    const chainId = chain[i]!;
    if (await client.snapshots.stat(chainId, snapshotter)) {
      parent = chainId;
      continue;
    }
    const key = `extract-${randomUUID()} ${chainId}`;
    let mounts: Mount[];
    try {
      mounts = await client.snapshots.prepare(key, parent, { 'containerd.io/snapshot.ref': chainId }, snapshotter);
    } catch (err) {
      // The target exists (possibly shared from another namespace, or a concurrent unpack won).
      if (isAlreadyExists(err)) {
        parent = chainId;
        continue;
      }
      throw err;
    }
    try {
      const applied = await client.diff.apply({ ...layer, size: Number(layer.size) }, mounts);
      if (applied.digest !== diffIds[i]) {
        throw new Error(`layer ${layer.digest}: unpacked digest ${applied.digest} != diff_id ${diffIds[i]}`);
      }
      try {
        await client.snapshots.commit(chainId, key, {}, snapshotter);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        await client.snapshots.remove(key, snapshotter).catch(() => undefined);
      }
    } catch (err) {
      await client.snapshots.remove(key, snapshotter).catch(() => undefined);
      throw err;
    }
    parent = chainId;
  }
  return parent;
}

/** Everything the Engine needs to run an image: its config and the top chain ID. */
export interface ResolvedImage {
  name: string;
  target: Descriptor;
  manifest: Descriptor;
  config: Record<string, any>;
  diffIds: string[];
  chainId: string;
  layers: Descriptor[];
}

/**
 * Read an image's manifest (choosing the platform in an index) and config from the content store. With `cache`
 * (by target digest: content never changes under a digest), only the image record is read when the target was
 * resolved before.
 */
export async function resolveImage(
  client: ContainerdClient,
  name: string,
  platform: NonNullable<ImportOptions['platform']> = { os: 'linux', architecture: goArch() },
  cache?: Map<string, ResolvedImage>,
): Promise<ResolvedImage> {
  const image = await client.images.get(name);
  const key = `${image.target.digest} ${platform.os}/${platform.architecture}`;
  const hit = cache?.get(key);
  if (hit) return { ...hit, name: image.name, target: image.target };
  const resolved = await resolveTarget(client, image, platform);
  if (cache) {
    if (cache.size >= 64) cache.delete(cache.keys().next().value as string);
    cache.set(key, resolved);
  }
  return resolved;
}

async function resolveTarget(
  client: ContainerdClient,
  image: { name: string; target: Descriptor },
  platform: NonNullable<ImportOptions['platform']>,
): Promise<ResolvedImage> {
  const name = image.name;
  const readJson = async (digest: string) => JSON.parse((await client.content.read(digest)).toString('utf8'));
  let manifestDesc = image.target;
  if (isIndexType(manifestDesc.media_type)) {
    const idx = await readJson(manifestDesc.digest);
    let found: Descriptor | undefined;
    for (const m of (idx.manifests ?? []) as any[]) {
      const pl = m.platform;
      if (pl && (pl.os !== platform.os || pl.architecture !== platform.architecture)) continue;
      try {
        await client.content.info(m.digest);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      found = fromJsonDescriptor(m);
      break;
    }
    if (!found)
      throw new Error(`image ${name}: no ${platform.os}/${platform.architecture} manifest in the content store`);
    manifestDesc = found;
  }
  const manifest = await readJson(manifestDesc.digest);
  const configDesc = fromJsonDescriptor(manifest.config);
  const config = await readJson(configDesc.digest);
  const diffIds: string[] = config.rootfs?.diff_ids ?? [];
  const chain = chainIds(diffIds);
  return {
    name: image.name,
    target: image.target,
    manifest: manifestDesc,
    config,
    diffIds,
    chainId: chain[chain.length - 1] ?? '',
    layers: ((manifest.layers ?? []) as any[]).map(fromJsonDescriptor),
  };
}
