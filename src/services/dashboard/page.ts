/**
 * The web console's page, style and script (served by index.ts). Plain DOM and fetch, no build step; text from
 * the API only ever reaches the page through `textContent`.
 */

export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Krater console</title>
<link rel="stylesheet" href="vendor/xterm.css">
<link rel="stylesheet" href="app.css">
</head>
<body>
<header><h1>Krater</h1><span id="who"></span><button id="logout" hidden>Sign out</button></header>
<main>
  <form id="login" hidden>
    <h2>Sign in</h2>
    <label>User <input name="user" autocomplete="username" required value="admin"></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
    <label>Project <input name="project" required value="admin"></label>
    <label>Domain <input name="domain" required value="Default"></label>
    <button type="submit">Sign in</button>
    <p id="login-error" class="error" role="alert"></p>
  </form>
  <section id="containers" hidden>
    <h2>Containers <small id="live"></small></h2>
    <table>
      <thead><tr><th>Name</th><th>Status</th><th>Image</th><th>Addresses</th><th></th></tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p id="empty" hidden>No containers in this project yet: <code>krater run -d busybox sleep 600</code>.</p>
  </section>
  <section id="session" hidden>
    <h2><span id="session-title"></span> <button id="close">Close</button></h2>
    <div id="term"></div>
  </section>
