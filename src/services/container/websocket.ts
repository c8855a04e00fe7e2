import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocketServer } from 'ws';
import type { AgentDirectory } from '../../compute/agent-port.js';
import type { ContainerRepo } from '../../compute/repo.js';
import { refuseUpgrade, relaySession, upgradeUrl } from '../../compute/stream-relay.js';

/**
 * True when a browser's `Origin` is one of `hosts` (this cloud's public host or the Host the request came to). An
 * absent Origin (a CLI) passes; one that does not parse — `null` from sandboxed pages and `file:` URLs, or garbage —
 * does not.
 */
export function originAllowed(origin: string | undefined, hosts: (string | undefined)[]): boolean {
  if (origin === undefined) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  return host !== '' && hosts.includes(host);
}

/**
 * The WebSocket endpoint behind Zun's exec `proxy_url` and attach URL (zun-wsproxy's role): it redeems the one-time
 * token bound to the container (and exec), then relays binary frames both ways until the process ends or the
 * client goes away. zunclient offers the `binary` and `base64` subprotocols and sends an Origin header.
 * Nothing a client sends may throw out of the `upgrade` listener: that would end the whole process.
 */
export function attachWebSocketServer(
  server: import('node:http').Server,
  opts: { path: string; publicUrl: string; repo: ContainerRepo; agents: AgentDirectory; log: FastifyBaseLogger },
): void {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 1024 * 1024,
    handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : protocols.has('base64') ? 'base64' : false),
  });
  const publicHost = new URL(opts.publicUrl).host;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands the socket over without an error listener: a reset from the client must not be an uncaught error.
    socket.on('error', (err) => opts.log.debug({ err }, 'websocket client socket error'));
    try {
      const url = upgradeUrl(req);
      const ours = url && (url.pathname === opts.path || url.pathname === `${opts.path}/`);
      if (!ours) {
        // No other upgrade listener will answer it: do not leave the client hanging.
        if (server.listenerCount('upgrade') === 1) refuseUpgrade(socket, 404, 'Not Found');
        return;
      }
      // Browsers and zunclient send Origin; only pages of this cloud may open a shell in a container.
      if (!originAllowed(req.headers.origin, [publicHost, req.headers.host]))
        return refuseUpgrade(socket, 403, 'Forbidden');
      const token = url.searchParams.get('token') ?? '';
      const uuid = url.searchParams.get('uuid') ?? '';
      const execId = url.searchParams.get('exec_id') ?? undefined;
      void (async () => {
        const c = await opts.repo.get(uuid);
        const agent = c?.host ? await opts.agents.forHost(c.host) : undefined;
        const session = agent ? await agent.openStream(token, uuid, execId) : undefined;
        if (!session) return refuseUpgrade(socket, 401, 'Unauthorized');
        wss.handleUpgrade(req, socket, head, (ws) => relaySession(ws, session, ws.protocol === 'base64'));
      })().catch((err) => {
        opts.log.warn({ err }, 'websocket session failed');
        refuseUpgrade(socket, 500, 'Internal Server Error');
      });
    } catch (err) {
      opts.log.warn({ err }, 'websocket upgrade refused');
      refuseUpgrade(socket, 400, 'Bad Request');
    }
  });
}
