/**
 * Pulling an image from a registry straight into containerd's content store, then naming and unpacking it.
 *
 * Sequence: resolve the reference to a manifest (choosing the platform in an index) → fetch and verify the config →
 * inside one lease, write every layer not already present (concurrently, each streamed from the registry into
 * `Content.Write`, resumed with Range requests when a connection drops, its digest verified before commit) → write
 * config, manifest and index with the labels that keep them alive → create (or re-point) the image record → unpack
 * the layers into the snapshotter → drop the lease. A failure aborts the ingests it started and drops the lease, so
 * nothing half-written stays behind (blobs committed by a failed pull are unreferenced and collected).
 *
 * Concurrent pulls of the same image (and concurrent downloads of the same blob) share one download.
 */
import { createHash } from 'node:crypto';
import { arch } from 'node:process';
import { type ContainerdClient, type Descriptor, isNotFound } from '../engine/containerd-client.js';
import { chainIds, MEDIA_TYPES, unpackLayers } from '../engine/image-import.js';
import { parseReference } from './reference.js';
import { RegistryClient, type RegistryClientOptions, type RegistryCredentials, RegistryError } from './registry.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export type PullStatus =
  | 'resolving'
  | 'resolved'
  | 'waiting'
  | 'exists'
  | 'downloading'
  | 'retrying'
  | 'downloaded'
  | 'extracting'
  | 'done'
  | 'error';

/** A progress event: per layer (`id` = first 12 hex digits of its digest) or for the whole image (`id` = name). */
export interface PullProgress {
  id: string;
  status: PullStatus;
  digest?: string;
  /** Bytes received so far / expected (layers). */
  current?: number;
  total?: number;
  message?: string;
}

export interface PullOptions {
  platform?: Platform;
  /** Credentials for the image's registry (e.g. a Zun registry record). */
  credentials?: RegistryCredentials;
  onProgress?: (e: PullProgress) => void;
  /** Layers downloaded at once (default 3). */
  concurrency?: number;
  /** Unpack into the snapshotter (default true). */
  unpack?: boolean;
  snapshotter?: string;
  /** Labels for the image record. */
  labels?: Record<string, string>;
  /** Options for the registry client (insecure hosts, retries). */
  registry?: RegistryClientOptions;
}

export interface PullResult {
  /** The normalised name the image is recorded under. */
  name: string;
  /** What the image record points at (index or manifest). */
  target: Descriptor;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
  chainId: string;
  /** Bytes of config and layers as stored (compressed). */
  size: number;
  /** Layers that had to be downloaded (others were in the content store already). */
  downloaded: number;
}

export class PullError extends Error {
  constructor(
    message: string,
    readonly code: RegistryError['code'] | 'invalid_reference' | 'failed',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PullError';
  }
}

export function defaultPlatform(): Platform {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return { os: 'linux', architecture: map[arch] ?? arch };
}

