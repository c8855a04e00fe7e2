/**
 * The API's synchronous calls on this host (Zun's "call" operations: logs, exec and its streams, top, stats,
 * archives), refused with `unavailable` while containerd is down and with engine errors mapped to a kind.
 */
import { randomUUID } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import type { StreamSession } from '../compute/agent-port.js';
import type { ContainerRow } from '../core/store/schema.js';
import { EngineError, toEngineError } from '../engine/engine.js';
import { type AgentContext, engineId } from './context.js';
import { type LogIndexer, logTimestamp, readTimedLines } from './log-index.js';
import { StreamSessions } from './sessions.js';

export class SyncCalls {
  private readonly sessions: StreamSessions;

  constructor(
    private readonly ctx: AgentContext,
    private readonly logIndex: LogIndexer,
  ) {
    this.sessions = new StreamSessions(() => ctx.engine);
  }

  private unavailable(): EngineError {
    return new EngineError(
      'unavailable',
      `containerd on host ${this.ctx.host} is not available (${this.ctx.engineDown ?? 'not answering'}); it is being restarted, try again later.`,
    );
  }

  /**
   * Synchronous engine calls: refused with `unavailable` while containerd is down, and errors mapped to an engine
   * kind. A call that failed because its container stopped under it (a stop or kill racing it) is a `conflict`.
   */
  private async engineCall<T>(c: ContainerRow, fn: () => Promise<T>): Promise<T> {
    if (this.ctx.engineDown) throw this.unavailable();
    try {
      return await fn();
    } catch (err) {
      if (this.ctx.engineDown) throw this.unavailable();
      const e = toEngineError(err);
      if (e.code !== 'failed') throw e;
      const st = await this.ctx.engine.status(engineId(c.uuid)).catch(() => undefined);
      if (st?.state === 'running') throw e;
      throw new EngineError('conflict', `container ${c.uuid} is ${st?.state ?? 'gone'}: ${e.message}`, { cause: e });
    }
  }

  async logs(
    c: ContainerRow,
    opts: { stdout: boolean; stderr: boolean; timestamps: boolean; tail: number | 'all'; since?: number },
  ): Promise<string> {
    await this.logIndex.flush(c.uuid);
    let lines = await readTimedLines(this.ctx.engine.logPaths(engineId(c.uuid)), opts);
    if (opts.since !== undefined) lines = lines.filter((l) => l.time >= opts.since!);
    if (opts.tail !== 'all') lines = opts.tail > 0 ? lines.slice(-opts.tail) : [];
    return lines.map((l) => (opts.timestamps ? `${logTimestamp(l.time)} ${l.text}` : l.text)).join('');
  }

  followLogs(c: ContainerRow, opts: { stdout: boolean; stderr: boolean; tail: number | 'all' }): NodeJS.ReadableStream {
    const paths = this.ctx.engine.logPaths(engineId(c.uuid));
    const files = [opts.stdout ? paths.stdout : null, opts.stderr ? paths.stderr : null].filter(
      (f): f is string => !!f,
    );
    const offsets = new Map<string, number>();
    const out = new PassThrough();
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    out.on('close', () => {
      closed = true;
      if (timer) clearTimeout(timer);
    });
    const live = ['Running', 'Paused', 'Restarting', 'Creating', 'Created', 'Rebuilding'];
    const poll = async () => {
      if (closed) return;
      let grew = false;
      for (const f of files) {
        const size = await stat(f).then(
          (s) => s.size,
          () => 0,
        );
        const from = offsets.get(f) ?? 0;
        if (size > from) {
          const fh = await open(f, 'r');
          try {
            const buf = Buffer.alloc(size - from);
            await fh.read(buf, 0, buf.length, from);
            out.write(buf);
          } finally {
            await fh.close();
          }
          offsets.set(f, size);
          grew = true;
        }
      }
      const row = await this.ctx.repo.get(c.uuid);
      if (!grew && (!row || !live.includes(row.status))) {
        out.end();
        return;
      }
      timer = setTimeout(() => void poll().catch((err) => out.destroy(err)), 200);
    };
    void (async () => {
      // Start with the requested tail of what is already there, then follow from the end of each file.
      out.write(await this.logs(c, { stdout: opts.stdout, stderr: opts.stderr, timestamps: false, tail: opts.tail }));
      for (const f of files)
        offsets.set(
          f,
          await stat(f).then(
            (s) => s.size,
            () => 0,
          ),
        );
      await poll();
    })().catch((err) => out.destroy(err));
    return out;
  }

  async createExec(c: ContainerRow, command: string[]): Promise<{ execId: string; token: string }> {
    return this.engineCall(c, async () => this.sessions.createExec(c.uuid, engineId(c.uuid), command));
  }
  resizeExec(c: ContainerRow, execId: string, cols: number, rows: number): Promise<boolean> {
    return this.sessions.resizeExec(c.uuid, execId, cols, rows);
  }
  async createAttach(c: ContainerRow): Promise<string> {
    return this.engineCall(c, async () => this.sessions.createAttach(c.uuid, engineId(c.uuid)));
  }
  resizeAttach(c: ContainerRow, cols: number, rows: number): Promise<void> {
    return this.sessions.resizeAttach(c.uuid, cols, rows);
  }
  openStream(token: string, uuid: string, execId?: string): Promise<StreamSession | undefined> {
    return this.sessions.open(token, uuid, execId);
  }

