import type { AgentDirectory } from '../../compute/agent-port.js';
import { ContainerApi } from '../../compute/container-api.js';
import { HostRepo } from '../../compute/hosts.js';
import { RegistryRepo, ZunImageRepo } from '../../compute/image-records.js';
import { ContainerNetworking, type NeutronClient } from '../../compute/networking.js';
import { ContainerRepo } from '../../compute/repo.js';
import { ZunNetworkRepo } from '../../compute/zun-networks.js';
import type { KraterConfig } from '../../core/config/config.js';
import { ApiError, STATUS_TITLES } from '../../core/http/errors.js';
import { fmt, type MicroversionSpec, negotiate } from '../../core/http/microversion.js';
import type { App, ServiceModule } from '../../core/http/server.js';
import type { PolicyEngine } from '../../core/policy/engine.js';
import type { Store } from '../../core/store/db.js';
import type { GlancePort } from '../../images/glance-port.js';
import type { ZunContext } from './context.js';
import { containerPolicies } from './policies.js';
import { adminRoutes } from './routes/admin.js';
import { containerRoutes } from './routes/containers.js';
import { eventRoutes } from './routes/events.js';
import { imageRoutes } from './routes/images.js';
import { networkRoutes } from './routes/networks.js';
import { zunNetworkRoutes } from './routes/zun-networks.js';
import { attachWebSocketServer } from './websocket.js';

export const CONTAINER_PREFIX = '/container';
export const ZUN_VERSIONS: MicroversionSpec = {
  words: ['container'],
  min: { major: 1, minor: 1 },
  max: { major: 1, minor: 40 },
  echo: 'requested',
};

const kebab = (s: string) =>
  s
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z])([A-Z][a-z])/g, '$1-$2')
    .toLowerCase();

