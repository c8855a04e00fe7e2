/**
 * The web console at /dashboard/: its page, script and xterm.js are served without a token, with a strict CSP; and
 * the page's script, run in jsdom against this Krater (real fetch and WebSocket; xterm.js replaced by a stand-in),
 * signs in, lists the project's containers, opens a terminal over the exec WebSocket and follows a log.
 */
import { Script } from 'node:vm';
import { JSDOM } from 'jsdom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_JS, INDEX_HTML } from '../../src/services/dashboard/page.js';
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

  it('runs the page script (in jsdom): sign in, the container listed, a terminal session, its log', async () => {
    const dom = new JSDOM(INDEX_HTML.replace(/<script src="[^"]+"><\/script>/g, ''), {
      url: `${k.baseUrl}/dashboard/`,
      runScripts: 'outside-only',
      pretendToBeVisual: true,
    });
    const w = dom.window as any;
    const token = (await k.passwordToken()).token;
    const H = { 'X-Auth-Token': token, 'Content-Type': 'application/json', ...ZUN() };
    const c = await (
      await fetch(`${k.baseUrl}/container/v1/containers?run=true`, {
        method: 'POST',
        headers: H,
        body: JSON.stringify({ image: 'busybox', name: 'dom', command: ['sh', '-c', 'echo hello-dom; sleep 600'] }),
      })
    ).json();
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    try {
      w.fetch = (u: string, o: RequestInit) => fetch(new URL(String(u), w.location.href), o);
      w.TextEncoder = TextEncoder;
      w.TextDecoder = TextDecoder;
      // xterm.js itself needs a real browser: a stand-in records what the page writes and lets us type.
      let screen = '';
      let type: ((d: string) => void) | undefined;
      w.Terminal = class {
        cols = 100;
        rows = 30;
        loadAddon() {}
        open() {}
        focus() {}
        dispose() {}
        write(d: string | Uint8Array) {
          screen += typeof d === 'string' ? d : Buffer.from(d).toString();
        }
        onData(fn: (d: string) => void) {
          type = fn;
        }
      };
      w.FitAddon = {
        FitAddon: class {
          fit() {}
        },
      };
      w.eval(APP_JS);
      const $ = (id: string) => w.document.getElementById(id);
      const until = async (what: string, pred: () => boolean) => {
        for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
        expect(
          pred(),
          `${what}; screen: ${JSON.stringify(screen)}; page: ${JSON.stringify(w.document.body.textContent.replace(/\s+/g, ' '))}`,
        ).toBe(true);
      };
      expect($('login').hidden).toBe(false);
      $('login').elements.password.value = 'wrong';
      $('login').dispatchEvent(new w.Event('submit', { cancelable: true }));
      await until('a wrong password is reported', () => /Wrong user/.test($('login-error').textContent));
      $('login').elements.password.value = k.adminPassword;
      $('login').dispatchEvent(new w.Event('submit', { cancelable: true }));
      await until('the container is listed', () => /dom/.test($('rows').textContent));
      const row = [...$('rows').querySelectorAll('tr')].find((r: any) => r.cells[0].textContent === 'dom') as any;
      expect(row.cells[1].textContent).toMatch(/^Running/);
      const buttons = [...row.querySelectorAll('button')] as any[];
      buttons.find((b) => b.textContent === 'Terminal').click();
      await until('a terminal is open', () => type !== undefined && !$('session').hidden);
      // Typed before the socket opens is dropped, as in the browser: wait for the shell's prompt.
      await until('the shell prompts', () => screen.includes('/ # '));
      // The page sized the terminal through execute_resize (the stand-in is 100×30).
      type!('stty size; echo dom-$((6*7))\r');
      await until('the command ran', () => screen.includes('dom-42'));
      expect(screen).toContain('30 100');
      $('close').click();
      await until('back to the list', () => $('session').hidden);
      screen = '';
      buttons.find((b) => b.textContent === 'Logs').click();
      await until('the log is shown', () => screen.includes('hello-dom'));
      $('close').click();
      $('logout').click();
      expect($('login').hidden).toBe(false);
      expect(w.sessionStorage.getItem('krater-token')).toBeNull();
    } finally {
      // Not closed: the page's event stream ends when Krater stops, and its handler still touches the document.
      await fetch(`${k.baseUrl}/container/v1/containers/${c.uuid}?force=true`, { method: 'DELETE', headers: H });
    }
  });
});
