import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { ContainerdHost } from '../agent/agent.js';
import { removeCgroupTree } from '../engine/cgroups.js';
import { ContainerdSupervisor, containerdPaths } from '../engine/containerd-supervisor.js';
import { ContainerdEngine } from '../engine/engine.js';
import { importImageArchive, normalizeImageRef } from '../engine/image-import.js';
import { allowTraversal } from '../engine/userns-snapshot.js';

export const CONTAINERD_NAMESPACE = 'krater';

/** The engine of a host and the containerd behind it, as the agent takes them. */
export interface EngineSetup extends ContainerdHost {
  engine: ContainerdEngine;
}

/** Unique per installation, so that several Krater instances (and tests) on one machine never share cgroups. */
export function cgroupParentFor(dataDir: string): string {
  return `/krater-${createHash('sha256').update(dataDir).digest('hex').slice(0, 10)}`;
}

/**
 * Connects the agent to containerd: an existing socket when configured, else a private daemon under the agent's
 * directory, started detached so that it (and the containers' shims) outlive an agent restart; a restarted agent
 * adopts it through its pid file. The default image archive is imported when its image is missing.
 */
export async function createEngine(opts: {
  dataDir: string;
  containerdAddress?: string;
  /** Containers will run in user namespaces: their root must be able to reach the bundles. */
  userns?: boolean;
  /** An image archive imported when its image is missing (the offline default image). */
  defaultImageArchive?: string;
  log: FastifyBaseLogger;
}): Promise<EngineSetup> {
  const dir = join(opts.dataDir, 'agent');
  const cgroupParent = cgroupParentFor(opts.dataDir);
  const ctdDir = join(dir, 'containerd');
  const supervisor = opts.containerdAddress
    ? await ContainerdSupervisor.attach(opts.containerdAddress)
    : await ContainerdSupervisor.start({ dataDir: ctdDir, detached: true, adopt: true, logLevel: 'warn' });
  const client = supervisor.client(CONTAINERD_NAMESPACE);
  if (opts.userns && supervisor.paths) allowTraversal(supervisor.paths.state);
  const engine = new ContainerdEngine({
    client,
    stateDir: join(dir, 'state'),
    cgroupParent,
    runcRoot: opts.containerdAddress ? undefined : containerdPaths(ctdDir).runcRoot,
  });
  if (opts.defaultImageArchive && existsSync(opts.defaultImageArchive))
    await ensureDefaultImage(client, opts.defaultImageArchive, opts.log);
  return {
    engine,
    client,
    supervisor,
    async close(purge) {
      if (purge) {
        await supervisor.stop({ timeoutMs: 5000 });
        removeCgroupTree(cgroupParent);
      } else client.close();
    },
  };
}

async function ensureDefaultImage(
  client: EngineSetup['client'],
  archive: string,
  log: FastifyBaseLogger,
): Promise<void> {
  try {
    const present = await client.images.get(normalizeImageRef('busybox')).then(
      () => true,
      () => false,
    );
    if (present) return;
    await importImageArchive(client, archive, { name: normalizeImageRef('busybox') });
    log.info({ archive }, 'default image imported');
  } catch (err) {
    log.warn({ err, archive }, 'default image import failed');
  }
}
