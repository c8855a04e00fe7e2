/**
 * The split deployment: `krater api` (control plane only) and `krater agent` (one host's agent, its own process
 * and containerd) over one store. Containers are scheduled to the agent's host through the store; the API's
 * synchronous calls (logs, exec, top, stats, archives) and exec streams reach it over its RPC endpoint; the
 * agent killed with a running container leaves it running and takes it back when restarted. The API allocates
 * Neutron ports and the agent's dataplane plugs them, each reading the same store.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { cleanEnv, Krater, REPO_ROOT, sleep, uniq } from '../helpers/krater.js';
import { busyboxArchive, waitContainer, waitGone, ZUN } from './fixtures.js';

let k: Krater;
let token: string;
const host = uniq('krater-remote');
const api = (method: string, path: string, body?: unknown) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });

/** A `krater agent` process for `host`, on the API's store; resolves once it advertises its RPC URL. */
class AgentProc {
  proc!: ChildProcess;
  out = '';
  rpcUrl = '';
  async start(): Promise<void> {
    this.proc = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/krater.js'),
        'agent',
        '--data-dir',
        join(k.workDir, 'agent'),
        '--database',
        `sqlite:${join(k.dataDir, 'krater.db')}`,
        '--host',
        host,
        '--log-level',
        'warn',
      ],
      {
        env: {
          ...cleanEnv(),
          KRATER_DEFAULT_IMAGE: busyboxArchive(),
          KRATER_AGENT_SHUTDOWN: 'purge',
          KRATER_NETWORKING: 'kernel',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (b: Buffer) => {
        this.out += b.toString();
        const m = /RPC at (\S+)/.exec(this.out);
        if (m) {
          this.rpcUrl = m[1];
          resolve();
        }
      };
      this.proc.stdout!.on('data', onData);
      this.proc.stderr!.on('data', (b: Buffer) => {
        this.out += b.toString();
      });
      this.proc.once('exit', (code) => reject(new Error(`krater agent exited (${code}):\n${this.out}`)));
    });
    await Promise.race([
      ready,
      sleep(60_000).then(() => Promise.reject(new Error(`krater agent not ready:\n${this.out}`))),
    ]);
  }
  stop(signal: NodeJS.Signals): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.kill(signal);
    });
  }
}

let agent: AgentProc;

beforeAll(async () => {
  k = await Krater.start({ mode: 'api', env: { KRATER_NETWORKING: 'kernel' } });
  token = (await k.passwordToken()).token;
  agent = new AgentProc();
  await agent.start();
});

afterAll(async () => {
  await agent?.stop('SIGTERM');
  await k?.destroy();
});

