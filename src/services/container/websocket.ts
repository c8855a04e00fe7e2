import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocketServer } from 'ws';
import type { AgentDirectory } from '../../agent/rpc.js';
import { relaySession } from '../../agent/sessions.js';
import type { ContainerRepo } from './repo.js';

/**
 * The WebSocket endpoint behind Zun's exec `proxy_url` and attach URL (zun-wsproxy's role): it redeems the one-time
 * token bound to the container (and exec), then relays binary frames both ways until the process ends or the
 * client goes away. zunclient offers the `binary` and `base64` subprotocols and sends an Origin header.
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
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== opts.path && url.pathname !== `${opts.path}/`) return;
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    // Browsers and zunclient send Origin; only pages of this cloud may open a shell in a container.
    const origin = req.headers.origin;
    if (origin && new URL(origin).host !== publicHost && new URL(origin).host !== req.headers.host)
      return refuse(403, 'Forbidden');
    const token = url.searchParams.get('token') ?? '';
    const uuid = url.searchParams.get('uuid') ?? '';
    const execId = url.searchParams.get('exec_id') ?? undefined;
    void (async () => {
      const c = await opts.repo.get(uuid);
      const agent = c?.host ? await opts.agents.forHost(c.host) : undefined;
      const session = agent ? await agent.openStream(token, uuid, execId) : undefined;
      if (!session) return refuse(401, 'Unauthorized');
      wss.handleUpgrade(req, socket, head, (ws) => relaySession(ws, session, ws.protocol === 'base64'));
    })().catch((err) => {
      opts.log.warn({ err }, 'websocket session failed');
      refuse(500, 'Internal Server Error');
    });
  });
}
