import type { ImageMemberRow } from '../../core/store/schema.js';
import type { ImageRecord } from './repo.js';

/** Glance renders times as UTC seconds: `2015-11-29T22:21:42Z`. */
export const glanceTime = (isoText: string) => isoText.replace(/\.\d+Z$/, 'Z');

/** The image object: custom properties as top-level string keys next to the base attributes; relative links. */
export function renderImage(rec: ImageRecord): Record<string, unknown> {
  const r = rec.row;
  return {
    ...rec.properties,
    id: r.id,
    name: r.name,
    status: r.status,
    visibility: r.visibility,
    protected: !!r.protected,
    os_hidden: !!r.os_hidden,
    owner: r.owner,
    container_format: r.container_format,
    disk_format: r.disk_format,
    size: r.size === null ? null : Number(r.size),
    virtual_size: r.virtual_size === null ? null : Number(r.virtual_size),
    checksum: r.checksum,
    os_hash_algo: r.os_hash_algo,
    os_hash_value: r.os_hash_value,
    min_disk: r.min_disk,
    min_ram: r.min_ram,
    tags: rec.tags,
    created_at: glanceTime(r.created_at),
    updated_at: glanceTime(r.updated_at),
    self: `/v2/images/${r.id}`,
    file: `/v2/images/${r.id}/file`,
    schema: '/v2/schemas/image',
  };
}

export function renderMember(m: ImageMemberRow): Record<string, unknown> {
  return {
    created_at: glanceTime(m.created_at),
    image_id: m.image_id,
    member_id: m.member_id,
    schema: '/v2/schemas/member',
    status: m.status,
    updated_at: glanceTime(m.updated_at),
  };
}
