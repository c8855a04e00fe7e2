/**
 * Interactive stdio plumbing for the engine: FIFOs shared with the containerd shim, a stdin writer, and a
 * follower for the log files a container's main process writes to.
 *
 * FIFOs and Node's threadpool: opening a FIFO without O_NONBLOCK blocks until the other side opens it, and
 * `fs.open`/`fs.createReadStream` do that on a libuv threadpool thread (4 by default), so a handful of idle
 * sessions would stall every `fs` call of the process. Here every FIFO is opened synchronously with
 * O_NONBLOCK (the call returns at once) and then handed to a `net.Socket` (a libuv pipe handle driven by
 * epoll): no threadpool thread is ever held, whatever the number of sessions.
 *  - Reader ends (exec output) are O_RDONLY|O_NONBLOCK, plus a short-lived O_WRONLY|O_NONBLOCK "hold" on the
 *    same FIFO until the shim has opened its writer: without it, a reader that is polled before any writer
 *    exists may read EOF early. After the hold is released, EOF means the shim closed its writer (the process
 *    and everything sharing its output have exited, or the shim gave up waiting at DeleteProcess).
 *  - Writer ends (stdin) are O_RDWR|O_NONBLOCK: never ENXIO when the shim's reader is not open yet, never
 *    EPIPE when it has gone (writes then wait in the pipe buffer and apply backpressure). We never read from
 *    that fd. Closing our fd does not close the process' stdin while the shim holds its own writer (it does
 *    until `Tasks.CloseIO`).
 */
import { execFile } from 'node:child_process';
import { closeSync, type FSWatcher, constants as fsConstants, openSync, watch } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Socket } from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const { O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK } = fsConstants;

/** Create FIFOs (mode 0600) with coreutils' `mkfifo` (Node has no mkfifo(2)). */
export async function mkfifo(paths: string[]): Promise<void> {
  if (!paths.length) return;
  await execFileP('mkfifo', ['-m', '600', '--', ...paths]);
}

export interface FifoReader {
  /** The read end as a stream (ends when every writer has closed, after the hold is released). */
  stream: Socket;
  /** Drop the placeholder writer; call once the real writer (the shim) has opened the FIFO. Idempotent. */
  releaseHold(): void;
}

