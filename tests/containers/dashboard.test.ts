/**
 * The web console at /dashboard/: its page, script and xterm.js are served without a token, with a strict CSP;
 * the script is valid JavaScript; and the API calls it makes (password token, list, interactive exec over the
 * WebSocket it builds from proxy_url, log follow) work for a signed-in user.
 */
import { Script } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { APP_JS } from '../../src/services/dashboard/page.js';
import type { Krater } from '../helpers/krater.js';
import { startCloud, waitContainer, ZUN } from './fixtures.js';

let k: Krater;

beforeAll(async () => {
  k = await startCloud({ KRATER_NETWORKING: 'none' });
});
afterAll(async () => {
  await k?.destroy();
});

describe('web console', () => {
  it('serves the page, its script and xterm.js to anyone, under a strict CSP', async () => {
    const root = await fetch(`${k.baseUrl}/dashboard`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/dashboard/');
    const page = await fetch(`${k.baseUrl}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    const html = await page.text();
    for (const src of ['vendor/xterm.js', 'vendor/addon-fit.js', 'app.js', 'vendor/xterm.css', 'app.css']) {
      expect(html).toContain(src);
      const r = await fetch(`${k.baseUrl}/dashboard/${src}`);
      expect(r.status, src).toBe(200);
      expect(r.headers.get('content-type')).toMatch(src.endsWith('.js') ? /javascript/ : /text\/css/);
      expect((await r.text()).length).toBeGreaterThan(100);
    }
    expect((await fetch(`${k.baseUrl}/dashboard/vendor/../../package.json`)).status).toBe(404);
    expect((await fetch(`${k.baseUrl}/dashboard/vendor/nothing.js`)).status).toBe(404);
    // The script parses (it runs in the browser; here only its syntax is checked).
    expect(() => new Script(APP_JS)).not.toThrow();
  });

  it("supports the page's calls: sign in, list, terminal over the exec WebSocket, follow the log", async () => {
    // As the login form: password + project scope by name, the token from X-Subject-Token.
    const auth = await fetch(`${k.baseUrl}/identity/v3/auth/tokens?nocatalog`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: 'admin', domain: { name: 'Default' }, password: k.adminPassword } },
          },
          scope: { project: { name: 'admin', domain: { name: 'Default' } } },
        },
      }),
    });
    expect(auth.status).toBe(201);
    const token = auth.headers.get('x-subject-token')!;
    const H = { 'X-Auth-Token': token, 'Content-Type': 'application/json', ...ZUN() };
    const c = await (
      await fetch(`${k.baseUrl}/container/v1/containers?run=true`, {
        method: 'POST',
        headers: H,
        body: JSON.stringify({ image: 'busybox', name: 'web', command: ['sh', '-c', 'echo hello-console; sleep 600'] }),
      })
    ).json();
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const list = await (await fetch(`${k.baseUrl}/container/v1/containers`, { headers: H })).json();
    expect(list.containers.map((x: any) => x.name)).toContain('web');

    const ex = await (
      await fetch(`${k.baseUrl}/container/v1/containers/${c.uuid}/execute?command=sh&interactive=true&run=false`, {
        method: 'POST',
        headers: H,
      })
    ).json();
    // The page connects to its own origin with proxy_url's path and query, sending the page's Origin.
    const u = new URL(ex.proxy_url);
    const ws = new WebSocket(`ws://127.0.0.1:${k.port}${u.pathname}${u.search}`, ['binary'], { origin: k.baseUrl });
    let out = '';
    ws.on('message', (d: Buffer) => {
      out += d.toString();
    });
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    const resize = await fetch(
      `${k.baseUrl}/container/v1/containers/${c.uuid}/execute_resize?exec_id=${ex.exec_id}&w=120&h=40`,
      { method: 'POST', headers: H },
    );
    expect(resize.status).toBe(200);
    ws.send(new TextEncoder().encode('stty size; exit\r'));
    await new Promise((res) => ws.once('close', res));
    expect(out).toContain('40 120');

    const ctl = new AbortController();
    const logs = await fetch(`${k.baseUrl}/container/v1/containers/${c.uuid}/logs?follow=true&tail=500`, {
      headers: H,
      signal: ctl.signal,
    });
    const first = new TextDecoder().decode((await logs.body!.getReader().read()).value);
    expect(first).toContain('hello-console');
    ctl.abort();
    await fetch(`${k.baseUrl}/container/v1/containers/${c.uuid}?force=true`, { method: 'DELETE', headers: H });
  });
});
