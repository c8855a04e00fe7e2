import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FastifyBaseLogger } from 'fastify';
import type { Controller, ControllerDeps, ControllerFactory } from '../controllers/controller.js';
import { ControllerManager } from '../controllers/manager.js';
import type { ControllerSettings } from '../core/config/controllers.js';
import type { Store } from '../core/store/db.js';

/**
 * The control plane's controllers: the built-in ones (none yet: the Magnum cluster and capsule controllers and the
 * sweepers will be listed here), those passed in by the caller, and those of the modules named in
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
  const deps: ControllerDeps = { store, log, enqueue: manager.enqueue, ...services };
  const controllers: Controller[] = [...(extra?.(deps) ?? [])];
  for (const path of settings.modules) controllers.push(...(await loadModule(path, deps)));
  for (const c of controllers) manager.register(c);
  manager.start();
  return manager;
}

async function loadModule(path: string, deps: ControllerDeps): Promise<Controller[]> {
  const url = pathToFileURL(isAbsolute(path) ? path : resolve(path)).href;
  const mod = (await import(url)) as { controllers?: ControllerFactory };
  if (typeof mod.controllers !== 'function')
    throw new Error(`KRATER_CONTROLLER_MODULES: ${path} does not export controllers(deps)`);
  return await mod.controllers(deps);
}
