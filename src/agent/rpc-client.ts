/**
 * The API's side of a separate agent (`krater agent`): AgentRpc over HTTP and WebSocket to rpc-server.ts.
 * Engine errors come back typed (EngineError), so the Zun facade maps them as it does for the in-process agent;
 * an agent that cannot be reached is an EngineError `failed` naming the host.
 */
import { PassThrough, Readable, Writable } from 'node:stream';
import { WebSocket } from 'ws';
import type { AgentRpc, StreamSession } from '../compute/agent-port.js';
import type { ContainerRow } from '../core/store/schema.js';
import { EngineError, type EngineErrorCode } from '../engine/engine.js';
import type { HostImages, LocalImage } from '../images/host.js';
import type { PullResult } from '../images/pull.js';
import { RPC_PREFIX } from './rpc-server.js';

const CALL_TIMEOUT_MS = 120_000;

interface RpcAnswer<T> {
  result?: T;
  engine?: { code: EngineErrorCode; message: string };
  message?: string;
}

function rpcError(host: string, body: RpcAnswer<unknown>, status: number): Error {
  if (body.engine) return new EngineError(body.engine.code, body.engine.message);
  return new Error(`agent of host ${host}: ${body.message ?? `HTTP ${status}`}`);
}

export class RemoteAgent implements AgentRpc {
  constructor(
    readonly host: string,
    readonly url: string,
    readonly secret: string,
  ) {}

  private get headers() {
    return { Authorization: `Bearer ${this.secret}` };
  }

  private unreachable(err: unknown): EngineError {
    const e = err as Error;
    const why =
      e.name === 'TimeoutError'
        ? `did not answer within ${CALL_TIMEOUT_MS / 1000} s`
        : `is not reachable: ${(e.cause as Error | undefined)?.message ?? e.message}`;
    return new EngineError('failed', `the agent of host ${this.host} ${why}`, { cause: err });
  }

