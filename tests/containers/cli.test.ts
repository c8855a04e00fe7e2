import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchUntil, freePort, type Krater, REPO_ROOT } from '../helpers/krater.js';
import { startCloud, waitContainer, waitGone, ZUN } from './fixtures.js';

/** The Docker-like `krater` CLI against a real cloud: exit codes, wait, restart, attach, cp, commit. */
let k: Krater;
let token: string;
let dir: string;
const api = (method: string, path: string, body?: unknown) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function krater(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [join(REPO_ROOT, 'bin/krater.js'), ...args],
      { env: k.oscEnv({ OS_CLOUD: 'krater' }), timeout: 90_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

const ok = (r: Run, what: string) => expect(r.code, `${what}: ${r.stderr}\n${k.output().slice(-1500)}`).toBe(0);

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
  dir = mkdtempSync(join(tmpdir(), 'krater-cli-'));
});
afterAll(async () => {
  await k?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('krater run / wait: exit codes', () => {
  it('run --rm propagates the exit code and removes the container', async () => {
    const r = await krater(['run', '--rm', '--name', 'exit3', 'busybox', 'sh', '-c', 'echo out-here; exit 3']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toContain('out-here');
    expect((await api('GET', '/containers/exit3')).status).toBe(404);
    const zero = await krater(['run', '--rm', 'busybox', 'true']);
    expect(zero.code, zero.stderr).toBe(0);
  });

  it('run -d returns once it runs; wait blocks until it stops and prints the code', async () => {
    const t0 = Date.now();
    const r = await krater(['run', '-d', '--name', 'waiter', 'busybox', 'sh', '-c', 'sleep 2; exit 7']);
    ok(r, 'run -d');
    const uuid = r.stdout.trim();
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    // Detached run answers once the container runs (the wait endpoint, no polling).
    expect((await api('GET', `/containers/${uuid}`)).json.status).toBe('Running');
    const w = await krater(['wait', 'waiter']);
    ok(w, 'wait');
    expect(w.stdout).toBe('7\n');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect((await api('GET', `/containers/${uuid}`)).json.status).toBe('Stopped');
    const missing = await krater(['wait', 'no-such-container']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/could not be found|No such container/);
    await api('DELETE', `/containers/${uuid}`);
  });

  it('a failing image is a clear error with exit code 1', async () => {
    const r = await krater(['run', '-d', 'no-such-image-here/nothing:1', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: /);
  });
});

describe('krater run -p', () => {
  it('publishes a container port on 127.0.0.1 and shows it in ps', async () => {
    const port = await freePort();
    const r = await krater([
      'run',
      '-d',
      '--name',
      'published',
      '-p',
      `127.0.0.1:${port}:80`,
      'busybox',
      'sh',
      '-c',
      'mkdir -p /www && echo via-publish > /www/index.html && httpd -f -p 80 -h /www',
    ]);
    ok(r, 'run -d -p');
    expect(await fetchUntil(`http://127.0.0.1:${port}/`, 'via-publish')).toContain('via-publish');
    const ps = await krater(['ps']);
    expect(ps.stdout).toContain(`127.0.0.1:${port}->80/tcp`);
    ok(await krater(['rm', '-f', 'published']), 'rm -f');
    await waitGone(k, token, r.stdout.trim());
    // The host port is given back with the container.
    await expect(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) })).rejects.toThrow();
  });

  it('refuses a malformed -p before creating anything', async () => {
    const r = await krater(['run', '-d', '--name', 'badpub', '-p', '127.0.0.1:99999:80', 'busybox', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Invalid published port "127\.0\.0\.1:99999:80"/);
    expect((await api('GET', '/containers/badpub')).status).toBe(404);
    // The API refuses the label as well.
    const bad = await api('POST', '/containers', { image: 'busybox', labels: { 'krater.publish': '80' } });
    expect(bad.status).toBe(400);
    expect(bad.json.errors[0].detail).toMatch(/Invalid published port/);
  });
});

describe('krater start / stop / restart', () => {
  it('each returns once its action is done', async () => {
    const r = await krater(['run', '-d', '--name', 'lifecycle', 'busybox', 'sleep', '600']);
    ok(r, 'run -d');
    const uuid = r.stdout.trim();
    ok(await krater(['stop', '-t', '1', 'lifecycle']), 'stop');
    expect((await api('GET', `/containers/${uuid}`)).json).toMatchObject({ status: 'Stopped', task_state: null });
    ok(await krater(['start', 'lifecycle']), 'start');
    expect((await api('GET', `/containers/${uuid}`)).json).toMatchObject({ status: 'Running', task_state: null });
    ok(await krater(['restart', '--time', '1', 'lifecycle']), 'restart');
    const after = await api('GET', `/containers/${uuid}`);
    expect(after.json).toMatchObject({ status: 'Running', task_state: null });
    const actions = (await api('GET', `/containers/${uuid}/container_actions`)).json.containerActions;
    expect(actions.map((a: any) => a.action)).toEqual(expect.arrayContaining(['stop', 'start', 'reboot']));
    expect(actions.every((a: any) => a.finish_time !== null)).toBe(true);
    // -t reached the server: the stop took about a second (busybox's sleep as PID 1 ignores SIGTERM), not ten.
    const stop = actions.find((a: any) => a.action === 'stop');
    expect(Date.parse(`${stop.finish_time}Z`) - Date.parse(`${stop.start_time}Z`)).toBeLessThan(5000);
    // An action refused by the server is an error.
    const bad = await krater(['unpause', 'lifecycle']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Cannot unpause container/);
    ok(await krater(['rm', '-f', 'lifecycle']), 'rm -f');
    await waitGone(k, token, uuid);
  });
});

describe('krater cp', () => {
  it('copies a file and a directory in and out', async () => {
    const r = await krater(['run', '-d', '--name', 'copier', 'busybox', 'sleep', '600']);
    ok(r, 'run -d');
    const uuid = r.stdout.trim();
    writeFileSync(join(dir, 'in.txt'), 'copied in\n');
    mkdirSync(join(dir, 'tree/sub'), { recursive: true });
    writeFileSync(join(dir, 'tree/sub/deep.txt'), 'deep\n');
    ok(await krater(['cp', join(dir, 'in.txt'), 'copier:/tmp/']), 'cp into a directory');
    ok(await krater(['cp', join(dir, 'in.txt'), 'copier:/tmp/renamed.txt']), 'cp to a new name');
    ok(await krater(['cp', join(dir, 'tree'), 'copier:/tmp']), 'cp a directory');
    const ls = await api('POST', `/containers/${uuid}/execute`, {
      command: 'cat /tmp/in.txt /tmp/renamed.txt /tmp/tree/sub/deep.txt',
    });
    expect(ls.json).toMatchObject({ exit_code: 0, output: 'copied in\ncopied in\ndeep\n' });
    const out = join(dir, 'out');
    mkdirSync(out);
    ok(await krater(['cp', 'copier:/tmp/renamed.txt', out]), 'cp out into a directory');
    expect(readFileSync(join(out, 'renamed.txt'), 'utf8')).toBe('copied in\n');
    ok(await krater(['cp', 'copier:/tmp/in.txt', join(out, 'other.txt')]), 'cp out to a new name');
    expect(readFileSync(join(out, 'other.txt'), 'utf8')).toBe('copied in\n');
    ok(await krater(['cp', 'copier:/tmp/tree', join(out, 'tree2')]), 'cp a directory out');
    expect(readFileSync(join(out, 'tree2/sub/deep.txt'), 'utf8')).toBe('deep\n');
    const missing = await krater(['cp', 'copier:/no/such/file', out]);
    expect(missing.code).toBe(1);
    const both = await krater(['cp', join(dir, 'in.txt'), join(dir, 'x')]);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/CONTAINER:PATH/);
    await api('DELETE', `/containers/${uuid}?stop=true`);
  });
});

describe('krater attach and exec -it', () => {
  it('attach relays stdin to the main process and exits with its code', async () => {
    const r = await krater(['run', '-d', '-i', '-t', '--name', 'attachee', 'busybox', 'sh']);
    ok(r, 'run -d -it');
    const uuid = r.stdout.trim();
    const n = 100 + Math.floor(Math.random() * 800);
    // stdin is a pipe here (not a terminal): its lines reach the shell, whose exit ends the session.
    const a = await krater(['attach', 'attachee'], `echo attached-$((${n}+1))\nexit 5\n`);
    expect(a.stdout).toContain(`attached-${n + 1}`);
    expect(a.code, a.stderr).toBe(5);
    await waitContainer(k, token, uuid, (c) => c.status === 'Stopped', 'Stopped');
    await api('DELETE', `/containers/${uuid}`);
  });

  it('exec -it runs an interactive shell over the exec stream', async () => {
    const r = await krater(['run', '-d', '--name', 'execee', 'busybox', 'sleep', '600']);
    ok(r, 'run -d');
    const e = await krater(['exec', '-it', 'execee', 'sh'], 'echo exec-$((40+2))\nexit\n');
    ok(e, 'exec -it');
    expect(e.stdout).toContain('exec-42');
    await api('DELETE', `/containers/${r.stdout.trim()}?stop=true`);
  });

  it('attach to a container without a terminal is refused', async () => {
    const r = await krater(['run', '-d', '--name', 'plain', 'busybox', 'sleep', '600']);
    ok(r, 'run -d');
    const a = await krater(['attach', 'plain']);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/interactive/);
    await api('DELETE', `/containers/${r.stdout.trim()}?stop=true`);
  });
});

