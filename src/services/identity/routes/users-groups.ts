import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { hashPassword, verifyPassword } from '../../../core/auth/password.js';
import { badRequest, notFound, unauthorized } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import { authorize, type IdentityContext, listLinks, queryBool } from '../context.js';
import { newId } from '../ids.js';
import { renderGroup, renderUser } from '../render.js';
import { Id, ListQuery, Name, OptText, splitExtra, type WithExtra } from './schemas.js';

const Password = Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 4096 }), Type.Null()]));
const UserCreate = Type.Object({
  user: Type.Object(
    {
      name: Name,
      domain_id: Type.Optional(Type.String()),
      password: Password,
      enabled: Type.Optional(Type.Boolean()),
      default_project_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      description: OptText,
      email: OptText,
      options: Type.Optional(Type.Object({}, { additionalProperties: true })),
    },
    { additionalProperties: true },
  ),
});
const UserUpdate = Type.Object({
  user: Type.Object(
    {
      name: Type.Optional(Name),
      password: Password,
      enabled: Type.Optional(Type.Boolean()),
      default_project_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      description: OptText,
      email: OptText,
      options: Type.Optional(Type.Object({}, { additionalProperties: true })),
    },
    { additionalProperties: true },
  ),
});
const PasswordChange = Type.Object({
  user: Type.Object(
    { original_password: Type.String(), password: Type.String({ minLength: 1, maxLength: 4096 }) },
    { additionalProperties: false },
  ),
});
const GroupCreate = Type.Object({
  group: Type.Object(
    { name: Name, domain_id: Type.Optional(Type.String()), description: OptText },
    { additionalProperties: true },
  ),
});
const GroupUpdate = Type.Object({
  group: Type.Object({ name: Type.Optional(Name), description: OptText }, { additionalProperties: true }),
});

const USER_FIELDS = [
  'id',
  'name',
  'domain_id',
  'enabled',
  'default_project_id',
  'description',
  'email',
  'options',
  'password_expires_at',
];

