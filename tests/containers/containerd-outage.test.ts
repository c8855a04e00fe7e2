/**
 * kill -9 of the agent's containerd with containers running: the host says why it takes no containers, calls that
 * need containerd answer in Zun's envelope (never a 500), an accepted stop is carried out once containerd is back,
 * containerd comes back by itself, running containers are re-adopted (their exits recorded, also the ones that
 * happened meanwhile) and new containers work. And exec/top/stats racing a kill never get a 5xx.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Krater, sleep } from '../helpers/krater.js';
import { startCloud, waitContainer, ZUN } from './fixtures.js';

let k: Krater;
let token: string;
const api = (method: string, path: string, body?: unknown) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });
const run = async (name: string, command: string[]) => {
  const r = await api('POST', '/containers?run=true', { image: 'busybox', name, command });
  expect(r.status, r.text).toBe(202);
  return (await waitContainer(k, token, r.json.uuid, (c) => c.status === 'Running', `${name} Running`)).uuid as string;
};
const exec = (uuid: string, cmd: string) =>
  api('POST', `/containers/${uuid}/execute?command=${encodeURIComponent(cmd)}&run=true`);

/** Polls the zun-compute service of the host until `pred` holds. */
async function waitService(pred: (s: any) => boolean, what: string): Promise<any> {
  for (let i = 0; ; i++) {
    const r = await api('GET', '/services');
    expect(r.status, r.text).toBe(200);
    const s = r.json.services.find((x: any) => x.binary === 'zun-compute');
    if (s && pred(s)) return s;
    if (i > 600) throw new Error(`zun-compute never ${what}: ${JSON.stringify(s)}\n${k.output().slice(-3000)}`);
    await sleep(100);
  }
}

