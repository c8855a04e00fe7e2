import type { ExpressionBuilder, Kysely, SelectQueryBuilder } from 'kysely';
import { isUniqueViolation } from '../../core/store/db.js';
import type { Database, ImageMemberRow, ImageRow } from '../../core/store/schema.js';
import { glanceError } from './context.js';

/** An image with its custom properties and tags. */
export interface ImageRecord {
  row: ImageRow;
  properties: Record<string, string>;
  tags: string[];
}

/** Who is asking: the caller's project and whether the `context_is_admin` rule holds. */
export interface Viewer {
  projectId?: string;
  admin: boolean;
}

/** Time operators of `created_at` / `updated_at` filters. */
export type TimeOp = 'gt' | 'gte' | 'eq' | 'neq' | 'lt' | 'lte';

/** The SQL-side part of a list request (sorting and paging happen on the result). */
export interface ImageFilter {
  /** undefined: Glance's default (public, own, accepted shared; community only when own); 'all': no restriction. */
  visibility?: string;
  memberStatus: string;
  /** Column → accepted values (an `in:` list or one value). */
  columns: Partial<
    Record<
      'id' | 'name' | 'status' | 'owner' | 'container_format' | 'disk_format' | 'checksum' | 'os_hash_value',
      string[]
    >
  >;
  protected?: boolean;
  osHidden: boolean;
  sizeMin?: number;
  sizeMax?: number;
  times: Array<{ column: 'created_at' | 'updated_at'; op: TimeOp; ms: number }>;
  tags: string[];
  properties: Record<string, string>;
}

type ImageQuery = SelectQueryBuilder<Database, 'images', ImageRow>;

const num = (v: number | string | null) => (v === null ? null : Number(v));

/** Normalises a row from either engine (PostgreSQL returns bigint columns as strings). */
export function normalizeRow(row: ImageRow): ImageRow {
  return { ...row, size: num(row.size), virtual_size: num(row.virtual_size) };
}

/** Stored timestamps are ISO-8601 with milliseconds; the wire and the filters work in whole seconds. */
export const nowIso = () => new Date().toISOString();
const iso = (ms: number) => new Date(ms).toISOString();

/** Image data access shared by the Glance facade and, in-process, by the services that consume images. */
export class ImageRepo {
  constructor(readonly db: Kysely<Database>) {}

  async get(id: string): Promise<ImageRow | null> {
    const row = await this.db.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? normalizeRow(row) : null;
  }

  async member(imageId: string, memberId: string): Promise<ImageMemberRow | null> {
    return (
      (await this.db
        .selectFrom('image_members')
        .selectAll()
        .where('image_id', '=', imageId)
        .where('member_id', '=', memberId)
        .executeTakeFirst()) ?? null
    );
  }

  async members(imageId: string): Promise<ImageMemberRow[]> {
    return this.db
      .selectFrom('image_members')
      .selectAll()
      .where('image_id', '=', imageId)
      .orderBy('created_at')
      .orderBy('member_id')
      .execute();
  }

  /**
   * Glance's `is_image_visible`: admins see everything; others see public and community images, their project's
   * images, and shared images their project is a member of (in any member status). Returns the membership used.
   */
  async visibleTo(img: ImageRow, viewer: Viewer): Promise<{ visible: boolean; memberId?: string }> {
    if (viewer.admin) return { visible: true };
    if (img.visibility === 'public' || img.visibility === 'community') return { visible: true };
    if (!viewer.projectId) return { visible: false };
    if (img.owner === viewer.projectId) return { visible: true };
    if (img.visibility === 'shared' && (await this.member(img.id, viewer.projectId)))
      return { visible: true, memberId: viewer.projectId };
    return { visible: false };
  }

  /** Images of container format `format` (and name `name` when given), for the lookups of Zun. */
  async ofContainerFormat(format: string, name?: string): Promise<ImageRow[]> {
    let q = this.db.selectFrom('images').selectAll().where('container_format', '=', format);
    if (name !== undefined) q = q.where('name', '=', name);
    return (await q.execute()).map(normalizeRow);
  }

