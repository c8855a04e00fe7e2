import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { badRequest, forbidden, notFound } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import type { AssignmentRow, RoleRow } from '../../../core/store/schema.js';
import { authorize, type IdentityContext, listLinks, queryBool } from '../context.js';
import { newId } from '../ids.js';
import { renderRole } from '../render.js';
import { Id, ListQuery, Name, OptText, type WithExtra } from './schemas.js';

const RoleCreate = Type.Object({
  role: Type.Object(
    {
      name: Name,
      domain_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      description: OptText,
      options: Type.Optional(Type.Object({}, { additionalProperties: true })),
    },
    { additionalProperties: true },
  ),
});
const RoleUpdate = Type.Object({
  role: Type.Object(
    {
      name: Type.Optional(Name),
      description: OptText,
      options: Type.Optional(Type.Object({}, { additionalProperties: true })),
    },
    { additionalProperties: true },
  ),
});

type ActorKind = 'users' | 'groups';
type TargetKind = 'projects' | 'domains';

export function roleAssignmentRoutes(app: App, ix: IdentityContext): void {
  const { repo, roles: roleRepo, groups, assignments } = ix;
  const getRole = async (id: string) => {
    const r = await repo.role(id);
    if (!r) throw notFound(`Could not find role: ${id}.`, 'RoleNotFound');
    return r;
  };

  // ---- roles
  app.get('/v3/roles', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_roles');
    const q = req.query as Record<string, string>;
    let roles = await repo.roles();
    if (q.name !== undefined) roles = roles.filter((r) => r.name === q.name);
    roles = roles.filter((r) => r.domain_key === (q.domain_id ?? ''));
    return { roles: roles.map((r) => renderRole(ix, r)), links: listLinks(ix, 'roles') };
  });
  app.get('/v3/roles/:id', { schema: { params: Id } }, async (req) => {
    authorize(ix, req, 'identity:get_role');
    return { role: renderRole(ix, await getRole((req.params as { id: string }).id)) };
  });
  app.post('/v3/roles', { schema: { body: RoleCreate } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_role');
    const { role: b } = req.body;
    if (b.domain_id && !(await repo.domain(b.domain_id)))
      throw notFound(`Could not find domain: ${b.domain_id}.`, 'DomainNotFound');
    const id = newId();
    await roleRepo.create(
      {
        id,
        name: b.name,
        domain_key: b.domain_id ?? '',
        description: b.description ?? null,
        options: JSON.stringify(b.options ?? {}),
      },
      `Conflict occurred attempting to store role - Duplicate entry found with name ${b.name}.`,
    );
    reply.code(201);
    return { role: renderRole(ix, (await repo.role(id))!) };
  });
  app.patch('/v3/roles/:id', { schema: { params: Id, body: RoleUpdate } }, async (req) => {
    authorize(ix, req, 'identity:update_role');
    const r = await getRole((req.params as { id: string }).id);
    const b: WithExtra<typeof RoleUpdate.properties.role> = req.body.role;
    if (b.domain_id !== undefined && (b.domain_id ?? '') !== r.domain_key)
      throw badRequest(
        "Invalid input for field 'domain_id': the domain of a role cannot be changed.",
        'ValidationError',
      );
    await roleRepo.update(
      r.id,
      {
        name: b.name ?? r.name,
        description: b.description === undefined ? r.description : b.description,
        options: b.options ? JSON.stringify(b.options) : r.options,
      },
      `Conflict occurred attempting to store role - Duplicate entry found with name ${b.name}.`,
    );
    return { role: renderRole(ix, (await repo.role(r.id))!) };
  });
  app.delete('/v3/roles/:id', { schema: { params: Id } }, async (req, reply) => {
    authorize(ix, req, 'identity:delete_role');
    const r = await getRole((req.params as { id: string }).id);
    if (JSON.parse(r.options).immutable)
      throw forbidden(`Role ${r.id} is immutable and cannot be deleted.`, 'ResourceDeleteForbidden');
    await roleRepo.delete(r.id);
    reply.code(204).send();
  });

  // ---- implied roles
  const inference = (prior: RoleRow, implied: RoleRow) => ({
    prior_role: { id: prior.id, name: prior.name, links: { self: `${ix.base}/roles/${prior.id}` } },
    implies: { id: implied.id, name: implied.name, links: { self: `${ix.base}/roles/${implied.id}` } },
  });
  const impliedPair = async (params: unknown) => {
    const { id, implied_id } = params as { id: string; implied_id: string };
    return { prior: await getRole(id), implied: await getRole(implied_id) };
  };
  const hasRule = async (prior: string, implied: string) => !!(await repo.impliedMap()).get(prior)?.includes(implied);
  app.put('/v3/roles/:id/implies/:implied_id', async (req, reply) => {
    authorize(ix, req, 'identity:create_implied_role');
    const { prior, implied } = await impliedPair(req.params);
    if (prior.id === implied.id) throw badRequest('A role cannot imply itself.', 'ValidationError');
    if (implied.domain_key) throw forbidden('Domain-specific roles cannot be implied.', 'InvalidImpliedRole');
    // Refuse cycles: the implied role must not already (transitively) imply the prior role.
    if ((await repo.expandImplied([implied.id])).some(([id]) => id === prior.id))
      throw forbidden(`Implying ${implied.name} from ${prior.name} would create a cycle.`, 'ForbiddenAction');
    if (!(await hasRule(prior.id, implied.id))) await roleRepo.addImplication(prior.id, implied.id);
    reply.code(201);
    return {
      role_inference: inference(prior, implied),
      links: { self: `${ix.base}/roles/${prior.id}/implies/${implied.id}` },
    };
  });
  app.head('/v3/roles/:id/implies/:implied_id', async (req, reply) => {
    authorize(ix, req, 'identity:check_implied_role');
    const { prior, implied } = await impliedPair(req.params);
    if (!(await hasRule(prior.id, implied.id)))
      throw notFound(`${prior.id} does not imply ${implied.id}.`, 'ImpliedRoleNotFound');
    reply.code(204).send();
  });
  app.get('/v3/roles/:id/implies/:implied_id', async (req) => {
    authorize(ix, req, 'identity:get_implied_role');
    const { prior, implied } = await impliedPair(req.params);
    if (!(await hasRule(prior.id, implied.id)))
      throw notFound(`${prior.id} does not imply ${implied.id}.`, 'ImpliedRoleNotFound');
    return {
      role_inference: inference(prior, implied),
      links: { self: `${ix.base}/roles/${prior.id}/implies/${implied.id}` },
    };
  });
  app.delete('/v3/roles/:id/implies/:implied_id', async (req, reply) => {
    authorize(ix, req, 'identity:delete_implied_role');
    const { prior, implied } = await impliedPair(req.params);
    if (!(await hasRule(prior.id, implied.id)))
      throw notFound(`${prior.id} does not imply ${implied.id}.`, 'ImpliedRoleNotFound');
    await roleRepo.removeImplication(prior.id, implied.id);
    reply.code(204).send();
  });
  app.get('/v3/roles/:id/implies', async (req) => {
    authorize(ix, req, 'identity:list_implied_roles');
    const prior = await getRole((req.params as { id: string }).id);
    const implies = [];
    for (const id of (await repo.impliedMap()).get(prior.id) ?? []) {
      const r = await repo.role(id);
      if (r) implies.push({ id: r.id, name: r.name, links: { self: `${ix.base}/roles/${r.id}` } });
    }
    return {
      role_inference: {
        prior_role: { id: prior.id, name: prior.name, links: { self: `${ix.base}/roles/${prior.id}` } },
        implies,
      },
      links: { self: `${ix.base}/roles/${prior.id}/implies` },
    };
  });
  app.get('/v3/role_inferences', async (req) => {
    authorize(ix, req, 'identity:list_role_inference_rules');
    const rules = [];
    for (const [priorId, impliedIds] of await repo.impliedMap()) {
      const prior = await repo.role(priorId);
      if (!prior) continue;
      const implies = [];
      for (const id of impliedIds) {
        const r = await repo.role(id);
        if (r) implies.push({ id: r.id, name: r.name, links: { self: `${ix.base}/roles/${r.id}` } });
      }
      rules.push({
        prior_role: { id: prior.id, name: prior.name, links: { self: `${ix.base}/roles/${prior.id}` } },
        implies,
      });
    }
    return { role_inferences: rules, links: { self: `${ix.base}/role_inferences` } };
  });

  // ---- grants: /v3/{projects|domains}/{t}/{users|groups}/{a}/roles[/{r}] and /v3/system/{users|groups}/{a}/roles[/{r}]
  const resolveGrant = async (
    targetKind: TargetKind | 'system',
    targetId: string,
    actorKind: ActorKind,
    actorId: string,
  ) => {
    if (targetKind === 'projects' && !(await repo.project(targetId)))
      throw notFound(`Could not find project: ${targetId}.`, 'ProjectNotFound');
    if (targetKind === 'domains' && !(await repo.domain(targetId)))
      throw notFound(`Could not find domain: ${targetId}.`, 'DomainNotFound');
    if (actorKind === 'users' && !(await repo.user(actorId)))
      throw notFound(`Could not find user: ${actorId}.`, 'UserNotFound');
    if (actorKind === 'groups' && !(await repo.group(actorId)))
      throw notFound(`Could not find group: ${actorId}.`, 'GroupNotFound');
    const actor = actorKind === 'users' ? 'User' : 'Group';
    const target = targetKind === 'projects' ? 'Project' : targetKind === 'domains' ? 'Domain' : 'System';
    return { type: `${actor}${target}`, actor_id: actorId, target_id: targetKind === 'system' ? 'system' : targetId };
  };
  const grantRoutes = (targetKind: TargetKind | 'system') => {
    const prefix = targetKind === 'system' ? '/v3/system' : `/v3/${targetKind}/:target`;
    for (const actorKind of ['users', 'groups'] as ActorKind[]) {
      // Keystone's rule names: identity:{check,create,revoke}_system_grant_for_{user,group} and
      // identity:list_system_grants_for_{user,group}.
      const who = actorKind === 'users' ? 'user' : 'group';
      const action = (verb: string) =>
        targetKind === 'system'
          ? `identity:${verb}_system_${verb === 'list' ? 'grants' : 'grant'}_for_${who}`
          : `identity:${verb}_grant`;
      const base = `${prefix}/${actorKind}/:actor/roles`;
      const parse = (p: unknown) => {
        const { target = 'system', actor } = p as { target?: string; actor: string };
        return resolveGrant(targetKind, target, actorKind, actor);
      };
      app.get(base, async (req) => {
        authorize(ix, req, targetKind === 'system' ? action('list') : 'identity:list_grants');
        const g = await parse(req.params);
        const rows = await repo.assignments({ types: [g.type], actor_id: g.actor_id, target_id: g.target_id });
        const roles = [];
        for (const row of rows) {
          const r = await repo.role(row.role_id);
          if (r) roles.push(renderRole(ix, r));
        }
        return { roles, links: listLinks(ix, base.replace('/v3/', '')) };
      });
      const exists = async (g: { type: string; actor_id: string; target_id: string }, roleId: string) =>
        (await repo.assignments({ types: [g.type], actor_id: g.actor_id, target_id: g.target_id, role_id: roleId }))
          .length > 0;
      app.put(`${base}/:role`, async (req, reply) => {
        authorize(ix, req, action('create'));
        const g = await parse(req.params);
        const role = await getRole((req.params as { role: string }).role);
        if (!(await exists(g, role.id))) await assignments.grant(g, role.id);
        reply.code(204).send();
      });
      // HEAD and GET both check one grant (Keystone answers 204 to either).
      const check = async (req: FastifyRequest, reply: FastifyReply) => {
        authorize(ix, req, action('check'));
        const g = await parse(req.params);
        const role = await getRole((req.params as { role: string }).role);
        if (!(await exists(g, role.id)))
          throw notFound(`Could not find role assignment with role: ${role.id}.`, 'RoleAssignmentNotFound');
        reply.code(204).send();
      };
      app.head(`${base}/:role`, check);
      app.get(`${base}/:role`, check);
      app.delete(`${base}/:role`, async (req, reply) => {
        authorize(ix, req, action('revoke'));
        const g = await parse(req.params);
        const role = await getRole((req.params as { role: string }).role);
        if (!(await exists(g, role.id)))
          throw notFound(`Could not find role assignment with role: ${role.id}.`, 'RoleAssignmentNotFound');
        await assignments.revoke(g, role.id);
        // Roles are read at validation, but Keystone also revokes the affected tokens: a role removed and re-added
        // must not revive tokens issued before the removal.
        const users = actorKind === 'users' ? [g.actor_id] : await groups.memberIds(g.actor_id);
        for (const u of users) {
          await repo.revoke(
            {
              user_id: u,
              project_id: targetKind === 'projects' ? g.target_id : null,
              domain_id: targetKind === 'domains' ? g.target_id : null,
              audit_id: null,
              app_cred_id: null,
            },
            ix.tokens.ttlMs,
          );
        }
        reply.code(204).send();
      });
    }
  };
  grantRoutes('projects');
  grantRoutes('domains');
  grantRoutes('system');

  // ---- GET /v3/role_assignments
  app.get('/v3/role_assignments', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_role_assignments');
    const q = req.query as Record<string, string>;
    const effective = queryBool(q.effective) === true;
    const includeNames = queryBool(q.include_names) === true;
    if (q['scope.OS-INHERIT:inherited_to'] !== undefined)
      return { role_assignments: [], links: listLinks(ix, 'role_assignments') };
    const rows = await assignments.direct();
    type Out = {
      row: AssignmentRow;
      userId?: string;
      groupId?: string;
      roleId: string;
      viaGroup?: string;
      prior?: string;
    };
    let out: Out[] = [];
    for (const row of rows) {
      const isUser = row.type.startsWith('User');
      if (effective && !isUser) {
        for (const userId of await groups.memberIds(row.actor_id))
          out.push({ row, userId, roleId: row.role_id, viaGroup: row.actor_id });
      } else
        out.push({
          row,
          userId: isUser ? row.actor_id : undefined,
          groupId: isUser ? undefined : row.actor_id,
          roleId: row.role_id,
        });
    }
    if (effective) {
      const expanded: Out[] = [];
      for (const o of out)
        for (const [id, prior] of await repo.expandImplied([o.roleId]))
          expanded.push({ ...o, roleId: id, prior: prior ? o.roleId : undefined });
      out = expanded;
    }
    const scopeProject = q['scope.project.id'];
    const scopeDomain = q['scope.domain.id'];
    const scopeSystem = q['scope.system'];
    out = out.filter((o) => {
      if (q['user.id'] !== undefined && o.userId !== q['user.id']) return false;
      if (q['group.id'] !== undefined && (effective || o.groupId !== q['group.id'])) return false;
      if (q['role.id'] !== undefined && o.roleId !== q['role.id']) return false;
      if (scopeProject !== undefined && !(o.row.type.endsWith('Project') && o.row.target_id === scopeProject))
        return false;
      if (scopeDomain !== undefined && !(o.row.type.endsWith('Domain') && o.row.target_id === scopeDomain))
        return false;
      if (scopeSystem !== undefined && !o.row.type.endsWith('System')) return false;
      return true;
    });
    // Effective lists collapse duplicates (the same role reached twice).
    const seen = new Set<string>();
    const result = [];
    for (const o of out) {
      const key = `${o.userId ?? ''}|${o.groupId ?? ''}|${o.row.type}|${o.row.target_id}|${o.roleId}`;
      if (effective && seen.has(key)) continue;
      seen.add(key);
      result.push(await renderAssignment(o, includeNames));
    }
    return { role_assignments: result, links: listLinks(ix, 'role_assignments') };
  });

  const domainRef = async (id: string) => ({ id, name: (await repo.domain(id))?.name ?? id });
  async function renderAssignment(
    o: { row: AssignmentRow; userId?: string; groupId?: string; roleId: string; viaGroup?: string; prior?: string },
    names: boolean,
  ) {
    const role = await repo.role(o.roleId);
    const out: Record<string, unknown> = {
      role:
        names && role
          ? { id: role.id, name: role.name, ...(role.domain_key ? { domain: await domainRef(role.domain_key) } : {}) }
          : { id: o.roleId },
    };
    if (o.userId) {
      const u = await repo.user(o.userId);
      out.user = names && u ? { id: u.id, name: u.name, domain: await domainRef(u.domain_id) } : { id: o.userId };
    } else if (o.groupId) {
      const g = await repo.group(o.groupId);
      out.group = names && g ? { id: g.id, name: g.name, domain: await domainRef(g.domain_id) } : { id: o.groupId };
    }
    const t = o.row;
    if (t.type.endsWith('Project')) {
      const p = await repo.project(t.target_id);
      out.scope = {
        project: names && p ? { id: p.id, name: p.name, domain: await domainRef(p.domain_id) } : { id: t.target_id },
      };
    } else if (t.type.endsWith('Domain')) {
      out.scope = { domain: names ? await domainRef(t.target_id) : { id: t.target_id } };
    } else out.scope = { system: { all: true } };
    const target = t.type.endsWith('Project')
      ? `projects/${t.target_id}`
      : t.type.endsWith('Domain')
        ? `domains/${t.target_id}`
        : 'system';
    const actor = o.viaGroup ? `groups/${o.viaGroup}` : o.userId ? `users/${o.userId}` : `groups/${o.groupId}`;
    const links: Record<string, string> = { assignment: `${ix.base}/${target}/${actor}/roles/${o.prior ?? o.roleId}` };
    if (o.viaGroup) links.membership = `${ix.base}/groups/${o.viaGroup}/users/${o.userId}`;
    if (o.prior) links.prior_role = `${ix.base}/roles/${o.prior}`;
    out.links = links;
    return out;
  }
}
