/**
 * The RPC endpoint of a separate agent process (`krater agent`): the API's synchronous calls (AgentRpc) over HTTP,
 * and exec/attach streams over a WebSocket. Only the API calls it: every request carries the bearer secret the
 * agent wrote next to its URL in the store (`compute_hosts.rpc_url`/`rpc_secret`). Containers are named by uuid
 * and read from the store here, so a caller cannot make the agent act on a container of another host.
 * The client side is rpc-client.ts.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { type Duplex, PassThrough, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { WebSocketServer } from 'ws';
import type { AgentRpc } from '../compute/agent-port.js';
import type { ContainerRepo } from '../compute/repo.js';
import type { ContainerRow } from '../core/store/schema.js';
import { EngineError, toEngineError } from '../engine/engine.js';
import type { RegistryCredentials } from '../images/registry.js';
import { refuseUpgrade, relaySession, upgradeUrl } from './sessions.js';

export const RPC_PREFIX = '/rpc/v1';

/** The calls a remote API may make, with their arguments after the container (JSON-safe in both directions). */
const CALLS: Record<string, (a: AgentRpc, c: ContainerRow, args: any[]) => Promise<unknown>> = {
  logs: (a, c, [opts]) => a.logs(c, opts),
  exec: (a, c, [command, opts]) => a.exec(c, command, opts),
  createExec: (a, c, [command]) => a.createExec(c, command),
  resizeExec: (a, c, [execId, cols, rows]) => a.resizeExec(c, execId, cols, rows),
  createAttach: (a, c) => a.createAttach(c),
  resizeAttach: (a, c, [cols, rows]) => a.resizeAttach(c, cols, rows),
  top: (a, c, [psArgs]) => a.top(c, psArgs),
  stats: (a, c) => a.stats(c),
  getArchive: async (a, c, [path]) => {
    const r = await a.getArchive(c, path);
    return { tar: r.tar.toString('base64'), stat: r.stat };
  },
  putArchive: (a, c, [path, tar]) => a.putArchive(c, path, Buffer.from(String(tar), 'base64')),
};

export interface AgentRpcServer {
  /** The URL the API should use (`advertiseUrl`, or the address listened on). */
  url: string;
  close(): Promise<void>;
}

