import { type Static, Type } from '@sinclair/typebox';
import { badRequest, conflict, notFound } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import { authorize, type IdentityContext, listLinks, queryBool } from '../context.js';
import { newId } from '../ids.js';
import { renderEndpoint, renderRegion, renderService } from '../render.js';
import { Id, ListQuery, OptText } from './schemas.js';

const ServiceBody = (required: boolean) =>
  Type.Object({
    service: Type.Object(
      {
        type: required
          ? Type.String({ minLength: 1, maxLength: 255 })
          : Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
        name: Type.Optional(Type.String({ maxLength: 255 })),
        description: OptText,
        enabled: Type.Optional(Type.Boolean()),
      },
      { additionalProperties: true },
    ),
  });
const Interface = Type.Union([Type.Literal('public'), Type.Literal('internal'), Type.Literal('admin')]);
const EndpointBody = (required: boolean) =>
  Type.Object({
    endpoint: Type.Object(
      {
        service_id: required ? Type.String() : Type.Optional(Type.String()),
        interface: required ? Interface : Type.Optional(Interface),
        url: required
          ? Type.String({ minLength: 1, maxLength: 225 })
          : Type.Optional(Type.String({ minLength: 1, maxLength: 225 })),
        region_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
        region: Type.Optional(Type.Union([Type.String(), Type.Null()])),
        enabled: Type.Optional(Type.Boolean()),
      },
      { additionalProperties: true },
    ),
  });
const RegionBody = Type.Object({
  region: Type.Object(
    {
      id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
      description: OptText,
      parent_region_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    },
    { additionalProperties: true },
  ),
});

