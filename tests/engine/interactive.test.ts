/**
 * Interactive streams of the Engine against a real, private containerd (root only): `execInteractive` with
 * and without a terminal, `attach` to a container's main process (openStdin/tty), several sessions at once,
 * and that nothing is left behind (FIFOs, open fds, shims, logger processes).
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerdEngine, EngineError } from '../../src/engine/engine.js';
import { importImageArchive } from '../../src/engine/image-import.js';
import { buildBusybox, type EngineFixture, engineTestsUnavailable, startFixture } from './helpers.js';

const skip = engineTestsUnavailable();

/** Collects a stream's text; `waitFor` resolves once it matches (and fails with what arrived so far). */
function collect(stream: Readable) {
  let text = '';
  let ended = false;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  stream.on('data', (b: Buffer) => {
    text += b.toString('utf8');
    wake();
  });
  stream.on('end', () => {
    ended = true;
    wake();
  });
  stream.on('error', () => undefined);
  const c = {
    get text() {
      return text;
    },
    get ended() {
      return ended;
    },
    /** Wait until the text (from `from` on) matches. */
    waitFor(re: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = text.slice(from).match(re);
          if (m) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${re}; got ${JSON.stringify(text.slice(from))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    waitEnd(timeoutMs = 10_000): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!ended) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`stream did not end; got ${JSON.stringify(text)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
  return c;
}

function fifosBelow(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st?.isFIFO()) out.push(p);
      else if (st?.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** Open fds (of any process) on paths below `dir`: `pid:fd → target`. */
function openFdsBelow(dir: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(`${dir}/`)) out.push(`${pid}:${fd} → ${target}`);
      } catch {
        // gone
      }
    }
  }
  return out;
}

/** Processes whose command line mentions `needle` (e.g. the shims of our containerd namespace). */
function processesMentioning(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(needle)) out.push(`${pid}: ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!!skip)('ContainerdEngine interactive streams', () => {
  let fx: EngineFixture;
  let engine: ContainerdEngine;
  let image: string;
  let stateDir: string;
  let n = 0;
  const newId = (what: string) => `${what}-${fx.suffix}-${++n}`;

  beforeAll(async () => {
    fx = await startFixture();
    stateDir = join(fx.tmp, 'engine');
    engine = new ContainerdEngine({
      client: fx.client,
      stateDir,
      cgroupParent: fx.cgroupParent,
      runcRoot: fx.supervisor.paths!.runcRoot,
    });
    const archive = buildBusybox(join(fx.tmp, 'busybox.oci.tar'));
    image = (await importImageArchive(fx.client, archive))[0]!.name;
  });

  afterAll(async () => {
    if (engine) {
      for (const c of await engine.list().catch(() => []))
        await engine.delete(c.id, { force: true }).catch(() => undefined);
      engine.close();
    }
    await fx?.cleanup();
  });

  describe('execInteractive', () => {
    let id: string;

    beforeAll(async () => {
      id = newId('ix');
      await engine.create(id, { image, command: ['sleep', '1000'] });
      await engine.start(id);
    });

    afterAll(async () => {
      await engine.delete(id, { force: true }).catch(() => undefined);
    });

    it('without a tty: cat echoes stdin, and exits 0 once stdin ends', async () => {
      const p = await engine.execInteractive(id, { args: ['cat'], tty: false });
      expect(p.execId).toMatch(/^exec-/);
      const out = collect(p.output);
      p.stdin.write('hello\n');
      await out.waitFor(/hello\n/);
      p.stdin.write(Buffer.from('world\n'));
      await out.waitFor(/world\n/);
      // Still running until stdin ends.
      expect((await fx.client.tasks.get(id, p.execId)).status).toBe('RUNNING');
      p.stdin.end();
      expect(await p.exit).toMatchObject({ exitCode: 0 });
      await out.waitEnd();
      expect(out.ended).toBe(true);
      expect(out.text).toBe('hello\nworld\n');
      // The exec process was deleted from the shim; its FIFOs are gone.
      await expect(fx.client.tasks.get(id, p.execId)).rejects.toThrow();
      expect(fifosBelow(stateDir)).toEqual([]);
      // resize/kill after exit are no-ops; late writes are discarded.
      await p.resize(80, 24);
      await p.kill();
    });

    it('a process that exits at once, without reading stdin, ends the session while stdin is still open', async () => {
      // Repeated: the process may be gone before execInteractive returns (a race this once lost).
      for (const tty of [false, true, false, true, false, false]) {
        const p = await engine.execInteractive(id, { args: ['sh', '-c', 'echo done; exit 4'], tty });
        const out = collect(p.output);
        // Unread input waits in the pipe; the caller never ends stdin (a WebSocket left open).
        p.stdin.write('ignored\n');
        const t0 = Date.now();
        expect((await p.exit).exitCode).toBe(4);
        expect(Date.now() - t0).toBeLessThan(2500);
        await out.waitEnd(2000);
        expect(out.text).toContain('done');
      }
    });

    it('without a tty: stdout and stderr are merged; exit code, env, cwd and user are applied', async () => {
      const p = await engine.execInteractive(id, {
        args: ['sh', '-c', 'read x; echo "out:$x:$FOO:$(pwd):$(id -u)"; echo "err:$x" >&2; exit 5'],
        tty: false,
        env: ['FOO=bar'],
        cwd: '/tmp',
        user: '1000:1000',
      });
      const out = collect(p.output);
      p.stdin.write('abc\n');
      expect((await p.exit).exitCode).toBe(5);
      await out.waitEnd();
      expect(out.text).toContain('out:abc:bar:/tmp:1000\n');
      expect(out.text).toContain('err:abc\n');
      // The process is gone: writing and ending stdin are harmless.
      p.stdin.write('late\n');
      p.stdin.end();
    });

    it('with a tty: a shell prompt, resize 120x40 shows in stty size, exit 3 gives exit code 3', async () => {
      const p = await engine.execInteractive(id, { args: ['sh'], tty: true });
      const out = collect(p.output);
      await out.waitFor(/\/ # /); // busybox may append a cursor-position query (ESC[6n)
      await p.resize(120, 40);
      let from = out.text.length;
      p.stdin.write('stty size\n');
      await out.waitFor(/\r\n40 120\r\n/, 10_000, from);
      from = out.text.length;
      p.stdin.write('echo "term=$TERM tty=$(tty)"\n');
      await out.waitFor(/\r\nterm=xterm tty=\/dev\/pts\/\d+\r\n/, 10_000, from);
      await p.resize(100, 30);
      from = out.text.length;
      p.stdin.write('stty size\n');
      await out.waitFor(/\r\n30 100\r\n/, 10_000, from);
      p.stdin.write('exit 3\n');
      expect((await p.exit).exitCode).toBe(3);
      await out.waitEnd();
      expect(out.ended).toBe(true);
      expect(fifosBelow(stateDir)).toEqual([]);
    });

    it('with a tty: an initial size, and stdin end hangs up the terminal', async () => {
      const p = await engine.execInteractive(id, { args: ['stty', 'size'], tty: true, size: { cols: 90, rows: 20 } });
      const out = collect(p.output);
      expect((await p.exit).exitCode).toBe(0);
      expect(out.text).toBe('20 90\r\n');

      const sh = await engine.execInteractive(id, { args: ['sh'], tty: true });
      const shOut = collect(sh.output);
      await shOut.waitFor(/\/ # /);
      sh.stdin.end();
      const info = await sh.exit;
      expect(typeof info.exitCode).toBe('number');
      await shOut.waitEnd();
    });

    it('kill() signals the exec; bad commands and states are rejected without leftovers', async () => {
      const p = await engine.execInteractive(id, { args: ['sleep', '100'], tty: false });
      const out = collect(p.output);
      await p.kill('SIGTERM');
      expect((await p.exit).exitCode).toBe(143);
      await out.waitEnd();

      const err = await engine.execInteractive(id, { args: ['/nope'], tty: false }).catch((e) => e);
      expect(err).toBeInstanceOf(EngineError);
      expect(err.code).toBe('failed');
      const errTty = await engine.execInteractive(id, { args: ['/nope'], tty: true }).catch((e) => e);
      expect(errTty).toBeInstanceOf(EngineError);
      await expect(engine.execInteractive(id, { args: [], tty: false })).rejects.toMatchObject({ code: 'invalid' });
      await expect(
        engine.execInteractive(id, { args: ['sh'], tty: true, size: { cols: 0, rows: 10 } }),
      ).rejects.toMatchObject({ code: 'invalid' });
      await expect(engine.execInteractive('nope-x', { args: ['sh'], tty: false })).rejects.toMatchObject({
        code: 'not_found',
      });
      const stopped = newId('ixstop');
      await engine.create(stopped, { image, command: ['true'] });
      await expect(engine.execInteractive(stopped, { args: ['sh'], tty: false })).rejects.toMatchObject({
        code: 'conflict',
      });
      await engine.delete(stopped);
      expect(fifosBelow(stateDir)).toEqual([]);
      expect(openFdsBelow(stateDir).filter((l) => l.startsWith(`${process.pid}:`))).toEqual([]);
    });

    it('runs many sessions at once without tying up the libuv threadpool', async () => {
      const count = 12; // > UV_THREADPOOL_SIZE (4 by default)
      const sessions = await Promise.all(
        Array.from({ length: count }, () => engine.execInteractive(id, { args: ['cat'], tty: false })),
      );
      const outs = sessions.map((s) => collect(s.output));
      // All sessions are open and idle: fs calls (threadpool) must still complete at once.
      const t0 = Date.now();
      await readFile('/proc/self/status');
      await readFile(join(repoFile()), 'utf8');
      expect(Date.now() - t0).toBeLessThan(1000);
      sessions.forEach((s, i) => {
        s.stdin.write(`line-${i}\n`);
      });
      await Promise.all(outs.map((o, i) => o.waitFor(new RegExp(`line-${i}\\n`))));
      for (const s of sessions) s.stdin.end();
      const exits = await Promise.all(sessions.map((s) => s.exit));
      expect(exits.map((e) => e.exitCode)).toEqual(Array(count).fill(0));
      outs.forEach((o, i) => {
        expect(o.text).toBe(`line-${i}\n`);
      });
      // Only the init process is left in the container.
      expect((await fx.client.tasks.listPids(id)).length).toBe(1);
    });

    it('a background child holding the output pipe delays exit by at most the shim grace period', async () => {
      const t0 = Date.now();
      const p = await engine.execInteractive(id, {
        args: ['sh', '-c', 'sleep 30 & echo $! >/tmp/bg.pid; echo started'],
        tty: false,
      });
      const out = collect(p.output);
      expect((await p.exit).exitCode).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(out.text).toBe('started\n');
      expect(out.ended).toBe(true);
      // The orphaned sleep lives on in the container; clean it up.
      expect((await engine.exec(id, { args: ['sh', '-c', 'kill $(cat /tmp/bg.pid)'] })).exitCode).toBe(0);
    });

    it('destroying output and killing the process cleans up (a WebSocket that went away)', async () => {
      const p = await engine.execInteractive(id, { args: ['sh', '-c', 'while :; do echo y; done'], tty: false });
      const out = collect(p.output);
      await out.waitFor(/y\ny\n/);
      p.output.destroy();
      await p.kill();
      expect((await p.exit).exitCode).toBe(137);
      expect(fifosBelow(stateDir)).toEqual([]);
    });
  });

  describe('attach', () => {
    it('attaches to a sh created with openStdin+tty: echo, resize, two sessions, detach keeps it running', async () => {
      const id = newId('att');
      await engine.create(id, { image, command: ['sh'], openStdin: true, tty: true });
      await engine.start(id);
      const a = await engine.attach(id);
      expect(a.tty).toBe(true);
      expect(a.stdinOpen).toBe(true);
      const outA = collect(a.output);
      a.stdin.write('echo hi\n');
      await outA.waitFor(/\r\nhi\r\n/);
      // While it runs: a shim for our namespace, and the tty logger holding the stdout log open (what the
      // final leftover check looks for).
      expect(processesMentioning(`-namespace ${fx.namespace}`).length).toBeGreaterThan(0);
      const loggerFds = openFdsBelow(join(stateDir, 'containers', id)).filter(
        (l) => !l.startsWith(`${process.pid}:`) && l.endsWith('/stdout.log'),
      );
      // (the logger's sh and its cat: dash applies the redirection in the parent before it vforks)
      expect(loggerFds.length).toBeGreaterThan(0);

      await a.resize(120, 40);
      let from = outA.text.length;
      a.stdin.write('stty size\n');
      await outA.waitFor(/\r\n40 120\r\n/, 10_000, from);

      // A second session follows the log from its own start; both see each other's input and output.
      const b = await engine.attach(id);
      const outB = collect(b.output);
      from = outA.text.length;
      a.stdin.write('echo from-$((40+2))-a\n');
      await outA.waitFor(/\r\nfrom-42-a\r\n/, 10_000, from);
      await outB.waitFor(/\r\nfrom-42-a\r\n/);
      expect(outB.text).not.toContain('40 120');
      b.stdin.write('echo from-$((40+3))-b\n');
      await outA.waitFor(/\r\nfrom-43-b\r\n/);
      await outB.waitFor(/\r\nfrom-43-b\r\n/);

      // Detach A: its output ends, the container and B carry on.
      a.close();
      expect(await a.done).toBeUndefined();
      await outA.waitEnd();
      expect((await engine.status(id)).state).toBe('running');
      b.stdin.write('echo still-$((1+1))\n');
      await outB.waitFor(/\r\nstill-2\r\n/);
      b.stdin.end(); // releases this session's handle only
      b.close();
      await outB.waitEnd();
      await delay(200);
      expect((await engine.status(id)).state).toBe('running');
      // The pty output went to the stdout log (appended); stderr stays empty with a tty.
      const logs = engine.logPaths(id);
      expect(readFileSync(logs.stdout, 'utf8')).toContain('\r\nhi\r\n');
      expect(readFileSync(logs.stderr, 'utf8')).toBe('');

      // A new session can still talk to it, and sees the run end.
      const c = await engine.attach(id);
      const outC = collect(c.output);
      c.stdin.write('echo bye; exit 7\n');
      expect(await c.done).toMatchObject({ exitCode: 7 });
      await outC.waitEnd();
      expect(outC.text).toContain('\r\nbye\r\n');
      expect((await engine.status(id)).state).toBe('stopped');
      await expect(engine.attach(id)).rejects.toMatchObject({ code: 'conflict' });

      // Restart: the stdin FIFO is reused and attach works again.
      await engine.start(id);
      const d = await engine.attach(id);
      const outD = collect(d.output);
      d.stdin.write('echo again\n');
      await outD.waitFor(/\r\nagain\r\n/);
      d.close();
      // Deleting the container ends the sessions still attached.
      const e = await engine.attach(id);
      const outE = collect(e.output);
      await engine.delete(id, { force: true });
      expect((await e.done)?.exitCode).toBe(137);
      await outE.waitEnd();
    });

    it('appends tty output to the stdout log across restarts (the shim would overwrite a plain path)', async () => {
      const id = newId('ttylog');
      await engine.create(id, { image, command: ['sh', '-c', 'echo run-$((6*7))'], tty: true });
      await engine.start(id);
      expect((await engine.wait(id)).exitCode).toBe(0);
      await engine.start(id);
      expect((await engine.wait(id)).exitCode).toBe(0);
      // wait() resolves once the logger has written everything (and removed its marker).
      const logs = engine.logPaths(id);
      expect(existsSync(join(stateDir, 'containers', id, 'tty-logger.pid'))).toBe(false);
      expect(readFileSync(logs.stdout, 'utf8')).toBe('run-42\r\nrun-42\r\n');
      expect(readFileSync(logs.stderr, 'utf8')).toBe('');
      await engine.delete(id);
    });

    it('without a tty: follows stdout and stderr, stdin survives detaching, no stdin without openStdin', async () => {
      const id = newId('attnt');
      await engine.create(id, {
        image,
        command: ['sh', '-c', 'while read l; do echo "out:$l"; echo "err:$l" >&2; done; echo eof'],
        openStdin: true,
      });
      await engine.start(id);
      const a = await engine.attach(id);
      expect(a.tty).toBe(false);
      const outA = collect(a.output);
      a.stdin.write('x\n');
      await outA.waitFor(/out:x\n/);
      await outA.waitFor(/err:x\n/);
      await a.resize(80, 24); // no tty: a no-op
      a.stdin.end();
      a.close();
      await delay(200);
      // Our stdin handle was released, but the shim keeps the process' stdin open.
      expect((await engine.status(id)).state).toBe('running');
      const b = await engine.attach(id);
      const outB = collect(b.output);
      b.stdin.write('y\n');
      await outB.waitFor(/out:y\n/);
      expect(outB.text).not.toContain('out:x');
      b.close();
      await engine.delete(id, { force: true });

      const plain = newId('attplain');
      await engine.create(plain, { image, command: ['sh', '-c', 'while :; do echo tick; sleep 0.2; done'] });
      await engine.start(plain);
      const p = await engine.attach(plain);
      expect(p.stdinOpen).toBe(false);
      const outP = collect(p.output);
      p.stdin.write('ignored\n');
      await outP.waitFor(/tick\n/);
      await engine.kill(plain);
      expect((await p.done)?.exitCode).toBe(137);
      await outP.waitEnd();
      await engine.delete(plain);
    });
  });

  it('leaves nothing behind: no FIFOs, open fds, shims or logger processes', async () => {
    for (const c of await engine.list()) await engine.delete(c.id, { force: true });
    await delay(300);
    expect(fifosBelow(stateDir)).toEqual([]);
    expect(openFdsBelow(stateDir)).toEqual([]);
    expect(processesMentioning(`-namespace ${fx.namespace}`)).toEqual([]);
    expect(await fx.client.tasks.list()).toEqual([]);
  });
});

function repoFile(): string {
  return new URL('../../package.json', import.meta.url).pathname;
}
