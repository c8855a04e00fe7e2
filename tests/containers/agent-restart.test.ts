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

  it('kill -9 amid creates, starts and deletes: after restart each is finished or gone, nothing leaked', async () => {
    const ctr = (...args: string[]) =>
      execFileSync('ctr', ['--address', `${k.dataDir}/agent/containerd/containerd.sock`, '-n', 'krater', ...args])
        .toString()
        .trim()
        .split('\n')
        .filter(Boolean);
    const killKrater = async () => {
      const pid = execFileSync('pgrep', ['-f', `bin/krater.js up --data-dir ${k.dataDir}`])
        .toString()
        .trim();
      process.kill(Number(pid.split('\n')[0]), 'SIGKILL');
      await sleep(500);
      await k.restart();
      token = (await k.passwordToken()).token;
    };
    const uuids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] });
      expect(r.status, r.text).toBe(202);
      uuids.push(r.json.uuid);
    }
    // Some are being created or started right now.
    await killKrater();
    for (const u of uuids) await waitContainer(k, token, u, (c) => c.status === 'Running', 'Running after restart');
    const engineIds = ctr('containers', 'ls', '-q');
    for (const u of uuids) expect(engineIds.filter((id) => id === `zun-${u}`)).toHaveLength(1);
    expect(ctr('tasks', 'ls').filter((l) => uuids.some((u) => l.includes(u)) && /RUNNING/.test(l))).toHaveLength(8);

    for (const u of uuids) expect((await api('DELETE', `/containers/${u}?force=true`)).status).toBe(204);
    // Some are being deleted right now.
    await killKrater();
    for (const u of uuids) {
      for (let i = 0; (await api('GET', `/containers/${u}`)).status !== 404; i++) {
        if (i > 300) throw new Error(`container ${u} never went away\n${k.output().slice(-2000)}`);
        await sleep(100);
      }
    }
    const left = [...ctr('containers', 'ls', '-q'), ...ctr('snapshots', 'ls')].filter((l) =>
      uuids.some((u) => l.includes(u)),
    );
    expect(left).toEqual([]);
  });
});
