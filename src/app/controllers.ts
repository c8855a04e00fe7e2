import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FastifyBaseLogger } from 'fastify';
import type { Actor } from '../compute/container-api.js';
import { containerOwnerKind, OwnerKinds } from '../compute/ownership.js';
import type { Controller, ControllerDeps, ControllerFactory } from '../controllers/controller.js';
import { GC_ID, GC_KIND, garbageCollector } from '../controllers/garbage-collector.js';
import { ControllerManager } from '../controllers/manager.js';
import { SWEEPER_ID, SWEEPER_KIND, sweeper } from '../controllers/sweeper.js';
import type { ControllerSettings } from '../core/config/controllers.js';
import type { Store } from '../core/store/db.js';

/** Who the built-in controllers act as: the deployment itself, with an admin's reach. */
const SYSTEM_ACTOR: Actor = { projectId: undefined, userId: 'krater', roles: ['admin'], isAdmin: true };

/**
 * The control plane's controllers: the built-in ones (the garbage collector of owned objects, the sweeper of interrupted creates; the Magnum cluster and
 * capsule controllers will be listed here), those passed in by the caller, and those of the modules named in
 * `KRATER_CONTROLLER_MODULES`. Started in every `krater api` process (each `--workers` process too) and in
 * `krater up`; the queue's leases make them cooperate.
 */
export async function startControllers(
  store: Store,
  log: FastifyBaseLogger,
  extra: ((deps: ControllerDeps) => Controller[]) | undefined,
  settings: ControllerSettings,
  services: Pick<ControllerDeps, 'containers'> = {},
): Promise<ControllerManager> {
  const manager = new ControllerManager({ store, log: log.child({ component: 'controllers' }), settings });
  const owners = new OwnerKinds();
  owners.register(containerOwnerKind(store.db));
  const deps: ControllerDeps = { store, log, owners, enqueue: manager.enqueue, ...services };
  const controllers: Controller[] = [...(extra?.(deps) ?? [])];
  const containers = services.containers;
  if (containers)
    controllers.unshift(
      sweeper({
        repo: containers.repo,
        networking: containers.networking,
        intervalMs: settings.sweepIntervalMs,
        graceMs: settings.sweepGraceMs,
      }),
      garbageCollector({
        db: store.db,
        owners,
        // As an admin's forced delete: the owner is gone, so what it owned goes whatever its state.
        deleteContainer: (uuid) => containers.delete(SYSTEM_ACTOR, uuid, { force: true }),
        intervalMs: settings.gcIntervalMs,
      }),
    );
  for (const path of settings.modules) controllers.push(...(await loadModule(path, deps)));
  for (const c of controllers) manager.register(c);
  manager.start();
  // The collector and the sweeper run once at every start (what a crash left behind), then on their own intervals.
  if (containers) {
    await manager.enqueue(GC_KIND, GC_ID);
    await manager.enqueue(SWEEPER_KIND, SWEEPER_ID);
  }
  return manager;
}

async function loadModule(path: string, deps: ControllerDeps): Promise<Controller[]> {
  const url = pathToFileURL(isAbsolute(path) ? path : resolve(path)).href;
  const mod = (await import(url)) as { controllers?: ControllerFactory };
  if (typeof mod.controllers !== 'function')
    throw new Error(`KRATER_CONTROLLER_MODULES: ${path} does not export controllers(deps)`);
  return await mod.controllers(deps);
}
