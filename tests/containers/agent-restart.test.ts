import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Krater, sleep } from '../helpers/krater.js';
import { startCloud, waitContainer, ZUN } from './fixtures.js';

let k: Krater;
let token: string;
const api = (method: string, path: string, body?: unknown) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('kill -9 of krater up', () => {
  it('keeps containers running, keeps their logs, and tells the truth after restart', async () => {
    const ticker = await api('POST', '/containers?run=true', {
      image: 'busybox',
      name: 'ticker',
      command: ['sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'],
    });
    const quitter = await api('POST', '/containers?run=true', {
      image: 'busybox',
      name: 'quitter',
      command: ['sh', '-c', 'sleep 1.5; exit 7'],
    });
    await waitContainer(k, token, ticker.json.uuid, (c) => c.status === 'Running', 'Running');
    await waitContainer(k, token, quitter.json.uuid, (c) => c.status === 'Running', 'Running');
    const before = (await api('GET', `/containers/${ticker.json.uuid}/logs`)).json as string;

    // SIGKILL the whole krater process: no shutdown code runs.
    const pid = execFileSync('pgrep', ['-f', `bin/krater.js up --data-dir ${k.dataDir}`])
      .toString()
      .trim()
      .split('\n')[0];
    process.kill(Number(pid), 'SIGKILL');
    await sleep(2500);
    await k.restart();
    token = (await k.passwordToken()).token;

    const t = await waitContainer(k, token, ticker.json.uuid, (c) => c.status === 'Running', 'Running after restart');
    expect(t.status_detail).toMatch(/^Up/);
    const after = (await api('GET', `/containers/${ticker.json.uuid}/logs`)).json as string;
    // It kept writing while nothing was watching it.
    expect(after.split('\n').length).toBeGreaterThan(before.split('\n').length + 5);
    const q = await waitContainer(k, token, quitter.json.uuid, (c) => c.status === 'Stopped', 'Stopped after restart');
    expect(q.status_detail).toMatch(/^Exited\(7\)/);
    // The restarted agent still controls the survivor.
    expect((await api('POST', `/containers/${ticker.json.uuid}/stop?timeout=1`)).status).toBe(202);
    await waitContainer(k, token, ticker.json.uuid, (c) => c.status === 'Stopped', 'Stopped');
    const list = (await api('GET', '/containers')).json.containers.map((c: any) => c.name).sort();
    expect(list).toEqual(['quitter', 'ticker']);
  });
});
