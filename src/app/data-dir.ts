import { chmodSync, mkdirSync } from 'node:fs';

/**
 * Creates the data directory owner-only (0700) and narrows one left wider by an older install: it holds the store,
 * token and registry keys and the admin password. (With `KRATER_USERNS_REMAP` the agent adds o+x again, search only,
 * so a container's remapped root can reach its rootfs.)
 */
export function prepareDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}
