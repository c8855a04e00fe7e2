import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyRepository } from '../core/auth/keys.js';
import { StoredTokenKeys } from '../core/auth/stored-keys.js';
import type { KraterConfig } from '../core/config/config.js';
import { loadMasterKey } from '../core/secrets/master-key.js';
import { SealedSecrets } from '../core/secrets/sealed-store.js';
import type { Store } from '../core/store/db.js';
import { registryKeyFile, SecretBox } from '../images/credentials.js';

/** Where an install before shared secrets kept its token keys (imported into the store once). */
export function legacyTokenKeyDir(config: KraterConfig): string {
  return join(config.dataDir, 'keys', 'token');
}

/** The store's sealed secrets under this process's master key (configured, or the data dir's own). */
export function sharedSecrets(config: KraterConfig, store: Store): SealedSecrets {
  const master = loadMasterKey({ dataDir: config.dataDir, file: config.masterKeyFile, value: config.masterKey });
  return new SealedSecrets(store.db, master);
}

/**
 * The token keys every replica shares, from the store: created on a fresh store, imported from `<data-dir>/keys/token`
 * when an older install left keys there; the registry-password key likewise. Throws a MasterKeyError when the store
 * was sealed under another master key.
 */
export async function openTokenKeys(config: KraterConfig, store: Store): Promise<StoredTokenKeys> {
  const secrets = sharedSecrets(config, store);
  const keys = new StoredTokenKeys(secrets);
  await keys.setup(new KeyRepository(legacyTokenKeyDir(config)));
  await useSharedRegistryKey(secrets, config.dataDir);
  return keys;
}

/** `krater token-keys rotate`: one rotation in the store; every replica picks it up (see TokenService.reloadKeys). */
export async function rotateTokenKeys(config: KraterConfig): Promise<Array<{ index: number; id: string }>> {
  const { openStore } = await import('../core/store/db.js');
  const store = await openStore(config.database);
  try {
    const keys = await openTokenKeys(config, store);
    return (await keys.rotate())
      .map((k) => ({ index: k.index, id: k.id.toString('hex') }))
      .sort((a, b) => a.index - b.index);
  } finally {
    await store.close();
  }
}

/**
 * The registry-password key from the store (sealed; imported once from `<data-dir>/keys/registry.key` when an older
 * install made one, so the passwords it encrypted still open), installed for every SecretBox of this process.
 */
export async function useSharedRegistryKey(secrets: SealedSecrets, dataDir: string): Promise<void> {
  let entry = await secrets.read(REGISTRY_KEY);
  if (!entry) {
    const file = registryKeyFile(dataDir);
    const key = existsSync(file) ? readFileSync(file) : randomBytes(32);
    if (key.length !== 32) throw new Error(`${file}: expected a 32-byte key, found ${key.length} bytes`);
    entry = await secrets.insertIfMissing(REGISTRY_KEY, key.toString('base64'));
  }
  SecretBox.useSharedKey(Buffer.from(entry.value, 'base64'));
}

const REGISTRY_KEY = 'registry_key';

/**
 * An agent's registry key: the store's when the agent is given the deployment's master key (as Zun's computes share
 * `auth_encryption_key` with its APIs); without one, its own data dir's file, as before (registry credentials then
 * open only where the API shares that data dir).
 */
export async function agentRegistryKey(config: KraterConfig, store: Store): Promise<'store' | 'data-dir'> {
  if (!config.masterKeyFile && !config.masterKey) return 'data-dir';
  await useSharedRegistryKey(sharedSecrets(config, store), config.dataDir);
  return 'store';
}
