import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { App } from '../../../core/http/server.js';
import type { ImageRow } from '../../../core/store/schema.js';
import {
  applyPatch,
  checkWritable,
  MUTABLE_BASE,
  parsePatch,
  setBase,
  UUID_RE,
  validateProperty,
  validateTag,
} from '../attributes.js';
import { authorize, glanceError, type ImageContext, imageTarget, isAdmin } from '../context.js';
import { compareRows, parseListQuery, type Query } from '../list-query.js';
import { renderImage, renderMember } from '../render.js';
import { type ImageRecord, nowIso, type Viewer } from '../repo.js';
import { MEMBER_STATUSES } from '../schemas.js';

export const PATCH_MEDIA_TYPE = 'application/openstack-images-v2.1-json-patch';

const ImageId = Type.Object({ id: Type.String({ maxLength: 255 }) });
const TagParams = Type.Object({ id: Type.String({ maxLength: 255 }), tag: Type.String() });
const MemberParams = Type.Object({ id: Type.String({ maxLength: 255 }), member: Type.String({ maxLength: 255 }) });
const ListQuery = Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())]));
const AnyObject = Type.Object(
  {},
  { additionalProperties: true, description: 'image attributes; custom properties are top-level strings' },
);
const PatchBody = Type.Array(
  Type.Object(
    { op: Type.String(), path: Type.String(), value: Type.Optional(Type.Unknown()) },
    { additionalProperties: true },
  ),
);
const MemberCreate = Type.Object(
  { member: Type.String({ minLength: 1, maxLength: 255 }) },
  { additionalProperties: true },
);
const MemberUpdate = Type.Object({ status: Type.String() }, { additionalProperties: true });

/** The media type of a request, without parameters, lower-cased. */
export const mediaType = (req: FastifyRequest) =>
  String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();

export function viewer(ix: ImageContext, req: FastifyRequest): Viewer {
  return { projectId: req.auth.projectId, admin: isAdmin(ix, req) };
}

export const imageNotFound = (id: string) => glanceError(404, `No image found with ID ${id}`);

/** The image if the caller may see it (404 otherwise, as Glance hides what one cannot see), with the membership used. */
export async function visibleImage(
  ix: ImageContext,
  req: FastifyRequest,
  id: string,
): Promise<{ row: ImageRow; memberId?: string }> {
  const row = await ix.repo.get(id);
  if (!row) throw imageNotFound(id);
  const v = await ix.repo.visibleTo(row, viewer(ix, req));
  if (!v.visible) throw imageNotFound(id);
  return { row, memberId: v.memberId };
}

function checkQuotas(ix: ImageContext, rec: ImageRecord): void {
  const nProps = Object.keys(rec.properties).length;
  if (nProps > ix.settings.maxProperties)
    throw glanceError(
      413,
      `Maximum number of image properties exceeded. Attempted: ${nProps}, Maximum: ${ix.settings.maxProperties}`,
    );
  if (rec.tags.length > ix.settings.maxTags)
    throw glanceError(
      413,
      `Maximum number of tags exceeded. Attempted: ${rec.tags.length}, Maximum: ${ix.settings.maxTags}`,
    );
}

function checkVisibilityChange(ix: ImageContext, req: FastifyRequest, row: ImageRow): void {
  if (row.visibility === 'public') authorize(ix, req, 'publicize_image', imageTarget(row));
  if (row.visibility === 'community') authorize(ix, req, 'communitize_image', imageTarget(row));
}