describe('krater api + krater agent', () => {
  let uuid: string;

  it('registers the agent as zun-compute and schedules containers to its host', async () => {
    const svc = (await api('GET', '/services')).json.services;
    expect(svc).toContainEqual(expect.objectContaining({ host, binary: 'zun-compute', state: 'up' }));
    const hosts = (await api('GET', '/hosts')).json.hosts;
    expect(hosts.map((h: any) => h.hostname)).toContain(host);
    // Nothing of the RPC endpoint leaks into the host view.
    expect(JSON.stringify(hosts)).not.toMatch(/rpc/);
    const r = await api('POST', '/containers?run=true', {
      image: 'busybox',
      command: ['sh', '-c', 'echo started; while sleep 0.2; do :; done'],
    });
    expect(r.status, r.text).toBe(202);
    uuid = r.json.uuid;
    const c = await waitContainer(k, token, uuid, (x) => x.status === 'Running', 'Running');
    expect(c.host).toBe(host);
    // The API allocated its Neutron port; the agent plugged it into the container's namespace.
    const v4 = (Object.values(c.addresses).flat() as any[]).find((a) => a.version === 4).addr;
    const ip = await api('POST', `/containers/${uuid}/execute?command=${encodeURIComponent('ip -4 addr')}&run=true`);
    expect(ip.json.output).toContain(`inet ${v4}/`);
  });

  it('answers logs, exec, top, stats and archives through the agent', async () => {
    expect((await api('GET', `/containers/${uuid}/logs`)).json).toContain('started');
    const ex = await api(
      'POST',
      `/containers/${uuid}/execute?command=${encodeURIComponent('sh -c "echo $((6*7))"')}&run=true`,
    );
    expect(ex.json).toMatchObject({ output: '42\n', exit_code: 0 });
    const missing = await api('POST', `/containers/${uuid}/execute?command=nope&run=true`);
    expect(missing.json.exit_code).toBe(127);
    expect((await api('GET', `/containers/${uuid}/top`)).json.Titles).toContain('PID');
    expect(Object.keys((await api('GET', `/containers/${uuid}/stats`)).json)).toHaveLength(7);
    // A file out through get_archive, back in through put_archive elsewhere.
    await api(
      'POST',
      `/containers/${uuid}/execute?command=${encodeURIComponent('sh -c "echo remote-file > /tmp/a.txt"')}&run=true`,
    );
    const got = await api('GET', `/containers/${uuid}/get_archive?path=/tmp/a.txt`);
    expect(got.status, got.text).toBe(200);
    const put = await api('POST', `/containers/${uuid}/put_archive?path=/`, { data: got.json.data });
    expect(put.status, put.text).toBe(200);
    const cat = await api('POST', `/containers/${uuid}/execute?command=${encodeURIComponent('cat /a.txt')}&run=true`);
    expect(cat.json.output).toBe('remote-file\n');
    // An engine error keeps its Zun code across the RPC.
    const nofile = await api('GET', `/containers/${uuid}/get_archive?path=/no/such/file`);
    expect(nofile.status).toBe(404);
  });

  it('streams an interactive exec and follows the log through the agent', async () => {
    const ex = await api('POST', `/containers/${uuid}/execute?command=sh&interactive=True&run=False`);
    expect(ex.status, ex.text).toBe(200);
    const ws = new WebSocket(ex.json.proxy_url, ['binary'], { origin: k.baseUrl });
    let text = '';
    ws.on('message', (d: Buffer) => {
      text += d.toString();
    });
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    ws.send(Buffer.from('echo remote-$((2*21)); exit\n'));
    await new Promise((res) => ws.once('close', res));
    expect(text).toContain('remote-42');
    // The token was single-use.
    const again = new WebSocket(ex.json.proxy_url, ['binary'], { origin: k.baseUrl });
    const refused = await new Promise<number>((res) => {
      again.once('unexpected-response', (_q, r) => res(r.statusCode ?? 0));
      again.once('open', () => res(101));
    });
    expect(refused).toBe(401);

    const ctl = new AbortController();
    const res = await fetch(`${k.baseUrl}/container/v1/containers/${uuid}/logs?follow=true&tail=1`, {
      headers: { 'X-Auth-Token': token, ...ZUN() },
      signal: ctl.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('started');
    ctl.abort();
  });

  it("answers the host's image calls (list, save, load, rmi, pull) through the agent", async () => {
    const list = await api('GET', `/images/local?host=${host}`);
    expect(list.status, list.text).toBe(200);
    const busybox = list.json.images.find((i: any) => /busybox/.test(i.name));
    expect(busybox.containers.length).toBeGreaterThan(0);
    // save → load round trip of the image, as archives streamed through the API and the agent.
    const saved = await fetch(`${k.baseUrl}/container/v1/images/local/save?host=${host}&image=${busybox.name}`, {
      headers: { 'X-Auth-Token': token, ...ZUN() },
    });
    expect(saved.status).toBe(200);
    const tar = Buffer.from(await saved.arrayBuffer());
    expect(tar.length).toBeGreaterThan(100_000);
    const loaded = await fetch(`${k.baseUrl}/container/v1/images/local/load?host=${host}`, {
      method: 'POST',
      headers: { 'X-Auth-Token': token, 'Content-Type': 'application/x-tar', ...ZUN() },
      body: tar,
    });
    expect(loaded.status, await loaded.clone().text()).toBe(200);
    expect((await loaded.json()).images.join(' ')).toMatch(/busybox/);
    // In use by a container: refused with Zun's 409, kept across the RPC.
    expect((await api('DELETE', `/images/local?host=${host}&image=${busybox.name}`)).status).toBe(409);
    // A pull streams its progress and its end; an unreachable registry ends in an error line.
    const pull = await fetch(`${k.baseUrl}/container/v1/images/local/pull`, {
      method: 'POST',
      headers: { 'X-Auth-Token': token, 'Content-Type': 'application/json', ...ZUN() },
      body: JSON.stringify({ image: '127.0.0.1:9/nothing/here:1', host }),
    });
    const lines = (await pull.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ status: 'error' });
  });

  it('works for the real openstack CLI (python3-zunclient) unchanged', async () => {
    const c = await k.oscOk(
      [
        'appcontainer',
        'run',
        '-f',
        'json',
        '--wait',
        '--name',
        'split1',
        'busybox',
        'sh',
        '-c',
        'echo split-cli; sleep 600',
      ],
      { json: false },
    );
    expect(c.host).toBe(host);
    const logs = await k.osc(['appcontainer', 'logs', 'split1'], { json: false });
    expect(logs.stdout).toContain('split-cli');
    const exec = await k.osc(['appcontainer', 'exec', 'split1', 'sh', '-c', 'echo via-agent; exit 3'], { json: false });
    expect(exec.stdout).toContain('via-agent');
    expect(exec.code).toBe(3);
    const dir = mkdtempSync(join(tmpdir(), 'krater-split-'));
    try {
      const cp = await k.osc(['appcontainer', 'cp', 'split1:/etc/passwd', dir], { json: false });
      expect(cp.code, cp.stderr).toBe(0);
      expect(readFileSync(join(dir, 'passwd'), 'utf8')).toContain('root:');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const del = await k.osc(['appcontainer', 'delete', '--force', '--wait', 'split1'], { json: false });
    expect(del.code, del.stderr).toBe(0);
  });

  it('refuses RPC calls without the secret the agent advertised', async () => {
    const r = await fetch(`${agent.rpcUrl}/rpc/v1/call`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer wrong' },
      body: JSON.stringify({ method: 'logs', uuid, args: [{}] }),
    });
    expect(r.status).toBe(401);
  });

  it('keeps the container running while the agent is down, and takes it back on restart', async () => {
    await agent.stop('SIGKILL');
    // The API still knows the container; calls that need the agent fail clearly instead of hanging.
    expect((await api('GET', `/containers/${uuid}`)).json.status).toBe('Running');
    const down = await api('GET', `/containers/${uuid}/logs`);
    expect(down.status).toBe(500);
    expect(down.text).toMatch(/not reachable/);
    await agent.start();
    const c = await waitContainer(k, token, uuid, (x) => x.status === 'Running', 'Running');
    expect(c.host).toBe(host);
    // Same run: the log has its first line once, and the process kept going.
    const logs = (await api('GET', `/containers/${uuid}/logs`)).json as string;
    expect(logs.match(/started/g)).toHaveLength(1);
    expect((await api('POST', `/containers/${uuid}/execute?command=true&run=true`)).json.exit_code).toBe(0);
    // Lifecycle actions still go through the store.
    expect((await api('POST', `/containers/${uuid}/stop?timeout=1`)).status).toBe(202);
    await waitContainer(k, token, uuid, (x) => x.status === 'Stopped', 'Stopped');
    expect((await api('DELETE', `/containers/${uuid}`)).status).toBe(204);
    await waitGone(k, token, uuid);
  });

  it('reports the host as not up once the agent stops', async () => {
    const r = await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] });
    const c = await waitContainer(k, token, r.json.uuid, (x) => x.status === 'Running', 'Running');
    await agent.stop('SIGTERM');
    const down = await api('GET', `/containers/${c.uuid}/logs`);
    expect(down.status).toBe(500);
    expect(down.json.errors[0].code).toBe('container.container-host-not-up');
    await agent.start();
    expect((await api('DELETE', `/containers/${c.uuid}?stop=true`)).status).toBe(204);
    await waitGone(k, token, c.uuid);
  });
});
