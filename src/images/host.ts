/**
 * The image side of a host's agent: makes sure a container's image is in containerd before it is created
 * (`image_driver` docker → registry pull with the container's registry credentials; glance → the `docker save`
 * archive stored in the Glance facade, imported), honours `image_pull_policy`, commits containers into Glance
 * images, and serves the image calls of the API (`/v1/images` pulls and deletes, Krater's pull/list/rmi/load/save).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyBaseLogger } from 'fastify';
import type { Store } from '../core/store/db.js';
import type { ContainerRow } from '../core/store/schema.js';
import { type ContainerdClient, isNotFound, toDate } from '../engine/containerd-client.js';
import { type Engine, EngineError } from '../engine/engine.js';
import { importImageArchive, resolveImage } from '../engine/image-import.js';
import { commitContainer } from './commit.js';
import { SecretBox } from './credentials.js';
import { exportDockerArchive } from './export.js';
import type { GlanceImage, GlancePort } from './glance-port.js';
import { ImagePuller, PullError, type PullProgress, type PullResult } from './pull.js';
import { hasExplicitDomain, parseReference } from './reference.js';
import type { RegistryCredentials } from './registry.js';

/** Where images imported from Glance live in containerd: `krater.glance/<glance image id>:latest`. */
export const glanceImageName = (id: string) => `krater.glance/${id}:latest`;
const LABEL_GLANCE_ID = 'krater.io/glance-id';
const LABEL_GLANCE_CHECKSUM = 'krater.io/glance-checksum';

export interface LocalImage {
  name: string;
  /** What the image record points at (manifest or index). */
  digest: string;
  /** The config digest (Docker's image id). */
  id: string;
  /** Compressed size of config and layers. */
  size: number;
  created_at: string | null;
  /** Engine containers created from it. */
  containers: string[];
}

/** The image calls an agent answers for the API (in-process in `krater up`, over RPC from `krater agent`). */
export interface HostImages {
  pull(
    ref: string,
    opts?: { credentials?: RegistryCredentials; onProgress?: (e: PullProgress) => void },
  ): Promise<PullResult>;
  list(): Promise<LocalImage[]>;
  /** Refuses (EngineError conflict) while a container uses it; not_found when absent. */
  remove(ref: string): Promise<string>;
  /** Imports a `docker save` / OCI archive streamed in; returns the image names. */
  load(archive: Readable): Promise<string[]>;
  save(refs: string[]): Promise<Readable>;
}

export interface HostImagesOptions {
  client: ContainerdClient;
  engine: Engine;
  store: Store;
  dataDir: string;
  log: FastifyBaseLogger;
  /** The image service: images of `image_driver` glance, and where commits go. */
  glance: GlancePort;
  /** Registries pulled from over plain HTTP besides loopback. */
  insecureRegistries?: string[];
}

/** A message for a container's status_reason from a failed pull. */
function pullFailure(image: string, err: unknown): Error {
  if (err instanceof PullError && err.code === 'not_found')
    return new Error(`Image ${image} could not be found: ${err.message}`);
  if (err instanceof PullError && err.code === 'invalid_reference')
    return new Error(`Image ${image} could not be found: ${err.message}`);
  return new Error(`Failed to pull image ${image}: ${(err as Error).message}`);
}

export class AgentImages implements HostImages {
  readonly puller: ImagePuller;
  private readonly secrets: SecretBox;
  private readonly glance: GlancePort;
  private readonly tmpDir: string;

  constructor(private readonly opts: HostImagesOptions) {
    this.puller = new ImagePuller(opts.client, { registry: { insecure: opts.insecureRegistries } });
    this.secrets = SecretBox.forDataDir(opts.dataDir);
    this.glance = opts.glance;
    this.tmpDir = join(opts.dataDir, 'agent', 'tmp');
  }

  private get client(): ContainerdClient {
    return this.opts.client;
  }