export function imageRoutes(app: App, ix: ImageContext): void {
  const { repo } = ix;

  // ---- list
  app.get('/v2/images', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'get_images', { project_id: req.auth.projectId, owner: req.auth.projectId });
    const lr = parseListQuery(req.query as Query, ix.settings.defaultLimit, ix.settings.maxLimit);
    const who = viewer(ix, req);
    let rows = await repo.find(lr.filter, who);
    rows.sort((a, b) => compareRows(a, b, lr.sort));
    if (lr.marker !== undefined) {
      const m = await repo.get(lr.marker);
      if (!m || !(await repo.visibleTo(m, who)).visible)
        throw glanceError(400, `Invalid marker. Image ${lr.marker} could not be found.`);
      rows = rows.filter((r) => compareRows(r, m, lr.sort) > 0);
    }
    const page = rows.slice(0, lr.limit);
    const params = new URLSearchParams(req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '');
    params.delete('marker');
    const rest = params.toString();
    const body: Record<string, unknown> = {
      images: (await repo.details(page)).map(renderImage),
      first: rest ? `/v2/images?${rest}` : '/v2/images',
      schema: '/v2/schemas/images',
    };
    if (page.length > 0 && rows.length > page.length) {
      params.append('marker', page[page.length - 1].id);
      body.next = `/v2/images?${params.toString()}`;
    }
    return body;
  });

  // ---- create
  app.post('/v2/images', { schema: { body: AnyObject } }, async (req, reply) => {
    const body = req.body as Record<string, unknown>;
    const now = nowIso();
    const rec: ImageRecord = {
      row: {
        id: randomUUID(),
        name: null,
        status: 'queued',
        visibility: 'shared',
        protected: 0,
        os_hidden: 0,
        owner: req.auth.projectId ?? null,
        container_format: null,
        disk_format: null,
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
      },
      properties: {},
      tags: [],
    };
    for (const [key, value] of Object.entries(body)) {
      checkWritable(key, true);
      if (key === 'id') {
        if (typeof value !== 'string' || !UUID_RE.test(value))
          throw glanceError(
            400,
            `Provided object does not match schema 'image': ${JSON.stringify(value)} does not match the UUID pattern (id)`,
          );
        rec.row.id = value;
      } else if (MUTABLE_BASE.has(key)) {
        setBase(rec, key, value);
      } else {
        rec.properties[key] = validateProperty(key, value);
      }
    }
    authorize(ix, req, 'add_image', imageTarget(rec.row));
    checkVisibilityChange(ix, req, rec.row);
    checkQuotas(ix, rec);
    await repo.create(rec);
    reply.code(201).header('Location', `${ix.base}/v2/images/${rec.row.id}`);
    return renderImage(rec);
  });

  // ---- show
  app.get('/v2/images/:id', { schema: { params: ImageId }, config: { agentAccess: true } }, async (req) => {
    const { id } = req.params as { id: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'get_image', imageTarget(row, memberId));
    return renderImage((await repo.details([row]))[0]);
  });

  // ---- update (json-patch)
  const requirePatchType = async (req: FastifyRequest) => {
    if (mediaType(req) !== PATCH_MEDIA_TYPE)
      throw glanceError(415, `Unsupported Content-Type: use ${PATCH_MEDIA_TYPE}.`, {
        'Accept-Patch': PATCH_MEDIA_TYPE,
      });
  };
  // The media type is checked before the body is parsed or validated, so any other type is a 415.
  app.patch(
    '/v2/images/:id',
    { schema: { params: ImageId, body: PatchBody }, preParsing: requirePatchType },
    async (req) => {
      const { id } = req.params as { id: string };
      const ops = parsePatch(req.body);
      const { row, memberId } = await visibleImage(ix, req, id);
      authorize(ix, req, 'modify_image', imageTarget(row, memberId));
      const before = (await repo.details([row]))[0];
      const after = applyPatch(before, ops);
      for (const f of ['container_format', 'disk_format'] as const) {
        if (after.row[f] !== before.row[f] && before.row.status !== 'queued')
          throw glanceError(403, `Attribute ${f} can be only replaced for a queued image.`);
      }
      if (after.row.owner !== before.row.owner && !isAdmin(ix, req))
        throw glanceError(403, "Attribute 'owner' can be changed only by an administrator.");
      if (after.row.visibility !== before.row.visibility) checkVisibilityChange(ix, req, after.row);
      checkQuotas(ix, after);
      after.row.updated_at = nowIso();
      if (!(await repo.update(after))) throw imageNotFound(id);
      return renderImage((await repo.record(id)) ?? after);
    },
  );

  // ---- delete
  app.delete('/v2/images/:id', { schema: { params: ImageId }, config: { agentAccess: true } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'delete_image', imageTarget(row, memberId));
    if (row.protected) throw glanceError(403, `Image ${id} is protected and cannot be deleted.`);
    const gone = await repo.delete(id);
    if (!gone) throw imageNotFound(id);
    if (gone.location) {
      await ix.data
        .delete(gone.location)
        .catch((err) => req.log.warn({ err, image: id }, 'could not delete image data'));
    }
    reply.code(204).send();
  });

  // ---- tags
  app.put('/v2/images/:id/tags/:tag', { schema: { params: TagParams } }, async (req, reply) => {
    const { id, tag } = req.params as { id: string; tag: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'modify_image', imageTarget(row, memberId));
    validateTag(tag);
    const tags = (await repo.details([row]))[0].tags;
    if (!tags.includes(tag) && tags.length + 1 > ix.settings.maxTags) {
      throw glanceError(
        413,
        `Maximum number of tags exceeded. Attempted: ${tags.length + 1}, Maximum: ${ix.settings.maxTags}`,
      );
    }
    await repo.addTag(id, tag);
    reply.code(204).send();
  });
  app.delete('/v2/images/:id/tags/:tag', { schema: { params: TagParams } }, async (req, reply) => {
    const { id, tag } = req.params as { id: string; tag: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'modify_image', imageTarget(row, memberId));
    if (!(await repo.removeTag(id, tag))) throw glanceError(404, `Tag ${tag} not found`);
    reply.code(204).send();
  });

  // ---- actions
  for (const action of ['deactivate', 'reactivate'] as const) {
    app.post(`/v2/images/:id/actions/${action}`, { schema: { params: ImageId } }, async (req, reply) => {
      const { id } = req.params as { id: string };
      const { row, memberId } = await visibleImage(ix, req, id);
      authorize(ix, req, action, imageTarget(row, memberId));
      const [from, to] = action === 'deactivate' ? ['active', 'deactivated'] : ['deactivated', 'active'];
      if (row.status !== to) {
        if (row.status !== from || !(await repo.transition(id, [from], { status: to }))) {
          const fresh = await repo.get(id);
          if (!fresh) throw imageNotFound(id);
          if (fresh.status !== to) throw glanceError(403, `Not allowed to ${action} image in status '${fresh.status}'`);
        }
      }
      reply.code(204).send();
    });
  }

  // ---- members (for `shared` images)
  const memberNotFound = (id: string, member: string) => glanceError(404, `Member ${member} not found for image ${id}`);
  app.post('/v2/images/:id/members', { schema: { params: ImageId, body: MemberCreate } }, async (req) => {
    const { id } = req.params as { id: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'add_member', imageTarget(row, memberId));
    if (row.visibility !== 'shared')
      throw glanceError(
        403,
        `Image ${id} is not shared: only shared images can have members. Current visibility: ${row.visibility}`,
      );
    const { member } = req.body as { member: string };
    return renderMember(await repo.addMember(id, member));
  });
  app.get('/v2/images/:id/members', { schema: { params: ImageId } }, async (req) => {
    const { id } = req.params as { id: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'get_members', imageTarget(row, memberId));
    let members = await repo.members(id);
    if (!isAdmin(ix, req) && row.owner !== req.auth.projectId)
      members = members.filter((m) => m.member_id === req.auth.projectId);
    return { members: members.map(renderMember), schema: '/v2/schemas/members' };
  });
  app.get('/v2/images/:id/members/:member', { schema: { params: MemberParams } }, async (req) => {
    const { id, member } = req.params as { id: string; member: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'get_member', imageTarget(row, memberId));
    const m = await repo.member(id, member);
    if (!m || (!isAdmin(ix, req) && row.owner !== req.auth.projectId && member !== req.auth.projectId))
      throw memberNotFound(id, member);
    return renderMember(m);
  });
  app.put('/v2/images/:id/members/:member', { schema: { params: MemberParams, body: MemberUpdate } }, async (req) => {
    const { id, member } = req.params as { id: string; member: string };
    const { row } = await visibleImage(ix, req, id);
    const { status } = req.body as { status: string };
    if (!(MEMBER_STATUSES as readonly string[]).includes(status))
      throw glanceError(
        400,
        `Provided object does not match schema 'member': '${status}' is not one of ['pending', 'accepted', 'rejected']`,
      );
    if (!(await repo.member(id, member))) throw memberNotFound(id, member);
    authorize(ix, req, 'modify_member', { ...imageTarget(row), member_id: member });
    return renderMember((await repo.setMemberStatus(id, member, status))!);
  });
  app.delete('/v2/images/:id/members/:member', { schema: { params: MemberParams } }, async (req, reply) => {
    const { id, member } = req.params as { id: string; member: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'delete_member', imageTarget(row, memberId));
    if (!(await repo.removeMember(id, member))) throw memberNotFound(id, member);
    reply.code(204).send();
  });
}
