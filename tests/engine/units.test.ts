/**
 * Pure parts of the engine driver (no containerd, no root): spec building, image helpers, tar reading,
 * config rendering, Any packing.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toDate } from '../../src/engine/containerd-client.js';
import { containerdPaths, renderContainerdConfig } from '../../src/engine/containerd-supervisor.js';
import { shimSocketPath } from '../../src/engine/engine.js';
import { chainIds, normalizeImageRef } from '../../src/engine/image-import.js';
import {
  buildProcess,
  buildSpec,
  capabilitySet,
  capRlimits,
  DEFAULT_CAPABILITIES,
  hostDevices,
  parseUser,
  processFromImage,
} from '../../src/engine/oci-spec.js';
import { packAny, unpackAny } from '../../src/engine/protos.js';
import { TarArchive } from '../../src/engine/tar-archive.js';

describe('oci-spec', () => {
  it('builds a spec with namespaces, cgroup path, limits and defaults', () => {
    const spec = buildSpec({
      id: 'c1',
      cgroupParent: '/krater-x/',
      args: ['sh'],
      memoryLimitBytes: 1 << 26,
      cpus: 1.5,
      pidsLimit: 10,
    });
    expect(spec.linux.cgroupsPath).toBe('/krater-x/c1');
    expect(spec.linux.namespaces.map((n: { type: string }) => n.type)).toEqual([
      'pid',
      'ipc',
      'uts',
      'mount',
      'network',
    ]);
    expect(spec.linux.resources).toMatchObject({
      memory: { limit: 1 << 26 },
      cpu: { quota: 150_000, period: 100_000 },
      pids: { limit: 10 },
      devices: [{ allow: false, access: 'rwm' }],
    });
    expect(spec.linux.maskedPaths).toContain('/proc/kcore');
    expect(spec.linux.readonlyPaths).toContain('/proc/sys');
    expect(spec.process.noNewPrivileges).toBe(true);
    expect(spec.process.capabilities.bounding).toEqual(DEFAULT_CAPABILITIES);
    expect(spec.process.env[0]).toMatch(/^PATH=/);
    expect(spec.hostname).toBe('c1');
    expect(spec.root).toEqual({ path: 'rootfs', readonly: false });
    expect(spec.mounts.map((m: { destination: string }) => m.destination)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
    ]);
  });

  it('joins a given netns, or none for host networking; extra mounts replace defaults', () => {
    const s1 = buildSpec({ id: 'a', cgroupParent: '/p', args: ['x'], netnsPath: '/var/run/netns/n1' });
    expect(s1.linux.namespaces.at(-1)).toEqual({ type: 'network', path: '/var/run/netns/n1' });
    const s2 = buildSpec({
      id: 'a',
      cgroupParent: '/p',
      args: ['x'],
      hostNetwork: true,
      mounts: [{ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['size=1m'] }],
    });
    expect(s2.linux.namespaces.some((n: { type: string }) => n.type === 'network')).toBe(false);
    expect(s2.mounts.filter((m: { destination: string }) => m.destination === '/dev/shm')).toEqual([
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['size=1m'] },
    ]);
  });

  it('rejects bad ids, relative cgroup parents and empty commands', () => {
    const guarded = buildSpec({ id: 'a', cgroupParent: '/p', args: ['x'] }).linux.seccomp;
    expect(guarded.defaultAction).toBe('SCMP_ACT_ALLOW');
    expect(guarded.syscalls[0].names).toEqual(
      expect.arrayContaining(['unshare', 'kexec_load', 'bpf', 'open_by_handle_at']),
    );
    expect(guarded.syscalls.find((r: any) => r.names[0] === 'clone').args[0]).toMatchObject({ value: 0x10000000 });
    expect(buildSpec({ id: 'a', cgroupParent: '/p', args: ['x'], seccomp: false }).linux.seccomp).toBeUndefined();
    expect(() => buildSpec({ id: '../x', cgroupParent: '/p', args: ['x'] })).toThrow(/invalid container id/);
    expect(() => buildSpec({ id: 'x', cgroupParent: 'p', args: ['x'] })).toThrow(/absolute/);
    expect(() => buildProcess({ args: [] })).toThrow(/empty/);
  });

  it('caps rlimits at the host hard limits', () => {
    const hard = new Map([['RLIMIT_NOFILE', 20000]]);
    expect(capRlimits([{ type: 'nofile', soft: 1048576, hard: 1048576 }], hard)).toEqual([
      { type: 'RLIMIT_NOFILE', soft: 20000, hard: 20000 },
    ]);
    expect(capRlimits([{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }], hard)).toEqual([
      { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 },
    ]);
    // Default nofile (1024) stays within any sane host limit.
    expect(buildProcess({ args: ['x'] }).rlimits[0]!.hard).toBeLessThanOrEqual(1024);
  });

  it('adds and drops capabilities; non-root users get no effective capabilities', () => {
    expect(capabilitySet(['net_admin'], ['CAP_NET_RAW'])).toContain('CAP_NET_ADMIN');
    expect(capabilitySet(['net_admin'], ['CAP_NET_RAW'])).not.toContain('CAP_NET_RAW');
    expect(capabilitySet(['SYS_TIME'], ['ALL'])).toEqual(['CAP_SYS_TIME']);
    const p = buildProcess({ args: ['x'], uid: 1000, gid: 1000 });
    expect(p.capabilities.effective).toEqual([]);
    expect(p.capabilities.bounding.length).toBe(DEFAULT_CAPABILITIES.length);
  });

  it('merges image config and run options like docker run', () => {
    const img = { Entrypoint: ['/ep'], Cmd: ['a'], Env: ['PATH=/bin', 'A=1'], WorkingDir: '/w', User: '5:6' };
    expect(processFromImage(img, {})).toEqual({
      args: ['/ep', 'a'],
      env: ['PATH=/bin', 'A=1'],
      cwd: '/w',
      uid: 5,
      gid: 6,
    });
    expect(processFromImage(img, { command: ['b'], env: ['A=2', 'B=3'], user: '0' })).toEqual({
      args: ['/ep', 'b'],
      env: ['PATH=/bin', 'A=2', 'B=3'],
      cwd: '/w',
      uid: 0,
      gid: 0,
    });
    expect(processFromImage(img, { entrypoint: ['/x'] }).args).toEqual(['/x']);
    expect(() => processFromImage({}, {})).toThrow(/no command/);
    expect(() => parseUser('www-data')).toThrow(/numeric/);
  });
});

describe('image helpers', () => {
  it('normalises references like Docker', () => {
    expect(normalizeImageRef('busybox')).toBe('docker.io/library/busybox:latest');
    expect(normalizeImageRef('kr/busybox:1')).toBe('docker.io/kr/busybox:1');
    expect(normalizeImageRef('docker.io/kr/busybox:latest')).toBe('docker.io/kr/busybox:latest');
    expect(normalizeImageRef('localhost:5000/x')).toBe('localhost:5000/x:latest');
    expect(normalizeImageRef('quay.io/a/b@sha256:abc')).toBe('quay.io/a/b@sha256:abc');
  });

  it('computes chain IDs', () => {
    const d = ['sha256:aa', 'sha256:bb'];
    const second = `sha256:${createHash('sha256').update('sha256:aa sha256:bb').digest('hex')}`;
    expect(chainIds(d)).toEqual(['sha256:aa', second]);
    expect(chainIds([])).toEqual([]);
  });
});

describe('TarArchive', () => {
  const dir = mkdtempSync(join(tmpdir(), 'krtar-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('indexes files, long names and symlinks and reads them by name', async () => {
    const src = join(dir, 'src');
    const long = `${'d'.repeat(120)}/${'f'.repeat(120)}.txt`;
    mkdirSync(join(src, 'd'.repeat(120)), { recursive: true });
    mkdirSync(join(src, 'sub'));
    writeFileSync(join(src, long), 'long name\n');
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    writeFileSync(join(src, 'sub/big.bin'), big);
    writeFileSync(join(src, 'empty'), '');
    symlinkSync('../sub/big.bin', join(src, 'sub/link'));
    symlinkSync('sub/link', join(src, 'link2'));
    for (const format of ['gnu', 'pax']) {
      const tarPath = join(dir, `a-${format}.tar`);
      execFileSync('tar', ['-cf', tarPath, `--format=${format}`, '-C', src, '.']);
      const tar = await TarArchive.open(tarPath);
      try {
        expect((await tar.read(long)).toString()).toBe('long name\n');
        expect(tar.size('sub/big.bin')).toBe(big.length);
        expect(tar.resolve('./link2')).toBe('sub/big.bin');
        const chunks: Buffer[] = [];
        for await (const c of tar.stream('link2')) chunks.push(c);
        expect(Buffer.concat(chunks).equals(big)).toBe(true);
        expect((await tar.read('empty')).length).toBe(0);
        for await (const _ of tar.stream('empty')) throw new Error('empty file streamed data');
        expect(tar.resolve('missing')).toBeUndefined();
        await expect(tar.read('missing')).rejects.toThrow(/no file/);
      } finally {
        await tar.close();
      }
    }
  });

  it('rejects non-tar and compressed input', async () => {
    writeFileSync(join(dir, 'junk'), Buffer.alloc(1024, 1));
    await expect(TarArchive.open(join(dir, 'junk'))).rejects.toThrow(/not a tar/);
    execFileSync('sh', ['-c', `tar -czf ${join(dir, 'z.tgz')} -C ${dir} junk`]);
    await expect(TarArchive.open(join(dir, 'z.tgz'))).rejects.toThrow(/compressed/);
  });
});

describe('supervisor config and shim paths', () => {
  it('renders a private config with metrics off', () => {
    const p = containerdPaths('/tmp/k');
    const cfg = renderContainerdConfig(p, 'warn');
    expect(cfg).toContain('root = "/tmp/k/root"');
    expect(cfg).toContain('state = "/tmp/k/state"');
    expect(cfg).toContain('address = "/tmp/k/containerd.sock"');
    expect(cfg).toContain('address = "/tmp/k/containerd-ttrpc.sock"');
    expect(cfg).toMatch(/\[metrics\]\n {2}address = ""/);
    expect(cfg).toContain('level = "warn"');
    expect(cfg).toContain('"io.containerd.grpc.v1.cri"');
  });

  it('computes the runc shim socket like containerd 1.6', () => {
    const expected = createHash('sha256').update('/tmp/k/containerd.sock/ns/c1').digest('hex');
    expect(shimSocketPath('unix:///tmp/k/containerd.sock', 'ns', 'c1')).toBe(`/run/containerd/s/${expected}`);
  });

  it('converts timestamps, treating the zero time as unset', () => {
    expect(toDate({ seconds: '-62135596800', nanos: 0 })).toBeUndefined();
    expect(toDate({ seconds: '1700000000', nanos: 5_000_000 })?.getTime()).toBe(1_700_000_000_005);
  });
});

const protosPresent = existsSync(
  '/usr/share/gocode/src/github.com/containerd/containerd/api/services/tasks/v1/tasks.proto',
);

describe.skipIf(!protosPresent)('Any packing', () => {
  it('round-trips protobuf and JSON payloads', () => {
    const any = packAny('containerd.events.TaskExit', { container_id: 'c', exit_status: 3 });
    expect(any.type_url).toBe('containerd.events.TaskExit');
    expect(unpackAny(any)).toMatchObject({ container_id: 'c', exit_status: 3, pid: 0 });
    expect(
      unpackAny({ type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from('{"a":1}') }),
    ).toEqual({
      a: 1,
    });
    expect(unpackAny({ type_url: 'unknown.Type', value: Buffer.alloc(0) })).toBeUndefined();
    expect(() => packAny('containerd.runc.v1.Options', { root: 5 })).toThrow(/invalid/);
  });
});

describe('hostDevices (privileged containers)', () => {
  it("lists the host's device nodes with their numbers, without console, symlinks or pts", () => {
    const devs = hostDevices();
    expect(devs).toContainEqual(expect.objectContaining({ path: '/dev/null', type: 'c', major: 1, minor: 3 }));
    expect(devs).toContainEqual(expect.objectContaining({ path: '/dev/zero', type: 'c', major: 1, minor: 5 }));
    const paths = devs.map((d) => d.path);
    expect(paths).not.toContain('/dev/console');
    expect(paths).not.toContain('/dev/stdin');
    expect(paths.some((p) => p.startsWith('/dev/pts/'))).toBe(false);
    // What buildSpec gives a privileged container, and only that one.
    const base = { id: 'x', cgroupParent: '/k', args: ['sh'], env: [], cwd: '/', uid: 0, gid: 0 };
    expect(buildSpec({ ...base, privileged: true }).linux.devices).toEqual(devs);
    expect(buildSpec(base).linux.devices).toBeUndefined();
  });
});