/** Zun's envelope with the given status. */
function expectZunError(r: { status: number; json: any; text: string }, statuses: number[]) {
  expect(statuses, r.text).toContain(r.status);
  expect(r.json.errors?.[0]?.status, r.text).toBe(r.status);
  expect(typeof r.json.errors[0].detail).toBe('string');
}

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('containerd killed under the agent', () => {
  it('host unschedulable with a reason meanwhile, calls 409/503, accepted stop carried out, tasks re-adopted', async () => {
    const mark = randomBytes(4).toString('hex');
    // Exits with 9 once told to (through exec, after the outage): its exit must be recorded by a re-armed watch.
    const runner = await run('runner', ['sh', '-c', 'while [ ! -e /tmp/stop ]; do sleep 0.1; done; exit 9']);
    // Ends with 5 on SIGTERM, which the test sends while containerd is down.
    const quitter = await run('quitter', [
      'sh',
      '-c',
      `trap 'exit 5' TERM; while :; do sleep 0.1; done; : quitter-${mark}`,
    ]);
    const victim = await run('victim', ['sleep', '600']);

    const ctdDir = join(k.dataDir, 'agent', 'containerd');
    const hold = join(ctdDir, 'restart.hold');
    // Keeps the outage open until the test has seen it (the watchdog would restart containerd within a second).
    writeFileSync(hold, '');
    const oldPid = Number(readFileSync(join(ctdDir, 'containerd.pid'), 'utf8'));
    process.kill(oldPid, 'SIGKILL');

    const down = await waitService((s) => s.disabled, 'disabled');
    expect(down.disabled_reason).toMatch(/^AUTO: Connection to containerd lost: containerd \(pid \d+\) exited/);
    expect(down.state).toBe('up'); // the agent itself is alive and heartbeats

    // Not placed on this host: Zun's NoValidHost (202, then Error).
    const meanwhile = await api('POST', '/containers?run=true', { image: 'busybox', command: ['true'] });
    expect(meanwhile.status, meanwhile.text).toBe(202);
    const failed = await waitContainer(k, token, meanwhile.json.uuid, (c) => c.status === 'Error', 'Error');
    expect(failed.status_reason).toBe('There are not enough hosts available.');
    expect(failed.host).toBeNull();

    // Calls that need containerd: 503 in Zun's envelope, saying why.
    for (const r of [
      await exec(runner, 'true'),
      await api('GET', `/containers/${runner}/top`),
      await api('GET', `/containers/${runner}/stats`),
      await api('GET', `/containers/${runner}/get_archive?path=/etc/hostname`),
      await api('POST', `/containers/${runner}/execute?command=sh&interactive=true&run=false`),
    ]) {
      expectZunError(r, [503]);
      expect(r.json.errors[0].detail).toMatch(/containerd on host .* is not available/);
    }
    // Logs are files of the agent's: they are still served.
    expect((await api('GET', `/containers/${runner}/logs`)).status).toBe(200);

    // A stop accepted now is not lost.
    expect((await api('POST', `/containers/${victim}/stop?timeout=1`)).status).toBe(202);
    // The quitter exits while nothing can watch it.
    const shPid = execFileSync('pgrep', ['-f', `quitter-${mark}`])
      .toString()
      .trim()
      .split('\n')[0];
    process.kill(Number(shPid), 'SIGTERM');

    rmSync(hold);
    const up = await waitService((s) => !s.disabled, 'enabled again');
    expect(up.disabled_reason).toBeNull();
    const newPid = Number(readFileSync(join(ctdDir, 'containerd.pid'), 'utf8'));
    expect(newPid).not.toBe(oldPid);

    const v = await waitContainer(k, token, victim, (c) => c.status === 'Stopped', 'Stopped by the held stop');
    expect(v.task_state).toBeNull();
    const stopActions = (await api('GET', `/containers/${victim}/container_actions`)).json.containerActions.filter(
      (a: any) => a.action === 'stop',
    );
    expect(stopActions).toHaveLength(1);
    const q = await waitContainer(k, token, quitter, (c) => c.status === 'Stopped', 'Stopped (exit while down)');
    expect(q.status_detail).toMatch(/^Exited\(5\)/);

    // The runner was re-adopted: still Running, answers exec, and its later exit is recorded.
    expect((await api('GET', `/containers/${runner}`)).json.status).toBe('Running');
    const touched = await exec(runner, 'touch /tmp/stop');
    expect(touched.status, touched.text).toBe(200);
    expect(touched.json.exit_code).toBe(0);
    const r = await waitContainer(k, token, runner, (c) => c.status === 'Stopped', 'Stopped (exit after recovery)');
    expect(r.status_detail).toMatch(/^Exited\(9\)/);

    // New containers land on the host again.
    const fresh = await run('fresh', ['sleep', '600']);
    const hi = await exec(fresh, 'echo hi');
    expect(hi.json.output).toBe('hi\n');

    // Without a hold containerd comes back by itself, and the host with it.
    process.kill(newPid, 'SIGKILL');
    const pidFile = join(ctdDir, 'containerd.pid');
    for (let i = 0; Number(readFileSync(pidFile, 'utf8')) === newPid; i++) {
      if (i > 600) throw new Error(`containerd was not started again\n${k.output().slice(-3000)}`);
      await sleep(100);
    }
    await waitService((s) => !s.disabled, 'enabled after the second restart');
    for (let i = 0; ; i++) {
      const again = await exec(fresh, 'echo again');
      if (again.status === 200) {
        expect(again.json.output).toBe('again\n');
        break;
      }
      expectZunError(again, [503]);
      if (i > 300) throw new Error(`exec never worked again\n${k.output().slice(-3000)}`);
      await sleep(100);
    }
    expect((await api('GET', `/containers/${fresh}`)).json.status).toBe('Running');
    const logged = k.output();
    expect(logged).toMatch(/containerd is unavailable/);
    expect(logged).toMatch(/containerd is back/);
  });

  it('exec, top and stats racing a kill answer 200 or 409, never 5xx', async () => {
    const uuid = await run('racer', ['sleep', '600']);
    const codes = new Map<number, number>();
    for (let round = 0; round < 4; round++) {
      if (round > 0) {
        expect((await api('POST', `/containers/${uuid}/start`)).status).toBe(202);
        await waitContainer(k, token, uuid, (c) => c.status === 'Running', 'Running again');
      }
      const calls: Array<Promise<{ status: number; json: any; text: string }>> = [];
      for (let i = 0; i < 12; i++) {
        calls.push(
          exec(uuid, 'sleep 0.2'),
          api('GET', `/containers/${uuid}/top`),
          api('GET', `/containers/${uuid}/stats`),
        );
        if (i === 4) calls.push(api('POST', `/containers/${uuid}/kill?signal=SIGKILL`));
        await sleep(15);
      }
      for (const r of await Promise.all(calls)) {
        codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
        expect(r.status, r.text).toBeLessThan(500);
        if (r.status >= 400) expectZunError(r, [409]);
      }
      await waitContainer(k, token, uuid, (c) => c.status === 'Stopped', 'Stopped by the kill');
    }
    expect(codes.get(409) ?? 0).toBeGreaterThan(0);
  });
});
