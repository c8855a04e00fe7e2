import { join } from 'node:path';
import { KeyRepository } from '../core/auth/keys.js';
import { StoredTokenKeys } from '../core/auth/stored-keys.js';
import type { KraterConfig } from '../core/config/config.js';
import { loadMasterKey } from '../core/secrets/master-key.js';
import { SealedSecrets } from '../core/secrets/sealed-store.js';
import type { Store } from '../core/store/db.js';

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
 * when an older install left keys there. Throws a MasterKeyError when the store was sealed under another master key.
 */
export async function openTokenKeys(config: KraterConfig, store: Store): Promise<StoredTokenKeys> {
  const keys = new StoredTokenKeys(sharedSecrets(config, store));
  await keys.setup(new KeyRepository(legacyTokenKeyDir(config)));
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