  /** A request to the agent; connection failures become "not reachable". */
  async request(path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
    const { json, ...rest } = init;
    try {
      return await fetch(`${this.url}${RPC_PREFIX}${path}`, {
        ...rest,
        headers: {
          ...this.headers,
          ...(json !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...rest.headers,
        },
        body: json !== undefined ? JSON.stringify(json) : rest.body,
      });
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  /** The `result` of a JSON answer, or the agent's error as thrown there (EngineError keeps its kind). */
  async result<T>(res: Response): Promise<T> {
    const body = (await res.json().catch(() => ({}))) as RpcAnswer<T>;
    if (res.ok && !body.engine && body.message === undefined) return body.result as T;
    throw rpcError(this.host, body, res.status);
  }

  private async call<T>(method: string, c: ContainerRow, ...args: unknown[]): Promise<T> {
    const res = await this.request('/call', {
      method: 'POST',
      json: { method, uuid: c.uuid, args },
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
    return this.result<T>(res);
  }

  /** The host's image calls (Krater's `/v1/images/local/*`), answered by the agent. */
  readonly images: HostImages = new RemoteImages(this);

  wake(): void {
    fetch(`${this.url}${RPC_PREFIX}/wake`, {
      method: 'POST',
      headers: this.headers,
      signal: AbortSignal.timeout(5000),
    }).catch(() => undefined); // the agent also polls the store
  }

  logs(c: ContainerRow, opts: Parameters<AgentRpc['logs']>[1]): Promise<string> {
    return this.call('logs', c, opts);
  }

  followLogs(c: ContainerRow, opts: Parameters<AgentRpc['followLogs']>[1]): NodeJS.ReadableStream {
    const out = new PassThrough();
    const q = new URLSearchParams({
      uuid: c.uuid,
      stdout: String(opts.stdout),
      stderr: String(opts.stderr),
      tail: String(opts.tail),
    });
    const abort = new AbortController();
    out.once('close', () => abort.abort());
    fetch(`${this.url}${RPC_PREFIX}/logs/follow?${q}`, { headers: this.headers, signal: abort.signal })
      .then((res) => {
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
        body.on('error', (err) => out.destroy(err));
        body.pipe(out);
      })
      .catch((err) => out.destroy(this.unreachable(err)));
    return out;
  }

  exec(c: ContainerRow, command: string[], opts: { tty: boolean }) {
    return this.call<{ output: string; exitCode: number }>('exec', c, command, opts);
  }

  createExec(c: ContainerRow, command: string[]) {
    return this.call<{ execId: string; token: string }>('createExec', c, command);
  }

  resizeExec(c: ContainerRow, execId: string, cols: number, rows: number) {
    return this.call<boolean>('resizeExec', c, execId, cols, rows);
  }

  createAttach(c: ContainerRow) {
    return this.call<string>('createAttach', c);
  }

  async resizeAttach(c: ContainerRow, cols: number, rows: number): Promise<void> {
    await this.call('resizeAttach', c, cols, rows);
  }

  top(c: ContainerRow, psArgs?: string) {
    return this.call<{ Titles: string[]; Processes: string[][] }>('top', c, psArgs);
  }

  stats(c: ContainerRow) {
    return this.call<Record<string, string | number>>('stats', c);
  }

  async getArchive(c: ContainerRow, path: string) {
    const r = await this.call<{ tar: string; stat: Awaited<ReturnType<AgentRpc['getArchive']>>['stat'] }>(
      'getArchive',
      c,
      path,
    );
    return { tar: Buffer.from(r.tar, 'base64'), stat: r.stat };
  }

  async putArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void> {
    await this.call('putArchive', c, path, tar.toString('base64'));
  }

  /** Opens the agent's stream for a one-time token; undefined when the agent refuses it. */
  openStream(token: string, uuid: string, execId?: string): Promise<StreamSession | undefined> {
    const q = new URLSearchParams({ token, uuid, ...(execId ? { exec_id: execId } : {}) });
    const wsUrl = `${this.url.replace(/^http/, 'ws')}${RPC_PREFIX}/stream?${q}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { headers: this.headers });
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        ws.terminate();
        if (res.statusCode === 403) resolve(undefined);
        else reject(this.unreachable(new Error(`HTTP ${res.statusCode}`)));
      });
      let opened = false;
      // `on`, not `once`: a second error with no listener left would end the process.
      ws.on('error', (err) => {
        if (!opened) reject(this.unreachable(err));
        else ws.terminate(); // its 'close' ends the output
      });
      const output = new PassThrough();
      ws.once('open', () => {
        opened = true;
        ws.on('message', (data: Buffer) => {
          if (!output.writableEnded && !output.destroyed) output.write(data);
        });
        const done = new Promise<void>((r) =>
          ws.once('close', () => {
            output.end();
            r();
          }),
        );
        const stdin = new Writable({
          write(chunk: Buffer, _enc, cb) {
            if (ws.readyState === ws.OPEN) ws.send(chunk, { binary: true }, () => cb());
            else cb(); // the process is gone: input is dropped, as locally
          },
        });
        resolve({ stdin, output, done, close: () => ws.close(1000) });
      });
    });
  }
}

/** HostImages over the agent's RPC endpoint. */
class RemoteImages implements HostImages {
  constructor(private readonly agent: RemoteAgent) {}

  async list(): Promise<LocalImage[]> {
    return this.agent.result(await this.agent.request('/images'));
  }

  async remove(ref: string): Promise<string> {
    return this.agent.result(await this.agent.request(`/images?${new URLSearchParams({ ref })}`, { method: 'DELETE' }));
  }

  async pull(ref: string, opts: Parameters<HostImages['pull']>[1] = {}): Promise<PullResult> {
    const res = await this.agent.request('/images/pull', {
      method: 'POST',
      json: { ref, credentials: opts.credentials },
    });
    if (!res.ok || !res.body) return this.agent.result(res);
    let buf = '';
    for await (const chunk of Readable.fromWeb(res.body as import('node:stream/web').ReadableStream)) {
      buf += chunk.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as RpcAnswer<PullResult> & { progress?: unknown };
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (msg.progress) opts.onProgress?.(msg.progress as never);
        else if ('result' in msg) return msg.result as PullResult;
        else throw rpcError(this.agent.host, msg, 500);
      }
    }
    throw new Error(`agent of host ${this.agent.host}: the pull ended without a result`);
  }

  async load(archive: Readable): Promise<string[]> {
    const res = await this.agent.request('/images/load', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-tar' },
      body: archive as unknown as BodyInit,
      duplex: 'half',
    } as RequestInit);
    return this.agent.result(res);
  }

  async save(refs: string[]): Promise<Readable> {
    const res = await this.agent.request('/images/save', { method: 'POST', json: { refs } });
    if (!res.ok || !res.body) return this.agent.result(res);
    return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
  }
}