  async exec(
    c: ContainerRow,
    command: string[],
    opts: { tty: boolean },
  ): Promise<{ output: string; exitCode: number }> {
    void opts;
    const r = await this.engineCall(c, () =>
      this.ctx.engine.exec(engineId(c.uuid), { args: command, timeoutMs: 60_000 }),
    );
    return { output: r.stdout + r.stderr, exitCode: r.exitCode };
  }

  async top(c: ContainerRow, psArgs?: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    const r = await this.engineCall(c, () =>
      this.ctx.engine.exec(engineId(c.uuid), {
        args: ['ps', ...(psArgs ? psArgs.split(/\s+/) : [])],
        timeoutMs: 10_000,
      }),
    );
    const lines = r.stdout.trim().split('\n');
    const titles = lines.shift()?.trim().split(/\s+/) ?? [];
    const processes = lines.map((l) => {
      const cols = l.trim().split(/\s+/);
      return [...cols.slice(0, titles.length - 1), cols.slice(titles.length - 1).join(' ')];
    });
    return { Titles: titles, Processes: processes };
  }

  async stats(c: ContainerRow): Promise<Record<string, string | number>> {
    const s = await this.engineCall(c, () => this.ctx.engine.stats(engineId(c.uuid)));
    const mib = (b: number) => Math.round((b / 1024 / 1024) * 100) / 100;
    const limit = s.memoryLimitBytes || Number(c.memory) * 1024 * 1024;
    return {
      CONTAINER: c.name,
      'CPU %': 0,
      'MEM USAGE(MiB)': mib(s.memoryUsageBytes),
      'MEM LIMIT(MiB)': mib(limit),
      'MEM %': limit ? Math.round((s.memoryUsageBytes / limit) * 10000) / 100 : 0,
      'BLOCK I/O(B)': '0/0',
      'NET I/O(B)': '0/0',
    };
  }

  getArchive(
    c: ContainerRow,
    path: string,
  ): Promise<{ tar: Buffer; stat: { name: string; size: number; mode: number; mtime: string; linkTarget: string } }> {
    return this.engineCall(c, () => this.readArchive(c, path));
  }

  private async readArchive(
    c: ContainerRow,
    path: string,
  ): Promise<{ tar: Buffer; stat: { name: string; size: number; mode: number; mtime: string; linkTarget: string } }> {
    const id = engineId(c.uuid);
    const st = await this.ctx.engine.exec(id, { args: ['stat', '-c', '%n|%s|%f|%Y|%N', path], timeoutMs: 10_000 });
    if (st.exitCode !== 0) throw new EngineError('not_found', `Could not find the file ${path} in container ${c.uuid}`);
    const [name, size, modeHex, mtime] = st.stdout.trim().split('|');
    const dir = path.replace(/\/[^/]*\/?$/, '') || '/';
    const base = path.replace(/\/+$/, '').split('/').pop() || '.';
    const tar = await this.ctx.engine.exec(id, {
      args: ['sh', '-c', 'tar -C "$1" -cf - "$2" | base64', 'sh', dir, base],
      timeoutMs: 60_000,
    });
    if (tar.exitCode !== 0) throw new EngineError('failed', `tar failed: ${tar.stderr}`);
    return {
      tar: Buffer.from(tar.stdout.replace(/\s+/g, ''), 'base64'),
      stat: {
        name: name.split('/').pop() ?? name,
        size: Number(size),
        mode: Number.parseInt(modeHex, 16),
        mtime: new Date(Number(mtime) * 1000).toISOString(),
        linkTarget: '',
      },
    };
  }

  putArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void> {
    return this.engineCall(c, () => this.writeArchive(c, path, tar));
  }

  private async writeArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void> {
    const id = engineId(c.uuid);
    const sh = async (script: string, ...args: string[]) => {
      const r = await this.ctx.engine.exec(id, { args: ['sh', '-c', script, 'sh', ...args], timeoutMs: 60_000 });
      if (r.exitCode !== 0) throw new EngineError('failed', `extracting the archive failed: ${r.stderr || r.stdout}`);
    };
    const dir = await this.ctx.engine.exec(id, { args: ['test', '-d', path], timeoutMs: 10_000 });
    if (dir.exitCode !== 0)
      throw new EngineError('not_found', `Could not find the file ${path} in container ${c.uuid}`);
    // The archive travels as base64 in argv pieces (one argument may hold at most 128 KiB) into a staging file,
    // which the container's own tar unpacks: it sees the container's mounts and cannot write outside them.
    const staging = `/tmp/.krater-put-${randomUUID()}`;
    const b64 = tar.toString('base64');
    const PIECE = 96 * 1024;
    try {
      await sh('mkdir -p /tmp && : > "$1"', staging);
      for (let i = 0; i < b64.length; i += PIECE) await sh('printf %s "$1" >> "$2"', b64.slice(i, i + PIECE), staging);
      await sh('base64 -d "$2" | tar -C "$1" -xf -', path, staging);
    } finally {
      await this.ctx.engine.exec(id, { args: ['rm', '-f', staging], timeoutMs: 10_000 }).catch(() => undefined);
    }
  }
}
