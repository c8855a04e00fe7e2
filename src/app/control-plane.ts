import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { KeyRepository } from '../core/auth/keys.js';
import type { KraterConfig } from '../core/config/config.js';
import { type App, buildServer, type ServiceModule } from '../core/http/server.js';
import { PolicyEngine } from '../core/policy/engine.js';
import { openStore, type Store } from '../core/store/db.js';
import { type BootstrapResult, bootstrapIdentity } from '../services/identity/bootstrap.js';
import { createIdentity } from '../services/identity/index.js';

export interface ControlPlane {
  app: App;
  store: Store;
  bootstrap: BootstrapResult;
  url: string;
  close(): Promise<void>;
}

export function tokenKeyRepository(config: KraterConfig): KeyRepository {
  return new KeyRepository(join(config.dataDir, 'keys', 'token'));
}

function catalogEntries(config: KraterConfig, services: ServiceModule[]) {
  return services.filter((s) => s.catalog).map((s) => ({ type: s.catalog!.type, name: s.catalog!.name, url: `${config.publicUrl}${s.prefix}${s.catalog!.suffix}` }));
}

function createServices(config: KraterConfig, store: Store) {
  const keys = tokenKeyRepository(config);
  keys.setup();
  const policy = new PolicyEngine(config.policyFile);
  const identity = createIdentity(config, store, keys, policy);
  const services: ServiceModule[] = [identity.module];
  return { policy, identity, services };
}

/** Migrates and bootstraps the store without serving (the cluster primary does this before forking workers). */
export async function bootstrapOnly(config: KraterConfig): Promise<BootstrapResult> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore(config.database);
  try {
    const { identity, services } = createServices(config, store);
    return await bootstrapIdentity(identity.repo, config, catalogEntries(config, services));
  } finally {
    await store.close();
  }
}

/** Opens the store, bootstraps identity, mounts every service facade under one listener and starts listening. */
export async function startControlPlane(config: KraterConfig): Promise<ControlPlane> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore(config.database);
  try {
    const { policy, identity, services } = createServices(config, store);
    const bootstrap = await bootstrapIdentity(identity.repo, config, catalogEntries(config, services));
    const app = await buildServer({ core: { config, store, policy, tokens: identity.tokens }, services });
    await app.listen({ host: config.bind, port: config.port });
    return {
      app,
      store,
      bootstrap,
      url: config.publicUrl,
      async close() {
        await app.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
