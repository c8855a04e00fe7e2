/**
 * The web console at `/dashboard/`: sign in with a Keystone password, see the project's containers change live,
 * open a terminal in one (xterm.js over the interactive exec WebSocket Zun hands out), follow its log. A static
 * page and script that only call the public APIs of this listener with the user's token: no state, no session on
 * the server. xterm.js is served from its npm package.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { App, ServiceModule } from '../../core/http/server.js';
import { APP_CSS, APP_JS, INDEX_HTML } from './page.js';

export const DASHBOARD_PREFIX = '/dashboard';

const require = createRequire(import.meta.url);

/** Files of npm packages the page loads, read once on first use. */
const VENDOR: Record<string, { module: string; type: string }> = {
  'xterm.js': { module: '@xterm/xterm/lib/xterm.js', type: 'text/javascript; charset=utf-8' },
  'xterm.css': { module: '@xterm/xterm/css/xterm.css', type: 'text/css; charset=utf-8' },
  'addon-fit.js': { module: '@xterm/addon-fit/lib/addon-fit.js', type: 'text/javascript; charset=utf-8' },
};
const vendorCache = new Map<string, Buffer>();

/** Scripts only from this origin; the page talks to this listener over fetch and WebSocket. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // xterm.js writes its theme and measurements into <style> elements it creates.
  "style-src 'self' 'unsafe-inline'",
  "connect-src 'self' ws: wss:",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function createDashboard(): ServiceModule {
  return {
    name: 'dashboard',
    prefix: DASHBOARD_PREFIX,
    renderError: (err) => ({
      body: { error: { code: err.status, message: err.internal ? 'Internal error' : err.message } },
    }),
    async register(app: App) {
      const page = (type: string, body: string | Buffer, cache = 'no-cache') => ({ type, body, cache });
      const send = (reply: import('fastify').FastifyReply, p: ReturnType<typeof page>) =>
        reply
          .header('Content-Type', p.type)
          .header('Cache-Control', p.cache)
          .header('Content-Security-Policy', CSP)
          .header('X-Content-Type-Options', 'nosniff')
          .header('Referrer-Policy', 'no-referrer')
          .send(p.body);
      const open = { config: { public: true }, schema: { hide: true } };
      // Routes are under the prefix; `/dashboard` and `/dashboard/` meet here (trailing slashes are ignored), but
      // the page's relative URLs need the slash.
      app.get('/', open, async (req, reply) =>
        req.url.split('?')[0].endsWith('/')
          ? send(reply, page('text/html; charset=utf-8', INDEX_HTML))
          : reply.redirect(`${DASHBOARD_PREFIX}/`),
      );
      app.get('/app.js', open, async (_req, reply) => send(reply, page('text/javascript; charset=utf-8', APP_JS)));
      app.get('/app.css', open, async (_req, reply) => send(reply, page('text/css; charset=utf-8', APP_CSS)));
      app.get('/vendor/:file', open, async (req, reply) => {
        const file = (req.params as { file: string }).file;
        const v = Object.hasOwn(VENDOR, file) ? VENDOR[file] : undefined;
        if (!v) return reply.code(404).send({ error: { code: 404, message: `no such file: ${file}` } });
        let body = vendorCache.get(file);
        if (!body) {
          body = readFileSync(require.resolve(v.module));
          vendorCache.set(file, body);
        }
        return send(reply, page(v.type, body, 'public, max-age=86400'));
      });
    },
  };
}
