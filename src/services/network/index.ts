/**
 * The Neutron v2.0 facade under `/network` (catalog type `network`, unversioned URL: clients append /v2.0), and
 * the same operations as an in-process API for the Zun facade and the agent.
 */
import { Type } from '@sinclair/typebox';
import type { KraterConfig } from '../../core/config/config.js';
import type { NormalizedError } from '../../core/http/errors.js';
import type { App, RenderedError, ServiceModule } from '../../core/http/server.js';
import type { PolicyEngine } from '../../core/policy/engine.js';
import type { Store } from '../../core/store/db.js';
import { createNeutronApi, type NeutronApi } from './api.js';
import { actorFromAuth, NetContext } from './context.js';
import { networkPolicies } from './policies.js';
import { extensionRoutes } from './routes/extensions.js';
import { quotaRoutes } from './routes/quotas.js';
import { resourceRoutes } from './routes/resources.js';
import { Neutron } from './service.js';

export type { NeutronApi } from './api.js';
export type { NeutronActor } from './context.js';
export { REVISION_KEY as NETWORK_REVISION_KEY } from './context.js';

export const NETWORK_PREFIX = '/network';

const DEFAULT_TYPES: Record<number, string> = {
  400: 'HTTPBadRequest',
  403: 'HTTPForbidden',
  404: 'HTTPNotFound',
  405: 'HTTPMethodNotAllowed',
  409: 'HTTPConflict',
  413: 'HTTPRequestEntityTooLarge',
  414: 'HTTPRequestURITooLong',
  415: 'HTTPUnsupportedMediaType',
  431: 'HTTPRequestHeaderFieldsTooLarge',
  500: 'HTTPInternalServerError',
  503: 'HTTPServiceUnavailable',
};

/** `{"NeutronError":{"type","message","detail":""}}`; a 401 is keystonemiddleware's own body, as with Neutron. */
export function renderNeutronError(err: NormalizedError): RenderedError {
  if (err.status === 401) return { body: { error: { code: 401, title: 'Unauthorized', message: err.message } } };
  let type = err.kind;
  if (!type || type === 'ValidationError' || type === 'NotFound' || type === 'Forbidden' || type === 'Conflict')
    type = DEFAULT_TYPES[err.status] ?? 'HTTPError';
  const message = err.internal ? 'Request Failed: internal server error while processing your request.' : err.message;
  return { body: { NeutronError: { type, message, detail: '' } } };
}

/** Neutron accepts a `.json` suffix on any path (`/v2.0/networks.json?…`). */
export function stripJsonSuffix(url: string): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (!path.endsWith('.json')) return url;
  return path.slice(0, -'.json'.length) + (q < 0 ? '' : url.slice(q));
}

const RESOURCES = [
  ['subnet', 'subnets'],
  ['subnetpool', 'subnetpools'],
  ['network', 'networks'],
  ['port', 'ports'],
  ['security_group', 'security-groups'],
  ['security_group_rule', 'security-group-rules'],
  ['router', 'routers'],
  ['floatingip', 'floatingips'],
  ['quota', 'quotas'],
  ['extension', 'extensions'],
];

export function createNetworkService(
  config: KraterConfig,
  store: Store,
  policy: PolicyEngine,
  opts: { onChange?: () => void } = {},
): { module: ServiceModule; api: NeutronApi } {
  policy.registerDefaults(networkPolicies);
  const nx = new NetContext(store, policy, config.network, opts.onChange);
  const neutron = new Neutron(nx);
  const base = `${config.publicUrl}${NETWORK_PREFIX}`;
  const module: ServiceModule = {
    name: 'neutron',
    prefix: NETWORK_PREFIX,
    catalog: { type: 'network', name: 'neutron', suffix: '' },
    renderError: renderNeutronError,
    authenticateHeader: () => `Keystone uri="${config.publicUrl}/identity/v3"`,
    rewriteUrl: stripJsonSuffix,
    async register(app: App) {
      app.get('/', { config: { public: true } }, async () => ({
        versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ href: `${base}/v2.0/`, rel: 'self' }] }],
      }));
      app.get('/v2.0', async () => ({
        resources: RESOURCES.map(([name, collection]) => ({
          name,
          collection,
          links: [{ href: `${base}/v2.0/${collection}`, rel: 'self' }],
        })),
      }));
      resourceRoutes(app, neutron, base);
      const IdParams = Type.Object({ id: Type.String({ maxLength: 255 }) });
      const Body = Type.Unknown();
      app.put('/v2.0/routers/:id/add_router_interface', { schema: { params: IdParams, body: Body } }, async (req) => {
        const { id } = req.params as { id: string };
        return neutron.routers.addInterface(actorFromAuth(req.auth), id, req.body as Record<string, unknown>);
      });
      app.put(
        '/v2.0/routers/:id/remove_router_interface',
        { schema: { params: IdParams, body: Body } },
        async (req) => {
          const { id } = req.params as { id: string };
          return neutron.routers.removeInterface(actorFromAuth(req.auth), id, req.body as Record<string, unknown>);
        },
      );
      quotaRoutes(app, nx);
      extensionRoutes(app);
    },
  };
  return { module, api: createNeutronApi(neutron, base) };
}
