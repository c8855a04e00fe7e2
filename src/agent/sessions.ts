import { randomBytes } from 'node:crypto';
import type { StreamSession } from '../compute/agent-port.js';
import type { Engine } from '../engine/engine.js';

// The WebSocket side of a stream is the domain's (the API relays it too): re-exported for the agent's RPC server.
export { refuseUpgrade, relaySession, upgradeUrl } from '../compute/stream-relay.js';

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
