import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import type { StreamSession } from '../compute/agent-port.js';
import type { Engine } from '../engine/engine.js';

/** The URL of an upgrade request; undefined when its target does not parse (an absolute-form `http://[`, say). */
export function upgradeUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? '/', 'http://x');
  } catch {
    return undefined;
  }
}

/** Answers an upgrade request with a plain HTTP status and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}

/**
 * Relays a session over a WebSocket until either ends: output as binary frames (or base64 text), frames in as
 * stdin; the socket closes (1000) once the session is over. Used by the API's endpoint and by `krater agent`.
 * Every handler is guarded and every stream has an error listener: a broken session ends that session only.
 */
export function relaySession(ws: WebSocket, session: StreamSession, base64 = false): void {
  const end = (code: number) => {
    try {
      session.close();
    } catch {}
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code);
  };
  session.output.on('data', (chunk: Buffer) => {
    if (ws.readyState === ws.OPEN) ws.send(base64 ? chunk.toString('base64') : chunk, { binary: !base64 });
  });
  session.output.on('error', () => end(1011));
  session.stdin.on('error', () => end(1011));
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (session.stdin.destroyed || session.stdin.writableEnded) return;
    session.stdin.write(base64 && !isBinary ? Buffer.from(data.toString(), 'base64') : data);
  });
  ws.on('close', () => end(1000));
  ws.on('error', () => end(1011));
  const over = () => {
    // Let the last output reach the client before the close frame.
    setTimeout(() => ws.close(1000), 50);
  };
  session.done.then(over, over);
}

interface PendingExec {
  kind: 'exec';
  uuid: string;
  engineId: string;
  execId: string;
  command: string[];
  size?: { cols: number; rows: number };
  resize?: (cols: number, rows: number) => Promise<void>;
  expiresAt: number;
}
interface PendingAttach {
  kind: 'attach';
  uuid: string;
  engineId: string;
  expiresAt: number;
}

const TOKEN_TTL_MS = 5 * 60 * 1000;

/**
 * One-time tokens for the WebSocket URLs the Zun API hands out (`proxy_url` of an interactive exec, the attach
 * URL), each bound to one container (and exec). An exec's process starts when its socket connects, as with Docker's
 * exec_create/exec_start, so a resize may arrive before the process exists and is applied at start.
 */
export class StreamSessions {
  private tokens = new Map<string, PendingExec | PendingAttach>();
  private execs = new Map<string, PendingExec>();
  private attachResizers = new Map<string, Set<(cols: number, rows: number) => Promise<void>>>();

  constructor(private engine: () => Engine) {}

  private prune(): void {
    const now = Date.now();
    for (const [t, s] of this.tokens) if (s.expiresAt < now) this.tokens.delete(t);
    for (const [id, s] of this.execs) if (s.expiresAt < now && !s.resize) this.execs.delete(id);
  }

  createExec(uuid: string, engineId: string, command: string[]): { execId: string; token: string } {
    this.prune();
    const execId = randomBytes(32).toString('hex');
    const token = randomBytes(24).toString('base64url');
    const pending: PendingExec = {
      kind: 'exec',
      uuid,
      engineId,
      execId,
      command,
      expiresAt: Date.now() + TOKEN_TTL_MS,
    };
    this.tokens.set(token, pending);
    this.execs.set(execId, pending);
    return { execId, token };
  }

  createAttach(uuid: string, engineId: string): string {
    this.prune();
    const token = randomBytes(24).toString('base64url');
    this.tokens.set(token, { kind: 'attach', uuid, engineId, expiresAt: Date.now() + TOKEN_TTL_MS });
    return token;
  }

  /** Uses a token (once). Undefined when it is unknown, expired, or bound to another container or exec. */
  async open(token: string, uuid: string, execId?: string): Promise<StreamSession | undefined> {
    const s = this.tokens.get(token);
    if (!s || s.uuid !== uuid || s.expiresAt < Date.now()) return undefined;
    if (s.kind === 'exec' && execId !== s.execId) return undefined;
    this.tokens.delete(token);
    if (s.kind === 'exec') {
      const p = await this.engine().execInteractive(s.engineId, { args: s.command, tty: true, size: s.size });
      s.resize = (cols, rows) => p.resize(cols, rows);
      const done = p.exit.finally(() => this.execs.delete(s.execId));
      return { stdin: p.stdin, output: p.output, done, close: () => void p.kill().catch(() => undefined) };
    }
    const a = await this.engine().attach(s.engineId);
    const resizers = this.attachResizers.get(uuid) ?? new Set();
    const resize = (cols: number, rows: number) => a.resize(cols, rows);
    resizers.add(resize);
    this.attachResizers.set(uuid, resizers);
    const done = a.done.finally(() => resizers.delete(resize));
    return {
      stdin: a.stdin,
      output: a.output,
      done,
      close: () => {
        resizers.delete(resize);
        a.close();
      },
    };
  }

  /** `execute_resize`: false when the exec id is unknown for this container. */
  async resizeExec(uuid: string, execId: string, cols: number, rows: number): Promise<boolean> {
    const s = this.execs.get(execId);
    if (!s || s.uuid !== uuid) return false;
    if (s.resize) await s.resize(cols, rows);
    else s.size = { cols, rows };
    return true;
  }

  /** `resize` of an attached container's terminal (any attached session resizes the main process). */
  async resizeAttach(uuid: string, cols: number, rows: number): Promise<void> {
    const first = this.attachResizers.get(uuid)?.values().next().value;
    if (first) await first(cols, rows);
  }
}
