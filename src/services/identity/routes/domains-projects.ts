import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { badRequest, forbidden, notFound } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import { authorize, type IdentityContext, listLinks, queryBool } from '../context.js';
import { newId } from '../ids.js';
import { renderDomain, renderProject } from '../render.js';
import { Id, ListQuery, Name, OptText, splitExtra, type WithExtra } from './schemas.js';

const DomainCreate = Type.Object({
  domain: Type.Object(
    { name: Name, description: OptText, enabled: Type.Optional(Type.Boolean()), id: Type.Optional(Type.String()) },
    { additionalProperties: true },
  ),
});
const DomainUpdate = Type.Object({
  domain: Type.Object(
    { name: Type.Optional(Name), description: OptText, enabled: Type.Optional(Type.Boolean()) },
    { additionalProperties: true },
  ),
});
const ProjectCreate = Type.Object({
  project: Type.Object(
    {
      name: Name,
      domain_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      parent_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      description: OptText,
      enabled: Type.Optional(Type.Boolean()),
      is_domain: Type.Optional(Type.Boolean()),
      tags: Type.Optional(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 80 })),
      options: Type.Optional(Type.Object({}, { additionalProperties: true })),
    },
    { additionalProperties: true },
  ),
});
const ProjectUpdate = Type.Object({
  project: Type.Object(
    {
      name: Type.Optional(Name),
      description: OptText,
      enabled: Type.Optional(Type.Boolean()),
      tags: Type.Optional(Type.Array(Type.String({ maxLength: 255 }))),
      options: Type.Optional(Type.Object({}, { additionalProperties: true })),
    },
    { additionalProperties: true },
  ),
});

const DOMAIN_FIELDS = ['id', 'name', 'description', 'enabled'];
const PROJECT_FIELDS = [
  'id',
  'name',
  'domain_id',
  'parent_id',
  'description',
  'enabled',
  'is_domain',
  'tags',
  'options',
];

