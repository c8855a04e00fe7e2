import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { Agent } from '../agent/agent.js';
import type { ContainerApi } from '../compute/container-api.js';
import { ContainerNetworking } from '../compute/networking.js';
import type { Controller, ControllerDeps } from '../controllers/controller.js';
import type { ControllerManager } from '../controllers/manager.js';
import type { TokenKeySource } from '../core/auth/stored-keys.js';
import type { KraterConfig } from '../core/config/config.js';
import { type App, buildServer, type ServiceModule } from '../core/http/server.js';
import { PolicyEngine } from '../core/policy/engine.js';
import { openStore, type Store } from '../core/store/db.js';
import { useGocodeDir } from '../engine/protos.js';
import type { GlancePort } from '../images/glance-port.js';
import { AgentImages } from '../images/host.js';
import { Dataplane } from '../network/dataplane.js';
import { createContainerService } from '../services/container/index.js';
import { createDashboard } from '../services/dashboard/index.js';
import { type BootstrapResult, bootstrapIdentity } from '../services/identity/bootstrap.js';
import { createIdentity } from '../services/identity/index.js';
import { createImageService } from '../services/image/index.js';
import { createNetworkService, type NeutronApi } from '../services/network/index.js';
import { HostAgents } from './agent-directory.js';
import { startControllers } from './controllers.js';
import { prepareDataDir } from './data-dir.js';
import { createEngine } from './engine-setup.js';
import { openTokenKeys } from './shared-secrets.js';

export type { BootstrapResult };

export interface ControlPlane {
  app: App;
  store: Store;
  /** The local agent (`krater up`); absent for `krater api`. */
  agent?: Agent;
  /** The control-plane reconcilers of this process (src/controllers). */
  controllers: ControllerManager;
  /** Zun's container operations, in-process (policy is the caller's: the Zun facade checks it before calling). */
  containers: ContainerApi;
  bootstrap: BootstrapResult;
  url: string;
  close(): Promise<void>;
}

function catalogEntries(config: KraterConfig, services: ServiceModule[]) {
  return services
    .filter((s) => s.catalog)
    .map((s) => ({
      type: s.catalog!.type,
      name: s.catalog!.name,
      url: `${config.publicUrl}${s.prefix}${s.catalog!.suffix}`,
    }));
}

function createServices(config: KraterConfig, store: Store, keys: TokenKeySource) {
  const policy = new PolicyEngine(config.policyFile);
  const identity = createIdentity(config, store, keys, policy);
  const agents = new HostAgents(store);
  // A Neutron change wakes the local agent's dataplane at once; remote agents follow the store's revision.
  const network = createNetworkService(config, store, policy, {
    onChange: () => agents.agent?.network?.requestApply(),
  });
  const neutron = config.networking === 'kernel' ? network.api : undefined;
  const images = createImageService(config, store, policy, {
    agentCredentials: (host, secret) => agents.checkSecret(host, secret),
  });
  const containers = createContainerService(config, store, policy, agents, images.port, neutron);
  const services: ServiceModule[] = [
    identity.module,
    containers.module,
    images.module,
    network.module,
    createDashboard(),
  ];
  return {
    policy,
    identity,
    services,
    agents,
    images,
    network,
    neutron,
    glance: images.port,
    containers: containers.api,
  };
}

/** Kernel object names carry a tag unique to this data directory, so two Krater instances on one host never meet. */
export function dataplaneTag(dataDir: string): string {
  return createHash('sha256').update(dataDir).digest('hex').slice(0, 4);
}

/**
 * The host agent as configured (started by the caller): in `krater up`, or alone as `krater agent`. Its engine is
 * made here (a private containerd under the data dir, or `--containerd`), with the image side over it.
 */
export async function createAgent(
  config: KraterConfig,
  store: Store,
  log: FastifyBaseLogger,
  neutron: NeutronApi | undefined,
  glance: GlancePort,
  host?: string,
): Promise<Agent> {
  // containerd's API definitions are loaded once per process, from where the configuration says.
  useGocodeDir(config.agent.gocodeDir);
  const setup = await createEngine({
    dataDir: config.dataDir,
    containerdAddress: config.containerdAddress,
    userns: !!config.agent.usernsRemap,
    defaultImageArchive: config.defaultImageArchive,
    log,
  });
  const images = new AgentImages({
    client: setup.client,
    engine: setup.engine,
    store,
    dataDir: config.dataDir,
    log,
    glance,
    insecureRegistries: config.insecureRegistries,
  });
  return new Agent({
    store,
    log,
    engine: setup.engine,
    containerd: setup,
    images,
    hostImages: images,
    host: host ?? config.agent.host,
    runtimes: config.agent.runtimes,
    shimGrouping: config.agent.shimGrouping,
    userns: config.agent.usernsRemap,
    network: neutron && {
      dataplane: new Dataplane({
        tag: dataplaneTag(config.dataDir),
        stateDir: join(config.dataDir, 'agent', 'network'),
        log,
        publishTransit: config.publish.transit,
      }),
      neutron,
      networking: new ContainerNetworking(neutron),
    },
  });
}

/** Migrates and bootstraps the store without serving (the cluster primary does this before forking workers). */
export async function bootstrapOnly(config: KraterConfig, mode: 'up' | 'api'): Promise<BootstrapResult> {
  prepareDataDir(config.dataDir);
  const store = await openStore(config.database);
  try {
    const { identity, services } = createServices(config, store, await openTokenKeys(config, store));
    return await bootstrapIdentity(identity.repo, config, catalogEntries(config, services), {
      catalogFollowsBind: mode === 'up',
    });
  } finally {
    await store.close();
  }
}

/** Opens the store, bootstraps identity, mounts every service facade under one listener and starts listening. */
export async function startControlPlane(
  config: KraterConfig,
  opts: {
    withAgent?: boolean;
    /** Controllers to run besides the built-in ones (tests register their test-only kinds here). */
    controllers?: (deps: ControllerDeps) => Controller[];
  } = {},
): Promise<ControlPlane> {
  prepareDataDir(config.dataDir);
  const store = await openStore(config.database);
  try {
    const { policy, identity, services, agents, neutron, glance, containers } = createServices(
      config,
      store,
      await openTokenKeys(config, store),
    );
    const bootstrap = await bootstrapIdentity(identity.repo, config, catalogEntries(config, services), {
      catalogFollowsBind: !!opts.withAgent,
    });
    const app = await buildServer({ core: { config, store, policy, tokens: identity.tokens }, services });
    let agent: Agent | undefined;
    if (opts.withAgent) {
      agent = await createAgent(config, store, app.log, neutron, glance);
      await agent.start();
      agents.agent = agent;
    }
    const controllers = await startControllers(store, app.log, opts.controllers, config.controllers, { containers });
    await app.listen({ host: config.bind, port: config.port });
    return {
      app,
      store,
      agent,
      controllers,
      containers,
      bootstrap,
      url: config.publicUrl,
      async close() {
        await controllers.close();
        await app.close();
        await agent?.stop(config.agent.shutdown);
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