  private async exists(name: string): Promise<boolean> {
    try {
      await this.client.images.get(name);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** A temporary file in the agent's directory (removed by the caller). */
  private async tmpFile(prefix: string): Promise<string> {
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    return join(this.tmpDir, `${prefix}-${randomBytes(6).toString('hex')}.tar`);
  }

  // ---------------------------------------------------------------- containers

  /**
   * The containerd image name to create container `c` from, pulled or imported first when its pull policy says so.
   * While it downloads, the container's `task_state` is `image_pulling` (then back to what it was). Errors carry
   * the container's status_reason.
   */
  async ensureForContainer(c: ContainerRow): Promise<string> {
    const db = this.opts.store.db;
    let before: string | null | undefined;
    try {
      return await this.ensureImage(c, async () => {
        before =
          (await db.selectFrom('containers').select('task_state').where('uuid', '=', c.uuid).executeTakeFirst())
            ?.task_state ?? null;
        await db
          .updateTable('containers')
          .set({ task_state: 'image_pulling', updated_at: new Date().toISOString() })
          .where('uuid', '=', c.uuid)
          .execute();
      });
    } finally {
      if (before !== undefined)
        await db
          .updateTable('containers')
          .set({ task_state: before })
          .where('uuid', '=', c.uuid)
          .where('task_state', '=', 'image_pulling')
          .execute();
    }
  }

  private async ensureImage(c: ContainerRow, onPull: () => Promise<void>): Promise<string> {
    const policy = (c.image_pull_policy ?? 'ifnotpresent').toLowerCase();
    if (c.image_driver === 'glance') return this.ensureGlance(c, policy, onPull);
    let ref = c.image;
    let credentials: RegistryCredentials | undefined;
    if (c.registry_id) {
      const reg = await this.opts.store.db
        .selectFrom('registries')
        .selectAll()
        .where('uuid', '=', c.registry_id)
        .executeTakeFirst();
      if (!reg) throw new Error(`Registry ${c.registry_id} could not be found.`);
      // Zun's rule: a name without a registry is looked up in the container's registry.
      if (!hasExplicitDomain(ref)) ref = `${reg.domain}/${ref}`;
      if (ref.startsWith(`${reg.domain}/`) && reg.username) {
        credentials = { username: reg.username, password: reg.password ? this.secrets.decrypt(reg.password) : '' };
      }
    }
    let name: string;
    try {
      name = parseReference(ref).name;
    } catch (err) {
      throw pullFailure(c.image, new PullError((err as Error).message, 'invalid_reference'));
    }
    const present = await this.exists(name);
    if (policy === 'never') {
      if (!present) throw new Error(`Image ${c.image} not present with pull policy of Never`);
      return name;
    }
    if (present && policy === 'ifnotpresent') return name;
    await onPull();
    try {
      await this.puller.pull(ref, { credentials });
    } catch (err) {
      throw pullFailure(c.image, err);
    }
    return name;
  }

  /** Zun's `find_image`: the Glance image a container of `projectId` names (errors are its status_reason). */
  async findGlanceImage(ident: string, projectId: string): Promise<GlanceImage> {
    const r = await this.glance.visibleTo(projectId, ident);
    if (!r.found) throw new Error(r.message);
    return r.image;
  }

  private async ensureGlance(c: ContainerRow, policy: string, onPull?: () => Promise<void>): Promise<string> {
    const img = await this.findGlanceImage(c.image, c.project_id);
    const name = glanceImageName(img.id);
    let present = false;
    try {
      const rec = await this.client.images.get(name);
      present = rec.labels?.[LABEL_GLANCE_CHECKSUM] === (img.checksum ?? '');
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (policy === 'never') {
      if (!present) throw new Error(`Image ${c.image} not present with pull policy of Never`);
      return name;
    }
    if (present && policy !== 'always') return name;
    if (!img.hasData) throw new Error(`Image ${c.image} (${img.id}) has no data to run: its status is ${img.status}.`);
    await onPull?.();
    await this.importGlance(img, name);
    return name;
  }

  /** Downloads a Glance image's archive (verifying its MD5 checksum) and imports it as `name`. */
  private async importGlance(img: GlanceImage, name: string): Promise<void> {
    const opened = await this.glance.open(img.id);
    if (!opened) throw new Error(`Image ${img.name ?? img.id} (${img.id}): its data is missing from the image store.`);
    const file = await this.tmpFile(`glance-${img.id}`);
    try {
      const md5 = createHash('md5');
      await pipeline(
        opened.data,
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            md5.update(chunk);
            cb(null, chunk);
          },
        }),
        createWriteStream(file, { mode: 0o600 }),
      );
      const sum = md5.digest('hex');
      if (opened.checksum && sum !== opened.checksum)
        throw new Error(`Image ${img.id}: downloaded data has MD5 ${sum}, Glance says ${opened.checksum}`);
      const labels = { [LABEL_GLANCE_ID]: img.id, [LABEL_GLANCE_CHECKSUM]: opened.checksum ?? '' };
      try {
        await importImageArchive(this.client, file, { name, normalize: false, labels });
      } catch (err) {
        // An archive with several tags: import them all, then name the first one ours.
        if (!/holds \d+ images/.test((err as Error).message))
          throw new Error(
            `Image ${img.name ?? img.id} (${img.id}) is not a loadable image archive: ${(err as Error).message}`,
          );
        const all = await importImageArchive(this.client, file, { labels });
        await this.client.images.put({ name, labels, target: all[0]!.target });
      }
    } finally {
      await rm(file, { force: true });
    }
  }