export function catalogRoutes(app: App, ix: IdentityContext): void {
  const { repo, catalog } = ix;
  const getService = async (id: string) => {
    const s = (await repo.services()).find((x) => x.id === id);
    if (!s) throw notFound(`Could not find service: ${id}.`, 'ServiceNotFound');
    return s;
  };
  const getEndpoint = async (id: string) => {
    const e = (await repo.endpoints()).find((x) => x.id === id);
    if (!e) throw notFound(`Could not find endpoint: ${id}.`, 'EndpointNotFound');
    return e;
  };
  const getRegion = async (id: string) => {
    const r = (await repo.regions()).find((x) => x.id === id);
    if (!r) throw notFound(`Could not find region: ${id}.`, 'RegionNotFound');
    return r;
  };

  // ---- services
  app.get('/v3/services', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_services');
    const q = req.query as Record<string, string>;
    const list = (await repo.services()).filter(
      (s) => (q.type === undefined || s.type === q.type) && (q.name === undefined || s.name === q.name),
    );
    return { services: list.map((s) => renderService(ix, s)), links: listLinks(ix, 'services') };
  });
  app.get('/v3/services/:id', { schema: { params: Id } }, async (req) => {
    authorize(ix, req, 'identity:get_service');
    return { service: renderService(ix, await getService((req.params as { id: string }).id)) };
  });
  app.post('/v3/services', { schema: { body: ServiceBody(true) } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_service');
    const { service: b } = req.body;
    const id = newId();
    await catalog.createService({
      id,
      type: b.type,
      name: b.name ?? '',
      description: b.description ?? '',
      enabled: b.enabled === false ? 0 : 1,
    });
    reply.code(201);
    return { service: renderService(ix, await getService(id)) };
  });
  app.patch('/v3/services/:id', { schema: { params: Id, body: ServiceBody(false) } }, async (req) => {
    authorize(ix, req, 'identity:update_service');
    const s = await getService((req.params as { id: string }).id);
    const { service: b } = req.body;
    await catalog.updateService(s.id, {
      type: b.type ?? s.type,
      name: b.name ?? s.name,
      description: b.description ?? s.description,
      enabled: b.enabled === undefined ? s.enabled : b.enabled ? 1 : 0,
    });
    return { service: renderService(ix, await getService(s.id)) };
  });
  app.delete('/v3/services/:id', { schema: { params: Id } }, async (req, reply) => {
    authorize(ix, req, 'identity:delete_service');
    const s = await getService((req.params as { id: string }).id);
    await catalog.deleteService(s.id);
    reply.code(204).send();
  });

  // ---- endpoints
  app.get('/v3/endpoints', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_endpoints');
    const q = req.query as Record<string, string>;
    const list = (await repo.endpoints()).filter(
      (e) =>
        (q.service_id === undefined || e.service_id === q.service_id) &&
        (q.interface === undefined || e.interface === q.interface) &&
        (q.region_id === undefined || e.region_id === q.region_id) &&
        (q.enabled === undefined || !!e.enabled === queryBool(q.enabled)),
    );
    return { endpoints: list.map((e) => renderEndpoint(ix, e)), links: listLinks(ix, 'endpoints') };
  });
  app.get('/v3/endpoints/:id', { schema: { params: Id } }, async (req) => {
    authorize(ix, req, 'identity:get_endpoint');
    return { endpoint: renderEndpoint(ix, await getEndpoint((req.params as { id: string }).id)) };
  });
  const checkEndpointRefs = async (b: Static<ReturnType<typeof EndpointBody>>['endpoint']) => {
    if (b.service_id !== undefined) await getService(b.service_id);
    const region = b.region_id ?? b.region;
    if (region) {
      // Keystone creates a region named by an endpoint on the fly.
      if (!(await repo.regions()).some((r) => r.id === region))
        await catalog.createRegion({ id: region, description: '', parent_region_id: null });
    }
    if (b.url !== undefined && !/^[a-z][a-z0-9+.-]*:\/\//i.test(b.url))
      throw badRequest(`Invalid input for field 'url': '${b.url}' is not a valid URL.`, 'ValidationError');
    return region ?? undefined;
  };
  app.post('/v3/endpoints', { schema: { body: EndpointBody(true) } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_endpoint');
    const { endpoint: b } = req.body;
    const region = await checkEndpointRefs(b);
    const id = newId();
    await catalog.createEndpoint({
      id,
      service_id: b.service_id,
      interface: b.interface,
      url: b.url,
      region_id: region ?? null,
      enabled: b.enabled === false ? 0 : 1,
    });
    reply.code(201);
    return { endpoint: renderEndpoint(ix, await getEndpoint(id)) };
  });
  app.patch('/v3/endpoints/:id', { schema: { params: Id, body: EndpointBody(false) } }, async (req) => {
    authorize(ix, req, 'identity:update_endpoint');
    const e = await getEndpoint((req.params as { id: string }).id);
    const { endpoint: b } = req.body;
    const region = await checkEndpointRefs(b);
    await catalog.updateEndpoint(e.id, {
      service_id: b.service_id ?? e.service_id,
      interface: b.interface ?? e.interface,
      url: b.url ?? e.url,
      region_id: region ?? e.region_id,
      enabled: b.enabled === undefined ? e.enabled : b.enabled ? 1 : 0,
    });
    return { endpoint: renderEndpoint(ix, await getEndpoint(e.id)) };
  });
  app.delete('/v3/endpoints/:id', { schema: { params: Id } }, async (req, reply) => {
    authorize(ix, req, 'identity:delete_endpoint');
    const e = await getEndpoint((req.params as { id: string }).id);
    await catalog.deleteEndpoint(e.id);
    reply.code(204).send();
  });

  // ---- regions
  app.get('/v3/regions', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_regions');
    const q = req.query as Record<string, string>;
    const list = (await repo.regions()).filter(
      (r) => q.parent_region_id === undefined || r.parent_region_id === q.parent_region_id,
    );
    return { regions: list.map((r) => renderRegion(ix, r)), links: listLinks(ix, 'regions') };
  });
  app.get('/v3/regions/:id', { schema: { params: Id } }, async (req) => {
    authorize(ix, req, 'identity:get_region');
    return { region: renderRegion(ix, await getRegion((req.params as { id: string }).id)) };
  });
  const createRegion = async (id: string, b: Static<typeof RegionBody>['region']) => {
    if (b.parent_region_id) await getRegion(b.parent_region_id);
    await catalog.createRegion(
      { id, description: b.description ?? '', parent_region_id: b.parent_region_id ?? null },
      `Duplicate ID, ${id}.`,
    );
    return { region: renderRegion(ix, await getRegion(id)) };
  };
  app.post('/v3/regions', { schema: { body: RegionBody } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_region');
    const { region: b } = req.body;
    reply.code(201);
    return createRegion(b.id ?? newId(), b);
  });
  app.put('/v3/regions/:id', { schema: { params: Id, body: RegionBody } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_region');
    const { region: b } = req.body;
    reply.code(201);
    return createRegion((req.params as { id: string }).id, b);
  });
  app.patch('/v3/regions/:id', { schema: { params: Id, body: RegionBody } }, async (req) => {
    authorize(ix, req, 'identity:update_region');
    const r = await getRegion((req.params as { id: string }).id);
    const { region: b } = req.body;
    if (b.parent_region_id) {
      await getRegion(b.parent_region_id);
      if (b.parent_region_id === r.id) throw badRequest('A region cannot be its own parent.', 'ValidationError');
    }
    await catalog.updateRegion(r.id, {
      description: b.description ?? r.description,
      parent_region_id: b.parent_region_id === undefined ? r.parent_region_id : b.parent_region_id,
    });
    return { region: renderRegion(ix, await getRegion(r.id)) };
  });
  app.delete('/v3/regions/:id', { schema: { params: Id } }, async (req, reply) => {
    authorize(ix, req, 'identity:delete_region');
    const r = await getRegion((req.params as { id: string }).id);
    if ((await repo.regions()).some((x) => x.parent_region_id === r.id)) throw forbiddenChild(r.id);
    if ((await repo.endpoints()).some((e) => e.region_id === r.id))
      throw conflict(`Region ${r.id} is in use by endpoints.`, 'Conflict');
    await catalog.deleteRegion(r.id);
    reply.code(204).send();
  });
}

const forbiddenChild = (id: string) =>
  conflict(`Unable to delete region ${id} because it or its child regions have associated endpoints.`, 'Conflict');