export async function startAgentRpcServer(opts: {
  agent: AgentRpc & { host: string };
  repo: ContainerRepo;
  secret: string;
  bind: string;
  port: number;
  advertiseUrl?: string;
  /** The Fastify instance to serve on (its logger is the agent's; its body limit must fit archives). */
  app: FastifyInstance;
}): Promise<AgentRpcServer> {
  const { agent, repo, app } = opts;
  const expected = Buffer.from(`Bearer ${opts.secret}`);
  const authorized = (header: string | undefined) => {
    const got = Buffer.from(header ?? '');
    return got.length === expected.length && timingSafeEqual(got, expected);
  };
  const container = async (uuid: unknown): Promise<ContainerRow> => {
    const c = typeof uuid === 'string' ? await repo.get(uuid) : undefined;
    if (!c || c.host !== agent.host)
      throw new EngineError('not_found', `container ${String(uuid)} is not on this host`);
    return c;
  };
  const fail = (reply: FastifyReply, raw: unknown) => {
    // containerd's own errors (gRPC codes) travel as engine errors too, so the API maps them like the local agent's.
    const err = typeof (raw as { code?: unknown } | null)?.code === 'number' ? toEngineError(raw) : raw;
    if (err instanceof EngineError)
      return reply
        .code(err.code === 'not_found' ? 404 : err.code === 'unavailable' ? 503 : 400)
        .send({ engine: { code: err.code, message: err.message } });
    return reply.code(500).send({ message: err instanceof Error ? err.message : String(err) });
  };

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (!authorized(req.headers.authorization)) return reply.code(401).send({ message: 'unauthorized' });
  });

  app.post(`${RPC_PREFIX}/wake`, async (_req, reply) => {
    agent.wake();
    return reply.code(204).send();
  });

  app.post(`${RPC_PREFIX}/call`, async (req, reply) => {
    const body = (req.body ?? {}) as { method?: string; uuid?: string; args?: unknown[] };
    const call = body.method ? CALLS[body.method] : undefined;
    if (!call || !Object.hasOwn(CALLS, body.method!))
      return reply.code(400).send({ message: `unknown call ${body.method}` });
    try {
      const result = await call(agent, await container(body.uuid), Array.isArray(body.args) ? body.args : []);
      return { result: result ?? null };
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.get(`${RPC_PREFIX}/logs/follow`, async (req, reply) => {
    const q = req.query as Record<string, string>;
    try {
      const c = await container(q.uuid);
      const tail = q.tail === 'all' || q.tail === undefined ? 'all' : Number(q.tail);
      const stream = agent.followLogs(c, { stdout: q.stdout !== 'false', stderr: q.stderr !== 'false', tail });
      return reply.header('Content-Type', 'text/plain; charset=utf-8').send(stream);
    } catch (err) {
      return fail(reply, err);
    }
  });

  // The host's image calls (Krater's `/v1/images/local/*`); archives stream in and out as they are.
  const images = () => {
    if (!agent.images) throw new EngineError('failed', `host ${agent.host} has no image service`);
    return agent.images;
  };
  app.addContentTypeParser('application/x-tar', (_req, payload, done) => done(null, payload));
  app.get(`${RPC_PREFIX}/images`, async (_req, reply) => {
    try {
      return { result: await images().list() };
    } catch (err) {
      return fail(reply, err);
    }
  });
  app.delete(`${RPC_PREFIX}/images`, async (req, reply) => {
    try {
      return { result: await images().remove(String((req.query as Record<string, unknown>).ref ?? '')) };
    } catch (err) {
      return fail(reply, err);
    }
  });
  app.post(`${RPC_PREFIX}/images/pull`, async (req, reply) => {
    const body = (req.body ?? {}) as { ref?: string; credentials?: RegistryCredentials };
    // NDJSON: {"progress":…} lines, then {"result":…} or {"engine"|"message":…}.
    const out = new PassThrough();
    const line = (o: unknown) => {
      if (!out.writableEnded && !out.destroyed) out.write(`${JSON.stringify(o)}\n`);
    };
    void images()
      .pull(String(body.ref ?? ''), { credentials: body.credentials, onProgress: (progress) => line({ progress }) })
      .then(
        (result) => line({ result }),
        (err) =>
          line(
            err instanceof EngineError
              ? { engine: { code: err.code, message: err.message } }
              : { message: String(err.message ?? err) },
          ),
      )
      .catch((err) => line({ message: String((err as Error)?.message ?? err) }))
      .finally(() => out.end());
    return reply.type('application/x-ndjson').send(out);
  });
  app.post(`${RPC_PREFIX}/images/load`, async (req, reply) => {
    try {
      return { result: await images().load(req.body as Readable) };
    } catch (err) {
      return fail(reply, err);
    }
  });
  app.post(`${RPC_PREFIX}/images/save`, async (req, reply) => {
    try {
      const refs = ((req.body ?? {}) as { refs?: string[] }).refs ?? [];
      return reply.type('application/x-tar').send(await images().save(refs.map(String)));
    } catch (err) {
      return fail(reply, err);
    }
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands the socket over without an error listener: a reset must not be an uncaught error.
    socket.on('error', (err) => app.log.debug({ err }, 'rpc stream socket error'));
    try {
      const url = upgradeUrl(req);
      if (url?.pathname !== `${RPC_PREFIX}/stream`) return refuseUpgrade(socket, 404, 'Not Found');
      if (!authorized(req.headers.authorization)) return refuseUpgrade(socket, 401, 'Unauthorized');
      const p = url.searchParams;
      void agent
        .openStream(p.get('token') ?? '', p.get('uuid') ?? '', p.get('exec_id') ?? undefined)
        .then((session) => {
          if (!session) return refuseUpgrade(socket, 403, 'Forbidden');
          wss.handleUpgrade(req, socket, head, (ws) => relaySession(ws, session));
        })
        .catch((err) => {
          app.log.warn({ err }, 'rpc stream failed');
          refuseUpgrade(socket, 500, 'Internal Server Error');
        });
    } catch (err) {
      app.log.warn({ err }, 'rpc stream upgrade refused');
      refuseUpgrade(socket, 400, 'Bad Request');
    }
  });

  await app.listen({ host: opts.bind, port: opts.port });
  const addr = app.server.address() as AddressInfo;
  // Bound to every address: the machine's name is the best guess at how the API reaches it.
  const any = addr.address === '0.0.0.0' || addr.address === '::';
  const host = any ? hostname() : addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: (opts.advertiseUrl ?? `http://${host}:${addr.port}`).replace(/\/+$/, ''),
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await app.close();
    },
  };
}