  /**
   * `commit`: pause if running → snapshot diff as a new layer → `docker save` archive uploaded into Glance image
   * `params.imageId` (queued → saving → active) → unpause. On failure the Glance image is deleted (as Zun does).
   */
  async commit(
    c: ContainerRow,
    engineId: string,
    params: { imageId: string; repository: string; tag: string },
  ): Promise<void> {
    const st = await this.opts.engine.status(engineId);
    const pause = st.state === 'running';
    const tmpName = `krater.commit/${params.imageId}:latest`;
    const json = (s: string | null) => (s ? JSON.parse(s) : undefined);
    try {
      if (pause) await this.opts.engine.pause(engineId);
      try {
        const env = Object.entries((json(c.environment) as Record<string, string> | undefined) ?? {}).map(
          ([k, v]) => `${k}=${v}`,
        );
        await commitContainer(this.client, engineId, {
          name: tmpName,
          config: { cmd: json(c.command), entrypoint: json(c.entrypoint), env, workdir: c.workdir ?? undefined },
          comment: `committed from container ${c.uuid}`,
        });
      } finally {
        if (pause)
          await this.opts.engine
            .unpause(engineId)
            .catch((err) => this.opts.log.warn({ err, container: c.uuid }, 'unpause after commit failed'));
      }
      await this.uploadToGlance(params.imageId, tmpName, `${params.repository}:${params.tag}`);
    } catch (err) {
      await this.glance
        .failCommit(params.imageId)
        .catch((e) =>
          this.opts.log.warn({ err: e, image: params.imageId }, 'could not delete the failed commit image'),
        );
      throw err;
    } finally {
      await this.client.images.delete(tmpName).catch(() => undefined);
    }
  }

  /** Streams the archive of containerd image `name` into Glance image `imageId`, as an upload would. */
  private async uploadToGlance(imageId: string, name: string, repoTag: string): Promise<void> {
    const archive = exportDockerArchive(this.client, [name], {
      tmpDir: await this.ensureTmpDir(),
      repoTags: { [name]: [repoTag] },
    });
    await this.glance.finishCommit(imageId, archive);
  }

  private async ensureTmpDir(): Promise<string> {
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    return this.tmpDir;
  }

  // ---------------------------------------------------------------- Zun's /v1/images tasks

  /** `image_pull` / `image_delete` tasks queued by the API for a `zun_images` row. */
  async runTask(action: string, uuid: string): Promise<void> {
    const db = this.opts.store.db;
    const row = await db.selectFrom('zun_images').selectAll().where('uuid', '=', uuid).executeTakeFirst();
    if (!row) return;
    const ref = row.tag.includes(':') ? `${row.repo}@${row.tag}` : `${row.repo}:${row.tag}`;
    const now = () => new Date().toISOString();
    if (action === 'image_pull') {
      try {
        const name = parseReference(ref).name;
        const policy = (row.image_pull_policy ?? 'always').toLowerCase();
        const present = await this.exists(name);
        if (policy === 'never' && !present) throw new Error(`Image ${ref} not present with pull policy of Never`);
        if (!(present && policy !== 'always')) await this.puller.pull(ref);
        const img = await resolveImage(this.client, name);
        const size = Number(img.manifest.size) + img.layers.reduce((s, l) => s + Number(l.size), 0);
        const configDigest = JSON.parse((await this.client.content.read(img.manifest.digest)).toString('utf8')).config
          .digest as string;
        await db
          .updateTable('zun_images')
          .set({ status: 'ready', status_reason: null, image_id: configDigest, size, updated_at: now() })
          .where('uuid', '=', uuid)
          .execute();
      } catch (err) {
        const msg = pullFailure(ref, err).message;
        await db
          .updateTable('zun_images')
          .set({ status: 'error', status_reason: msg, updated_at: now() })
          .where('uuid', '=', uuid)
          .execute();
        throw new Error(msg);
      }
      return;
    }
    if (action === 'image_delete') {
      try {
        await this.remove(ref);
      } catch (err) {
        if (!(err instanceof EngineError && err.code === 'not_found')) {
          await db
            .updateTable('zun_images')
            .set({ status: 'ready', status_reason: (err as Error).message, updated_at: now() })
            .where('uuid', '=', uuid)
            .execute();
          throw err;
        }
      }
      await db.deleteFrom('zun_images').where('uuid', '=', uuid).execute();
      return;
    }
    throw new Error(`unknown image task ${action}`);
  }