/** Open the read end of a FIFO without blocking (see the module comment). */
export function openFifoReader(path: string): FifoReader {
  const fd = openSync(path, O_RDONLY | O_NONBLOCK);
  let hold: number | undefined;
  try {
    hold = openSync(path, O_WRONLY | O_NONBLOCK);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let stream: Socket;
  try {
    stream = new Socket({ fd, readable: true, writable: false });
  } catch (err) {
    closeSync(fd);
    closeSync(hold);
    throw err;
  }
  return {
    stream,
    releaseHold() {
      if (hold === undefined) return;
      const h = hold;
      hold = undefined;
      closeSync(h);
    },
  };
}

/** Open a FIFO for writing without blocking: O_RDWR|O_NONBLOCK (see the module comment). */
export function openFifoWriter(path: string): Socket {
  const fd = openSync(path, O_RDWR | O_NONBLOCK);
  try {
    return new Socket({ fd, readable: false, writable: true });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * The `stdin` handed to callers. Writes go to the FIFO one at a time (a write's callback fires once the bytes
 * are in the pipe, so backpressure reaches the caller); `end()` closes our fd after everything was written
 * and then runs `onEnd` (e.g. `Tasks.CloseIO`). After `detach()` (the process is gone) writes are discarded
 * instead of failing, so a late keystroke from a WebSocket cannot raise an unhandled 'error'.
 */
export class FifoStdin extends Writable {
  private sock: Socket | undefined;
  private readonly onEnd: () => Promise<void>;

  constructor(sock: Socket | undefined, onEnd: () => Promise<void> = async () => undefined) {
    super({ decodeStrings: true });
    this.sock = sock;
    this.onEnd = onEnd;
    // Socket errors (there should be none with O_RDWR) must not crash the process: report them on write.
    sock?.on('error', () => this.detach());
  }

  /** Close our end; later writes are discarded. */
  detach(): void {
    const s = this.sock;
    this.sock = undefined;
    s?.destroy();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const s = this.sock;
    if (!s || s.destroyed) {
      cb();
      return;
    }
    // Errors (destroyed while waiting for a full pipe) mean the process is gone: the bytes are dropped.
    s.write(chunk, () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    // All writes have completed (their callbacks ran), so the data is in the pipe: close our fd, then tell
    // the shim to close the process' stdin.
    this.detach();
    this.onEnd().then(
      () => cb(),
      () => cb(),
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.detach();
    cb(err);
  }
}

/**
 * Merge readable streams into one PassThrough (backpressure per source). The result ends once every source
 * has closed; destroying it destroys the sources. `closed` resolves when all sources are closed.
 */
export function mergeStreams(sources: Readable[]): { output: PassThrough; closed: Promise<void> } {
  const output = new PassThrough();
  let open = sources.length;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => {
    resolveClosed = r;
  });
  const onSourceClosed = () => {
    if (--open > 0) return;
    resolveClosed();
    if (!output.destroyed) output.end();
  };
  for (const s of sources) {
    s.on('error', () => undefined); // an error also closes the source
    if (s.closed) {
      // Already gone (its 'close' will not come again).
      queueMicrotask(onSourceClosed);
      continue;
    }
    s.once('close', onSourceClosed);
    s.pipe(output, { end: false });
  }
  if (!sources.length) {
    resolveClosed();
    output.end();
  }
  output.once('close', () => {
    for (const s of sources) s.destroy();
  });
  return { output, closed };
}

interface FollowedFile {
  path: string;
  fh: FileHandle;
  pos: number;
}

const CHUNK = 64 * 1024;

/**
 * Follows files (append-only logs) from their current end, as one Readable. New data is noticed through
 * inotify (`fs.watch`) with a 250 ms poll as a fallback; a file that shrinks (truncated) is read again from
 * its start. Backpressure: reading stops while the consumer is not reading.
 */
export class LogFollower extends Readable {
  private readonly files: FollowedFile[];
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private again = false;
  private blocked = false;
  private ending = false;
  private stopped = false;
  private readonly endedCallbacks: (() => void)[] = [];

  private constructor(files: FollowedFile[]) {
    super();
    this.files = files;
    for (const f of files) {
      try {
        const w = watch(f.path, { persistent: false }, () => this.pump());
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        // no inotify here: the poll below still works
      }
    }
    this.timer = setInterval(() => this.pump(), 250);
    this.timer.unref();
  }

  /** Start following `paths` from their current sizes. */
  static async follow(paths: string[]): Promise<LogFollower> {
    const files: FollowedFile[] = [];
    try {
      for (const path of paths) {
        const fh = await open(path, 'r');
        files.push({ path, fh, pos: (await fh.stat()).size });
      }
    } catch (err) {
      for (const f of files) await f.fh.close().catch(() => undefined);
      throw err;
    }
    return new LogFollower(files);
  }

  override _read(): void {
    if (this.blocked) {
      this.blocked = false;
      this.pump();
    }
  }

  /**
   * Read what is left (after `settleMs`, for writers that lag behind the process exit), then end the stream.
   * Resolves when the end has been pushed (which waits for a consumer that applies backpressure).
   */
  finish(settleMs = 150): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.stopped) return resolve();
      this.endedCallbacks.push(resolve);
      setTimeout(() => {
        this.ending = true;
        this.pump();
      }, settleMs).unref();
    });
  }

  /** End the stream now (no final read). */
  stop(): void {
    if (this.stopped) return;
    this.halt();
    this.push(null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.halt();
    cb(err);
  }

  private halt(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const w of this.watchers) w.close();
    for (const f of this.files) void f.fh.close().catch(() => undefined);
    for (const cb of this.endedCallbacks.splice(0)) cb();
  }

  private pump(): void {
    if (this.stopped || this.blocked) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.readAvailable()
      .catch((err) => {
        if (!this.stopped) this.destroy(err as Error);
      })
      .finally(() => {
        this.pumping = false;
        if (this.stopped) return;
        if (this.again && !this.blocked) {
          this.again = false;
          this.pump();
        } else if (this.ending && !this.blocked) {
          this.halt();
          this.push(null);
        }
      });
  }

  private async readAvailable(): Promise<void> {
    do {
      this.again = false;
      for (const f of this.files) {
        const { size } = await f.fh.stat();
        if (size < f.pos) f.pos = 0;
        while (!this.stopped && f.pos < size) {
          const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - f.pos));
          const { bytesRead } = await f.fh.read(buf, 0, buf.length, f.pos);
          if (bytesRead === 0 || this.stopped) break;
          f.pos += bytesRead;
          if (!this.push(buf.subarray(0, bytesRead))) {
            this.blocked = true;
            return;
          }
        }
      }
    } while (this.again && !this.stopped);
  }
}
