// A private Docker for anchor runs: Debian's docker.io (dockerd 20.10) installed with the project's apt helper,
// started inside a network namespace of its own, so docker0, its iptables rules and its published ports exist only
// there. Everything else is private too: data root, exec root (which holds its managed containerd's root, state and
// socket), pid file, API socket, daemon config (so neither /etc/docker/daemon.json is read nor /etc/docker/key.json
// written) and the containers' cgroup parent. `cleanup()` removes all of it; the sandbox touches no host state.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, run, sleep } from './cloud.mjs';
import { cmdline, comm, descendants, shims } from './procs.mjs';

const DOCKERD = '/usr/sbin/dockerd';
const DOCKER = '/usr/bin/docker'; // the package's CLI (20.10), not whatever else is first in PATH

/** Installs docker.io with scripts/lib.sh's apt_ensure (no service is started: see docs/benchmarks.md); returns
 * why Docker cannot be run, or undefined when it can. */
export function ensureDocker() {
  try {
    run('bash', ['-c', `source ${join(REPO, 'scripts/lib.sh')} && apt_ensure docker.io`], { stdio: 'inherit' });
  } catch (e) {
    return `apt_ensure docker.io failed: ${e.message}`;
  }
  return existsSync(DOCKERD) ? undefined : `${DOCKERD} missing after install`;
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
async function waitExit(pid, ms) {
  for (let t = 0; t < ms && alive(pid); t += 100) await sleep(100);
  return !alive(pid);
}
/** Runs a command; resolves with its stdout, rejects with its stderr. */
function exec(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${cmd} ${args[0]}: ${err}`))));
  });
}

/** A network namespace with loopback up, a busybox image archive, and a place for one dockerd at a time. */
export async function dockerSandbox(work) {
  const id = `krater-bench-docker-${process.pid}`;
  const ns = id;
  const cgroupParent = `/${id}`;
  const runDockerExisted = existsSync('/run/docker');
  mkdirSync(work, { recursive: true });
  run('ip', ['netns', 'add', ns]);
  run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const archive = join(work, 'busybox.docker.tar');
  run('sh', [join(REPO, 'scripts/engine-build-busybox.sh'), archive, 'docker-archive', 'kr/busybox:latest']);
  const config = join(work, 'daemon.json');
  writeFileSync(config, JSON.stringify({ 'deprecated-key-path': join(work, 'key.json') }));
  const sock = join(work, 'docker.sock');
  const env = { DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: join(work, 'cli') };
  let daemon;

  /** The CLI against this dockerd. */
  const docker = (...args) => exec(DOCKER, args, env);

  /** Starts dockerd (userland proxy on or off) in the namespace; resolves when its API answers. */
  const start = async ({ userlandProxy }) => {
    const log = join(work, `dockerd-${userlandProxy ? 'proxy' : 'dnat'}.log`);
    const args = [
      `--net=/run/netns/${ns}`,
      '--',
      DOCKERD,
      '--config-file',
      config,
      '-H',
      `unix://${sock}`,
      '--pidfile',
      join(work, 'docker.pid'),
      '--data-root',
      join(work, 'root'),
      '--exec-root',
      join(work, 'exec'),
      '--cgroup-parent',
      cgroupParent,
      `--userland-proxy=${userlandProxy}`,
      '--log-level',
      'warn',
    ];
    // nsenter switches only the network namespace: dockerd keeps the host's mounts (its cgroup hierarchies).
    const out = openSync(log, 'w');
    const proc = spawn('nsenter', args, { stdio: ['ignore', out, out] });
    daemon = proc;
    for (let i = 0; ; i++) {
      if (await docker('version', '--format', '{{.Server.Version}}').then(Boolean, () => false)) break;
      if (i > 600 || proc.exitCode !== null) throw new Error(`dockerd did not start (see ${log})`);
      await sleep(100);
    }
    return proc.pid; // nsenter execs dockerd: the same process
  };

  /** Stops dockerd (its managed containerd exits with it), then anything of ours still running. */
  const stop = async () => {
    if (!daemon || daemon.exitCode !== null) return;
    const pid = daemon.pid;
    const ids = await docker('ps', '-aq').catch(() => '');
    if (ids) await docker('rm', '-f', ...ids.split('\n')).catch(() => {});
    const below = descendants(pid);
    const kill = (p, signal) => {
      try {
        process.kill(p, signal);
      } catch {}
    };
    kill(pid, 'SIGTERM');
    if (!(await waitExit(pid, 20000))) kill(pid, 'SIGKILL');
    // Left behind only if dockerd had to be killed: its proxies, its containerd, our shims (checked again by name,
    // the PIDs having been taken before).
    for (const p of [...below, ...shims(work)]) {
      if (alive(p) && (cmdline(p).includes(work) || comm(p) === 'docker-proxy')) kill(p, 'SIGKILL');
    }
    daemon = undefined;
  };

  /** Child process probing ports from inside the namespace (bench/lib/probe.mjs). */
  const probe = () => {
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${ns}`, '--', process.execPath, join(REPO, 'bench/lib/probe.mjs')],
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    const ready = new Promise((r) => child.once('message', r));
    /** Resolves with {first, all}: ms from `t0` until one / every port gave `want`. */
    const until = (base, n, want, t0) =>
      new Promise((resolve) => {
        const out = {};
        const onMessage = (m) => {
          const at = Math.round(Number(process.hrtime.bigint() - t0) / 1e6);
          if (m.first) out.first = at;
          if (m.done) {
            out.all = at;
            child.off('message', onMessage);
            resolve(out);
          }
        };
        child.on('message', onMessage);
        child.send({ base, n, want });
      });
    return { ready, until, close: () => child.disconnect() };
  };

  /** Removes everything the sandbox made: daemon, mounts under `work`, cgroups, namespace, files. */
  const cleanup = async () => {
    await stop().catch(() => {});
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m) => m?.startsWith(work))
      .reverse();
    for (const m of mounts) {
      try {
        run('umount', ['-l', m]);
      } catch {}
    }
    for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
      const dir = join('/sys/fs/cgroup', hierarchy, id);
      if (existsSync(dir)) run('find', [dir, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';']);
    }
    try {
      run('ip', ['netns', 'del', ns]);
    } catch {}
    // dockerd creates /run/docker/plugins (plugin discovery) whatever its exec root: remove it if we made it.
    if (!runDockerExisted) {
      for (const d of ['/run/docker/plugins', '/run/docker']) {
        try {
          rmdirSync(d);
        } catch {}
      }
    }
    rmSync(work, { recursive: true, force: true });
  };

  return { ns, work, archive, docker, start, stop, probe, cleanup };
}
