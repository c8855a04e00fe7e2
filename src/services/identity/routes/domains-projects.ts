import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { badRequest, forbidden, notFound } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import type { ProjectRow } from '../../../core/store/schema.js';
import { authorize, type IdentityContext, listLinks, queryBool } from '../context.js';
import { newId } from '../ids.js';
import { renderDomain, renderProject } from '../render.js';
import { Id, ListQuery, Name, OptText, splitExtra } from './schemas.js';

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
  const { repo } = ix;

  const getDomain = async (id: string) => {
    const d = await repo.domain(id);
    if (!d) throw notFound(`Could not find domain: ${id}.`, 'DomainNotFound');
    return d;
  };
  const getProject = async (id: string) => {
    const p = await repo.project(id);
    if (!p) throw notFound(`Could not find project: ${id}.`, 'ProjectNotFound');
    return p;
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
    let sel = repo.db.selectFrom('domains').selectAll().orderBy('name');
    if (q.name !== undefined) sel = sel.where('name', '=', q.name);
    if (q.enabled !== undefined) sel = sel.where('enabled', '=', queryBool(q.enabled) ? 1 : 0);
    return { domains: (await sel.execute()).map((d) => renderDomain(ix, d)), links: listLinks(ix, 'domains') };
  });
  app.get('/v3/domains/:id', { schema: { params: Id } }, async (req) => {
    const d = await getDomain((req.params as { id: string }).id);
    authorize(ix, req, 'identity:get_domain', { target: { domain: { id: d.id } } });
    return { domain: renderDomain(ix, d) };
  });
  app.post('/v3/domains', { schema: { body: DomainCreate } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_domain');
    const { domain: b } = req.body as { domain: Record<string, any> };
    const id = typeof b.id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(b.id) ? b.id : newId();
    await repo.write(
      (trx) =>
        trx
          .insertInto('domains')
          .values({
            id,
            name: b.name,
            description: b.description ?? '',
            enabled: b.enabled === false ? 0 : 1,
            extra: JSON.stringify(splitExtra(b, DOMAIN_FIELDS)),
          })
          .execute(),
      `Duplicate entry found with name ${b.name} at domain.`,
    );
    reply.code(201);
    return { domain: renderDomain(ix, (await repo.domain(id))!) };
  });
  app.patch('/v3/domains/:id', { schema: { params: Id, body: DomainUpdate } }, async (req) => {
    const d = await getDomain((req.params as { id: string }).id);
    authorize(ix, req, 'identity:update_domain', { target: { domain: { id: d.id } } });
    const { domain: b } = req.body as { domain: Record<string, any> };
    if (b.id !== undefined && b.id !== d.id)
      throw badRequest("Invalid input for field 'id': the id of a domain cannot be changed.", 'ValidationError');
    await repo.write(
      (trx) =>
        trx
          .updateTable('domains')
          .set({
            name: b.name ?? d.name,
            description: b.description ?? d.description,
            enabled: b.enabled === undefined ? d.enabled : b.enabled ? 1 : 0,
            extra: JSON.stringify({ ...JSON.parse(d.extra), ...splitExtra(b, DOMAIN_FIELDS) }),
          })
          .where('id', '=', d.id)
          .execute(),
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
    await repo.write(async (trx) => {
      const projects = (await trx.selectFrom('projects').select('id').where('domain_id', '=', d.id).execute()).map(
        (r) => r.id,
      );
      const users = (await trx.selectFrom('users').select('id').where('domain_id', '=', d.id).execute()).map(
        (r) => r.id,
      );
      const groups = (await trx.selectFrom('groups').select('id').where('domain_id', '=', d.id).execute()).map(
        (r) => r.id,
      );
      const targets = [d.id, ...projects];
      const actors = [...users, ...groups];
      await trx.deleteFrom('assignments').where('target_id', 'in', targets).execute();
      if (actors.length) await trx.deleteFrom('assignments').where('actor_id', 'in', actors).execute();
      await trx.deleteFrom('roles').where('domain_key', '=', d.id).execute();
      await trx.deleteFrom('projects').where('domain_id', '=', d.id).execute();
      await trx.deleteFrom('groups').where('domain_id', '=', d.id).execute();
      await trx.deleteFrom('users').where('domain_id', '=', d.id).execute();
      await trx.deleteFrom('domains').where('id', '=', d.id).execute();
    });
    reply.code(204).send();
  });

  // ---- projects
  const listProjects = async (q: Record<string, string>, onlyIds?: string[]) => {
    let sel = repo.db.selectFrom('projects').selectAll().orderBy('name');
    if (q.name !== undefined) sel = sel.where('name', '=', q.name);
    if (q.domain_id !== undefined) sel = sel.where('domain_id', '=', q.domain_id);
    if (q.enabled !== undefined) sel = sel.where('enabled', '=', queryBool(q.enabled) ? 1 : 0);
    if (q.parent_id !== undefined)
      sel = sel.where((eb) =>
        eb.or([
          eb('parent_id', '=', q.parent_id),
          eb.and([eb('parent_id', 'is', null), eb('domain_id', '=', q.parent_id)]),
        ]),
      );
    if (q.is_domain !== undefined && queryBool(q.is_domain)) return [];
    if (onlyIds) {
      if (onlyIds.length === 0) return [];
      sel = sel.where('id', 'in', onlyIds);
    }
    let rows: ProjectRow[] = await sel.execute();
    if (q.tags) {
      const wanted = q.tags.split(',');
      rows = rows.filter((p) => wanted.every((t) => (JSON.parse(p.tags) as string[]).includes(t)));
    }
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
    const direct = await repo.assignments({ types: ['UserProject'], actor_id: user_id });
    const viaGroups = [];
    for (const g of groups) viaGroups.push(...(await repo.assignments({ types: ['GroupProject'], actor_id: g })));
    const ids = [...new Set([...direct, ...viaGroups].map((a) => a.target_id))];
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
    const { project: b } = req.body as { project: Record<string, any> };
    if (b.is_domain) throw badRequest('Projects acting as domains are not supported.', 'ValidationError');
    let domainId: string = b.domain_id ?? undefined;
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
    await repo.write(
      (trx) =>
        trx
          .insertInto('projects')
          .values({
            id,
            name: b.name,
            domain_id: domainId,
            parent_id: parentId,
            description: b.description ?? '',
            enabled: b.enabled === false ? 0 : 1,
            tags: JSON.stringify(b.tags ?? []),
            options: JSON.stringify(b.options ?? {}),
            extra: JSON.stringify(splitExtra(b, PROJECT_FIELDS)),
          })
          .execute(),
      `Conflict occurred attempting to store project - it is not permitted to have two projects with either the same name or same id in the same domain: name is ${b.name}, project id ${id}.`,
    );
    reply.code(201);
    return { project: renderProject(ix, (await repo.project(id))!) };
  });
  app.patch('/v3/projects/:id', { schema: { params: Id, body: ProjectUpdate } }, async (req) => {
    const p = await authorizedProject(req, 'identity:update_project');
    const { project: b } = req.body as { project: Record<string, any> };
    if (b.domain_id !== undefined && b.domain_id !== p.domain_id)
      throw badRequest(
        "Invalid input for field 'domain_id': the domain of a project cannot be changed.",
        'ValidationError',
      );
    if (b.is_domain === true)
      throw badRequest("Invalid input for field 'is_domain': a project cannot become a domain.", 'ValidationError');
    await repo.write(
      (trx) =>
        trx
          .updateTable('projects')
          .set({
            name: b.name ?? p.name,
            description: b.description ?? p.description,
            enabled: b.enabled === undefined ? p.enabled : b.enabled ? 1 : 0,
            tags: b.tags ? JSON.stringify(b.tags) : p.tags,
            options: b.options ? JSON.stringify({ ...JSON.parse(p.options), ...b.options }) : p.options,
            extra: JSON.stringify({ ...JSON.parse(p.extra), ...splitExtra(b, PROJECT_FIELDS) }),
          })
          .where('id', '=', p.id)
          .execute(),
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
    const child = await repo.db.selectFrom('projects').select('id').where('parent_id', '=', p.id).executeTakeFirst();
    if (child)
      throw forbidden(
        `Cannot delete the project ${p.id} since it is not a leaf in the hierarchy. Use the cascade option if you want to delete a whole subtree.`,
        'ForbiddenNotSecurity',
      );
    await repo.write(async (trx) => {
      await trx.deleteFrom('assignments').where('target_id', '=', p.id).execute();
      await trx.deleteFrom('application_credentials').where('project_id', '=', p.id).execute();
      await trx.updateTable('users').set({ default_project_id: null }).where('default_project_id', '=', p.id).execute();
      await trx.deleteFrom('projects').where('id', '=', p.id).execute();
    });
    await repo.revoke(
      { project_id: p.id, audit_id: null, user_id: null, domain_id: null, app_cred_id: null },
      ix.tokens.ttlMs,
    );
    reply.code(204).send();
  });
}
