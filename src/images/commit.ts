/**
 * `commit`: a container's filesystem changes become a new image layer on top of its image.
 *
 * Sequence (all in one lease): a read-only view of the image's top snapshot (the container's parent) → containerd's
 * Diff service compares it with the container's active snapshot and writes the difference as a gzip layer into the
 * content store (labelled with its uncompressed digest) → a new config (the image's, plus the diff ID and a history
 * entry, plus the container's command/entrypoint/env/workdir when given) → a manifest of the same family (Docker or
 * OCI) → an image record. The caller pauses a running container around it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { type ContainerdClient, type Descriptor, isNotFound } from '../engine/containerd-client.js';
import { chainIds, MEDIA_TYPES, resolveImage } from '../engine/image-import.js';

export interface CommitOptions {
  /** Name of the new image in containerd. */
  name: string;
  /** Replace the image config's Cmd / Entrypoint / Env (merged by name) / WorkingDir. */
  config?: { cmd?: string[]; entrypoint?: string[]; env?: string[]; workdir?: string };
  author?: string;
  comment?: string;
  labels?: Record<string, string>;
}

export interface CommitResult {
  name: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
  diffId: string;
  diffIds: string[];
}

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Commits containerd container `containerId` (its snapshot) as image `opts.name`. */
export async function commitContainer(
  client: ContainerdClient,
  containerId: string,
  opts: CommitOptions,
): Promise<CommitResult> {
  const ctr = await client.containers.get(containerId);
  if (!ctr.image) throw new Error(`container ${containerId} has no image to commit on`);
  const snapshotter = ctr.snapshotter || client.snapshotter;
  const key = ctr.snapshot_key || containerId;
  const base = await resolveImage(client, ctr.image);
  const baseManifest = JSON.parse((await client.content.read(base.manifest.digest)).toString('utf8'));
  const docker = base.manifest.media_type === MEDIA_TYPES.dockerManifest;

  return client.withTemporaryLease(async (leased) => {
    const viewKey = `krater-commit-view-${randomUUID()}`;
    let lower: Awaited<ReturnType<typeof leased.snapshots.view>> = [];
    if (base.chainId) lower = await leased.snapshots.view(viewKey, base.chainId, {}, snapshotter);
    let diff: Descriptor;
    try {
      const upper = await leased.snapshots.mounts(key, snapshotter);
      diff = (
        await leased.unary<{ diff: Descriptor }>(
          'diff',
          'Diff',
          {
            left: lower,
            right: upper,
            media_type: MEDIA_TYPES.ociLayerGzip,
            ref: `krater-commit-${randomUUID()}`,
            labels: {},
          },
          { timeoutMs: 0 },
        )
      ).diff;
    } finally {
      if (base.chainId)
        await leased.snapshots
          .remove(viewKey, snapshotter)
          .catch((err) => (isNotFound(err) ? undefined : Promise.reject(err)));
    }
    const info = await leased.content.info(diff.digest);
    const diffId = info.labels['containerd.io/uncompressed'];
    if (!diffId) throw new Error(`the diff service did not label layer ${diff.digest} with its uncompressed digest`);
    const layer: Descriptor = {
      media_type: docker ? MEDIA_TYPES.dockerLayerGzip : MEDIA_TYPES.ociLayerGzip,
      digest: diff.digest,
      size: Number(diff.size),
    };

    const now = new Date().toISOString();
    const config = JSON.parse(JSON.stringify(base.config)) as Record<string, any>;
    config.created = now;
    if (opts.author) config.author = opts.author;
    config.rootfs = { type: 'layers', diff_ids: [...base.diffIds, diffId] };
    config.history = [
      ...(Array.isArray(config.history) ? config.history : []),
      { created: now, created_by: 'krater commit', ...(opts.comment ? { comment: opts.comment } : {}) },
    ];
    if (!config.config) config.config = {};
    const c = config.config as Record<string, any>;
    if (opts.config?.cmd) c.Cmd = opts.config.cmd;
    if (opts.config?.entrypoint) {
      c.Entrypoint = opts.config.entrypoint;
      if (!opts.config.cmd) c.Cmd = null;
    }
    if (opts.config?.workdir) c.WorkingDir = opts.config.workdir;
    if (opts.config?.env?.length) {
      const env = new Map<string, string>();
      for (const e of [...((c.Env as string[] | undefined) ?? []), ...opts.config.env]) env.set(e.split('=')[0]!, e);
      c.Env = [...env.values()];
    }
    const configBytes = Buffer.from(JSON.stringify(config));
    const configDesc: Descriptor = {
      media_type: docker ? MEDIA_TYPES.dockerConfig : MEDIA_TYPES.ociConfig,
      digest: sha256(configBytes),
      size: configBytes.length,
    };
    const diffIds = [...base.diffIds, diffId];
    const chain = chainIds(diffIds);
    await leased.content.write({
      ref: `krater-commit-${configDesc.digest}`,
      digest: configDesc.digest,
      size: configBytes.length,
      labels: { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: chain[chain.length - 1]! },
      data: configBytes,
    });
    const manifestJson = {
      schemaVersion: 2,
      mediaType: docker ? MEDIA_TYPES.dockerManifest : MEDIA_TYPES.ociManifest,
      config: { mediaType: configDesc.media_type, digest: configDesc.digest, size: configDesc.size },
      layers: [...(baseManifest.layers ?? []), { mediaType: layer.media_type, digest: layer.digest, size: layer.size }],
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifestJson));
    const manifestDesc: Descriptor = {
      media_type: manifestJson.mediaType,
      digest: sha256(manifestBytes),
      size: manifestBytes.length,
    };
    const mLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': configDesc.digest };
    manifestJson.layers.forEach((l: { digest: string }, i: number) => {
      mLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
    });
    await leased.content.write({
      ref: `krater-commit-${manifestDesc.digest}`,
      digest: manifestDesc.digest,
      size: manifestBytes.length,
      labels: mLabels,
      data: manifestBytes,
    });
    await leased.images.put({ name: opts.name, labels: opts.labels ?? {}, target: manifestDesc });
    return { name: opts.name, manifest: manifestDesc, config: configDesc, layer, diffId, diffIds };
  });
}
