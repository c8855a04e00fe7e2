/** Small file helpers: atomic writes, pid files and the processes they name. */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Writes through a temporary file and a rename, so readers (and a crash) never see half a file. Returns whether
 * the content changed. */
export async function writeAtomic(path: string, content: string, mode = 0o644): Promise<boolean> {
  try {
    if ((await readFile(path, 'utf8')) === content) return false;
  } catch {
    /* missing: write it */
  }
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
  return true;
}

export async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The pid in a pid file if that process is alive and its command line contains `marker` (a reused pid never
 * matches). */
export async function livePid(pidFile: string, marker: string): Promise<number | undefined> {
  const text = await readText(pidFile);
  const pid = Number(text?.trim());
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  return (await processMatches(pid, marker)) ? pid : undefined;
}

export async function processMatches(pid: number, marker: string): Promise<boolean> {
  const cmd = await readText(`/proc/${pid}/cmdline`);
  return cmd?.replaceAll('\0', ' ').includes(marker) ?? false;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function killPid(pid: number, graceMs = 1000): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await alive(pid))) return;
    await sleep(10);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 100 && (await alive(pid)); i++) await sleep(10);
}

async function alive(pid: number): Promise<boolean> {
  // A zombie (not yet reaped by its parent) counts as gone.
  const stat = await readText(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Kills the process named by a pid file (if it is ours) and removes the file. */
export async function stopPidFile(pidFile: string, marker: string): Promise<void> {
  const pid = await livePid(pidFile, marker);
  if (pid !== undefined) await killPid(pid);
  await rm(pidFile, { force: true });
}
