/**
 * The routes every Neutron collection shares: list (filters, fields, sorting, paging), create (single and bulk),
 * show, update (PUT, partial), delete, and the tag sub-resource.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { App } from '../../../core/http/server.js';
import { tag as tagAttr, tags as tagsAttr, unwrap } from '../attributes.js';
import { actorFromAuth, type NeutronActor } from '../context.js';
import { badRequest, nerr } from '../errors.js';
import {
  applyFilters,
  paginate,
  parseListQuery,
  type Query,
  selectFields,
  sortViews,
  type View,
} from '../list-query.js';
import type { ResourceHandler } from '../resources/shared.js';
import { bump, setTags } from '../resources/shared.js';
import type { Neutron } from '../service.js';

const IdParams = Type.Object({ id: Type.String({ maxLength: 255 }) });
const TagParams = Type.Object({ id: Type.String({ maxLength: 255 }), tag: Type.String({ maxLength: 1024 }) });
const ListQuery = Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())]));
const AnyBody = Type.Unknown({ description: 'Neutron request body: {"<resource>": {…}} or {"<resources>": [...]}' });

export const rawQuery = (req: FastifyRequest) => (req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '');

/** A list exactly as Neutron answers GET /v2.0/<plural>: filtered, sorted, paged, trimmed to `fields`. */
export async function listCollection(
  h: ResourceHandler,
  actor: NeutronActor,
  q: Query,
  collectionUrl: string,
  raw: string,
): Promise<Record<string, unknown>> {
  const lq = parseListQuery(q);
  let views = await h.list(actor, lq.filters);
  views = applyFilters(views, lq, h.known, h.custom);
  views = sortViews(views, lq, h.known);
  const page = paginate(views, lq, collectionUrl, raw, (m) => h.notFound(m));
  const body: Record<string, unknown> = { [h.plural]: page.items.map((v) => selectFields(v, lq.fields)) };
  if (page.links.length) body[`${h.plural}_links`] = page.links;
  return body;
}

/**
 * Creates one or many (`{"<plural>": [...]}`): Neutron's emulated bulk — items are created in order and, when one
 * fails, those already created are deleted again so the request has no effect.
 */
export async function createItems(h: ResourceHandler, actor: NeutronActor, body: unknown) {
  const { items, bulk } = unwrap(body, h.singular, h.plural);
  const done: View[] = [];
  try {
    for (const item of items) done.push(await h.create(actor, item));
  } catch (err) {
    const admin: NeutronActor = { projectId: actor.projectId, userId: actor.userId, isAdmin: true };
    for (const v of done.reverse()) await h.remove(admin, v.id).catch(() => undefined);
    throw err;
  }
  return bulk ? { [h.plural]: done } : { [h.singular]: done[0] };
}

export function resourceRoutes(app: App, n: Neutron, base: string): void {
  for (const h of n.all) {
    const coll = `/v2.0/${h.path}`;
    const fieldsOf = (req: FastifyRequest) => parseListQuery(req.query as Query).fields;

    app.get(coll, { schema: { querystring: ListQuery } }, async (req) =>
      listCollection(h, actorFromAuth(req.auth), req.query as Query, `${base}${coll}`, rawQuery(req)),
    );
    app.post(coll, { schema: { body: AnyBody } }, async (req, reply) => {
      const out = await createItems(h, actorFromAuth(req.auth), req.body);
      reply.code(201);
      return out;
    });
    app.get(`${coll}/:id`, { schema: { params: IdParams, querystring: ListQuery } }, async (req) => {
      const { id } = req.params as { id: string };
      return { [h.singular]: selectFields(await h.show(actorFromAuth(req.auth), id), fieldsOf(req)) };
    });
    if (h.update)
      app.put(`${coll}/:id`, { schema: { params: IdParams, body: AnyBody } }, async (req) => {
        const { id } = req.params as { id: string };
        const { items } = unwrap(req.body, h.singular);
        return { [h.singular]: await h.update!(actorFromAuth(req.auth), id, items[0]) };
      });
    app.delete(`${coll}/:id`, { schema: { params: IdParams } }, async (req, reply) => {
      const { id } = req.params as { id: string };
      await h.remove(actorFromAuth(req.auth), id);
      reply.code(204);
      return reply.send();
    });
    if (h.tagType) tagRoutes(app, n, h, coll);
  }
}

const tagNotFound = (tag: string) => nerr(404, 'TagNotFound', `Tag ${tag} could not be found.`);

/** `/v2.0/<plural>/{id}/tags[/{tag}]`; every change bumps the resource's revision. */
function tagRoutes(app: App, n: Neutron, h: ResourceHandler, coll: string): void {
  const type = h.tagType!;
  const change = (actor: NeutronActor, id: string, fn: (current: string[]) => string[]) =>
    (async () => {
      const view = await h.updatable!(actor, id);
      const next = fn(view.tags as string[]);
      if (next.length > 50) throw badRequest('Invalid input for tags. Reason: more than 50 tags.');
      await n.nx.write(async (trx) => {
        await setTags(trx, type, id, next);
        await bump(trx, h.table!, id);
      });
      return [...new Set(next)].sort();
    })();
  const tagsBody = (body: unknown): string[] => {
    const b = body as { tags?: unknown } | undefined;
    if (!b || typeof b !== 'object' || b.tags === undefined)
      throw badRequest("Invalid input for tags. Reason: 'tags' is required.");
    return tagsAttr(b.tags, 'tags') as string[];
  };

  app.get(`${coll}/:id/tags`, { schema: { params: IdParams } }, async (req) => {
    const { id } = req.params as { id: string };
    return { tags: (await h.show(actorFromAuth(req.auth), id)).tags };
  });
  app.put(`${coll}/:id/tags`, { schema: { params: IdParams, body: AnyBody } }, async (req) => {
    const { id } = req.params as { id: string };
    const wanted = tagsBody(req.body);
    return { tags: await change(actorFromAuth(req.auth), id, () => wanted) };
  });
  app.post(`${coll}/:id/tags`, { schema: { params: IdParams, body: AnyBody } }, async (req) => {
    const { id } = req.params as { id: string };
    const added = tagsBody(req.body);
    return { tags: await change(actorFromAuth(req.auth), id, (cur) => [...cur, ...added]) };
  });
  app.delete(`${coll}/:id/tags`, { schema: { params: IdParams } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    await change(actorFromAuth(req.auth), id, () => []);
    reply.code(204);
    return reply.send();
  });
  app.get(`${coll}/:id/tags/:tag`, { schema: { params: TagParams } }, async (req, reply) => {
    const { id, tag } = req.params as { id: string; tag: string };
    const view = await h.show(actorFromAuth(req.auth), id);
    if (!(view.tags as string[]).includes(tag)) throw tagNotFound(tag);
    reply.code(204);
    return reply.send();
  });
  app.put(`${coll}/:id/tags/:tag`, { schema: { params: TagParams } }, async (req, reply) => {
    const { id, tag } = req.params as { id: string; tag: string };
    tagAttr(tag, 'tag');
    await change(actorFromAuth(req.auth), id, (cur) => [...cur, tag]);
    reply.code(201);
    return reply.send();
  });
  app.delete(`${coll}/:id/tags/:tag`, { schema: { params: TagParams } }, async (req, reply) => {
    const { id, tag } = req.params as { id: string; tag: string };
    const actor = actorFromAuth(req.auth);
    const view = await h.updatable!(actor, id);
    if (!(view.tags as string[]).includes(tag)) throw tagNotFound(tag);
    await change(actor, id, (cur) => cur.filter((t) => t !== tag));
    reply.code(204);
    return reply.send();
  });
}