/** The Zun API v1 facade under `/container`: containers as cloud resources, run by the agents. */
export function createContainerService(
  config: KraterConfig,
  store: Store,
  policy: PolicyEngine,
  agents: AgentDirectory,
  glance: GlancePort,
  neutron?: NeutronClient,
): { module: ServiceModule; repo: ContainerRepo; api: ContainerApi } {
  policy.registerDefaults(containerPolicies);
  const repo = new ContainerRepo(store.db);
  const networking = neutron ? new ContainerNetworking(neutron) : undefined;
  const api = new ContainerApi(repo, agents, networking, config.scheduler.weigher);
  const registries = new RegistryRepo(store.db);
  const base = `${config.publicUrl}${CONTAINER_PREFIX}`;
  const v1 = {
    id: 'v1',
    links: [{ href: `${base}/v1/`, rel: 'self' }],
    status: 'CURRENT',
    max_version: fmt(ZUN_VERSIONS.max),
    min_version: fmt(ZUN_VERSIONS.min),
  };
  const module: ServiceModule = {
    name: 'zun',
    prefix: CONTAINER_PREFIX,
    catalog: { type: 'container', name: 'zun', suffix: '/v1' },
    renderError(err, req) {
      if (err.status === 401) return { body: { error: { code: 401, title: 'Unauthorized', message: err.message } } };
      const requestId = req.id;
      if (err.status >= 500 && err.internal) {
        return {
          body: {
            errors: [
              {
                request_id: requestId,
                code: 'container.',
                status: err.status,
                title: STATUS_TITLES[err.status] ?? 'Error',
                detail: `The server has either erred or is incapable of performing the requested operation. Error Correlation id is: ${requestId}`,
                links: [],
              },
            ],
          },
        };
      }
      const klass =
        err.kind === 'ValidationError'
          ? 'SchemaValidationError'
          : (err.kind ?? (err.status === 404 ? 'NotFound' : 'Invalid'));
      const e: Record<string, unknown> = {
        request_id: requestId,
        code: `container.${kebab(klass)}`,
        status: err.status,
        title: err.message,
        detail: err.message,
        links: [],
      };
      if (err.status === 406 && /minor version is not supported|Minimum version/.test(err.message)) {
        Object.assign(e, {
          code: 'zun.microversion-unsupported',
          title: 'Requested microversion is unsupported',
          max_version: fmt(ZUN_VERSIONS.max),
          min_version: fmt(ZUN_VERSIONS.min),
        });
      }
      return { body: { errors: [e] } };
    },
    authenticateHeader: () => `Keystone uri="${config.publicUrl}/identity/v3"`,
    async register(app: App, core) {
      const wsBase = `${config.publicUrl.replace(/^http/, 'ws')}${CONTAINER_PREFIX}/ws`;
      const zx: ZunContext = {
        core,
        repo,
        hosts: new HostRepo(store.db),
        images: new ZunImageRepo(store.db),
        registries,
        zunNetworks: new ZunNetworkRepo(store.db),
        api,
        agents,
        glance,
        base,
        wsBase,
        networking,
      };
      attachWebSocketServer(app.server, {
        path: `${CONTAINER_PREFIX}/ws`,
        publicUrl: config.publicUrl,
        repo,
        agents,
        log: core.log,
      });
      app.get('/', { config: { public: true } }, async () => ({
        name: 'OpenStack Zun API',
        description: 'Zun is an OpenStack project which aims to provide containers service.',
        versions: [v1],
        default_version: v1,
      }));
      const resources = [
        'services',
        'containers',
        'images',
        'networks',
        'hosts',
        'capsules',
        'availability_zones',
        'quotas',
        'quota_classes',
        'registries',
      ];
      app.get('/v1', { config: { public: true } }, async (req, reply) => {
        reply.headers(negotiate(req.headers, ZUN_VERSIONS).headers);
        return {
          id: 'v1',
          media_types: [{ base: 'application/json', type: 'application/vnd.openstack.zun.v1+json' }],
          links: [
            { href: `${base}/v1/`, rel: 'self' },
            {
              href: 'https://docs.openstack.org/developer/zun/dev/api-spec-v1.html',
              rel: 'describedby',
              type: 'text/html',
            },
          ],
          ...Object.fromEntries(
            resources.map((r) => [
              r,
              [
                { href: `${base}/v1/${r}/`, rel: 'self' },
                { href: `${base}/${r}/`, rel: 'bookmark' },
              ],
            ]),
          ),
        };
      });
      // Zun serves every resource under /v1 and, version-less, at the root (bookmark links point there).
      for (const prefix of ['/v1', '']) {
        await app.register(
          async (scope) => {
            const s = scope as App;
            s.decorateRequest('zunVersion', null as never);
            // zunclient sends DELETE (and some actions) as raw requests typed application/octet-stream, no body.
            s.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, _body, done) =>
              done(null, undefined),
            );
            s.addHook('onRequest', async (req, reply) => {
              const n = negotiate(req.headers, ZUN_VERSIONS);
              reply.headers(n.headers);
              req.zunVersion = n.version;
              // Zun's query parameters are single strings (its jsonschema refuses a list): a repeated one is a 400,
              // never an array handed to a filter.
              const repeatable = req.routeOptions.config?.repeatableQuery ?? [];
              for (const [k, v] of Object.entries((req.query as Record<string, unknown>) ?? {}))
                if (Array.isArray(v) && !repeatable.includes(k))
                  throw new ApiError(
                    400,
                    `Invalid input for query parameters ${k}. Value: ${JSON.stringify(v)}. The parameter is repeated.`,
                    'InvalidParameterValue',
                  );
            });
            containerRoutes(s, zx);
            adminRoutes(s, zx);
            imageRoutes(s, zx);
            networkRoutes(s, zx);
            zunNetworkRoutes(s, zx);
            eventRoutes(s, zx);
          },
          { prefix },
        );
      }
    },
  };
  return { module, repo, api };
}
