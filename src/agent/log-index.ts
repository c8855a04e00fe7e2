import { type FSWatcher, watch } from 'node:fs';
import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';

/**
 * Timestamps for container logs. The shim writes each stream raw into its own file (which survives agent and
 * containerd restarts); Docker's `logs --timestamps/--since` and a stdout/stderr interleaving need to know when
 * each byte arrived. The agent therefore watches the files of running containers and appends, per new chunk, a
 * line `<epoch ms> <o|e> <offset> <length>` to `log.idx` beside them. A line's time is that of the chunk holding its
 * first byte. Output written while the agent was down gets the file's mtime (the best knowledge left).
 */

export interface LogFiles {
  stdout: string;
  stderr: string;
}
export interface TimedLine {
  /** Epoch milliseconds. */
  time: number;
  stream: 'stdout' | 'stderr';
  /** The line with its newline (the last line of a stream may lack one). */
  text: string;
}
interface Chunk {
  time: number;
  offset: number;
  length: number;
}
type Streams = { o: Chunk[]; e: Chunk[] };

const indexPath = (files: LogFiles) => join(dirname(files.stdout), 'log.idx');
const size = (p: string) =>
  stat(p).then(
    (s) => ({ size: s.size, mtime: s.mtimeMs }),
    () => undefined,
  );

async function readIndex(files: LogFiles): Promise<Streams> {
  const out: Streams = { o: [], e: [] };
  const text = await readFile(indexPath(files), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [t, s, off, len] = line.split(' ');
    if ((s === 'o' || s === 'e') && len !== undefined)
      out[s].push({ time: Number(t), offset: Number(off), length: Number(len) });
  }
  return out;
}
const end = (chunks: Chunk[]) =>
  chunks.length ? chunks[chunks.length - 1]!.offset + chunks[chunks.length - 1]!.length : 0;

type Stream = 'o' | 'e';
interface Tracked {
  files: LogFiles;
  ends?: { o: number; e: number };
  watchers: FSWatcher[];
}
/** Milliseconds with a fraction: two writes in the same millisecond keep their order. */
const preciseNow = () => performance.timeOrigin + performance.now();

/**
 * Watches the log files of the containers it tracks and records when their output arrived: an inotify watch per
 * file dates each write as it happens (a write to stderr and then to stdout keep that order), and a periodic scan
 * catches what a watch missed.
 */
export class LogIndexer {
  private tracked = new Map<string, Tracked>();
  private timer?: NodeJS.Timeout;
  /** Serialises index updates (appends to one file must not interleave). */
  private queue: Promise<void> = Promise.resolve();

  constructor(private opts: { intervalMs?: number; warn: (obj: object, msg: string) => void }) {}

  start(): void {
    this.timer ??= setInterval(() => void this.scan(), this.opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.tracked.values()) for (const w of t.watchers) w.close();
    this.tracked.clear();
  }

  track(key: string, files: LogFiles): void {
    if (this.tracked.has(key)) return;
    const t: Tracked = { files, watchers: [] };
    this.tracked.set(key, t);
    for (const [s, path] of [
      ['o', files.stdout],
      ['e', files.stderr],
    ] as const) {
      try {
        const w = watch(path, () => {
          const time = preciseNow();
          void this.update(key, t, [s], time);
        });
        w.on('error', () => w.close());
        t.watchers.push(w);
      } catch {
        // No file yet (or no inotify): the periodic scan covers it.
      }
    }
  }

  /** Records what is left (the last output of an exited process) and stops watching. */
  async untrack(key: string): Promise<void> {
    const t = this.tracked.get(key);
    if (!t) return;
    for (const w of t.watchers) w.close();
    await this.update(key, t, ['o', 'e'], preciseNow());
    this.tracked.delete(key);
  }

  /** Before reading one container's logs: lets writes the kernel already reported be dated by their own events,
   * then records what is left of that container's output (untracked containers have nothing pending). */
  async flush(key: string): Promise<void> {
    await new Promise((r) => setImmediate(r));
    await this.queue;
    const t = this.tracked.get(key);
    if (t) await this.update(key, t, ['o', 'e'], preciseNow());
  }

  /** Brings every tracked index up to date with its files. */
  async scan(): Promise<void> {
    const time = preciseNow();
    await Promise.all([...this.tracked].map(([key, t]) => this.update(key, t, ['o', 'e'], time)));
  }

  private update(key: string, t: Tracked, streams: Stream[], time: number): Promise<void> {
    const next = this.queue.then(() =>
      this.scanOne(t, streams, time).catch((err) =>
        this.opts.warn({ container: key, err: (err as Error).message }, 'log index update failed'),
      ),
    );
    this.queue = next;
    return next;
  }

  private async scanOne(t: Tracked, streams: Stream[], time: number): Promise<void> {
    let firstLook = false;
    if (!t.ends) {
      const idx = await readIndex(t.files);
      t.ends = { o: end(idx.o), e: end(idx.e) };
      firstLook = true;
    }
    let lines = '';
    for (const s of streams) {
      const f = await size(s === 'o' ? t.files.stdout : t.files.stderr);
      // Gone with its container (deleted): nothing to record.
      if (!f) return;
      if (f.size < t.ends[s]) {
        // The file was replaced (a rebuilt container): the index starts over.
        await writeFile(indexPath(t.files), '');
        t.ends = { o: 0, e: 0 };
        return this.scanOne(t, ['o', 'e'], time);
      }
      if (f.size > t.ends[s]) {
        // Bytes from before this agent looked are dated by the file's last write.
        const when = firstLook ? Math.min(time, f.mtime) : time;
        lines += `${when.toFixed(3)} ${s} ${t.ends[s]} ${f.size - t.ends[s]}\n`;
        t.ends[s] = f.size;
      }
    }
    if (lines) await appendFile(indexPath(t.files), lines);
  }
}

/** The lines of the chosen streams with their arrival times, in arrival order (stdout first on a tie). */
export async function readTimedLines(
  files: LogFiles,
  want: { stdout: boolean; stderr: boolean },
): Promise<TimedLine[]> {
  const idx = await readIndex(files);
  const now = Date.now();
  const lines: (TimedLine & { seq: number })[] = [];
  for (const [s, stream, path] of [
    ['o', 'stdout', files.stdout],
    ['e', 'stderr', files.stderr],
  ] as const) {
    if (!want[stream]) continue;
    const buf = await readFile(path).catch(() => Buffer.alloc(0));
    const chunks = idx[s];
    let c = 0;
    let start = 0;
    while (start < buf.length) {
      const nl = buf.indexOf(10, start);
      const stop = nl < 0 ? buf.length : nl + 1;
      while (c < chunks.length && chunks[c]!.offset + chunks[c]!.length <= start) c++;
      // Not yet indexed: it arrived just now.
      const time = c < chunks.length && chunks[c]!.offset <= start ? chunks[c]!.time : now;
      lines.push({ time, stream, text: buf.subarray(start, stop).toString('utf8'), seq: lines.length });
      start = stop;
    }
  }
  lines.sort((a, b) => a.time - b.time || a.seq - b.seq);
  return lines.map(({ seq: _seq, ...l }) => l);
}

/** Docker's `--timestamps` prefix: RFC 3339 with nanoseconds, UTC. */
export function logTimestamp(ms: number): string {
  const whole = Math.floor(ms);
  const nanos = String(Math.floor((ms - whole) * 1e6)).padStart(6, '0');
  return `${new Date(whole).toISOString().slice(0, 23)}${nanos}Z`;
}