export function domainProjectRoutes(app: App, ix: IdentityContext): void {
  const { repo, domains, projects, assignments } = ix;

  const getDomain = async (id: string) => {
    const d = await repo.domain(id);
    if (!d) throw notFound(`Could not find domain: ${id}.`, 'DomainNotFound');
    return d;
  };
  /**
   * Loads a project for `action`. A missing project is checked against a target holding only its id, so a caller
   * the rule denies gets the same 403 whether or not the project exists (no existence oracle); others get 404.
   */
  const authorizedProject = async (req: FastifyRequest, action: string) => {
    const id = (req.params as { id: string }).id;
    const p = await repo.project(id);
    authorize(ix, req, action, { target: { project: { id, domain_id: p?.domain_id } } });
    if (!p) throw notFound(`Could not find project: ${id}.`, 'ProjectNotFound');
    return p;
  };

  // ---- domains
  app.get('/v3/domains', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_domains');
    const q = req.query as Record<string, string>;
    const list = await domains.list({ name: q.name, enabled: queryBool(q.enabled) });
    return { domains: list.map((d) => renderDomain(ix, d)), links: listLinks(ix, 'domains') };
  });
  app.get('/v3/domains/:id', { schema: { params: Id } }, async (req) => {
    const d = await getDomain((req.params as { id: string }).id);
    authorize(ix, req, 'identity:get_domain', { target: { domain: { id: d.id } } });
    return { domain: renderDomain(ix, d) };
  });
  app.post('/v3/domains', { schema: { body: DomainCreate } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_domain');
    const { domain: b } = req.body;
    const id = typeof b.id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(b.id) ? b.id : newId();
    await domains.create(
      {
        id,
        name: b.name,
        description: b.description ?? '',
        enabled: b.enabled === false ? 0 : 1,
        extra: JSON.stringify(splitExtra(b, DOMAIN_FIELDS)),
      },
      `Duplicate entry found with name ${b.name} at domain.`,
    );
    reply.code(201);
    return { domain: renderDomain(ix, (await repo.domain(id))!) };
  });
  app.patch('/v3/domains/:id', { schema: { params: Id, body: DomainUpdate } }, async (req) => {
    const d = await getDomain((req.params as { id: string }).id);
    authorize(ix, req, 'identity:update_domain', { target: { domain: { id: d.id } } });
    const b: WithExtra<typeof DomainUpdate.properties.domain> = req.body.domain;
    if (b.id !== undefined && b.id !== d.id)
      throw badRequest("Invalid input for field 'id': the id of a domain cannot be changed.", 'ValidationError');
    await domains.update(
      d.id,
      {
        name: b.name ?? d.name,
        description: b.description ?? d.description,
        enabled: b.enabled === undefined ? d.enabled : b.enabled ? 1 : 0,
        extra: JSON.stringify({ ...JSON.parse(d.extra), ...splitExtra(b, DOMAIN_FIELDS) }),
      },
      `Duplicate entry found with name ${b.name} at domain.`,
    );
    if (b.enabled === false && d.enabled)
      await repo.revoke(
        { domain_id: d.id, audit_id: null, user_id: null, project_id: null, app_cred_id: null },
        ix.tokens.ttlMs,
      );
    return { domain: renderDomain(ix, (await repo.domain(d.id))!) };
  });
  app.delete('/v3/domains/:id', { schema: { params: Id } }, async (req, reply) => {
    const d = await getDomain((req.params as { id: string }).id);
    authorize(ix, req, 'identity:delete_domain', { target: { domain: { id: d.id } } });
    if (d.enabled)
      throw forbidden('Cannot delete a domain that is enabled, please disable it first.', 'ForbiddenAction');
    await domains.deleteWithContents(d.id);
    reply.code(204).send();
  });

  // ---- projects
  const listProjects = async (q: Record<string, string>, ids?: string[]) => {
    if (q.is_domain !== undefined && queryBool(q.is_domain)) return [];
    const rows = await projects.list({
      name: q.name,
      domainId: q.domain_id,
      enabled: queryBool(q.enabled),
      parentId: q.parent_id,
      tags: q.tags ? q.tags.split(',') : undefined,
      ids,
    });
    return rows.map((p) => renderProject(ix, p));
  };
  app.get('/v3/projects', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_projects');
    return { projects: await listProjects(req.query as Record<string, string>), links: listLinks(ix, 'projects') };
  });
  app.get('/v3/users/:user_id/projects', async (req) => {
    const { user_id } = req.params as { user_id: string };
    authorize(ix, req, 'identity:list_user_projects', { user_id });
    if (!(await repo.user(user_id))) throw notFound(`Could not find user: ${user_id}.`, 'UserNotFound');
    const groups = await repo.groupIdsOfUser(user_id);
    const direct = await assignments.targetIds('UserProject', [user_id]);
    const viaGroups = await assignments.targetIds('GroupProject', groups);
    const ids = [...new Set([...direct, ...viaGroups])];
    return {
      projects: await listProjects(req.query as Record<string, string>, ids),
      links: listLinks(ix, `users/${user_id}/projects`),
    };
  });
  app.get('/v3/projects/:id', { schema: { params: Id } }, async (req) => {
    const p = await authorizedProject(req, 'identity:get_project');
    return { project: renderProject(ix, p) };
  });
  app.post('/v3/projects', { schema: { body: ProjectCreate } }, async (req, reply) => {
    const { project: b } = req.body;
    if (b.is_domain) throw badRequest('Projects acting as domains are not supported.', 'ValidationError');
    let domainId: string | undefined = b.domain_id ?? undefined;
    let parentId: string | null = null;
    if (b.parent_id) {
      const parent = await repo.project(b.parent_id);
      if (!parent) {
        if (await repo.domain(b.parent_id)) domainId ??= b.parent_id;
        else throw notFound(`Could not find project: ${b.parent_id}.`, 'ProjectNotFound');
      } else {
        if (domainId && domainId !== parent.domain_id)
          throw badRequest('Cannot create project, the parent is in a different domain.', 'ValidationError');
        domainId = parent.domain_id;
        parentId = parent.id;
      }
    }
    domainId ??= req.auth.projectDomainId ?? req.auth.domainId ?? 'default';
    authorize(ix, req, 'identity:create_project', { target: { project: { domain_id: domainId } } });
    if (!(await repo.domain(domainId))) throw notFound(`Could not find domain: ${domainId}.`, 'DomainNotFound');
    const id = newId();
    await projects.create(
      {
        id,
        name: b.name,
        domain_id: domainId,
        parent_id: parentId,
        description: b.description ?? '',
        enabled: b.enabled === false ? 0 : 1,
        tags: JSON.stringify(b.tags ?? []),
        options: JSON.stringify(b.options ?? {}),
        extra: JSON.stringify(splitExtra(b, PROJECT_FIELDS)),
      },
      `Conflict occurred attempting to store project - it is not permitted to have two projects with either the same name or same id in the same domain: name is ${b.name}, project id ${id}.`,
    );
    reply.code(201);
    return { project: renderProject(ix, (await repo.project(id))!) };
  });
  app.patch('/v3/projects/:id', { schema: { params: Id, body: ProjectUpdate } }, async (req) => {
    const p = await authorizedProject(req, 'identity:update_project');
    const b: WithExtra<typeof ProjectUpdate.properties.project> = req.body.project;
    if (b.domain_id !== undefined && b.domain_id !== p.domain_id)
      throw badRequest(
        "Invalid input for field 'domain_id': the domain of a project cannot be changed.",
        'ValidationError',
      );
    if (b.is_domain === true)
      throw badRequest("Invalid input for field 'is_domain': a project cannot become a domain.", 'ValidationError');
    await projects.update(
      p.id,
      {
        name: b.name ?? p.name,
        description: b.description ?? p.description,
        enabled: b.enabled === undefined ? p.enabled : b.enabled ? 1 : 0,
        tags: b.tags ? JSON.stringify(b.tags) : p.tags,
        options: b.options ? JSON.stringify({ ...JSON.parse(p.options), ...b.options }) : p.options,
        extra: JSON.stringify({ ...JSON.parse(p.extra), ...splitExtra(b, PROJECT_FIELDS) }),
      },
      `Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain: ${b.name}.`,
    );
    if (b.enabled === false && p.enabled)
      await repo.revoke(
        { project_id: p.id, audit_id: null, user_id: null, domain_id: null, app_cred_id: null },
        ix.tokens.ttlMs,
      );
    return { project: renderProject(ix, (await repo.project(p.id))!) };
  });
  app.delete('/v3/projects/:id', { schema: { params: Id } }, async (req, reply) => {
    const p = await authorizedProject(req, 'identity:delete_project');
    if (await projects.hasChildren(p.id))
      throw forbidden(
        `Cannot delete the project ${p.id} since it is not a leaf in the hierarchy. Use the cascade option if you want to delete a whole subtree.`,
        'ForbiddenNotSecurity',
      );
    await projects.delete(p.id);
    await repo.revoke(
      { project_id: p.id, audit_id: null, user_id: null, domain_id: null, app_cred_id: null },
      ix.tokens.ttlMs,
    );
    reply.code(204).send();
  });
}