  /** Which of `ids` carry tag `tag`. */
  async withTag(ids: string[], tag: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db
        .selectFrom('image_tags')
        .select('image_id')
        .where('value', '=', tag)
        .where('image_id', 'in', ids.slice(i, i + 500))
        .execute();
      for (const r of rows) out.add(r.image_id);
    }
    return out;
  }

  /** Properties and tags of the given images. */
  async details(rows: ImageRow[]): Promise<ImageRecord[]> {
    const ids = rows.map((r) => r.id);
    const props = new Map<string, Record<string, string>>();
    const tags = new Map<string, string[]>();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      for (const p of await this.db
        .selectFrom('image_properties')
        .selectAll()
        .where('image_id', 'in', chunk)
        .orderBy('name')
        .execute()) {
        const m = props.get(p.image_id) ?? {};
        props.set(p.image_id, m);
        m[p.name] = p.value;
      }
      for (const t of await this.db
        .selectFrom('image_tags')
        .selectAll()
        .where('image_id', 'in', chunk)
        .orderBy('value')
        .execute()) {
        const l = tags.get(t.image_id) ?? [];
        tags.set(t.image_id, l);
        l.push(t.value);
      }
    }
    return rows.map((row) => ({ row, properties: props.get(row.id) ?? {}, tags: tags.get(row.id) ?? [] }));
  }

  async record(id: string): Promise<ImageRecord | null> {
    const row = await this.get(id);
    return row ? (await this.details([row]))[0] : null;
  }

  /** Bytes of image data a project owns (Glance's `user_storage_quota` usage). */
  async usage(owner: string): Promise<number> {
    const r = await this.db
      .selectFrom('images')
      .select((eb) => eb.fn.sum<number | string | null>('size').as('total'))
      .where('owner', '=', owner)
      .where('size', 'is not', null)
      .executeTakeFirst();
    return Number(r?.total ?? 0);
  }

  async create(rec: ImageRecord): Promise<void> {
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx.insertInto('images').values(rec.row).execute();
        await this.writeDetails(trx, rec);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw glanceError(409, `Image with identifier ${rec.row.id} already exists!`);
      throw err;
    }
  }

  /** Writes the mutable base attributes, properties and tags (never status, size, hashes or location). */
  async update(rec: ImageRecord): Promise<boolean> {
    const r = rec.row;
    return this.db.transaction().execute(async (trx) => {
      const res = await trx
        .updateTable('images')
        .set({
          name: r.name,
          visibility: r.visibility,
          protected: r.protected,
          os_hidden: r.os_hidden,
          owner: r.owner,
          container_format: r.container_format,
          disk_format: r.disk_format,
          min_disk: r.min_disk,
          min_ram: r.min_ram,
          updated_at: r.updated_at,
        })
        .where('id', '=', r.id)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) return false;
      await trx.deleteFrom('image_properties').where('image_id', '=', r.id).execute();
      await trx.deleteFrom('image_tags').where('image_id', '=', r.id).execute();
      await this.writeDetails(trx, rec);
      return true;
    });
  }

  private async writeDetails(trx: Kysely<Database>, rec: ImageRecord): Promise<void> {
    const props = Object.entries(rec.properties).map(([name, value]) => ({ image_id: rec.row.id, name, value }));
    if (props.length) await trx.insertInto('image_properties').values(props).execute();
    const tags = [...new Set(rec.tags)].map((value) => ({ image_id: rec.row.id, value }));
    if (tags.length) await trx.insertInto('image_tags').values(tags).execute();
  }

  /** Sets fields only while the image is in one of `from` (compare-and-set against concurrent requests). */
  async transition(id: string, from: readonly string[], values: Partial<ImageRow>): Promise<boolean> {
    const res = await this.db
      .updateTable('images')
      .set({ ...values, updated_at: nowIso() })
      .where('id', '=', id)
      .where('status', 'in', [...from])
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  async touch(id: string): Promise<void> {
    await this.db.updateTable('images').set({ updated_at: nowIso() }).where('id', '=', id).execute();
  }

  async addTag(id: string, tag: string): Promise<void> {
    try {
      await this.db.insertInto('image_tags').values({ image_id: id, value: tag }).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
    await this.touch(id);
  }

  async removeTag(id: string, tag: string): Promise<boolean> {
    const res = await this.db
      .deleteFrom('image_tags')
      .where('image_id', '=', id)
      .where('value', '=', tag)
      .executeTakeFirst();
    if (Number(res.numDeletedRows) === 0) return false;
    await this.touch(id);
    return true;
  }

  async tagCount(id: string): Promise<number> {
    const r = await this.db
      .selectFrom('image_tags')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('image_id', '=', id)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** Deletes the image (properties, tags and members cascade); returns the row as it was, or null if already gone. */
  async delete(id: string): Promise<ImageRow | null> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) return null;
      await trx.deleteFrom('image_members').where('image_id', '=', id).execute();
      await trx.deleteFrom('image_properties').where('image_id', '=', id).execute();
      await trx.deleteFrom('image_tags').where('image_id', '=', id).execute();
      await trx.deleteFrom('images').where('id', '=', id).execute();
      return normalizeRow(row);
    });
  }

  // ---- members

  async addMember(imageId: string, memberId: string): Promise<ImageMemberRow> {
    const now = nowIso();
    const row: ImageMemberRow = {
      image_id: imageId,
      member_id: memberId,
      status: 'pending',
      created_at: now,
      updated_at: now,
    };
    try {
      await this.db.insertInto('image_members').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err))
        throw glanceError(409, `Member ${memberId} already associated with image ${imageId}.`);
      throw err;
    }
    return row;
  }

  async setMemberStatus(imageId: string, memberId: string, status: string): Promise<ImageMemberRow | null> {
    await this.db
      .updateTable('image_members')
      .set({ status, updated_at: nowIso() })
      .where('image_id', '=', imageId)
      .where('member_id', '=', memberId)
      .execute();
    return this.member(imageId, memberId);
  }

  async removeMember(imageId: string, memberId: string): Promise<boolean> {
    const res = await this.db
      .deleteFrom('image_members')
      .where('image_id', '=', imageId)
      .where('member_id', '=', memberId)
      .executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  // ---- listing

  /** Every image the viewer may list that matches the filter (unsorted, unpaged). */
  async find(filter: ImageFilter, viewer: Viewer): Promise<ImageRow[]> {
    let q: ImageQuery = this.db.selectFrom('images').selectAll();
    q = this.restrictToViewer(q, filter, viewer);
    for (const [column, values] of Object.entries(filter.columns) as Array<[keyof ImageFilter['columns'], string[]]>) {
      q = values.length === 1 ? q.where(column, '=', values[0]) : q.where(column, 'in', values);
    }
    if (filter.protected !== undefined) q = q.where('protected', '=', filter.protected ? 1 : 0);
    q = q.where('os_hidden', '=', filter.osHidden ? 1 : 0);
    if (filter.sizeMin !== undefined) q = q.where('size', '>=', filter.sizeMin);
    if (filter.sizeMax !== undefined) q = q.where('size', '<=', filter.sizeMax);
    for (const t of filter.times) {
      // Whole seconds: the instant t matches stored times in [t, t + 1 s).
      const lo = iso(Math.floor(t.ms / 1000) * 1000);
      const hi = iso(Math.floor(t.ms / 1000) * 1000 + 1000);
      const c = t.column;
      if (t.op === 'eq') q = q.where(c, '>=', lo).where(c, '<', hi);
      else if (t.op === 'neq') q = q.where((eb) => eb.or([eb(c, '<', lo), eb(c, '>=', hi)]));
      else if (t.op === 'gt') q = q.where(c, '>=', hi);
      else if (t.op === 'gte') q = q.where(c, '>=', lo);
      else if (t.op === 'lt') q = q.where(c, '<', lo);
      else q = q.where(c, '<', hi);
    }
    for (const tag of filter.tags) {
      q = q.where((eb) =>
        eb.exists(
          eb
            .selectFrom('image_tags')
            .select('image_tags.image_id')
            .whereRef('image_tags.image_id', '=', 'images.id')
            .where('image_tags.value', '=', tag),
        ),
      );
    }
    for (const [name, value] of Object.entries(filter.properties)) {
      q = q.where((eb) =>
        eb.exists(
          eb
            .selectFrom('image_properties')
            .select('image_properties.image_id')
            .whereRef('image_properties.image_id', '=', 'images.id')
            .where('image_properties.name', '=', name)
            .where('image_properties.value', '=', value),
        ),
      );
    }
    return (await q.execute()).map(normalizeRow);
  }

  /** Glance's `_select_images_query` visibility rules. */
  private restrictToViewer(q: ImageQuery, filter: ImageFilter, viewer: Viewer): ImageQuery {
    const project = viewer.projectId ?? '';
    const vis = filter.visibility;
    if (vis === undefined) q = q.where((eb) => eb.or([eb('visibility', '!=', 'community'), eb('owner', '=', project)]));
    else if (vis !== 'all') q = q.where('visibility', '=', vis);
    if (viewer.admin) return q;
    const member = (eb: ExpressionBuilder<Database, 'images'>) => {
      let sub = eb
        .selectFrom('image_members')
        .select('image_members.image_id')
        .whereRef('image_members.image_id', '=', 'images.id')
        .where('image_members.member_id', '=', project);
      if (filter.memberStatus !== 'all') sub = sub.where('image_members.status', '=', filter.memberStatus);
      return eb.and([eb('visibility', '=', 'shared'), eb.exists(sub)]);
    };
    return q.where((eb) =>
      eb.or([eb('visibility', 'in', ['public', 'community']), eb('owner', '=', project), member(eb)]),
    );
  }
}