export function userGroupRoutes(app: App, ix: IdentityContext): void {
  const { repo, users, groups } = ix;
  const getUser = async (id: string) => {
    const u = await repo.user(id);
    if (!u) throw notFound(`Could not find user: ${id}.`, 'UserNotFound');
    return u;
  };
  /** As authorizedProject: a missing user is checked against its id alone, so a denied caller gets 403 either way. */
  const authorizedUser = async (req: FastifyRequest, action: string) => {
    const id = (req.params as { id: string }).id;
    const u = await repo.user(id);
    authorize(ix, req, action, { user_id: id, target: { user: { id, domain_id: u?.domain_id } } });
    if (!u) throw notFound(`Could not find user: ${id}.`, 'UserNotFound');
    return u;
  };
  const getGroup = async (id: string) => {
    const g = await repo.group(id);
    if (!g) throw notFound(`Could not find group: ${id}.`, 'GroupNotFound');
    return g;
  };
  const checkDefaultProject = async (id: unknown) => {
    if (typeof id === 'string' && !(await repo.project(id)))
      throw notFound(`Could not find project: ${id}.`, 'ProjectNotFound');
  };

  // ---- users
  app.get('/v3/users', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_users');
    const q = req.query as Record<string, string>;
    const list = await users.list({ name: q.name, domainId: q.domain_id, enabled: queryBool(q.enabled) });
    return { users: list.map((u) => renderUser(ix, u)), links: listLinks(ix, 'users') };
  });
  app.get('/v3/users/:id', { schema: { params: Id } }, async (req) => {
    const { id } = req.params as { id: string };
    authorize(ix, req, 'identity:get_user', { user_id: id, target: { user: { id } } });
    return { user: renderUser(ix, await getUser(id)) };
  });
  app.post('/v3/users', { schema: { body: UserCreate } }, async (req, reply) => {
    const { user: b } = req.body;
    const domainId: string = b.domain_id ?? req.auth.projectDomainId ?? req.auth.domainId ?? 'default';
    authorize(ix, req, 'identity:create_user', { target: { user: { domain_id: domainId } } });
    if (!(await repo.domain(domainId))) throw notFound(`Could not find domain: ${domainId}.`, 'DomainNotFound');
    await checkDefaultProject(b.default_project_id);
    const id = newId();
    const hash = typeof b.password === 'string' ? await hashPassword(b.password) : null;
    await users.create(
      {
        id,
        name: b.name,
        domain_id: domainId,
        password_hash: hash,
        enabled: b.enabled === false ? 0 : 1,
        default_project_id: b.default_project_id ?? null,
        password_expires_at: null,
        description: b.description ?? null,
        email: b.email ?? null,
        options: JSON.stringify(b.options ?? {}),
        extra: JSON.stringify(splitExtra(b, USER_FIELDS)),
        created_at: new Date().toISOString(),
      },
      `Conflict occurred attempting to store user - Duplicate entry found with name ${b.name} at domain ID ${domainId}.`,
    );
    reply.code(201);
    return { user: renderUser(ix, (await repo.user(id))!) };
  });
  app.patch('/v3/users/:id', { schema: { params: Id, body: UserUpdate } }, async (req) => {
    const u = await authorizedUser(req, 'identity:update_user');
    const b: WithExtra<typeof UserUpdate.properties.user> = req.body.user;
    if (b.domain_id !== undefined && b.domain_id !== u.domain_id)
      throw badRequest(
        "Invalid input for field 'domain_id': the domain of a user cannot be changed.",
        'ValidationError',
      );
    await checkDefaultProject(b.default_project_id);
    const hash =
      typeof b.password === 'string' ? await hashPassword(b.password) : b.password === null ? null : u.password_hash;
    await users.update(
      u.id,
      {
        name: b.name ?? u.name,
        password_hash: hash,
        enabled: b.enabled === undefined ? u.enabled : b.enabled ? 1 : 0,
        default_project_id: b.default_project_id === undefined ? u.default_project_id : b.default_project_id,
        description: b.description === undefined ? u.description : b.description,
        email: b.email === undefined ? u.email : b.email,
        options: b.options ? JSON.stringify({ ...JSON.parse(u.options), ...b.options }) : u.options,
        extra: JSON.stringify({ ...JSON.parse(u.extra), ...splitExtra(b, USER_FIELDS) }),
      },
      `Conflict occurred attempting to store user - Duplicate entry found with name ${b.name} at domain ID ${u.domain_id}.`,
    );
    // An administrator enabling a user or setting its password lifts a lockout (Keystone: reset failed_auth_count).
    if (b.enabled === true || typeof b.password === 'string') await ix.tokens.lockout.reset(u.id);
    if ((b.enabled === false && u.enabled) || b.password !== undefined)
      await repo.revoke(
        { user_id: u.id, audit_id: null, project_id: null, domain_id: null, app_cred_id: null },
        ix.tokens.ttlMs,
      );
    return { user: renderUser(ix, (await repo.user(u.id))!) };
  });
  app.delete('/v3/users/:id', { schema: { params: Id } }, async (req, reply) => {
    const u = await authorizedUser(req, 'identity:delete_user');
    await users.delete(u.id);
    await repo.revoke(
      { user_id: u.id, audit_id: null, project_id: null, domain_id: null, app_cred_id: null },
      ix.tokens.ttlMs,
    );
    reply.code(204).send();
  });
  app.post('/v3/users/:id/password', { schema: { params: Id, body: PasswordChange } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    authorize(ix, req, 'identity:change_password', { user_id: id });
    const u = await getUser(id);
    const { user: b } = req.body;
    if (!(await verifyPassword(b.original_password, u.password_hash)))
      throw unauthorized('The original password is incorrect.');
    const hash = await hashPassword(b.password);
    await users.update(u.id, { password_hash: hash });
    await repo.revoke(
      { user_id: u.id, audit_id: null, project_id: null, domain_id: null, app_cred_id: null },
      ix.tokens.ttlMs,
    );
    reply.code(204).send();
  });
  app.get('/v3/users/:id/groups', { schema: { params: Id } }, async (req) => {
    const { id } = req.params as { id: string };
    authorize(ix, req, 'identity:list_groups_for_user', { user_id: id });
    await getUser(id);
    const list = await users.groups(id);
    return { groups: list.map((g) => renderGroup(ix, g)), links: listLinks(ix, `users/${id}/groups`) };
  });

  // ---- groups
  app.get('/v3/groups', { schema: { querystring: ListQuery } }, async (req) => {
    authorize(ix, req, 'identity:list_groups');
    const q = req.query as Record<string, string>;
    const list = await groups.list({ name: q.name, domainId: q.domain_id });
    return { groups: list.map((g) => renderGroup(ix, g)), links: listLinks(ix, 'groups') };
  });
  app.get('/v3/groups/:id', { schema: { params: Id } }, async (req) => {
    authorize(ix, req, 'identity:get_group');
    return { group: renderGroup(ix, await getGroup((req.params as { id: string }).id)) };
  });
  app.post('/v3/groups', { schema: { body: GroupCreate } }, async (req, reply) => {
    authorize(ix, req, 'identity:create_group');
    const { group: b } = req.body;
    const domainId: string = b.domain_id ?? req.auth.projectDomainId ?? req.auth.domainId ?? 'default';
    if (!(await repo.domain(domainId))) throw notFound(`Could not find domain: ${domainId}.`, 'DomainNotFound');
    const id = newId();
    await groups.create(
      { id, name: b.name, domain_id: domainId, description: b.description ?? '' },
      `Conflict occurred attempting to store group - Duplicate entry found with name ${b.name} at domain ID ${domainId}.`,
    );
    reply.code(201);
    return { group: renderGroup(ix, (await repo.group(id))!) };
  });
  app.patch('/v3/groups/:id', { schema: { params: Id, body: GroupUpdate } }, async (req) => {
    authorize(ix, req, 'identity:update_group');
    const g = await getGroup((req.params as { id: string }).id);
    const b: WithExtra<typeof GroupUpdate.properties.group> = req.body.group;
    if (b.domain_id !== undefined && b.domain_id !== g.domain_id)
      throw badRequest(
        "Invalid input for field 'domain_id': the domain of a group cannot be changed.",
        'ValidationError',
      );
    await groups.update(
      g.id,
      { name: b.name ?? g.name, description: b.description ?? g.description },
      `Conflict occurred attempting to store group - Duplicate entry found with name ${b.name} at domain ID ${g.domain_id}.`,
    );
    return { group: renderGroup(ix, (await repo.group(g.id))!) };
  });
  app.delete('/v3/groups/:id', { schema: { params: Id } }, async (req, reply) => {
    authorize(ix, req, 'identity:delete_group');
    const g = await getGroup((req.params as { id: string }).id);
    const members = await groups.memberIds(g.id);
    await groups.delete(g.id);
    for (const userId of members)
      await repo.revoke(
        { user_id: userId, audit_id: null, project_id: null, domain_id: null, app_cred_id: null },
        ix.tokens.ttlMs,
      );
    reply.code(204).send();
  });
  app.get('/v3/groups/:id/users', { schema: { params: Id } }, async (req) => {
    authorize(ix, req, 'identity:list_users_in_group');
    const g = await getGroup((req.params as { id: string }).id);
    const members = await groups.members(g.id);
    return { users: members.map((u) => renderUser(ix, u)), links: listLinks(ix, `groups/${g.id}/users`) };
  });
  const membership = async (params: unknown) => {
    const { id, user_id } = params as { id: string; user_id: string };
    return { group: await getGroup(id), user: await getUser(user_id) };
  };
  app.put('/v3/groups/:id/users/:user_id', async (req, reply) => {
    authorize(ix, req, 'identity:add_user_to_group');
    const { group, user } = await membership(req.params);
    if (!(await groups.hasMember(group.id, user.id))) await groups.addMember(group.id, user.id);
    reply.code(204).send();
  });
  app.head('/v3/groups/:id/users/:user_id', async (req, reply) => {
    authorize(ix, req, 'identity:check_user_in_group');
    const { group, user } = await membership(req.params);
    if (!(await groups.hasMember(group.id, user.id)))
      throw notFound(`User '${user.id}' not found in group '${group.id}'.`, 'NotFound');
    reply.code(204).send();
  });
  app.delete('/v3/groups/:id/users/:user_id', async (req, reply) => {
    authorize(ix, req, 'identity:remove_user_from_group');
    const { group, user } = await membership(req.params);
    if (!(await groups.removeMember(group.id, user.id)))
      throw notFound(`User '${user.id}' not found in group '${group.id}'.`, 'NotFound');
    await repo.revoke(
      { user_id: user.id, audit_id: null, project_id: null, domain_id: null, app_cred_id: null },
      ix.tokens.ttlMs,
    );
    reply.code(204).send();
  });
}
