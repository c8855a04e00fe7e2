import { chmodSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_PASSWORD_FILE } from '../services/identity/bootstrap.js';

/**
 * Creates the data directory owner-only (0700) and narrows what an older install left wider: the directory, its
 * `keys/` tree (the master key; token and registry keys of older installs) and the admin password. The store's
 * files are narrowed where the store is opened (core/store/db.ts). With `KRATER_USERNS_REMAP` the agent adds o+x to
 * the directory again (search only), so a container's remapped root can reach its rootfs.
 */
export function prepareDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const password = adminPasswordPath(dir);
  if (existsSync(password)) chmodSync(password, 0o600);
  narrowTree(join(dir, 'keys'));
}

/** Where the generated admin password is kept (0600), for the CLI to name it without reading it. */
export function adminPasswordPath(dataDir: string): string {
  return join(dataDir, ADMIN_PASSWORD_FILE);
}

function narrowTree(dir: string): void {
  if (!existsSync(dir)) return;
  chmodSync(dir, 0o700);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) narrowTree(join(dir, e.name));
    else if (e.isFile()) chmodSync(join(dir, e.name), 0o600);
  }
}
