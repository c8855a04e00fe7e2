/**
 * Keeps the agent's containerd alive. Detects its death (the process we started or adopted exits) or a daemon that
 * stops answering (Version pings through the agent's own gRPC connection fail `failuresBeforeDown` times in a row),
 * reports it (`onDown`), brings it back — a private daemon is started again with exponential back-off, an external
 * one (`--containerd <socket>`) is only waited for, with the same back-off — and reports the recovery once the
 * agent's connection answers again (`onUp`, where the agent re-adopts tasks). Shims and their containers outlive
 * containerd; a restarted containerd reconnects to them.
 *
 * While `<containerd data dir>/restart.hold` exists a private daemon is not started again (maintenance, tests): the
 * host stays unavailable until the file is removed.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type BackoffPolicy, backoffDelay, CONTAINERD_RESTART_BACKOFF } from './backoff.js';
import type { ContainerdClient } from './containerd-client.js';
import type { ContainerdSupervisor } from './containerd-supervisor.js';

export interface WatchdogLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface WatchdogOptions {
  /** Calls of the agent's connection: pinging through it proves that connection (not just some socket) works. */
  client: ContainerdClient;
  log: WatchdogLog;
  /** containerd became unavailable (`reason` says why). Awaited before recovery starts. */
  onDown(reason: string): Promise<void> | void;
  /** containerd answers again (`restarted`: a new daemon was started). Awaited; a throw counts as not recovered. */
  onUp(info: { restarted: boolean; downMs: number }): Promise<void> | void;
  /** Between health pings (default 2 s). */
  pingIntervalMs?: number;
  /** Deadline of one ping (default 5 s). */
  pingTimeoutMs?: number;
  /** Failed pings in a row before a live daemon counts as unavailable (default 3). */
  failuresBeforeDown?: number;
  /** A private daemon that is alive but has not answered for this long is killed and started again (default 60 s). */
  hungKillAfterMs?: number;
  backoff?: BackoffPolicy;
}

export class ContainerdWatchdog {
  /** Why containerd is unavailable; undefined while it is up. */
  downReason: string | undefined;
  private stopped = false;
  private wake: () => void = () => undefined;
  private loop: Promise<void> | undefined;
  private watchedExit: Promise<void> | undefined;

  constructor(
    private readonly sup: ContainerdSupervisor,
    private readonly opts: WatchdogOptions,
  ) {}

  get up(): boolean {
    return this.downReason === undefined;
  }

  /** The file whose presence holds back restarts of a private daemon (undefined for an external one). */
  get holdFile(): string | undefined {
    return this.sup.paths ? join(this.sup.paths.dataDir, 'restart.hold') : undefined;
  }

  start(): void {
    this.loop ??= this.run().catch((err) => this.opts.log.error({ err }, 'containerd watchdog stopped'));
  }

  /** Stops watching (before the agent stops containerd itself, so that a purge is not undone). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.loop;
  }

  /** Sleeps `ms`, or less if stopped or the daemon we spawned exits (an adopted one is checked every tick). */
  private async sleep(ms: number, watchDeath: boolean): Promise<void> {
    if (this.stopped) return;
    await new Promise<void>((res) => {
      const t = setTimeout(res, ms);
      this.wake = () => {
        clearTimeout(t);
        res();
      };
      const exited = this.sup.childExited;
      if (watchDeath && exited && exited !== this.watchedExit) {
        // One handler per daemon process, calling whichever sleep is current when it exits.
        this.watchedExit = exited;
        void exited.then(() => this.wake());
      }
    });
  }

  private async ping(): Promise<string | undefined> {
    try {
      await this.opts.client.version({ timeoutMs: this.opts.pingTimeoutMs ?? 5000 });
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  private async run(): Promise<void> {
    const interval = this.opts.pingIntervalMs ?? 2000;
    const needed = this.opts.failuresBeforeDown ?? 3;
    let failures = 0;
    while (!this.stopped) {
      await this.sleep(interval, true);
      if (this.stopped) return;
      let reason: string | undefined;
      if (this.sup.owned && !this.sup.running) reason = `containerd (pid ${this.sup.pid ?? '?'}) exited`;
      else {
        const err = await this.ping();
        failures = err === undefined ? 0 : failures + 1;
        if (failures >= needed) reason = `containerd does not answer (${failures} pings failed): ${err}`;
      }
      if (reason === undefined || this.stopped) continue;
      failures = 0;
      await this.recover(reason);
    }
  }

  /** From the moment containerd is found unavailable until it answers again (or the watchdog is stopped). */
  private async recover(reason: string): Promise<void> {
    const since = Date.now();
    this.downReason = reason;
    this.opts.log.error({ reason, owned: this.sup.owned }, 'containerd is unavailable');
    await Promise.resolve(this.opts.onDown(reason)).catch((err) =>
      this.opts.log.warn({ err }, 'containerd watchdog: onDown failed'),
    );
    const policy = this.opts.backoff ?? CONTAINERD_RESTART_BACKOFF;
    let heldLogged = false;
    let restarted = false;
    for (let attempt = 0; !this.stopped; attempt++) {
      let failure: string | undefined;
      try {
        if (this.sup.owned && !this.sup.running) {
          const hold = this.holdFile;
          if (hold && existsSync(hold)) {
            if (!heldLogged) this.opts.log.warn({ hold }, 'containerd restart held back while this file exists');
            heldLogged = true;
            attempt = -1; // the back-off starts over once the hold is lifted
            await this.sleep(500, false);
            continue;
          }
          this.opts.log.info({ attempt }, 'starting containerd again');
          await this.sup.restart();
          restarted = true;
        } else if (this.sup.owned && Date.now() - since > (this.opts.hungKillAfterMs ?? 60_000)) {
          this.opts.log.error({ pid: this.sup.pid }, 'containerd is alive but has not answered: killing it');
          this.sup.kill();
          continue;
        }
        failure = await this.ping();
      } catch (err) {
        failure = err instanceof Error ? err.message : String(err);
      }
      if (failure === undefined) {
        try {
          await this.opts.onUp({ restarted, downMs: Date.now() - since });
          this.downReason = undefined;
          // Warn, as the outage was an error: the recovery must show in a log kept at warn level.
          this.opts.log.warn({ restarted, downMs: Date.now() - since, pid: this.sup.pid }, 'containerd is back');
          return;
        } catch (err) {
          failure = `re-adopting after the restart failed: ${err instanceof Error ? err.message : String(err)}`;
        }
      }
      const wait = backoffDelay(attempt, policy);
      this.opts.log.warn({ attempt, retryInMs: wait, err: failure }, 'containerd still unavailable');
      this.downReason = `${reason}; last attempt: ${failure}`;
      await this.sleep(wait, false);
    }
  }
}
