/**
 * containerd supervision against a real private containerd (root only): kill -9 of the daemon is noticed, the
 * daemon is started again (not while `restart.hold` exists), tasks survive and their exits during the outage are
 * seen; a watchdog of an external daemon never starts one, it only notices when the daemon is back.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerdSupervisor, containerdPaths } from '../../src/engine/containerd-supervisor.js';
import { ContainerdWatchdog } from '../../src/engine/containerd-watchdog.js';
import { ContainerdEngine, toEngineError } from '../../src/engine/engine.js';
import { importImageArchive } from '../../src/engine/image-import.js';
import { buildBusybox, type EngineFixture, engineTestsUnavailable, startFixture } from './helpers.js';

const skip = engineTestsUnavailable();

/** Collects what a watchdog reports; `next(kind)` resolves at the next report of that kind. */
function recorder() {
  const events: Array<{ kind: string; data: any }> = [];
  const waiters: Array<{ kind: string; res: (d: any) => void }> = [];
  const push = (kind: string, data: any) => {
    events.push({ kind, data });
    for (const w of waiters.splice(0)) {
      if (w.kind === kind) w.res(data);
      else waiters.push(w);
    }
  };
  return {
    events,
    push,
    next: (kind: string) => new Promise<any>((res) => waiters.push({ kind, res })),
    count: (kind: string) => events.filter((e) => e.kind === kind).length,
    log: {
      info: (o: object, m: string) => push(`info:${m}`, o),
      warn: (o: object, m: string) => push(`warn:${m}`, o),
      error: (o: object, m: string) => push(`error:${m}`, o),
    },
  };
}

describe.skipIf(!!skip)('ContainerdWatchdog', () => {
  let fx: EngineFixture;
  let engine: ContainerdEngine;
  let image: string;
  const watchdogs: ContainerdWatchdog[] = [];

  beforeAll(async () => {
    fx = await startFixture();
    engine = new ContainerdEngine({
      client: fx.client,
      stateDir: join(fx.tmp, 'engine'),
      cgroupParent: fx.cgroupParent,
      runcRoot: fx.supervisor.paths!.runcRoot,
    });
    image = (await importImageArchive(fx.client, buildBusybox(join(fx.tmp, 'busybox.oci.tar'))))[0]!.name;
  });

  afterAll(async () => {
    for (const w of watchdogs) await w.stop();
    if (engine) {
      for (const c of await engine.list().catch(() => []))
        await engine.delete(c.id, { force: true }).catch(() => undefined);
      engine.close();
    }
    await fx?.cleanup();
  });

  it('restarts a killed private containerd (after the hold is lifted); tasks survive, exits meanwhile are seen', async () => {
    const runner = `runner-${fx.suffix}`;
    const quitter = `quitter-${fx.suffix}`;
    await engine.create(runner, { image, command: ['sleep', '600'] });
    await engine.start(runner);
    // Ends with 5 on SIGTERM, which the test sends while containerd is down.
    await engine.create(quitter, {
      image,
      command: ['sh', '-c', "trap 'exit 5' TERM; while true; do sleep 0.1; done"],
    });
    const quitterPid = (await engine.start(quitter)).pid!;
    const quitterExit = engine.wait(quitter);

    const sup = fx.supervisor;
    const paths = containerdPaths(sup.paths!.dataDir);
    const owned = recorder();
    const external = recorder();
    const mk = (s: ContainerdSupervisor, r: ReturnType<typeof recorder>) => {
      const w = new ContainerdWatchdog(s, {
        client: fx.client,
        log: r.log,
        onDown: (reason) => r.push('down', reason),
        onUp: (info) => r.push('up', info),
        pingIntervalMs: 200,
        backoff: { initialMs: 100, maxMs: 400, factor: 2 },
      });
      watchdogs.push(w);
      w.start();
      return w;
    };
    const ownedDog = mk(sup, owned);
    // The same daemon seen as an external one (`--containerd <socket>`).
    const externalSup = await ContainerdSupervisor.attach(sup.address);
    const externalDog = mk(externalSup, external);
    const hold = ownedDog.holdFile!;
    expect(hold).toBe(join(paths.dataDir, 'restart.hold'));
    writeFileSync(hold, '');

    const oldPid = sup.pid!;
    const ownedDown = owned.next('down');
    const externalDown = external.next('down');
    process.kill(oldPid, 'SIGKILL');
    expect(await ownedDown).toMatch(/exited/);
    await externalDown;
    expect(ownedDog.up).toBe(false);
    expect(externalDog.downReason).toBeDefined();

    // While it is down: calls are "unavailable", not failures.
    const err = await engine.exec(runner, { args: ['true'] }).catch((e) => e);
    expect(toEngineError(err).code).toBe('unavailable');
    // The quitter exits meanwhile; its shim keeps the exit for the next containerd.
    process.kill(quitterPid, 'SIGTERM');

    // Held: nobody starts containerd, and the external watchdog never does.
    while (external.count('warn:containerd still unavailable') < 3)
      await external.next('warn:containerd still unavailable');
    expect(owned.count('warn:containerd restart held back while this file exists')).toBe(1);
    expect(ContainerdSupervisor.runningPid(paths)).toBeUndefined();
    await expect(externalSup.restart()).rejects.toThrow(/external/);

    const ownedUp = owned.next('up');
    const externalUp = external.next('up');
    rmSync(hold);
    expect(await ownedUp).toMatchObject({ restarted: true });
    expect(await externalUp).toMatchObject({ restarted: false });
    expect(ownedDog.up).toBe(true);
    expect(sup.pid).not.toBe(oldPid);
    expect(ContainerdSupervisor.runningPid(paths)).toBe(sup.pid);

    // Re-adopted: the exit during the outage is reported, the runner still runs and answers.
    expect((await quitterExit).exitCode).toBe(5);
    await engine.recover();
    expect((await engine.status(quitter)).state).toBe('stopped');
    expect((await engine.status(runner)).state).toBe('running');
    expect((await engine.exec(runner, { args: ['echo', 'back'] })).stdout).toBe('back\n');
    const later = engine.wait(runner);
    await engine.kill(runner, 'SIGKILL');
    expect((await later).exitCode).toBe(137);
    // And new containers work.
    const fresh = `fresh-${fx.suffix}`;
    await engine.create(fresh, { image, command: ['sh', '-c', 'exit 3'] });
    await engine.start(fresh);
    expect((await engine.wait(fresh)).exitCode).toBe(3);
  });
});
