import { randomBytes } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { hashPassword } from '../../../core/auth/password.js';
import { badRequest, forbidden, notFound } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import { authorize, type IdentityContext, listLinks } from '../context.js';
import { newId, parseClientTime } from '../ids.js';
import { renderAppCred } from '../render.js';

const AppCredCreate = Type.Object({
  application_credential: Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 255 }),
      secret: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 4096 }), Type.Null()])),
      description: Type.Optional(Type.Union([Type.String({ maxLength: 65535 }), Type.Null()])),
      expires_at: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      roles: Type.Optional(
        Type.Array(
          Type.Object(
            {
              id: Type.Optional(Type.String()),
              name: Type.Optional(Type.String()),
              domain_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
            },
            { additionalProperties: false },
          ),
        ),
      ),
      unrestricted: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
      access_rules: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
      system: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    },
    { additionalProperties: false },
  ),
});

export function appCredRoutes(app: App, ix: IdentityContext): void {
  const { repo, appCreds } = ix;
  const base = (userId: string) => `users/${userId}/application_credentials`;

  app.post('/v3/users/:user_id/application_credentials', { schema: { body: AppCredCreate } }, async (req, reply) => {
    const { user_id } = req.params as { user_id: string };
    authorize(ix, req, 'identity:create_application_credential', { user_id });
    if (!(await repo.user(user_id))) throw notFound(`Could not find user: ${user_id}.`, 'UserNotFound');
    const projectId = req.auth.projectId;
    if (!projectId)
      throw badRequest('Application credentials can only be created with a project-scoped token.', 'ValidationError');
    // A restricted application credential cannot be used to create another one (Keystone's escalation guard).
    if (req.auth.appCredentialId) {
      const parent = await repo.appCred(req.auth.appCredentialId);
      if (parent && !parent.unrestricted)
        throw forbidden(
          'Using method application_credential is not allowed for managing additional application credentials.',
          'ForbiddenAction',
        );
    }
    const { application_credential: b } = req.body;
    let expiresAt: number | null = null;
    if (b.expires_at) {
      expiresAt = parseClientTime(b.expires_at);
      if (expiresAt === null)
        throw badRequest(
          `Invalid input for field 'expires_at': '${b.expires_at}' is not a valid date-time.`,
          'ValidationError',
        );
      if (expiresAt <= Date.now())
        throw badRequest(
          "Invalid input for field 'expires_at': the expiry time must be in the future.",
          'ValidationError',
        );
    }
    // Roles: a subset of the caller's effective roles on the project; none given means all of them.
    const held = await repo.effectiveRoles(req.auth.userId, 'project', projectId);
    let roles = held;
    if (b.roles && b.roles.length > 0) {
      roles = [];
      for (const ref of b.roles) {
        const match = held.find((r) => (ref.id && r.id === ref.id) || (!ref.id && ref.name && r.name === ref.name));
        if (!match)
          throw forbidden(
            `Cannot create an application credential with requested role(s) not assigned to the user: ${ref.id ?? ref.name}.`,
            'RoleAssignmentNotFound',
          );
        if (!roles.some((r) => r.id === match.id)) roles.push(match);
      }
    }
    const secret: string = b.secret ?? randomBytes(48).toString('base64url');
    const id = newId();
    const secretHash = await hashPassword(secret);
    await appCreds.create(
      {
        id,
        name: b.name,
        user_id,
        project_id: projectId,
        secret_hash: secretHash,
        description: b.description ?? null,
        expires_at: expiresAt === null ? null : String(expiresAt),
        unrestricted: b.unrestricted ? 1 : 0,
        roles: JSON.stringify(roles.map((r) => ({ id: r.id, name: r.name, domain_id: r.domain_id }))),
        access_rules: JSON.stringify(b.access_rules ?? []),
        created_at: new Date().toISOString(),
      },
      `Conflict occurred attempting to store application_credential - Duplicate entry found with name ${b.name}.`,
    );
    reply.code(201);
    return { application_credential: { ...renderAppCred(ix, (await repo.appCred(id))!), secret } };
  });

  app.get('/v3/users/:user_id/application_credentials', async (req) => {
    const { user_id } = req.params as { user_id: string };
    authorize(ix, req, 'identity:list_application_credentials', { user_id });
    const q = req.query as Record<string, string>;
    const list = await appCreds.listOfUser(user_id, q.name);
    return {
      application_credentials: list.map((a) => renderAppCred(ix, a)),
      links: listLinks(ix, base(user_id)),
    };
  });

  const getOwn = async (params: unknown) => {
    const { user_id, id } = params as { user_id: string; id: string };
    const a = await repo.appCred(id);
    if (!a || a.user_id !== user_id)
      throw notFound(`Could not find Application Credential: ${id}.`, 'ApplicationCredentialNotFound');
    return a;
  };
  app.get('/v3/users/:user_id/application_credentials/:id', async (req) => {
    authorize(ix, req, 'identity:get_application_credential', { user_id: (req.params as { user_id: string }).user_id });
    return { application_credential: renderAppCred(ix, await getOwn(req.params)) };
  });
  app.delete('/v3/users/:user_id/application_credentials/:id', async (req, reply) => {
    authorize(ix, req, 'identity:delete_application_credential', {
      user_id: (req.params as { user_id: string }).user_id,
    });
    const a = await getOwn(req.params);
    await appCreds.delete(a.id);
    await repo.revoke(
      { app_cred_id: a.id, user_id: null, audit_id: null, project_id: null, domain_id: null },
      ix.tokens.ttlMs,
    );
    reply.code(204).send();
  });
  app.get('/v3/users/:user_id/access_rules', async (req) => {
    const { user_id } = req.params as { user_id: string };
    authorize(ix, req, 'identity:list_access_rules', { user_id });
    return {
      access_rules: await appCreds.accessRulesOfUser(user_id),
      links: listLinks(ix, `users/${user_id}/access_rules`),
    };
  });
}
