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
import { ApiError, type NormalizedError, normalizeError, STATUS_TITLES, unauthorized } from './errors.js';
import { checkRequestStrings, parseJsonBody } from './input-guard.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every protected route. */
    auth: AuthContext;
  }
  interface FastifyContextConfig {
    /** Routes reachable without a token (version documents, token issue). */
    public?: boolean;
    /** Routes a host agent may call with its own credentials instead of a token (see ServiceModule.authenticateAgent). */
    agentAccess?: boolean;
    /** Query parameters this route accepts repeated (`?image=a&image=b`); a service may refuse others. */
    repeatableQuery?: string[];
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
  /**
   * Credentials other than a token, for routes marked `agentAccess`: a host agent names itself and shows the secret
   * it advertised in the store (the same pair the API uses to call it). Returns the caller's context, or undefined
   * (then the request is a 401 as without a token).
   */
  authenticateAgent?(req: FastifyRequest): Promise<AuthContext | undefined>;
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
  'req.headers["x-krater-agent-secret"]',
];

/** The service whose prefix `url` lies under (the first path segment decides), if any. */
function serviceFor(services: ServiceModule[], url: string): ServiceModule | undefined {
  return services.find((s) => url === s.prefix || url.startsWith(`${s.prefix}/`) || url.startsWith(`${s.prefix}?`));
}

/** Renders an error raised outside any service scope in the envelope of the service `url` belongs to. */
function renderOutside(
  services: ServiceModule[],
  url: string,
  err: NormalizedError,
  req: FastifyRequest,
): { body: string; headers: Record<string, string> } {
  const service = serviceFor(services, url);
  const rendered = service
    ? service.renderError(err, req)
    : { body: { error: { code: err.status, title: STATUS_TITLES[err.status] ?? 'Error', message: err.message } } };
  const headers: Record<string, string> = { 'Content-Type': 'application/json', ...rendered.headers };
  const body = typeof rendered.body === 'string' ? rendered.body : JSON.stringify(rendered.body);
  return { body, headers };
}

/** The request target of a raw HTTP request head (`GET /path HTTP/1.1`), when the packet holds it. */
function requestTarget(raw: unknown): string {
  if (!Buffer.isBuffer(raw)) return '/';
  // Only the path's beginning matters (the service prefix): the line itself may be longer than the packet.
  const m = /^[A-Z]+ (\/[^\s?]*)/.exec(raw.subarray(0, 512).toString('latin1'));
  return m?.[1] ?? '/';
}

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
    // Errors the router raises before any service scope is chosen (a bad percent-encoding, a path parameter over
    // maxParamLength): rendered in the envelope of the service the path belongs to.
    frameworkErrors: (err, req, reply) => {
      const status = (err as { statusCode?: number }).statusCode ?? 400;
      const message =
        status === 414 ? 'A path parameter is too long.' : 'The request URL is not valid (bad percent-encoding).';
      const normalized: NormalizedError = { status, message, headers: {}, internal: false };
      const { body, headers } = renderOutside(opts.services, req.raw.url ?? '/', normalized, req);
      const r = reply as FastifyReply;
      r.code(status).headers({ ...headers, 'X-OpenStack-Request-Id': req.id });
      return r.send(body);
    },
    // Errors of the HTTP parser (a header block over the limit, a malformed request line): no request object
    // exists, so the response is written to the socket in the envelope of the path the request line names.
    clientErrorHandler: (err, socket) => {
      const e = err as unknown as NodeJS.ErrnoException & { rawPacket?: Buffer };
      if (e.code === 'ECONNRESET' || socket.destroyed) return;
      const status = e.code === 'HPE_HEADER_OVERFLOW' ? 431 : e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const messages: Record<number, string> = {
        431: 'Request header fields are too large.',
        408: 'The request was not received in time.',
        400: 'The request could not be parsed.',
      };
      const normalized: NormalizedError = { status, message: messages[status], headers: {}, internal: false };
      const id = `req-${randomUUID()}`;
      const fakeReq = { id, headers: {} } as unknown as FastifyRequest;
      const { body, headers } = renderOutside(opts.services, requestTarget(e.rawPacket), normalized, fakeReq);
      const reason =
        status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
      const head = Object.entries({ ...headers, 'X-OpenStack-Request-Id': id, Connection: 'close' })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      if (socket.writable)
        socket.write(
          `HTTP/1.1 ${status} ${reason}\r\n${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      socket.destroy();
    },
    forceCloseConnections: true,
    rewriteUrl: (req) => {
      const url = req.url ?? '/';
      for (const s of opts.services)
        if (s.rewriteUrl && (url === s.prefix || url.startsWith(`${s.prefix}/`) || url.startsWith(`${s.prefix}?`)))
          return s.rewriteUrl(url);
      return url;
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  // Strict JSON for every service (input-guard.ts): UTF-8, bounded depth, storable strings. Some clients send
  // `Content-Type: application/json` with an empty body (DELETE, HEAD): that is no body.
  app.addContentTypeParser(
    ['application/json', 'application/openstack-images-v2.1-json-patch'],
    { parseAs: 'buffer' },
    (_req, body, done) => {
      try {
        done(null, parseJsonBody(body as Buffer));
      } catch (err) {
        done(err as Error, undefined);
      }
    },
  );
  // Ids, tags and filters from the URL get the same string rules as bodies.
  app.addHook('preValidation', async (req) => checkRequestStrings(req.params, req.query));

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
          if (
            (typeof token !== 'string' || token === '') &&
            req.routeOptions.config?.agentAccess &&
            service.authenticateAgent
          ) {
            const agent = await service.authenticateAgent(req);
            if (agent) {
              req.auth = agent;
              return;
            }
          }
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
