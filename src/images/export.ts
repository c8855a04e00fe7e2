/**
 * Export images from containerd as a `docker save`-compatible archive (what `docker load`, `skopeo copy
 * docker-archive:…`, Zun's Glance driver and `importImageArchive` read): `manifest.json`, one `<config hex>.json`
 * per image and one uncompressed `<diff id hex>.tar` per layer. Compressed layers are decompressed into a temporary
 * file first (the tar header needs the size) and checked against their diff ID.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { ContainerdClient, Descriptor } from '../engine/containerd-client.js';
import { type ImportOptions, resolveImage } from '../engine/image-import.js';
import { familiarName } from './reference.js';
import { TAR_END, tarHeader, tarPadding } from './tar-writer.js';

export interface ExportOptions {
  /** Where compressed layers are decompressed temporarily (default the OS temp dir). */
  tmpDir?: string;
  platform?: ImportOptions['platform'];
  /** Tags to record per image (default: the image's own name, Docker's short form). */
  repoTags?: Record<string, string[]>;
}

const hex = (digest: string) => digest.replace(/^sha256:/, '');

function isUncompressed(mediaType: string): boolean {
  return /\.tar$|rootfs\.diff\.tar$/.test(mediaType) || mediaType === '';
}

interface LayerFile {
  name: string;
  size: number;
  open: () => AsyncIterable<Buffer>;
}

/** Decompress a gzip layer to a file, verifying its diff ID. */
async function decompressLayer(
  client: ContainerdClient,
  layer: Descriptor,
  diffId: string,
  dir: string,
): Promise<LayerFile> {
  if (/zstd/.test(layer.media_type)) throw new Error(`layer ${layer.digest}: zstd layers cannot be exported yet`);
  const path = join(dir, `${hex(diffId)}.tar`);
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(
    Readable.from(client.content.readStream(layer.digest)),
    createGunzip(),
    tap,
    createWriteStream(path, { mode: 0o600 }),
  );
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== diffId)
    throw new Error(`layer ${layer.digest} decompresses to ${actual}, but the image config says ${diffId}`);
  const size = (await stat(path)).size;
  return { name: `${hex(diffId)}.tar`, size, open: () => createReadStream(path, { highWaterMark: 1024 * 1024 }) };
}

/**
 * A `docker save` archive of `names` (images in the client's namespace) as a stream. Errors (a missing image, a
 * corrupt layer) surface as stream errors; temporary files are removed when the stream ends or is destroyed.
 */
export function exportDockerArchive(client: ContainerdClient, names: string[], opts: ExportOptions = {}): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    const dir = await mkdtemp(join(opts.tmpDir ?? tmpdir(), `krater-save-${randomBytes(3).toString('hex')}-`));
    try {
      const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
      const configs = new Map<string, Buffer>();
      const layers = new Map<string, LayerFile>();
      for (const name of names) {
        const img = await resolveImage(client, name, opts.platform);
        const configDigest = (
          JSON.parse((await client.content.read(img.manifest.digest)).toString('utf8')) as {
            config: { digest: string };
          }
        ).config.digest;
        if (!configs.has(configDigest)) configs.set(configDigest, await client.content.read(configDigest));
        const layerNames: string[] = [];
        for (const [i, layer] of img.layers.entries()) {
          const diffId = img.diffIds[i]!;
          let file = layers.get(diffId);
          if (!file) {
            if (isUncompressed(layer.media_type)) {
              file = {
                name: `${hex(diffId)}.tar`,
                size: Number(layer.size),
                open: () => client.content.readStream(layer.digest),
              };
            } else {
              file = await decompressLayer(client, layer, diffId, dir);
            }
            layers.set(diffId, file);
          }
          layerNames.push(file.name);
        }
        manifest.push({
          Config: `${hex(configDigest)}.json`,
          RepoTags: opts.repoTags?.[name] ?? [familiarName(name)],
          Layers: layerNames,
        });
      }
      for (const [digest, bytes] of configs) {
        yield tarHeader({ name: `${hex(digest)}.json`, size: bytes.length });
        yield bytes;
        yield tarPadding(bytes.length);
      }
      for (const file of layers.values()) {
        yield tarHeader({ name: file.name, size: file.size });
        let written = 0;
        for await (const chunk of file.open()) {
          written += chunk.length;
          yield chunk;
        }
        if (written !== file.size) throw new Error(`layer ${file.name}: read ${written} bytes, expected ${file.size}`);
        yield tarPadding(file.size);
      }
      const m = Buffer.from(JSON.stringify(manifest));
      yield tarHeader({ name: 'manifest.json', size: m.length });
      yield m;
      yield tarPadding(m.length);
      yield TAR_END;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return Readable.from(generate(), { objectMode: false });
}
