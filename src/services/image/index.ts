import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuthContext } from '../../core/auth/context.js';
import type { KraterConfig } from '../../core/config/config.js';
import type { ImageSettings } from '../../core/config/images.js';
import { type NormalizedError, STATUS_TITLES } from '../../core/http/errors.js';
import type { App, RenderedError, ServiceModule } from '../../core/http/server.js';
import type { PolicyEngine } from '../../core/policy/engine.js';
import type { Store } from '../../core/store/db.js';
import { AGENT_HOST_HEADER, AGENT_SECRET_HEADER } from '../../images/glance-http.js';
import type { GlancePort } from '../../images/glance-port.js';
import type { ImageContext } from './context.js';
import { FilesystemImageStore, type ImageDataStore } from './data-store.js';
import { InProcessGlance } from './in-process.js';
import { imagePolicies } from './policies.js';
import { ImageRepo } from './repo.js';
import { dataRoutes } from './routes/data.js';
import { imageRoutes } from './routes/images.js';
import { imageSchema, imagesSchema, memberSchema, membersSchema } from './schemas.js';

export const IMAGE_PREFIX = '/image';

/** Glance advertises its minor versions (it is not microversioned); the newest is CURRENT. */
const MINOR_VERSIONS = 18;

function versionsDoc(base: string) {
  const versions = [];
  for (let minor = MINOR_VERSIONS; minor >= 0; minor--) {
    versions.push({
      id: `v2.${minor}`,
      status: minor === MINOR_VERSIONS ? 'CURRENT' : 'SUPPORTED',
      links: [{ rel: 'self', href: `${base}/v2/` }],
    });
  }
  return { versions };
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * Glance's errors are webob error pages: JSON `{"code":"404 Not Found","title":"Not Found","message":"…"}` when the
 * client asks for JSON, plain text when it asks only for text/plain, HTML otherwise. The flat JSON shape must not
 * reach python-glanceclient (its `from_response` calls `.get('message')` on every top-level value and crashes on
 * strings); glanceclient sends no Accept header, so it gets the HTML page it knows how to strip.
 */
export function renderGlanceError(err: NormalizedError, req: FastifyRequest): RenderedError {
  const title = STATUS_TITLES[err.status] ?? 'Error';
  const code = `${err.status} ${title}`;
  const message = err.internal
    ? 'The server has either erred or is incapable of performing the requested operation.'
    : err.message;
  const accept = String(req.headers.accept ?? '').toLowerCase();
  const types = accept.split(',').map((t) => t.split(';')[0].trim());
  if (types.includes('application/json') && !types.includes('text/html')) return { body: { code, title, message } };
  if (types.length > 0 && types.every((t) => t === 'text/plain')) {
    return { body: `${code}\n\n${message}\n\n   `, headers: { 'Content-Type': 'text/plain; charset=UTF-8' } };
  }
  const html = `<html>\n <head>\n  <title>${code}</title>\n </head>\n <body>\n  <h1>${code}</h1>\n  ${escapeHtml(message)}<br /><br />\n\n\n\n </body>\n</html>`;
  return { body: html, headers: { 'Content-Type': 'text/html; charset=UTF-8' } };
}

/** An upload with no data for this long is taken for dead (its process crashed or was killed). */
const UPLOAD_IDLE_MS = 15 * 60 * 1000;

/**
 * Returns images stuck in `saving` by a process that died mid-upload to `queued` (and drops their partial data), so
 * they can be uploaded again. An upload is dead when it started long ago and no data arrived for a while in any
 * process sharing the data store.
 */
export async function recoverStalledUploads(
  repo: ImageRepo,
  data: ImageDataStore,
  maxIdleMs = UPLOAD_IDLE_MS,
): Promise<string[]> {
  if (!data.uploadActivity) return [];
  const cutoff = new Date(Date.now() - maxIdleMs).toISOString();
  const rows = await repo.db
    .selectFrom('images')
    .select('id')
    .where('status', '=', 'saving')
    .where('updated_at', '<', cutoff)
    .execute();
  const recovered: string[] = [];
  for (const { id } of rows) {
    const last = await data.uploadActivity(id);
    if (last !== null && Date.now() - last <= maxIdleMs) continue;
    if (await repo.transition(id, ['saving'], { status: 'queued' })) recovered.push(id);
    await data.discardStalePartials?.(id, maxIdleMs);
  }
  return recovered;
}

/**
 * What a host agent is on the routes open to it (its containers' image data, its commits): the admin of Glance's
 * policy, as Zun's compute service is with its service credentials; never a member of any project.
 */
function agentContext(host: string): AuthContext {
  const now = Date.now();
  return {
    token: '',
    userId: `krater-agent:${host}`,
    userName: `krater-agent:${host}`,
    userDomainId: 'default',
    userDomainName: 'Default',
    systemScope: 'all',
    roles: ['admin', 'service'],
    roleIds: [],
    isAdmin: true,
    methods: ['agent'],
    auditIds: [],
    issuedAt: now,
    expiresAt: now,
  };
}

export interface ImageService {
  module: ServiceModule;
  repo: ImageRepo;
  data: ImageDataStore;
  settings: ImageSettings;
  /** What Zun and the agents use of Glance, in-process (over this repository and this data store). */
  port: GlancePort;
}

/** The Glance v2 facade under `/image`: image records in the store, image data in a pluggable `ImageDataStore` (the file backend on `KRATER_IMAGE_DIR`, default `<data-dir>/images/`). */
export function createImageService(
  config: KraterConfig,
  store: Store,
  policy: PolicyEngine,
  opts: {
    data?: ImageDataStore;
    /** Checks a host agent's name and secret (routes marked `agentAccess`: an agent's image data and commits). */
    agentCredentials?: (host: string, secret: string) => Promise<boolean>;
  } = {},
): ImageService {
  const data = opts.data;
  policy.registerDefaults(imagePolicies);
  const repo = new ImageRepo(store.db);
  const settings = config.image;
  const dataStore = data ?? new FilesystemImageStore(config.imageDir);
  const base = `${config.publicUrl}${IMAGE_PREFIX}`;
  const module: ServiceModule = {
    name: 'glance',
    prefix: IMAGE_PREFIX,
    catalog: { type: 'image', name: 'glance', suffix: '' },
    renderError: renderGlanceError,
    authenticateHeader: () => `Keystone uri="${config.publicUrl}/identity/v3"`,
    async authenticateAgent(req) {
      const host = req.headers[AGENT_HOST_HEADER];
      const secret = req.headers[AGENT_SECRET_HEADER];
      if (typeof host !== 'string' || typeof secret !== 'string' || !host || !secret || !opts.agentCredentials)
        return undefined;
      if (!(await opts.agentCredentials(host, secret))) return undefined;
      return agentContext(host);
    },
    async register(app: App, core) {
      // Uploads a dead process left behind: images back to `queued`, partial files removed.
      const recover = async () => {
        try {
          const ids = await recoverStalledUploads(repo, dataStore);
          if (ids.length)
            core.log.warn({ images: ids }, 'image uploads interrupted by a stopped process: images returned to queued');
          if (dataStore instanceof FilesystemImageStore) dataStore.sweepPartials(24 * 3600 * 1000);
        } catch (err) {
          core.log.warn({ err }, 'could not check for interrupted image uploads');
        }
      };
      await recover();
      const timer = setInterval(recover, 5 * 60 * 1000);
      timer.unref();
      app.addHook('onClose', async () => clearInterval(timer));
      const ix: ImageContext = { core, repo, data: dataStore, settings, base };
      const versions = async (_req: FastifyRequest, reply: FastifyReply) => {
        reply.code(300);
        return versionsDoc(base);
      };
      app.get('/', { config: { public: true } }, versions);
      app.get('/versions', { config: { public: true } }, async () => versionsDoc(base));
      app.get('/v2', { config: { public: true } }, versions);
      app.get('/v2/schemas/image', async () => imageSchema());
      app.get('/v2/schemas/images', async () => imagesSchema());
      app.get('/v2/schemas/member', async () => memberSchema());
      app.get('/v2/schemas/members', async () => membersSchema());
      imageRoutes(app, ix);
      dataRoutes(app, ix);
    },
  };
  return { module, repo, data: dataStore, settings, port: new InProcessGlance(repo, dataStore) };
}