  // ---------------------------------------------------------------- HostImages (Krater's image calls)

  pull(
    ref: string,
    opts: { credentials?: RegistryCredentials; onProgress?: (e: PullProgress) => void } = {},
  ): Promise<PullResult> {
    return this.puller.pull(ref, opts);
  }

  async list(): Promise<LocalImage[]> {
    const [images, containers] = await Promise.all([this.client.images.list(), this.client.containers.list()]);
    const out: LocalImage[] = [];
    for (const img of images) {
      let id = '';
      let size = 0;
      try {
        const r = await resolveImage(this.client, img.name);
        id = JSON.parse((await this.client.content.read(r.manifest.digest)).toString('utf8')).config.digest;
        size = r.layers.reduce((s, l) => s + Number(l.size), 0);
      } catch {
        // content missing for this platform: still listed
      }
      out.push({
        name: img.name,
        digest: img.target.digest,
        id,
        size,
        created_at: toDate(img.created_at)?.toISOString() ?? null,
        containers: containers.filter((c) => c.image === img.name).map((c) => c.id),
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Resolves what the user typed to an image name in containerd (as given, normalised, or a Glance image). */
  private async lookup(ref: string): Promise<string> {
    if (await this.exists(ref)) return ref;
    try {
      const name = parseReference(ref).name;
      if (await this.exists(name)) return name;
    } catch {
      // not a reference: maybe an image id below
    }
    const hex = ref.replace(/^sha256:/, '');
    if (/^[0-9a-f]{6,64}$/.test(hex)) {
      const match = (await this.list()).filter(
        (i) => i.id.replace(/^sha256:/, '').startsWith(hex) || i.digest.replace(/^sha256:/, '').startsWith(hex),
      );
      if (match.length === 1) return match[0]!.name;
      if (match.length > 1)
        throw new EngineError('conflict', `${ref} matches several images: ${match.map((m) => m.name).join(', ')}`);
    }
    throw new EngineError('not_found', `No such image: ${ref}`);
  }

  async remove(ref: string): Promise<string> {
    const name = await this.lookup(ref);
    const users = await this.client.containers.list([`image==${JSON.stringify(name)}`]);
    if (users.length) {
      const ids = users.map((u) => u.id.replace(/^zun-/, ''));
      throw new EngineError(
        'conflict',
        `Image ${name} is in use by container${ids.length > 1 ? 's' : ''} ${ids.join(', ')}`,
      );
    }
    await this.client.images.delete(name);
    return name;
  }

  async load(archive: Readable): Promise<string[]> {
    const file = await this.tmpFile('load');
    try {
      await pipeline(archive, createWriteStream(file, { mode: 0o600 }));
      try {
        return (await importImageArchive(this.client, file)).map((i) => i.name);
      } catch (err) {
        throw new EngineError('invalid', `cannot load the archive: ${(err as Error).message}`, { cause: err });
      }
    } finally {
      await rm(file, { force: true });
    }
  }

  async save(refs: string[]): Promise<Readable> {
    const names: string[] = [];
    for (const r of refs) names.push(await this.lookup(r));
    return exportDockerArchive(this.client, names, { tmpDir: await this.ensureTmpDir() });
  }
}