describe('krater commit', () => {
  it('commits a container into an image that runs', async () => {
    const r = await krater([
      'run',
      '-d',
      '--name',
      'tocommit',
      'busybox',
      'sh',
      '-c',
      'echo baked > /baked; sleep 600',
    ]);
    ok(r, 'run -d');
    const uuid = r.stdout.trim();
    for (let i = 0; i < 50; i++) {
      const x = await api('POST', `/containers/${uuid}/execute`, { command: 'cat /baked' });
      if (x.json?.exit_code === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const c = await krater(['commit', 'tocommit', 'cli-committed:v1']);
    ok(c, 'commit');
    const imageId = c.stdout.trim();
    expect(imageId).toMatch(/^[0-9a-f-]{36}$/);
    // Returned once the image is complete.
    const img = await k.http('GET', `/image/v2/images/${imageId}`, { token });
    expect(img.json).toMatchObject({ status: 'active', name: 'cli-committed', container_format: 'docker' });
    const run = await api('POST', '/containers?run=true', {
      image: imageId,
      image_driver: 'glance',
      command: ['cat', '/baked'],
    });
    expect(run.status, run.text).toBe(202);
    const done = await waitContainer(k, token, run.json.uuid, (x) => x.status === 'Stopped', 'Stopped', 60_000);
    expect(done.status_detail).toMatch(/Exited\(0\)/);
    expect((await api('GET', `/containers/${run.json.uuid}/logs`)).json).toBe('baked\n');
    await api('DELETE', `/containers/${run.json.uuid}`);
    await api('DELETE', `/containers/${uuid}?stop=true`);
    await k.http('DELETE', `/image/v2/images/${imageId}`, { token });
  });
});
