import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { AuthContext, TokenValidator } from '../auth/context.js';
import type { KraterConfig } from '../config/config.js';
import type { PolicyEngine } from '../policy/engine.js';
import type { Store } from '../store/db.js';
import { ApiError, type NormalizedError, normalizeError, unauthorized } from './errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every protected route. */
    auth: AuthContext;
  }
  interface FastifyContextConfig {
    /** Routes reachable without a token (version documents, token issue). */
    public?: boolean;
  }
}

export type App = FastifyInstance<any, any, any, FastifyBaseLogger, TypeBoxTypeProvider>;

/** Shared core handed to every service facade. */
export interface CoreContext {
  config: KraterConfig;
  store: Store;
  policy: PolicyEngine;
  log: FastifyBaseLogger;
  tokens: TokenValidator;
}

export interface RenderedError {
  body: unknown;
  headers?: Record<string, string>;
}

/** A service facade: routes under one path prefix, its own error envelope, its catalog entry. */
export interface ServiceModule {
  name: string;
  prefix: string;
  catalog?: { type: string; name: string; suffix: string };
  renderError(err: NormalizedError, req: FastifyRequest): RenderedError;
  /** How a 401 is announced (`WWW-Authenticate`). */
  authenticateHeader?(core: CoreContext): string;
  register(app: App, core: CoreContext): Promise<void>;
  /** Rewrites a request URL under this prefix before routing (Neutron accepts a `.json` suffix on any path). */
  rewriteUrl?(url: string): string;
}

export interface BuildOptions {
  core: Omit<CoreContext, 'log'>;
  services: ServiceModule[];
  bodyLimit?: number;
}

const REDACT = [
  'req.headers["x-auth-token"]',
  'req.headers["x-subject-token"]',
  'req.headers.authorization',
  'req.headers.cookie',
];

export async function buildServer(opts: BuildOptions): Promise<App> {
  const { config } = opts.core;
  const app = Fastify({
    logger: { level: config.logLevel, redact: { paths: REDACT, censor: '***' } },
    genReqId: () => `req-${randomUUID()}`,
    // One log line per request (onResponse below) instead of Fastify's two.
    logController: new LogController({ requestIdLogLabel: 'request_id', disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    routerOptions: { maxParamLength: 2048, ignoreTrailingSlash: true, ignoreDuplicateSlashes: true },
    ajv: {
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: true,
        allErrors: false,
        strict: false,
      },
    },
    return503OnClosing: true,
    forceCloseConnections: true,
    rewriteUrl: (req) => {
      const url = req.url ?? '/';
      for (const s of opts.services)
        if (s.rewriteUrl && (url === s.prefix || url.startsWith(`${s.prefix}/`) || url.startsWith(`${s.prefix}?`)))
          return s.rewriteUrl(url);
      return url;
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  // Some clients send `Content-Type: application/json` with an empty body (DELETE, HEAD): treat as no body.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser(
    ['application/json', 'application/openstack-images-v2.1-json-patch'],
    { parseAs: 'string' },
    (req, body, done) => {
      if (body === '' || body === undefined) return done(null, undefined);
      jsonParser(req, body as string, done);
    },
  );

  app.addHook('onRequest', async (req, reply) => {
    reply.header('X-OpenStack-Request-Id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      {
        method: req.method,
        url: req.url.replace(/\?.*/, ''),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request',
    );
  });

  const core: CoreContext = { ...opts.core, log: app.log };

  await app.register(swagger, {
    openapi: { info: { title: 'Krater API', description: 'OpenStack-compatible container cloud', version: '0.1.0' } },
  });
  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
  app.get('/', { config: { public: true }, schema: { hide: true } }, async () => ({
    name: 'krater',
    services: opts.services
      .filter((s) => s.catalog)
      .map((s) => ({ name: s.name, type: s.catalog!.type, url: `${config.publicUrl}${s.prefix}${s.catalog!.suffix}` })),
  }));

  for (const service of opts.services) {
    await app.register(
      async (scope) => {
        const s = scope as App;
        const sendError = (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
          const normalized = normalizeError(err);
          if (normalized.internal) req.log.error({ err }, 'unhandled error');
          else if (normalized.status >= 500)
            req.log.warn({ status: normalized.status, msg: normalized.message }, 'request failed');
          const rendered = service.renderError(normalized, req);
          const headers = { ...normalized.headers, ...rendered.headers };
          if (normalized.status === 401 && service.authenticateHeader)
            headers['WWW-Authenticate'] = service.authenticateHeader(core);
          reply.code(normalized.status).headers(headers);
          return reply.send(rendered.body);
        };
        s.setErrorHandler((err, req, reply) => sendError(err, req, reply));
        s.setNotFoundHandler((req, reply) =>
          sendError(new ApiError(404, 'The resource could not be found.', 'NotFound'), req, reply),
        );
        s.addHook('onRequest', async (req) => {
          if (req.routeOptions.config?.public) return;
          const token = req.headers['x-auth-token'] ?? req.headers['x-storage-token'];
          if (typeof token !== 'string' || token === '') throw unauthorized();
          req.auth = await core.tokens.validateForRequest(token);
        });
        await service.register(s, core);
      },
      { prefix: service.prefix },
    );
  }
  return app;
}
