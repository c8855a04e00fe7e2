/**
 * `docker save` export (checked by skopeo and by importing it back), and commit of a container's changes (new file,
 * deleted file) into an image that runs — against a real, private containerd.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound } from '../../src/engine/containerd-client.js';
import { ContainerdEngine } from '../../src/engine/engine.js';
import { importImageArchive, resolveImage } from '../../src/engine/image-import.js';
import { commitContainer } from '../../src/images/commit.js';
import { exportDockerArchive } from '../../src/images/export.js';
import { buildBusybox, type EngineFixture, engineTestsUnavailable, startFixture } from '../engine/helpers.js';

const skip = engineTestsUnavailable();

describe.skipIf(!!skip)('image export and commit', () => {
  let fx: EngineFixture;
  let engine: ContainerdEngine;
  let image: string;

  beforeAll(async () => {
    fx = await startFixture();
    engine = new ContainerdEngine({
      client: fx.client,
      stateDir: join(fx.tmp, 'engine'),
      cgroupParent: fx.cgroupParent,
      runcRoot: fx.supervisor.paths!.runcRoot,
    });
    const imported = await importImageArchive(fx.client, buildBusybox(join(fx.tmp, 'busybox.oci.tar')));
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

  async function run(id: string, img: string, command: string[]): Promise<{ code: number; out: string }> {
    await engine.create(id, { image: img, command: command.length ? command : undefined });
    await engine.start(id);
    const { exitCode } = await engine.wait(id);
    const out = readFileSync(engine.logPaths(id).stdout, 'utf8') + readFileSync(engine.logPaths(id).stderr, 'utf8');
    await engine.delete(id, { force: true });
    return { code: exitCode, out };
  }

  it('exports a docker-save archive that skopeo reads and that imports back to the same image', async () => {
    const file = join(fx.tmp, 'saved.tar');
    await pipeline(exportDockerArchive(fx.client, [image], { tmpDir: fx.tmp }), createWriteStream(file));
    const original = await resolveImage(fx.client, image);
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `docker-archive:${file}`], { encoding: 'utf8' }));
    expect(inspect.RepoTags ?? []).toBeDefined();
    expect(inspect.Layers.length).toBe(1);
    const manifest = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' }));
    expect(manifest).toEqual([
      {
        Config: expect.stringMatching(/^[0-9a-f]{64}\.json$/),
        RepoTags: ['kr/busybox:latest'],
        Layers: [`${original.diffIds[0]!.slice(7)}.tar`],
      },
    ]);

    await fx.client.images.delete(image, true);
    const back = await importImageArchive(fx.client, file);
    expect(back.map((b) => b.name)).toEqual([image]);
    const again = await resolveImage(fx.client, image);
    expect(again.diffIds).toEqual(original.diffIds);
    expect(JSON.stringify(again.config)).toBe(JSON.stringify(original.config));
    expect(await run(`exp-${fx.suffix}`, image, ['echo', 'round trip'])).toEqual({ code: 0, out: 'round trip\n' });
  });

  it('commits a container (added and deleted files, new command) into an image that runs', async () => {
    const id = `commit-${fx.suffix}`;
    await engine.create(id, {
      image,
      command: ['sh', '-c', 'echo committed > /marker && mkdir -p /data && echo x > /data/y && rm /etc/group'],
    });
    await engine.start(id);
    expect((await engine.wait(id)).exitCode).toBe(0);
    const result = await commitContainer(fx.client, id, {
      name: 'docker.io/kr/committed:v1',
      config: { cmd: ['cat', '/marker'] },
      comment: 'test',
    });
    await engine.delete(id, { force: true });
    const base = await resolveImage(fx.client, image);
    expect(result.diffIds).toEqual([...base.diffIds, result.diffId]);
    const resolved = await resolveImage(fx.client, 'docker.io/kr/committed:v1');
    expect(resolved.layers.length).toBe(2);
    expect(resolved.config.config.Cmd).toEqual(['cat', '/marker']);
    expect(resolved.config.history.at(-1)).toMatchObject({ created_by: 'krater commit', comment: 'test' });
    // The image's own command, the new file, the deletion (a whiteout) and the new directory.
    expect(await run(`c1-${fx.suffix}`, resolved.name, [])).toEqual({ code: 0, out: 'committed\n' });
    expect(
      await run(`c2-${fx.suffix}`, resolved.name, [
        'sh',
        '-c',
        'cat /data/y; test -e /etc/group && echo group || echo nogroup',
      ]),
    ).toEqual({ code: 0, out: 'x\nnogroup\n' });

    // Exported and imported under another name, it still runs.
    const file = join(fx.tmp, 'committed.tar');
    await pipeline(exportDockerArchive(fx.client, [resolved.name]), createWriteStream(file));
    await fx.client.images.delete(resolved.name, true);
    await expect(fx.client.images.get(resolved.name)).rejects.toSatisfy(isNotFound);
    const [back] = await importImageArchive(fx.client, file, { name: 'krater.test/committed:again' });
    expect(back!.diffIds).toEqual(result.diffIds);
    expect(await run(`c3-${fx.suffix}`, back!.name, [])).toEqual({ code: 0, out: 'committed\n' });
  });
});
