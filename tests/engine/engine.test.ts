/**
 * The Engine (containerd implementation) against a real, private containerd (root only): a busybox image
 * built offline, containers run, stopped, exec'd into, paused, limited, measured and deleted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroupDir, cgroupMemoryLimit, existingCgroupDirs } from '../../src/engine/cgroups.js';
import { isNotFound } from '../../src/engine/containerd-client.js';
import { ContainerdEngine, EngineError } from '../../src/engine/engine.js';
import { importImageArchive } from '../../src/engine/image-import.js';
import { allowTraversal } from '../../src/engine/userns-snapshot.js';
import { buildBusybox, type EngineFixture, engineTestsUnavailable, startFixture } from './helpers.js';

const skip = engineTestsUnavailable();

describe.skipIf(!!skip)('ContainerdEngine', () => {
  let fx: EngineFixture;
  let engine: ContainerdEngine;
  let image: string;
  let n = 0;
  /** Unique container ids per test run. */
  const newId = (what: string) => `${what}-${fx.suffix}-${++n}`;

  beforeAll(async () => {
    fx = await startFixture();
    engine = new ContainerdEngine({
      client: fx.client,
      stateDir: join(fx.tmp, 'engine'),
      cgroupParent: fx.cgroupParent,
      runcRoot: fx.supervisor.paths!.runcRoot,
    });
    const archive = buildBusybox(join(fx.tmp, 'busybox.oci.tar'));
    const imported = await importImageArchive(fx.client, archive);
    image = imported[0]!.name;
  });

  afterAll(async () => {
    if (engine) {
      for (const c of await engine.list().catch(() => []))
        await engine.delete(c.id, { force: true }).catch(() => undefined);
      engine.close();
    }
    await fx?.cleanup();
  });

  it('runs echo hello and writes it to the stdout log file (stderr separate)', async () => {
    const id = newId('echo');
    const created = await engine.create(id, { image, command: ['sh', '-c', 'echo hello; echo oops >&2'] });
    expect(created.state).toBe('created');
    await engine.start(id);
    const exit = await engine.wait(id);
    expect(exit.exitCode).toBe(0);
    const logs = engine.logPaths(id);
    expect(readFileSync(logs.stdout, 'utf8')).toBe('hello\n');
    expect(readFileSync(logs.stderr, 'utf8')).toBe('oops\n');
    const st = await engine.status(id);
    expect(st).toMatchObject({ state: 'stopped', exitCode: 0, image });
    expect(st.exitedAt).toBeInstanceOf(Date);
    // Reaped: no stopped task (and idle shim) is left behind.
    await expect(fx.client.tasks.get(id)).rejects.toSatisfy(isNotFound);
    // Restart appends to the same log.
    await engine.start(id);
    await engine.wait(id);
    expect(readFileSync(logs.stdout, 'utf8')).toBe('hello\nhello\n');
    await engine.delete(id);
  });

  it("reports exit code 3 for sh -c 'exit 3'", async () => {
    const id = newId('exit3');
    await engine.create(id, { image, command: ['sh', '-c', 'exit 3'] });
    await engine.start(id);
    expect((await engine.wait(id)).exitCode).toBe(3);
    expect((await engine.status(id)).exitCode).toBe(3);
    await engine.delete(id);
  });

  it('uses the image config: env, workdir, hostname, default command', async () => {
    const id = newId('cfg');
    await engine.create(id, {
      image,
      command: ['sh', '-c', 'echo "$PATH|$FOO|$(pwd)|$(hostname)|$(id -u)"'],
      env: ['FOO=bar'],
      workdir: '/tmp',
      hostname: 'kr-host',
    });
    await engine.start(id);
    await engine.wait(id);
    expect(readFileSync(engine.logPaths(id).stdout, 'utf8')).toBe('/usr/sbin:/usr/bin:/sbin:/bin|bar|/tmp|kr-host|0\n');
    await engine.delete(id);
  });

  it('applies the security defaults: Docker capabilities, no_new_privs, masked/read-only paths, capped rlimits', async () => {
    const id = newId('sec');
    const script = [
      'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status',
      'ulimit -n',
      'wc -c < /proc/timer_list', // present on this kernel, masked by a /dev/null bind mount
      '(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo rw || echo ro',
      'ls /sys/fs/cgroup/memory/memory.limit_in_bytes',
    ].join('; ');
    // nofile 1048576 is above this host's hard limit: the engine lowers it (else runc fails with EPERM).
    await engine.create(id, {
      image,
      command: ['sh', '-c', script],
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }],
    });
    await engine.start(id);
    expect((await engine.wait(id)).exitCode).toBe(0);
    const hard = readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+\d+\s+(\d+)/)![1];
    expect(readFileSync(engine.logPaths(id).stdout, 'utf8')).toBe(
      [
        'CapEff:\t00000000a80425fb', // Docker's default set
        'CapBnd:\t00000000a80425fb',
        'NoNewPrivs:\t1',
        String(Math.min(1048576, Number(hard))),
        '0',
        'ro',
        '/sys/fs/cgroup/memory/memory.limit_in_bytes',
        '',
      ].join('\n'),
    );
    await engine.delete(id);
  });

  it('runs privileged: every capability, no seccomp, nothing masked; the default is confined', async () => {
    const script = [
      'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status',
      'wc -c < /proc/timer_list',
      '(unshare -U true) 2>/dev/null && echo userns || echo no-userns',
      // The host's devices (Docker's --privileged): /dev/kmsg and the loop devices are there, readable.
      'ls /dev/kmsg /dev/loop0 /dev/loop-control 2>&1; head -c 1 /dev/urandom | wc -c',
    ].join('; ');
    const out: Record<string, string> = {};
    for (const privileged of [true, false]) {
      const id = newId(privileged ? 'priv' : 'conf');
      await engine.create(id, { image, command: ['sh', '-c', script], privileged });
      await engine.start(id);
      expect((await engine.wait(id)).exitCode).toBe(0);
      out[String(privileged)] = readFileSync(engine.logPaths(id).stdout, 'utf8');
      await engine.delete(id);
    }
    // Every capability this host grants (Krater's own bounding set).
    const bounding = /^CapBnd:\s*(\w+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1];
    expect(out.true).toContain(`CapEff:\t${bounding}`);
    expect(out.true).toMatch(/Seccomp:\t0/);
    expect(out.true).toMatch(/NoNewPrivs:\t0/);
    expect(out.true).not.toMatch(/^0$/m); // /proc/timer_list readable
    expect(out.true).toContain('\nuserns');
    expect(out.true).toMatch(/^\/dev\/kmsg\n\/dev\/loop-control\n\/dev\/loop0\n1$/m);
    expect(out.false).toMatch(/\/dev\/kmsg: No such file or directory/);
    expect(out.false).toMatch(/Seccomp:\t2/);
    expect(out.false).toContain('no-userns');
  });

  it('stops a long-running sleep: TERM is ignored by PID 1, so KILL after the timeout', async () => {
    const id = newId('sleep');
    await engine.create(id, { image, command: ['sleep', '1000'] });
    const started = await engine.start(id);
    expect(started.state).toBe('running');
    expect(started.pid).toBeGreaterThan(0);
    const t0 = Date.now();
    const exit = await engine.stop(id, { timeoutMs: 300 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(exit?.exitCode).toBe(137);
    expect((await engine.status(id)).state).toBe('stopped');
    // Stopping a stopped container is a no-op.
    expect(await engine.stop(id)).toBeUndefined();
    await engine.delete(id);
  });

  it('stops gracefully when the process handles SIGTERM', async () => {
    const id = newId('trap');
    await engine.create(id, {
      image,
      command: ['sh', '-c', 'trap "echo bye; exit 0" TERM; while :; do sleep 0.05; done'],
    });
    await engine.start(id);
    // Give sh a chance to install its trap: wait until it runs its first sleep.
    await expect
      .poll(async () => (await fx.client.tasks.listPids(id)).length, { timeout: 5000, interval: 10 })
      .toBeGreaterThan(1);
    const exit = await engine.stop(id, { timeoutMs: 10_000 });
    expect(exit?.exitCode).toBe(0);
    expect(readFileSync(engine.logPaths(id).stdout, 'utf8')).toBe('bye\n');
    await engine.delete(id);
  });

  describe('a running container', () => {
    let id: string;
    const memoryLimit = 64 * 1024 * 1024;

    beforeAll(async () => {
      id = newId('run');
      await engine.create(id, {
        image,
        command: ['sleep', '1000'],
        memoryLimitBytes: memoryLimit,
        pidsLimit: 64,
        cpus: 0.5,
      });
      await engine.start(id);
    });

    it('execs echo hi and captures stdout, stderr and the exit code', async () => {
      expect(await engine.exec(id, { args: ['echo', 'hi'] })).toEqual({
        exitCode: 0,
        stdout: 'hi\n',
        stderr: '',
        timedOut: false,
      });
      const r = await engine.exec(id, {
        args: ['sh', '-c', 'echo out; echo err >&2; echo "$X"; exit 7'],
        env: ['X=y'],
      });
      expect(r).toEqual({ exitCode: 7, stdout: 'out\ny\n', stderr: 'err\n', timedOut: false });
      // No exec processes or output files are left behind.
      expect((await fx.client.tasks.listPids(id)).length).toBe(1);
      expect(existsSync(join(fx.tmp, 'engine/containers', id, 'exec'))).toBe(true);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(`${id}/exec`);
    });

    it('kills an exec that exceeds its timeout', async () => {
      const r = await engine.exec(id, { args: ['sleep', '100'], timeoutMs: 200 });
      expect(r.timedOut).toBe(true);
      expect(r.exitCode).toBe(137);
    });

    it('reports an exec of a missing binary as Docker does: exit 127 with the runtime message', async () => {
      const r = await engine.exec(id, { args: ['/nope'] });
      expect(r).toMatchObject({ exitCode: 127, stdout: '', timedOut: false });
      expect(r.stderr).toMatch(/OCI runtime exec failed.*\/nope/);
      // The interactive form still fails to start (its caller has no result to give).
      await expect(engine.execInteractive(id, { args: ['/nope'], tty: false })).rejects.toThrow(/nope/);
    });

    it('pauses and unpauses (freezer FROZEN/THAWED; no exec while paused)', async () => {
      await engine.pause(id);
      expect((await engine.status(id)).state).toBe('paused');
      const cg = `${fx.cgroupParent}/${id}`;
      const freezer = join(cgroupDir(cg, 'freezer'), 'freezer.state');
      if (existsSync(freezer)) expect(readFileSync(freezer, 'utf8').trim()).toBe('FROZEN');
      await expect(engine.exec(id, { args: ['true'] })).rejects.toBeInstanceOf(EngineError);
      await expect(engine.pause(id)).rejects.toMatchObject({ code: 'conflict' });
      await engine.unpause(id);
      expect((await engine.status(id)).state).toBe('running');
      if (existsSync(freezer)) expect(readFileSync(freezer, 'utf8').trim()).toBe('THAWED');
      expect((await engine.exec(id, { args: ['true'] })).exitCode).toBe(0);
    });

    it('puts the container in its cgroup with the memory limit', () => {
      const cg = `${fx.cgroupParent}/${id}`;
      expect(cgroupMemoryLimit(cg)).toBe(memoryLimit);
      const pidsMax = join(cgroupDir(cg, 'pids'), 'pids.max');
      expect(readFileSync(pidsMax, 'utf8').trim()).toBe('64');
    });

    it('returns stats as numbers', async () => {
      const s = await engine.stats(id);
      expect(s.memoryLimitBytes).toBe(memoryLimit);
      expect(s.memoryUsageBytes).toBeGreaterThan(0);
      expect(s.cpuUsageNs).toBeGreaterThan(0);
      expect(s.pids).toBeGreaterThanOrEqual(1);
      expect(s.pidsLimit).toBe(64);
      expect(s.timestamp).toBeInstanceOf(Date);
    });

    it('refuses to start or delete it without force', async () => {
      await expect(engine.start(id)).rejects.toMatchObject({ code: 'conflict' });
      await expect(engine.delete(id)).rejects.toMatchObject({ code: 'conflict' });
    });

    it('is listed', async () => {
      const mine = (await engine.list()).find((c) => c.id === id);
      expect(mine?.state).toBe('running');
    });

    it('force-delete leaves no task, container, snapshot, cgroup or state behind', async () => {
      const cg = `${fx.cgroupParent}/${id}`;
      expect(existingCgroupDirs(cg).length).toBeGreaterThan(0);
      await engine.delete(id, { force: true });
      await expect(fx.client.tasks.get(id)).rejects.toSatisfy(isNotFound);
      await expect(fx.client.containers.get(id)).rejects.toSatisfy(isNotFound);
      expect(await fx.client.snapshots.stat(id)).toBeUndefined();
      expect(existingCgroupDirs(cg)).toEqual([]);
      expect(existsSync(join(fx.tmp, 'engine/containers', id))).toBe(false);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(`/${id}/rootfs`);
      await expect(engine.status(id)).rejects.toMatchObject({ code: 'not_found' });
    });
  });

  it('rejects bad input with typed errors', async () => {
    await expect(engine.create('bad id', { image })).rejects.toMatchObject({ code: 'invalid' });
    await expect(engine.create(newId('noimg'), { image: 'docker.io/library/nope:latest' })).rejects.toMatchObject({
      code: 'not_found',
    });
    await expect(engine.start(newId('missing'))).rejects.toMatchObject({ code: 'not_found' });
    const id = newId('dup');
    await engine.create(id, { image, command: ['true'] });
    await expect(engine.create(id, { image, command: ['true'] })).rejects.toMatchObject({ code: 'conflict' });
    await engine.delete(id);
  });

  it('fails start cleanly for a missing binary and can be deleted', async () => {
    const id = newId('nobin');
    await engine.create(id, { image, command: ['/does-not-exist'] });
    await expect(engine.start(id)).rejects.toMatchObject({ code: 'failed' });
    await expect(fx.client.tasks.get(id)).rejects.toSatisfy(isNotFound);
    await engine.delete(id);
  });

  it('shares one shim within a shim group; the last delete ends it before the next create', async () => {
    const group = `grp-${fx.suffix}`;
    /** The shim is the parent of a task's init process. */
    const shimOf = async (id: string) => {
      const pid = (await engine.status(id)).pid!;
      return Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    };
    /** Running (not gone, not a zombie waiting for its reaper). */
    const alive = (pid: number) => {
      try {
        return !/^State:\s*Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
      } catch {
        return false;
      }
    };
    const run = async (g: string | undefined) => {
      const id = newId('grp');
      await engine.create(id, { image, command: ['sleep', '1000'], shimGroup: g });
      await engine.start(id);
      return id;
    };
    await expect(engine.create(newId('grp'), { image, shimGroup: 'bad group' })).rejects.toMatchObject({
      code: 'invalid',
    });
    const [a, b, c] = [await run(group), await run(group), await run(undefined)];
    const shim = await shimOf(a);
    expect(await shimOf(b)).toBe(shim);
    expect(await shimOf(c)).not.toBe(shim);
    // The first container goes; the shim stays for the second, which keeps running and can exec.
    await engine.delete(a, { force: true });
    expect((await engine.status(b)).state).toBe('running');
    expect((await engine.exec(b, { args: ['echo', 'ok'] })).stdout).toBe('ok\n');
    expect(alive(shim)).toBe(true);
    // Its exit is tracked as before.
    const waited = engine.wait(b);
    await engine.kill(b, 'KILL');
    expect((await waited).exitCode).toBe(137);
    // The group's last task is deleted: its shim is gone, and a container started right after gets a new one
    // (repeatedly, so a start racing a dying shim would show).
    await engine.delete(b, { force: true });
    expect(alive(shim)).toBe(false);
    for (let i = 0; i < 5; i++) {
      const d = await run(group);
      expect((await engine.status(d)).state).toBe('running');
      await engine.delete(d, { force: true });
    }
    await engine.delete(c, { force: true });
  });

  it('runs containers in a user namespace: root inside is an unprivileged host id on a remapped rootfs', async () => {
    const map = { uid: 231072, gid: 231072, size: 65536 };
    allowTraversal(fx.supervisor.paths!.state);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const id = newId('userns');
        ids.push(id);
        await engine.create(id, { image, command: ['sleep', '1000'], userns: map });
        await engine.start(id);
        const sh = async (script: string) => {
          const r = await engine.exec(id, { args: ['sh', '-c', script] });
          expect(r.exitCode, r.stderr).toBe(0);
          return r.stdout;
        };
        expect((await sh('cat /proc/self/uid_map')).trim().split(/\s+/)).toEqual(['0', '231072', '65536']);
        expect(await sh('id -u; id -g')).toBe('0\n0\n');
        // The rootfs belongs to the container's root: it can write anywhere in it.
        expect(await sh('echo x > /rootfile && stat -c %u /rootfile /bin/busybox /')).toBe('0\n0\n0\n');
        expect(await sh('ls /sys/class/net')).toContain('lo');
        // On the host the process is the unprivileged id.
        const pid = (await engine.status(id)).pid!;
        expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+231072\s/m);
      }
      // Both run on one remapped copy of the image.
      const remapped = (await fx.client.snapshots.list()).filter((s) => s.name.endsWith('-userns-231072-231072'));
      expect(remapped).toHaveLength(1);
      // A network namespace made outside cannot be joined from the user namespace (runc 1.1 exec): refused.
      await expect(
        engine.create(newId('userns'), { image, userns: map, netnsPath: '/var/run/netns/x' }),
      ).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/network namespace of its own/) });
      // Without the option: host root, as before.
      const plain = newId('userns');
      ids.push(plain);
      await engine.create(plain, { image, command: ['sleep', '1000'] });
      await engine.start(plain);
      expect(readFileSync(`/proc/${(await engine.status(plain)).pid}/status`, 'utf8')).toMatch(/^Uid:\s+0\s/m);
    } finally {
      for (const id of ids) await engine.delete(id, { force: true }).catch(() => undefined);
    }
  });

  it('discards what an interrupted create left: a running container, or only its snapshot', async () => {
    const id = newId('discard');
    await engine.create(id, { image, command: ['sleep', '1000'] });
    await engine.start(id);
    await expect(engine.create(id, { image })).rejects.toMatchObject({ code: 'conflict' });
    await engine.discard(id);
    await expect(engine.status(id)).rejects.toMatchObject({ code: 'not_found' });
    // Killed between preparing the snapshot and recording the container: only the snapshot is there.
    const chain = (await fx.client.snapshots.list()).find((s) => s.kind === 'COMMITTED' && !s.parent)!;
    // (The dead agent's lease keeps it from containerd's GC until it expires.)
    const lease = await fx.client.leases.create({ expireSeconds: 60 });
    await fx.client.withLease(lease.id).snapshots.prepare(id, chain.name);
    await expect(engine.create(id, { image })).rejects.toMatchObject({ code: 'conflict' });
    await engine.discard(id);
    await fx.client.leases.delete(lease.id);
    await engine.create(id, { image, command: ['true'] });
    await engine.start(id);
    expect((await engine.wait(id)).exitCode).toBe(0);
    await engine.delete(id);
    await engine.discard(newId('discard')); // nothing there: fine
  });

  it('recovers exit tracking in a new engine (agent restart)', async () => {
    const id = newId('recover');
    const opts = {
      client: fx.client,
      stateDir: join(fx.tmp, 'engine'),
      cgroupParent: fx.cgroupParent,
      runcRoot: fx.supervisor.paths!.runcRoot,
    };
    const before = new ContainerdEngine(opts);
    await before.create(id, { image, command: ['sleep', '1000'] });
    await before.start(id);
    before.close(); // the old agent goes away; its container keeps running
    const after = new ContainerdEngine(opts);
    try {
      await after.recover();
      expect((await after.status(id)).state).toBe('running');
      const waited = after.wait(id);
      await after.kill(id, 'KILL');
      expect((await waited).exitCode).toBe(137);
      expect(await after.status(id)).toMatchObject({ state: 'stopped', exitCode: 137 });
      await expect(fx.client.tasks.get(id)).rejects.toSatisfy(isNotFound);
      await after.delete(id);
    } finally {
      after.close();
    }
  });
});