const LAYER_TYPES = new Set<string>([
  MEDIA_TYPES.ociLayer,
  MEDIA_TYPES.ociLayerGzip,
  MEDIA_TYPES.dockerLayer,
  MEDIA_TYPES.dockerLayerGzip,
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

function descriptorOf(d: any, what: string): Descriptor {
  if (!d || typeof d.digest !== 'string' || !/^[a-z0-9]+:[a-f0-9]{32,}$/.test(d.digest))
    throw new PullError(`${what}: invalid descriptor`, 'invalid');
  const size = Number(d.size);
  if (!Number.isSafeInteger(size) || size < 0) throw new PullError(`${what}: invalid size ${d.size}`, 'invalid');
  return { media_type: String(d.mediaType ?? ''), digest: d.digest, size, annotations: d.annotations ?? {} };
}

function matchesPlatform(p: any, want: Platform): boolean {
  if (!p) return false;
  if (p.os !== want.os || p.architecture !== want.architecture) return false;
  if (want.variant && p.variant && p.variant !== want.variant) return false;
  return true;
}

/** Pulls images into one containerd namespace. Keep one per client: it is what lets concurrent pulls share work. */
export class ImagePuller {
  private readonly inflight = new Map<
    string,
    { promise: Promise<PullResult>; listeners: Set<(e: PullProgress) => void> }
  >();
  private readonly blobs = new Map<string, Promise<boolean>>();

  constructor(
    private readonly client: ContainerdClient,
    private readonly defaults: { registry?: RegistryClientOptions } = {},
  ) {}

  /** Pull `ref` (Docker-style name). A pull of the same name and platform already running is joined. */
  pull(ref: string, opts: PullOptions = {}): Promise<PullResult> {
    let parsed: ReturnType<typeof parseReference>;
    try {
      parsed = parseReference(ref);
    } catch (err) {
      return Promise.reject(new PullError((err as Error).message, 'invalid_reference'));
    }
    const platform = opts.platform ?? defaultPlatform();
    const key = `${parsed.name}|${platform.os}/${platform.architecture}/${platform.variant ?? ''}|${opts.snapshotter ?? ''}`;
    const existing = this.inflight.get(key);
    if (existing) {
      if (opts.onProgress) existing.listeners.add(opts.onProgress);
      return existing.promise.finally(() => {
        if (opts.onProgress) existing.listeners.delete(opts.onProgress);
      });
    }
    const listeners = new Set<(e: PullProgress) => void>();
    if (opts.onProgress) listeners.add(opts.onProgress);
    const emit = (e: PullProgress) => {
      for (const l of listeners) {
        try {
          l(e);
        } catch {
          // a listener's failure is not the pull's
        }
      }
    };
    const promise = this.doPull(parsed, platform, opts, emit).then(
      (r) => {
        emit({
          id: parsed.name,
          status: 'done',
          digest: r.target.digest,
          message: `Downloaded ${r.downloaded} of ${r.layers.length} layers`,
        });
        return r;
      },
      (err) => {
        const e =
          err instanceof PullError
            ? err
            : err instanceof RegistryError
              ? new PullError(err.message, err.code, { cause: err })
              : new PullError(`pull of ${parsed.name} failed: ${(err as Error).message}`, 'failed', { cause: err });
        emit({ id: parsed.name, status: 'error', message: e.message });
        throw e;
      },
    );
    const entry = { promise, listeners };
    this.inflight.set(key, entry);
    void promise.then(
      () => this.inflight.delete(key),
      () => this.inflight.delete(key),
    );
    return promise;
  }

  private async doPull(
    ref: ReturnType<typeof parseReference>,
    platform: Platform,
    opts: PullOptions,
    emit: (e: PullProgress) => void,
  ): Promise<PullResult> {
    const registry = new RegistryClient({
      ...this.defaults.registry,
      ...opts.registry,
      credentials: (domain) =>
        (domain === ref.domain ? opts.credentials : undefined) ?? this.defaults.registry?.credentials?.(domain),
    });
    const snapshotter = opts.snapshotter ?? this.client.snapshotter;
    const reference = ref.digest ?? ref.tag ?? 'latest';
    emit({ id: ref.name, status: 'resolving' });
    const top = await registry.manifest(ref.domain, ref.path, reference, ref.name);
    const target: Descriptor = {
      media_type: top.mediaType,
      digest: top.digest,
      size: top.bytes.length,
      annotations: {},
    };
    let manifestFetched = top;
    let indexBlob: { desc: Descriptor; bytes: Buffer; labels: Record<string, string> } | undefined;
    if (INDEX_TYPES.has(top.mediaType) || Array.isArray(top.json?.manifests)) {
      const entries = (top.json.manifests ?? []) as any[];
      const match = entries.find((m) => matchesPlatform(m.platform, platform)) ?? entries.find((m) => !m.platform);
      if (!match) {
        const available = entries
          .map((m) =>
            m.platform
              ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}`
              : '?',
          )
          .join(', ');
        throw new PullError(
          `image ${ref.name} has no manifest for ${platform.os}/${platform.architecture} (available: ${available || 'none'})`,
          'not_found',
        );
      }
      const child = descriptorOf(match, `index ${top.digest}`);
      manifestFetched = await registry.manifest(
        ref.domain,
        ref.path,
        child.digest,
        `${ref.name} (${platform.os}/${platform.architecture})`,
      );
      // Only the chosen child is in the content store; the index references just that one.
      const idx = entries.indexOf(match);
      indexBlob = {
        desc: target,
        bytes: top.bytes,
        labels: { [`containerd.io/gc.ref.content.m.${idx}`]: child.digest },
      };
    }
    const mt = manifestFetched.mediaType;
    if (!MANIFEST_TYPES.has(mt))
      throw new PullError(`image ${ref.name}: unsupported manifest media type ${mt}`, 'unsupported');
    const manifestDesc: Descriptor = {
      media_type: mt,
      digest: manifestFetched.digest,
      size: manifestFetched.bytes.length,
      annotations: {},
    };
    const m = manifestFetched.json;
    const config = descriptorOf(m.config, `manifest ${manifestDesc.digest} config`);
    const layers = ((m.layers ?? []) as any[]).map((l, i) =>
      descriptorOf(l, `manifest ${manifestDesc.digest} layer ${i}`),
    );
    for (const l of layers) {
      if (!LAYER_TYPES.has(l.media_type))
        throw new PullError(`image ${ref.name}: unsupported layer media type ${l.media_type}`, 'unsupported');
    }
    const configBytes =
      (await this.client.content.read(config.digest).catch(() => undefined)) ??
      (await registry.smallBlob(
        ref.domain,
        ref.path,
        config.digest,
        MAX_CONFIG_BYTES,
        `config ${config.digest} of ${ref.name}`,
      ));
    let configJson: any;
    try {
      configJson = JSON.parse(configBytes.toString('utf8'));
    } catch {
      throw new PullError(`image ${ref.name}: config ${config.digest} is not valid JSON`, 'invalid');
    }
    const diffIds: string[] = configJson?.rootfs?.diff_ids ?? [];
    if (!Array.isArray(diffIds) || diffIds.length !== layers.length) {
      throw new PullError(
        `image ${ref.name}: config lists ${diffIds.length} diff_ids for ${layers.length} layers`,
        'invalid',
      );
    }
    const chain = chainIds(diffIds);
    emit({ id: ref.name, status: 'resolved', digest: target.digest, message: `${layers.length} layers` });
    for (const l of layers)
      emit({ id: short(l.digest), digest: l.digest, status: 'waiting', current: 0, total: Number(l.size) });

    const started = new Set<string>();
    try {
      return await this.client.withTemporaryLease(async (leased) => {
        // Layers, a few at a time.
        let downloaded = 0;
        const queue = layers.map((l, i) => ({ l, diffId: diffIds[i]! }));
        const workers = Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 3, queue.length)) }, async () => {
          for (let job = queue.shift(); job; job = queue.shift()) {
            const fetched = await this.fetchBlob(
              leased,
              registry,
              ref,
              job.l,
              { 'containerd.io/uncompressed': job.diffId },
              emit,
              started,
            );
            if (fetched) downloaded++;
          }
        });
        await Promise.all(workers);
        // Config, manifest, index: children before parents.
        const top = chain[chain.length - 1];
        await this.writeSmall(
          leased,
          config,
          configBytes,
          top ? { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top } : {},
        );
        const mLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': config.digest };
        layers.forEach((l, i) => {
          mLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
        });
        await this.writeSmall(leased, manifestDesc, manifestFetched.bytes, mLabels);
        if (indexBlob) await this.writeSmall(leased, indexBlob.desc, indexBlob.bytes, indexBlob.labels);
        await leased.images.put({ name: ref.name, labels: opts.labels ?? {}, target });
        if (opts.unpack !== false && layers.length) {
          emit({ id: ref.name, status: 'extracting' });
          await unpackLayers(leased, layers, diffIds, snapshotter);
        }
        return {
          name: ref.name,
          target,
          manifest: manifestDesc,
          config,
          layers,
          diffIds,
          chainId: top ?? '',
          size: Number(config.size) + layers.reduce((s, l) => s + Number(l.size), 0),
          downloaded,
        };
      });
    } catch (err) {
      // Ingests this pull started and did not finish: nothing half-written stays.
      for (const digest of started) await this.client.content.abort(ingestRef(digest)).catch(() => undefined);
      throw err;
    }
  }

  private async writeSmall(
    client: ContainerdClient,
    desc: Descriptor,
    bytes: Buffer,
    labels: Record<string, string>,
  ): Promise<void> {
    await client.content.write({
      ref: ingestRef(desc.digest),
      digest: desc.digest,
      size: bytes.length,
      labels,
      data: bytes,
      lockedRetryMs: 600_000,
    });
  }

  /** Downloads a layer into the content store unless it is there; returns whether bytes were downloaded. */
  private async fetchBlob(
    client: ContainerdClient,
    registry: RegistryClient,
    ref: ReturnType<typeof parseReference>,
    desc: Descriptor,
    labels: Record<string, string>,
    emit: (e: PullProgress) => void,
    started: Set<string>,
  ): Promise<boolean> {
    const id = short(desc.digest);
    const total = Number(desc.size);
    // Another pull in this process is fetching the same blob: wait for it, then label it for our use.
    const running = this.blobs.get(desc.digest);
    if (running) {
      emit({
        id,
        digest: desc.digest,
        status: 'waiting',
        current: 0,
        total,
        message: 'another pull is downloading this layer',
      });
      await running.catch(() => undefined);
    }
    try {
      await client.content.info(desc.digest);
      // Hold it in this pull's lease: the image that brought it may be deleted meanwhile.
      if (client.lease)
        await client.unary('leases', 'AddResource', {
          id: client.lease,
          resource: { id: desc.digest, type: 'content' },
        });
      await client.content.updateLabels(desc.digest, labels);
      emit({ id, digest: desc.digest, status: 'exists', current: total, total });
      return false;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const work = this.download(client, registry, ref, desc, labels, emit, started);
    this.blobs.set(desc.digest, work);
    try {
      return await work;
    } finally {
      if (this.blobs.get(desc.digest) === work) this.blobs.delete(desc.digest);
    }
  }

  private async download(
    client: ContainerdClient,
    registry: RegistryClient,
    ref: ReturnType<typeof parseReference>,
    desc: Descriptor,
    labels: Record<string, string>,
    emit: (e: PullProgress) => void,
    started: Set<string>,
  ): Promise<boolean> {
    const id = short(desc.digest);
    const total = Number(desc.size);
    let current = 0;
    let lastEmit = 0;
    started.add(desc.digest);
    const source = async function* (offset: number): AsyncGenerator<Buffer> {
      current = offset;
      // Our own check when we see every byte; containerd checks again at commit (also after a resume).
      const hash = offset === 0 ? createHash('sha256') : undefined;
      const stream = registry.blob(ref.domain, ref.path, desc.digest, total, offset, (at, attempt, err) => {
        emit({
          id,
          digest: desc.digest,
          status: 'retrying',
          current: at,
          total,
          message: `connection lost (${(err as Error).message}); resuming at byte ${at}, attempt ${attempt}`,
        });
      });
      for await (const chunk of stream) {
        hash?.update(chunk);
        current += chunk.length;
        const now = Date.now();
        if (now - lastEmit >= 100) {
          lastEmit = now;
          emit({ id, digest: desc.digest, status: 'downloading', current, total });
        }
        yield chunk;
      }
      if (hash && desc.digest.startsWith('sha256:')) {
        const actual = `sha256:${hash.digest('hex')}`;
        if (actual !== desc.digest) {
          throw new PullError(
            `layer ${desc.digest} of ${ref.name} failed verification: the registry sent ${current} bytes with digest ${actual}`,
            'digest_mismatch',
          );
        }
      }
    };
    try {
      await client.content.write({
        ref: ingestRef(desc.digest),
        digest: desc.digest,
        size: total,
        labels,
        dataFrom: source,
        lockedRetryMs: 600_000,
      });
    } catch (err) {
      if (err instanceof PullError || err instanceof RegistryError) throw err;
      const msg = (err as Error).message;
      // containerd's own verification at commit (e.g. after a resumed ingest).
      if (/unexpected commit digest|unexpected commit size|digest mismatch/i.test(msg)) {
        throw new PullError(`layer ${desc.digest} of ${ref.name} failed verification: ${msg}`, 'digest_mismatch', {
          cause: err,
        });
      }
      throw err;
    }
    started.delete(desc.digest);
    emit({ id, digest: desc.digest, status: 'downloaded', current: total, total });
    return true;
  }
}

/** Ingest reference of a blob: the same for every writer, so containerd serialises concurrent ones. */
export const ingestRef = (digest: string) => `krater-pull-${digest}`;
