import type { TokenKeySource } from '../../core/auth/stored-keys.js';
import type { KraterConfig } from '../../core/config/config.js';
import { STATUS_TITLES } from '../../core/http/errors.js';
import type { App, ServiceModule } from '../../core/http/server.js';
import type { PolicyEngine } from '../../core/policy/engine.js';
import type { Store } from '../../core/store/db.js';
import { buildCatalog } from './catalog.js';
import type { IdentityContext } from './context.js';
import { Lockout } from './lockout.js';
import { identityPolicies } from './policies.js';
import { IdentityRepo } from './repo.js';
import { identityRepos } from './repos/index.js';
import { appCredRoutes } from './routes/app-creds.js';
import { authRoutes } from './routes/auth.js';
import { catalogRoutes } from './routes/catalog.js';
import { domainProjectRoutes } from './routes/domains-projects.js';
import { roleAssignmentRoutes } from './routes/roles-assignments.js';
import { userGroupRoutes } from './routes/users-groups.js';
import { TokenService } from './tokens.js';

export const IDENTITY_PREFIX = '/identity';

/** Keystone's version object; `updated` and `id` are those of the v3.14 API Krater implements. */
function versionDoc(base: string) {
  return {
    id: 'v3.14',
    status: 'stable',
    updated: '2020-04-07T00:00:00Z',
    links: [{ rel: 'self', href: `${base}/v3/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
  };
}

export interface Identity {
  module: ServiceModule;
  repo: IdentityRepo;
  tokens: TokenService;
}

/** The Keystone v3 facade under `/identity`: identity, tokens, catalog, policy-checked CRUD. */
export function createIdentity(
  config: KraterConfig,
  store: Store,
  keys: TokenKeySource,
  policy: PolicyEngine,
): Identity {
  policy.registerDefaults(identityPolicies);
  const repo = new IdentityRepo(store);
  const lockout = new Lockout(store.db, {
    failureAttempts: config.lockoutFailureAttempts,
    durationMs: config.lockoutDurationSeconds * 1000,
  });
  const tokens = new TokenService(repo, keys, config.tokenTtlSeconds * 1000, () => buildCatalog(repo), lockout);
  const root = `${config.publicUrl}${IDENTITY_PREFIX}`;
  const module: ServiceModule = {
    name: 'keystone',
    prefix: IDENTITY_PREFIX,
    catalog: { type: 'identity', name: 'keystone', suffix: '/v3' },
    renderError: (err) => ({
      body: { error: { code: err.status, title: STATUS_TITLES[err.status] ?? 'Error', message: err.message } },
    }),
    authenticateHeader: () => `Keystone uri="${root}/v3"`,
    async register(app: App, core) {
      const ix: IdentityContext = { core, repo, tokens, base: `${root}/v3`, ...identityRepos(repo) };
      // Keystone reads its filters with Flask's `request.args.to_dict()`: of a repeated parameter, the first value.
      app.addHook('onRequest', async (req) => {
        const q = req.query as Record<string, unknown>;
        for (const [k, v] of Object.entries(q ?? {})) if (Array.isArray(v)) q[k] = v[0];
      });
      app.get('/', { config: { public: true } }, async (_req, reply) => {
        reply.code(300).header('Location', `${root}/v3/`);
        return { versions: { values: [versionDoc(root)] } };
      });
      app.get('/v3', { config: { public: true } }, async () => ({ version: versionDoc(root) }));
      authRoutes(app, ix);
      domainProjectRoutes(app, ix);
      userGroupRoutes(app, ix);
      roleAssignmentRoutes(app, ix);
      catalogRoutes(app, ix);
      appCredRoutes(app, ix);
    },
  };
  return { module, repo, tokens };
}
