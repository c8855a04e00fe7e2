import { createHash, randomUUID } from 'node:crypto';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ImageRow } from '../../core/store/schema.js';
import type { GlanceData, GlanceImage, GlanceLookup, GlancePort, GlanceViewer } from '../../images/glance-port.js';
import type { ImageDataStore } from './data-store.js';
import { renderImage } from './render.js';
import { type ImageRepo, nowIso } from './repo.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const view = (row: ImageRow): GlanceImage => ({
  id: row.id,
  name: row.name,
  status: row.status,
  checksum: row.checksum,
  hasData: row.status === 'active' && !!row.location,
});

/** `name[:tag]`: the tag is what follows the last colon after the last slash (a registry port is not a tag). */
function splitNameTag(ident: string): { name: string; tag?: string } {
  const colon = ident.lastIndexOf(':');
  if (colon > ident.lastIndexOf('/')) return { name: ident.slice(0, colon), tag: ident.slice(colon + 1) };
  return { name: ident };
}

/** The Glance port for in-process callers (Zun, the agents): the facade's repository and its one data store. */
export class InProcessGlance implements GlancePort {
  constructor(
    private readonly repo: ImageRepo,
    private readonly data: ImageDataStore,
  ) {}

  private async visible(row: ImageRow, viewer: GlanceViewer): Promise<boolean> {
    return (await this.repo.visibleTo(row, viewer)).visible;
  }

  async visibleTo(projectId: string, ident: string): Promise<GlanceLookup> {
    const notFound: GlanceLookup = { found: false, reason: 'not_found', message: `Image ${ident} could not be found.` };
    const viewer = { projectId, admin: false };
    if (UUID.test(ident)) {
      const row = await this.repo.get(ident.toLowerCase());
      if (row && row.container_format === 'docker' && (await this.visible(row, viewer)))
        return { found: true, image: view(row) };
      return notFound;
    }
    const { name, tag } = splitNameTag(ident);
    let rows: ImageRow[] = [];
    for (const r of await this.repo.ofContainerFormat('docker', name)) if (await this.visible(r, viewer)) rows.push(r);
    if (tag && rows.length > 1) {
      const tagged = await this.repo.withTag(
        rows.map((r) => r.id),
        tag,
      );
      rows = rows.filter((r) => tagged.has(r.id));
    }
    if (rows.length === 0) return notFound;
    if (rows.length > 1)
      return {
        found: false,
        reason: 'ambiguous',
        message: `Multiple images exist with same name ${ident}. Please use the image id instead.`,
      };
    return { found: true, image: view(rows[0]!) };
  }

  async open(imageId: string): Promise<GlanceData | null> {
    const row = await this.repo.get(imageId);
    if (!row?.location) return null;
    const data = await this.data.open(row.location);
    return data ? { data, checksum: row.checksum } : null;
  }

  async search(
    viewer: GlanceViewer,
    query: { name: string; exact: boolean; tag?: string },
  ): Promise<Record<string, unknown>[]> {
    const rows: ImageRow[] = [];
    for (const r of await this.repo.ofContainerFormat('docker')) {
      if (r.name === null || !(query.exact ? r.name === query.name : r.name.includes(query.name))) continue;
      if (await this.visible(r, viewer)) rows.push(r);
    }
    let recs = await this.repo.details(rows);
    if (query.tag) recs = recs.filter((r) => r.tags.includes(query.tag!));
    return recs.map(renderImage);
  }

  async createFromCommit(params: { projectId: string; name: string; tag: string }): Promise<GlanceImage> {
    const now = nowIso();
    const row: ImageRow = {
      id: randomUUID(),
      name: params.name,
      status: 'queued',
      visibility: 'private',
      protected: 0,
      os_hidden: 0,
      owner: params.projectId,
      container_format: 'docker',
      disk_format: 'raw',
      size: null,
      virtual_size: null,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      min_disk: 0,
      min_ram: 0,
      location: null,
      created_at: now,
      updated_at: now,
    };
    await this.repo.create({ row, properties: {}, tags: [params.tag] });
    return view(row);
  }

  async finishCommit(imageId: string, data: Readable): Promise<GlanceImage> {
    if (!(await this.repo.transition(imageId, ['queued'], { status: 'saving' }))) {
      data.destroy();
      throw new Error(`Image ${imageId} is not queued for upload (it was deleted or already has data)`);
    }
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let size = 0;
    let location: string;
    let writer: Awaited<ReturnType<ImageDataStore['begin']>> | undefined;
    try {
      writer = await this.data.begin(imageId);
      await pipeline(
        data,
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            md5.update(chunk);
            sha512.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        }),
        writer.stream,
      );
      location = await writer.commit();
    } catch (err) {
      data.destroy();
      await writer?.abort();
      await this.repo.transition(imageId, ['saving'], { status: 'queued' });
      throw err;
    }
    const values = {
      status: 'active',
      size,
      checksum: md5.digest('hex'),
      os_hash_algo: 'sha512',
      os_hash_value: sha512.digest('hex'),
      location,
    };
    if (!(await this.repo.transition(imageId, ['saving'], values))) {
      await this.data.delete(location);
      throw new Error(`Image ${imageId} was deleted during the upload`);
    }
    const row = await this.repo.get(imageId);
    if (!row) throw new Error(`Image ${imageId} was deleted during the upload`);
    return view(row);
  }

  async failCommit(imageId: string): Promise<void> {
    const row = await this.repo.delete(imageId);
    if (row?.location) await this.data.delete(row.location);
  }
}
