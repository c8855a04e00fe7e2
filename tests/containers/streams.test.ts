import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Krater } from '../helpers/krater.js';
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

/** Opens a socket as zunclient does (subprotocols binary/base64, an Origin header) and collects what it receives. */
function connect(url: string, origin = k.baseUrl) {
  const ws = new WebSocket(url, ['binary', 'base64'], { origin });
  let text = '';
  ws.on('message', (d: Buffer) => {
    text += d.toString();
  });
  const opened = new Promise<void>((res, rej) => {
    ws.once('open', () => res());
    ws.once('unexpected-response', (_req, r) => rej(new Error(`HTTP ${r.statusCode}`)));
    ws.once('error', rej);
  });
  const closed = new Promise<void>((res) => ws.once('close', () => res()));
  const waitFor = async (re: RegExp) => {
    for (let i = 0; i < 100 && !re.test(text); i++) await new Promise((r) => setTimeout(r, 50));
    expect(text).toMatch(re);
  };
  return { ws, opened, closed, waitFor, text: () => text };
}

describe('interactive streams over WebSocket', () => {
  it('runs an interactive exec with a terminal, resizes it and ends with the process', async () => {
    const c = (await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] })).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const ex = await api('POST', `/containers/${c.uuid}/execute?command=sh&interactive=True&run=False`);
    expect(ex.status, ex.text).toBe(200);
    expect(ex.json.output).toBeNull();
    expect(ex.json.exec_id).toMatch(/^[0-9a-f]{64}$/);
    expect(ex.json.proxy_url).toMatch(/^ws:\/\/.*\/container\/ws\?token=.+&uuid=.+&exec_id=/);
    // zunclient resizes right after connecting; a resize before the process starts must be kept.
    expect(
      (await api('POST', `/containers/${c.uuid}/execute_resize?exec_id=${ex.json.exec_id}&w=100&h=30`)).status,
    ).toBe(200);
    const s = connect(ex.json.proxy_url);
    await s.opened;
    expect(s.ws.protocol).toBe('binary');
    s.ws.send(Buffer.from('stty size; echo marker-$((6*7))\n'));
    await s.waitFor(/30 100/);
    await s.waitFor(/marker-42/);
    s.ws.send(Buffer.from('exit\n'));
    await s.closed;
    // The token was single-use.
    const again = connect(ex.json.proxy_url);
    await expect(again.opened).rejects.toThrow(/401/);
    const unknown = await api('POST', `/containers/${c.uuid}/execute_resize?exec_id=${'0'.repeat(64)}&w=1&h=1`);
    expect(unknown.status).toBe(404);
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });

  it('attaches to an interactive container, refuses others and foreign origins', async () => {
    const c = (
      await api('POST', '/containers?run=true', { image: 'busybox', command: ['sh'], interactive: true, tty: true })
    ).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const url = (await api('GET', `/containers/${c.uuid}/attach`)).json as string;
    expect(url).toMatch(/^ws:\/\//);
    const evil = connect(url, 'http://evil.example:80');
    await expect(evil.opened).rejects.toThrow(/403/);
    const s = connect(url);
    await s.opened;
    expect((await api('POST', `/containers/${c.uuid}/resize?w=90&h=20`)).status).toBe(200);
    s.ws.send(Buffer.from('stty size; echo hello-$((2+2))\n'));
    await s.waitFor(/20 90/);
    await s.waitFor(/hello-4/);
    s.ws.close();
    await s.closed;
    // Detaching leaves it running.
    expect((await api('GET', `/containers/${c.uuid}`)).json.status).toBe('Running');
    const plain = (await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] })).json;
    await waitContainer(k, token, plain.uuid, (x) => x.status === 'Running', 'Running');
    const refused = await api('GET', `/containers/${plain.uuid}/attach`);
    expect(refused.status).toBe(400);
    expect(refused.json.errors[0].code).toBe('container.no-interactive-flag');
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
    await api('DELETE', `/containers/${plain.uuid}?stop=true`);
  });
});