</main>
<script src="vendor/xterm.js"></script>
<script src="vendor/addon-fit.js"></script>
<script src="app.js"></script>
</body>
</html>
`;

export const APP_CSS = `body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
header { display: flex; gap: 1em; align-items: center; padding: .5em 1em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; flex: 1; }
main { padding: 1em; }
form#login { display: grid; gap: .6em; max-width: 22em; }
label { display: grid; gap: .2em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .4em .6em; border-bottom: 1px solid #e3e6eb; }
td.status-Running { color: #1a7f37; }
td.status-Error { color: #cf222e; }
button { cursor: pointer; }
.error { color: #cf222e; }
#term { height: 70vh; background: #000; padding: .3em; }
`;

export const APP_JS = `'use strict';
(() => {
  const ZUN = { 'OpenStack-API-Version': 'container 1.40' };
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem('krater-token');
  let refreshTimer;
  let current; // the open session: { close() }

  const api = async (method, path, body) => {
    const res = await fetch(path, {
      method,
      headers: { 'X-Auth-Token': token, 'Content-Type': 'application/json', ...ZUN },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      signOut();
      throw new Error('signed out');
    }
    if (!res.ok) {
      const e = await res.json().catch(() => ({}));
      throw new Error((e.errors && e.errors[0] && e.errors[0].detail) || res.statusText);
    }
    return res.status === 204 ? undefined : res.json();
  };

  const show = (view) => {
    for (const id of ['login', 'containers', 'session']) $(id).hidden = id !== view && !(view === 'session' && id === 'containers');
    $('logout').hidden = view === 'login';
  };

  function signOut() {
    token = null;
    sessionStorage.removeItem('krater-token');
    clearInterval(refreshTimer);
    if (current) current.close();
    show('login');
  }

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    $('login-error').textContent = '';
    const res = await fetch('/identity/v3/auth/tokens?nocatalog', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: f.get('user'), domain: { name: f.get('domain') }, password: f.get('password') } } },
        scope: { project: { name: f.get('project'), domain: { name: f.get('domain') } } },
      } }),
    });
    if (res.status !== 201) {
      $('login-error').textContent = res.status === 401 ? 'Wrong user, password or project.' : 'Sign-in failed (' + res.status + ').';
      return;
    }
    token = res.headers.get('X-Subject-Token');
    sessionStorage.setItem('krater-token', token);
    sessionStorage.setItem('krater-who', f.get('user') + ' @ ' + f.get('project'));
    start();
  });
  $('logout').addEventListener('click', signOut);
  $('close').addEventListener('click', () => current && current.close());

  const addresses = (c) => Object.values(c.addresses || {}).flat().map((a) => a.addr).join(', ');

  async function refresh() {
    const list = await api('GET', '/container/v1/containers');
    const rows = $('rows');
    rows.replaceChildren();
    for (const c of list.containers) {
      const tr = document.createElement('tr');
      const cell = (text, cls) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
        return td;
      };
      cell(c.name || c.uuid.slice(0, 12));
      cell(c.status + (c.status_detail ? ' (' + c.status_detail + ')' : ''), 'status-' + c.status);
      cell(c.image);
      cell(addresses(c));
      const actions = cell('');
      const button = (label, fn) => {
        const b = document.createElement('button');
        b.textContent = label;
        b.addEventListener('click', fn);
        actions.append(b, ' ');
      };
      if (c.status === 'Running') button('Terminal', () => openTerminal(c));
      button('Logs', () => openLogs(c));
      rows.append(tr);
    }
    $('empty').hidden = list.containers.length > 0;
  }

  /** Follows the container event stream; each change refreshes the table (the table also refreshes every 10 s). */
  async function watch() {
    try {
      const res = await fetch('/container/v1/events', { headers: { 'X-Auth-Token': token, ...ZUN } });
      if (!res.ok || !res.body) return;
      $('live').textContent = '● live';
      const reader = res.body.getReader();
      let pending;
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
        clearTimeout(pending);
        pending = setTimeout(() => refresh().catch(() => {}), 100);
      }
    } catch {}
    $('live').textContent = '';
    if (token) setTimeout(watch, 3000);
  }

  function newTerminal(title) {
    if (current) current.close();
    $('session-title').textContent = title;
    show('session');
    const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    $('term').replaceChildren();
    term.open($('term'));
    fit.fit();
    return { term, fit };
  }

  async function openTerminal(c) {
    const { term, fit } = newTerminal('Terminal: ' + (c.name || c.uuid));
    let ws;
    let onResize;
    current = {
      close() {
        if (ws) ws.close();
        window.removeEventListener('resize', onResize);
        term.dispose();
        current = undefined;
        show('containers');
      },
    };
    try {
      const ex = await api('POST', '/container/v1/containers/' + c.uuid + '/execute?command=sh&interactive=true&run=false');
      const resize = () => api('POST', '/container/v1/containers/' + c.uuid + '/execute_resize?exec_id=' + ex.exec_id + '&w=' + term.cols + '&h=' + term.rows).catch(() => {});
      // The socket goes to this page's origin, whatever host name the cloud advertises.
      const u = new URL(ex.proxy_url);
      ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + u.pathname + u.search, ['binary']);
      ws.binaryType = 'arraybuffer';
      const enc = new TextEncoder();
      ws.onopen = () => { resize(); term.focus(); };
      ws.onmessage = (m) => term.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data));
      ws.onclose = () => term.write('\\r\\n\\x1b[2m[session ended]\\x1b[0m\\r\\n');
      term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(enc.encode(d)));
      onResize = () => { fit.fit(); resize(); };
      window.addEventListener('resize', onResize);
    } catch (err) {
      term.write('\\x1b[31m' + err.message + '\\x1b[0m\\r\\n');
    }
  }

  async function openLogs(c) {
    const { term } = newTerminal('Logs: ' + (c.name || c.uuid));
    const abort = new AbortController();
    current = {
      close() {
        abort.abort();
        term.dispose();
        current = undefined;
        show('containers');
      },
    };
    try {
      const res = await fetch('/container/v1/containers/' + c.uuid + '/logs?follow=true&tail=500', {
        headers: { 'X-Auth-Token': token, ...ZUN },
        signal: abort.signal,
      });
      if (!res.ok) throw new Error('logs: ' + res.status);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        term.write(dec.decode(value, { stream: true }).replace(/\\r?\\n/g, '\\r\\n'));
      }
      term.write('\\r\\n\\x1b[2m[end of log]\\x1b[0m\\r\\n');
    } catch (err) {
      if (err.name !== 'AbortError') term.write('\\x1b[31m' + err.message + '\\x1b[0m\\r\\n');
    }
  }

  function start() {
    $('who').textContent = sessionStorage.getItem('krater-who') || '';
    show('containers');
    refresh().catch((e) => { $('empty').hidden = false; $('empty').textContent = e.message; });
    clearInterval(refreshTimer);
    refreshTimer = setInterval(() => refresh().catch(() => {}), 10000);
    watch();
  }

  if (token) start();
  else show('login');
})();
`;
