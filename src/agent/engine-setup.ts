import { join } from 'node:path';
import type { ContainerdClient } from '../engine/containerd-client.js';
import { ContainerdSupervisor, containerdPaths } from '../engine/containerd-supervisor.js';
import { ContainerdEngine } from '../engine/engine.js';
import { allowTraversal } from '../engine/userns-snapshot.js';

export interface EngineSetup {
  engine: ContainerdEngine;
  client: ContainerdClient;
  supervisor: ContainerdSupervisor;
}

export const CONTAINERD_NAMESPACE = 'krater';

/**
 * Connects the agent to containerd: an existing socket when configured, else a private daemon under the agent's
 * directory, started detached so that it (and the containers' shims) outlive an agent restart; a restarted agent
 * adopts it through its pid file.
 */
export async function createEngine(opts: {
  dir: string;
  containerdAddress?: string;
  cgroupParent: string;
  /** Containers will run in user namespaces: their root must be able to reach the bundles. */
  userns?: boolean;
}): Promise<EngineSetup> {
  const ctdDir = join(opts.dir, 'containerd');
  const supervisor = opts.containerdAddress
    ? await ContainerdSupervisor.attach(opts.containerdAddress)
    : await ContainerdSupervisor.start({ dataDir: ctdDir, detached: true, adopt: true, logLevel: 'warn' });
  const client = supervisor.client(CONTAINERD_NAMESPACE);
  if (opts.userns && supervisor.paths) allowTraversal(supervisor.paths.state);
  const engine = new ContainerdEngine({
    client,
    stateDir: join(opts.dir, 'state'),
    cgroupParent: opts.cgroupParent,
    runcRoot: opts.containerdAddress ? undefined : containerdPaths(ctdDir).runcRoot,
  });
  return { engine, client, supervisor };
}
