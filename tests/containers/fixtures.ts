import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Krater, REPO_ROOT, sleep } from '../helpers/krater.js';

/** The offline busybox image archive every container test runs (built once per checkout). */
export function busyboxArchive(): string {
  const dir = join(REPO_ROOT, 'tmp');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'busybox.oci.tar');
  if (!existsSync(out))
    execFileSync('sh', [join(REPO_ROOT, 'scripts/engine-build-busybox.sh'), out], { stdio: 'inherit' });
  return out;
}

/** `krater up` with its agent, the busybox image, and containers removed when it stops. */
export function startCloud(extraEnv: Record<string, string> = {}): Promise<Krater> {
  return Krater.start({ env: { KRATER_DEFAULT_IMAGE: busyboxArchive(), KRATER_AGENT_SHUTDOWN: 'purge', ...extraEnv } });
}

export const ZUN = (v = '1.40') => ({ 'OpenStack-API-Version': `container ${v}` });

/** Polls a container until `pred` holds for its JSON; returns it. */
export async function waitContainer(
  k: Krater,
  token: string,
  id: string,
  pred: (c: any) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  for (;;) {
    const r = await k.http('GET', `/container/v1/containers/${id}`, { token, headers: ZUN() });
    last = r.status === 200 ? r.json : { status_code: r.status, body: r.text };
    if (r.status === 200 && pred(r.json)) return r.json;
    if (Date.now() > deadline)
      throw new Error(
        `container ${id} never became ${what}; last: ${JSON.stringify(last)}\n--- krater output (tail)\n${k.output().slice(-2000)}`,
      );
    await sleep(100);
  }
}

/** Polls until the container is gone (404). */
export async function waitGone(k: Krater, token: string, id: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await k.http('GET', `/container/v1/containers/${id}`, { token, headers: ZUN() });
    if (r.status === 404) return;
    if (Date.now() > deadline)
      throw new Error(
        `container ${id} still there: ${r.status} ${r.text}\n--- krater output (tail)\n${k.output().slice(-2000)}`,
      );
    await sleep(100);
  }
}
