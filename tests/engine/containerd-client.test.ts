/**
 * containerd client, supervisor and image import against a real, private containerd (root only).
 */

import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ContainerdClient,
  ContainerdError,
  type ContainerdEvent,
  isNotFound,
} from '../../src/engine/containerd-client.js';
import { ContainerdSupervisor, containerdPaths } from '../../src/engine/containerd-supervisor.js';
import { importImageArchive, resolveImage } from '../../src/engine/image-import.js';
import { buildSpec } from '../../src/engine/oci-spec.js';
import { jsonAny, OCI_SPEC_TYPE_URL, packAny } from '../../src/engine/protos.js';
import { buildBusybox, type EngineFixture, engineTestsUnavailable, startFixture } from './helpers.js';

const skip = engineTestsUnavailable();
if (skip) console.warn(`engine tests skipped: ${skip}`);

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe.skipIf(!!skip)('containerd supervisor + client', () => {
  let fx: EngineFixture;

  beforeAll(async () => {
    fx = await startFixture();
  });
  afterAll(async () => {
    await fx?.cleanup();
  });

  it('runs a private daemon with our config and answers Version', async () => {
    const v = await fx.client.version();
    expect(v.version).toMatch(/^1\./);
    const paths = containerdPaths(join(fx.tmp, 'ctd'));
    const cfg = readFileSync(paths.config, 'utf8');
    expect(cfg).toContain(`root = "${paths.root}"`);
    expect(cfg).toContain(`address = "${paths.address}"`);
    expect(cfg).toMatch(/\[metrics\]\n\s+address = ""/);
    expect(fx.supervisor.pid).toBeGreaterThan(0);
    expect(readFileSync(paths.pidFile, 'utf8').trim()).toBe(String(fx.supervisor.pid));
    const snapshotters = (await fx.client.plugins(['type==io.containerd.snapshotter.v1'])).filter((p) => !p.init_err);
    expect(snapshotters.map((p) => p.id)).toContain('overlayfs');
  });

  it('adopts a running daemon instead of starting a second one, and attaches to a socket', async () => {
    const again = await ContainerdSupervisor.start({ dataDir: join(fx.tmp, 'ctd') });
    expect(again.pid).toBe(fx.supervisor.pid);
    const attached = await ContainerdSupervisor.attach(fx.supervisor.address);
    expect(attached.owned).toBe(false);
    await attached.stop(); // no-op for an external daemon
    expect(fx.supervisor.running).toBe(true);
  });

  it('starts detached, is adopted by a new supervisor and stopped by PID', async () => {
    const dataDir = join(fx.tmp, 'ctd2');
    const first = await ContainerdSupervisor.start({ dataDir, detached: true, logLevel: 'warn' });
    const pid = first.pid!;
    const adopted = await ContainerdSupervisor.start({ dataDir });
    expect(adopted.pid).toBe(pid);
    expect((await adopted.client('x').version()).version).toMatch(/^1\./);
    await expect(ContainerdSupervisor.start({ dataDir, adopt: false })).rejects.toThrow(/already running/);
    await adopted.stop();
    expect(adopted.running).toBe(false);
    // Dead (a zombie until Node reaps its former child counts as dead), pid file gone.
    await expect
      .poll(() => {
        try {
          process.kill(pid, 0);
          return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0];
        } catch {
          return 'gone';
        }
      })
      .toMatch(/gone|Z/);
    expect(ContainerdSupervisor.runningPid(containerdPaths(dataDir))).toBeUndefined();
  });

  it('requires the namespace header (namespaces are created on demand)', async () => {
    await fx.client.namespaces.create(fx.namespace, { 'krater.io/test': 'true' }).catch((e) => {
      if (!(e instanceof ContainerdError) || e.code !== 6) throw e;
    });
    const names = (await fx.client.namespaces.list()).map((n) => n.name);
    expect(names).toContain(fx.namespace);
  });

  it('writes content with labels under a lease, dedups, reads, updates and deletes it', async () => {
    const data = Buffer.from(`hello krater ${randomUUID()}\n`.repeat(1000));
    const digest = sha256(data);
    // Everything inside the lease: unreferenced content is garbage-collected once the lease is gone.
    await fx.client.withTemporaryLease(async (leased) => {
      expect(leased.lease).toMatch(/^krater-/);
      const w = await leased.content.write({
        ref: `test-${digest}`,
        digest,
        size: data.length,
        data,
        labels: { a: '1' },
      });
      expect(w).toEqual({ digest, existed: false });
      const resources = await fx.client.leases.listResources(leased.lease!);
      expect(resources.map((r) => r.id)).toContain(digest);
      // Streamed in small chunks, and already present: not rewritten, labels merged in.
      const chunks = [data.subarray(0, 100), data.subarray(100)];
      const again = await leased.content.write({
        ref: `test2-${digest}`,
        digest,
        size: data.length,
        data: () => chunks,
        labels: { b: '2' },
      });
      expect(again.existed).toBe(true);
      const info = await leased.content.info(digest);
      expect(Number(info.size)).toBe(data.length);
      expect(info.labels).toMatchObject({ a: '1', b: '2' });
      expect((await leased.content.read(digest)).equals(data)).toBe(true);
      const streamed: Buffer[] = [];
      for await (const c of leased.content.readStream(digest)) streamed.push(c);
      expect(Buffer.concat(streamed).equals(data)).toBe(true);
      await leased.content.delete(digest);
      await expect(leased.content.info(digest)).rejects.toSatisfy(isNotFound);
    });
    expect(await fx.client.leases.list()).toEqual([]);
  });

  it('rejects content whose digest does not match', async () => {
    const data = Buffer.from('abc');
    const wrong = sha256(Buffer.from('abd'));
    await expect(
      fx.client.withTemporaryLease((l) =>
        l.content.write({ ref: `bad-${randomUUID()}`, digest: wrong, size: 3, data }),
      ),
    ).rejects.toThrow(/digest|unexpected commit/i);
  });

  it('imports an OCI archive and a docker archive, unpacked into overlayfs', async () => {
    const oci = buildBusybox(join(fx.tmp, 'busybox.oci.tar'));
    const docker = buildBusybox(join(fx.tmp, 'busybox.docker.tar'), 'docker-archive');
    const [a] = await importImageArchive(fx.client, oci);
    expect(a!.name).toBe('docker.io/kr/busybox:latest');
    expect(a!.unpacked).toBe(true);
    const snap = await fx.client.snapshots.stat(a!.chainId);
    expect(snap?.kind).toBe('COMMITTED');
    const [b] = await importImageArchive(fx.client, docker, { name: 'kr/busybox-docker:1' });
    expect(b!.name).toBe('docker.io/kr/busybox-docker:1');
    expect(b!.manifest.media_type).toBe('application/vnd.docker.distribution.manifest.v2+json');
    // Same rootfs, same diff IDs: the layer snapshot is shared.
    expect(b!.chainId).toBe(a!.chainId);
    // An unpacked OCI layout directory works too.
    const layoutDir = join(fx.tmp, 'layout');
    mkdirSync(layoutDir);
    execFileSync('tar', ['-xf', oci, '-C', layoutDir]);
    const [c] = await importImageArchive(fx.client, layoutDir, { name: 'kr/busybox-dir:1' });
    expect(c!.target.digest).toBe(a!.target.digest);
    await fx.client.images.delete(c!.name, true);
    // Import is idempotent.
    const [again] = await importImageArchive(fx.client, oci);
    expect(again!.target.digest).toBe(a!.target.digest);
    const images = (await fx.client.images.list()).map((i) => i.name).sort();
    expect(images).toEqual(['docker.io/kr/busybox-docker:1', 'docker.io/kr/busybox:latest']);
    const resolved = await resolveImage(fx.client, a!.name);
    expect(resolved.config.config.Cmd).toEqual(['/bin/sh']);
    // GC labels: manifest → config + layer, config → snapshot, layer → uncompressed digest.
    const m = await fx.client.content.info(a!.manifest.digest);
    expect(m.labels['containerd.io/gc.ref.content.config']).toBe(a!.config.digest);
    expect(m.labels['containerd.io/gc.ref.content.l.0']).toBe(a!.layers[0]!.digest);
    const cfg = await fx.client.content.info(a!.config.digest);
    expect(cfg.labels['containerd.io/gc.ref.snapshot.overlayfs']).toBe(a!.chainId);
    expect(await fx.client.leases.list()).toEqual([]);
    await fx.client.images.delete('docker.io/kr/busybox-docker:1', true);
  });

  it('drives a raw container + task: prepare, create, wait, start, delete (with events)', async () => {
    const image = await resolveImage(fx.client, 'docker.io/kr/busybox:latest');
    const id = `raw-${fx.suffix}`;
    const events: ContainerdEvent[] = [];
    const sub = fx.client.subscribe([`topic~="/tasks/"`], (e) => events.push(e));
    await sub.ready;
    const out = join(fx.tmp, `${id}.out`);
    await import('node:fs/promises').then((fs) => fs.writeFile(out, ''));
    const spec = buildSpec({ id, cgroupParent: fx.cgroupParent, args: ['sh', '-c', 'echo raw; exit 5'] });
    const mounts = await fx.client.withTemporaryLease(async (leased) => {
      await leased.snapshots.prepare(id, image.chainId);
      await leased.containers.create({
        id,
        image: image.name,
        // runc state in our data dir instead of /run/containerd/runc/<ns>.
        runtime: {
          name: 'io.containerd.runc.v2',
          options: packAny('containerd.runc.v1.Options', { root: fx.supervisor.paths!.runcRoot }),
        },
        spec: jsonAny(OCI_SPEC_TYPE_URL, spec),
        snapshotter: 'overlayfs',
        snapshot_key: id,
      });
      return leased.snapshots.mounts(id);
    });
    expect(mounts[0]!.type).toMatch(/overlay|bind/);
    const task = await fx.client.tasks.create({ container_id: id, rootfs: mounts, stdout: out, stderr: out });
    expect(task.pid).toBeGreaterThan(0);
    const wait = fx.client.tasks.wait(id);
    await fx.client.tasks.start(id);
    expect((await wait).exit_status).toBe(5);
    const del = await fx.client.tasks.delete(id);
    expect(del.exit_status).toBe(5);
    expect(readFileSync(out, 'utf8')).toBe('raw\n');
    await fx.client.containers.delete(id);
    await fx.client.snapshots.remove(id).catch((e) => {
      if (!isNotFound(e)) throw e;
    });
    // /tasks/exit is published before Wait returns; /tasks/delete before Delete returns.
    const exit = events.find((e) => e.topic === '/tasks/exit' && e.event?.container_id === id);
    expect(exit?.event?.exit_status).toBe(5);
    expect(exit?.namespace).toBe(fx.namespace);
    expect(events.map((e) => e.topic)).toEqual(
      expect.arrayContaining(['/tasks/create', '/tasks/start', '/tasks/delete']),
    );
    expect(events.some((e) => e.topic.startsWith('/krater/probe/'))).toBe(false);
    sub.close();
  });

  it('resubscribes to events across a containerd restart', async () => {
    // A client of its own: the supervisor closes the clients it handed out when it stops.
    const client = new ContainerdClient({ address: fx.supervisor.address, namespace: fx.namespace });
    const topics: string[] = [];
    let resubscribed!: () => void;
    const resubscribedP = new Promise<void>((r) => {
      resubscribed = r;
    });
    const sub = client.subscribe(['topic~="/krater/test/"'], (e) => topics.push(e.topic), {
      onResubscribe: () => resubscribed(),
    });
    try {
      await sub.ready;
      await client.publish('/krater/test/before', jsonAny('types.containerd.io/krater/test', {}));
      await expect.poll(() => topics, { timeout: 5000, interval: 10 }).toContain('/krater/test/before');
      const dataDir = join(fx.tmp, 'ctd');
      await fx.supervisor.stop();
      expect(existsSync(containerdPaths(dataDir).pidFile)).toBe(false);
      fx.supervisor = await ContainerdSupervisor.start({ dataDir });
      fx.client = fx.supervisor.client(fx.namespace);
      await resubscribedP;
      await fx.client.publish('/krater/test/after', jsonAny('types.containerd.io/krater/test', {}));
      await expect.poll(() => topics, { timeout: 5000, interval: 10 }).toContain('/krater/test/after');
      // Unary calls on the old client work again too: grpc-js reconnected its channel.
      expect((await client.version()).version).toMatch(/^1\./);
    } finally {
      sub.close();
      client.close();
    }
  });
});
