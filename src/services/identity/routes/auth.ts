import { Type } from '@sinclair/typebox';
import { badRequest, notFound } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import { buildCatalog } from '../catalog.js';
import { authorize, type IdentityContext, listLinks, queryBool } from '../context.js';
import { renderDomain, renderProject } from '../render.js';

const AuthBody = Type.Object(
  {
    auth: Type.Object(
      {
        identity: Type.Object({ methods: Type.Array(Type.String(), { minItems: 1 }) }, { additionalProperties: true }),
        scope: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.String()])),
      },
      { additionalProperties: true },
    ),
  },
  { additionalProperties: true },
);
const TokenQuery = Type.Object(
  { nocatalog: Type.Optional(Type.String()), allow_expired: Type.Optional(Type.String()) },
  { additionalProperties: true },
);

export function authRoutes(app: App, ix: IdentityContext): void {
  app.post(
    '/v3/auth/tokens',
    {
      config: { public: true },
      schema: { body: AuthBody, querystring: TokenQuery, tags: ['identity'], summary: 'Issue a token' },
    },
    async (req, reply) => {
      const { auth } = req.body as { auth: { identity: Record<string, unknown>; scope?: unknown } };
      if (typeof auth.scope === 'string' && auth.scope !== 'unscoped')
        throw badRequest("Invalid input for field 'auth/scope'.");
      const { token, valid } = await ix.tokens.issue({
        identity: auth.identity as never,
        scope: auth.scope === 'unscoped' ? undefined : auth.scope,
      });
      const withCatalog = (req.query as Record<string, unknown>).nocatalog === undefined;
      reply.code(201).header('X-Subject-Token', token);
      return ix.tokens.render(valid, withCatalog);
    },
  );

  const subject = (headers: Record<string, unknown>) => {
    const s = headers['x-subject-token'];
    if (typeof s !== 'string' || !s) throw notFound('Failed to validate token', 'TokenNotFound');
    return s;
  };

  app.head('/v3/auth/tokens', async (req, reply) => {
    const token = subject(req.headers);
    const valid = await ix.tokens.validateSubject(token, false);
    authorize(ix, req, 'identity:check_token', { target: { token: { user_id: valid.user.id } } });
    reply.header('X-Subject-Token', token).code(200).send();
  });

  app.get(
    '/v3/auth/tokens',
    { schema: { querystring: TokenQuery, tags: ['identity'], summary: 'Validate a token' } },
    async (req, reply) => {
      const q = req.query as Record<string, unknown>;
      const token = subject(req.headers);
      const valid = await ix.tokens.validateSubject(token, queryBool(q.allow_expired) === true);
      authorize(ix, req, 'identity:validate_token', { target: { token: { user_id: valid.user.id } } });
      reply.header('X-Subject-Token', token);
      return ix.tokens.render(valid, q.nocatalog === undefined);
    },
  );

  app.delete('/v3/auth/tokens', async (req, reply) => {
    const token = subject(req.headers);
    const valid = await ix.tokens.validateSubject(token, false);
    authorize(ix, req, 'identity:revoke_token', { target: { token: { user_id: valid.user.id } } });
    await ix.tokens.revoke(valid);
    reply.code(204).send();
  });

  app.get('/v3/auth/catalog', async () => ({
    catalog: await buildCatalog(ix.repo),
    links: listLinks(ix, 'auth/catalog'),
  }));

  app.get('/v3/auth/projects', async (req) => {
    const ids = await ix.assignments.targetIds('UserProject', [req.auth.userId]);
    const groups = await ix.repo.groupIdsOfUser(req.auth.userId);
    const viaGroups = await ix.assignments.targetIds('GroupProject', groups);
    const projects = [];
    for (const id of new Set([...ids, ...viaGroups])) {
      const p = await ix.repo.project(id);
      if (p?.enabled && (await ix.repo.domain(p.domain_id))?.enabled) projects.push(renderProject(ix, p));
    }
    return { projects, links: listLinks(ix, 'auth/projects') };
  });

  app.get('/v3/auth/domains', async (req) => {
    const ids = await ix.assignments.targetIds('UserDomain', [req.auth.userId]);
    const domains = [];
    for (const id of new Set(ids)) {
      const d = await ix.repo.domain(id);
      if (d?.enabled) domains.push(renderDomain(ix, d));
    }
    return { domains, links: listLinks(ix, 'auth/domains') };
  });

  app.get('/v3/auth/system', async (req) => {
    const roles = await ix.repo.effectiveRoles(req.auth.userId, 'system', 'system');
    return { system: roles.length ? [{ all: true }] : [], links: listLinks(ix, 'auth/system') };
  });
}
