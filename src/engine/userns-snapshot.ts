/**
 * Image snapshots for containers in a user namespace. A container whose root is host uid N (oci-spec.ts `userns`)
 * needs a rootfs owned by N.. instead of 0..; containerd 1.6 and runc 1.1 cannot map ownership at mount time, so
 * (as Docker's userns-remap and containerd's `WithRemappedSnapshot` do) the image's top snapshot is copied once per
 * mapping with every owner shifted, committed as `<chainId>-userns-<uid>-<gid>`, and containers are prepared on it.
 * It lives as long as a container uses it (containerd's GC removes it after), and is made again on demand.
 */
import { execFile } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { chmod, lchown, lstat, mkdtemp, readdir, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { type ContainerdClient, isAlreadyExists, type Mount } from './containerd-client.js';
import type { UsernsMapping } from './oci-spec.js';

const run = promisify(execFile);

/** The snapshot to prepare a user-namespaced container on (made if missing). `client` must hold a lease. */
export async function remappedParent(
  client: ContainerdClient,
  chainId: string,
  map: UsernsMapping,
  workDir: string,
): Promise<string> {
  const name = `${chainId}-userns-${map.uid}-${map.gid}`;
  if (await client.snapshots.stat(name)) return name;
  const key = `${name}-prepare-${process.pid}-${Date.now()}`;
  const mounts = await client.snapshots.prepare(key, chainId);
  try {
    const dir = await mkdtemp(join(workDir, 'userns-'));
    try {
      await mountAll(mounts, dir);
      try {
        await shiftOwners(dir, map);
      } finally {
        await run('umount', [dir]);
      }
    } finally {
      await rmdir(dir).catch(() => undefined);
    }
    await client.snapshots.commit(name, key);
  } catch (err) {
    await client.snapshots.remove(key).catch(() => undefined);
    // Another container made the same one meanwhile.
    if (isAlreadyExists(err)) return name;
    throw err;
  }
  return name;
}

/**
 * Lets the container's (unprivileged) root reach its rootfs: runc mounts it from inside the user namespace, through
 * containerd's bundle directory, so every directory above containerd's state dir must be searchable by others
 * (o+x only: nothing becomes listable or readable). Docker does the same for its data root.
 */
export function allowTraversal(dir: string): void {
  for (let d = resolve(dir); ; d = dirname(d)) {
    const mode = statSync(d).mode & 0o7777;
    if (!(mode & 0o001)) chmodSync(d, mode | 0o001);
    if (d === dirname(d)) return;
  }
}

async function mountAll(mounts: Mount[], dir: string): Promise<void> {
  if (mounts.length !== 1) throw new Error(`cannot remap a snapshot of ${mounts.length} mounts`);
  const m = mounts[0];
  const args = m.type === 'bind' ? [] : ['-t', m.type];
  await run('mount', [...args, '-o', m.options.join(','), m.source, dir]);
}

/**
 * Adds the mapping's offsets to every owner below `size` (ids outside the range stay: they would be unmapped in
 * the container anyway, and an id already shifted — a hard link seen twice — is not shifted again). chown clears
 * setuid/setgid bits, so the mode is put back.
 */
export async function shiftOwners(root: string, map: UsernsMapping): Promise<void> {
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const uid = st.uid < map.size ? st.uid + map.uid : st.uid;
    const gid = st.gid < map.size ? st.gid + map.gid : st.gid;
    if (uid !== st.uid || gid !== st.gid) {
      await lchown(path, uid, gid);
      if (!st.isSymbolicLink() && st.mode & 0o6000) await chmod(path, st.mode & 0o7777);
    }
    if (st.isDirectory()) for (const e of await readdir(path)) await visit(join(path, e));
  };
  await visit(root);
}
