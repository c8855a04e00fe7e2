import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Krater } from '../helpers/krater.js';
import { startCloud, waitContainer, ZUN } from './fixtures.js';

/** Krater's extensions so clients need not poll: the long-poll wait and the container event stream. */
let k: Krater;
let token: string;
let memberToken: string;
const api = (method: string, path: string, body?: unknown, tok = token) =>
  k.http(method, `/container/v1${path}`, { token: tok, headers: ZUN(), body });

interface Stream {
  status: number;
  events: any[];
  /** Resolves with the first event (received so far or later) matching `pred`. */
  next(pred: (e: any) => boolean, what: string, timeoutMs?: number): Promise<any>;
  close(): void;
}

/** Opens `GET /container/v1/events` and parses its server-sent events as they arrive. */
function openEvents(query = '', tok = token): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(`${k.baseUrl}/container/v1/events${query}`, {
      headers: { 'X-Auth-Token': tok, Accept: 'text/event-stream', ...ZUN() },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const events: any[] = [];
      let buf = '';
      const stream: Stream = {
        status: res.statusCode ?? 0,
        events,
        async next(pred, what, timeoutMs = 30_000) {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const e = events.find(pred);
            if (e) return e;
            if (Date.now() > deadline)
              throw new Error(`no event ${what}; got ${JSON.stringify(events)}\n${k.output().slice(-1500)}`);
            await new Promise((r) => setTimeout(r, 25));
          }
        },
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          const type = /^event: (.*)$/m.exec(block)?.[1];
          if (data) events.push({ type, ...JSON.parse(data) });
        }
      });
      res.on('error', () => undefined);
      if (res.statusCode !== 200) {
        let body = '';
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ ...stream, events: [{ body }] }));
        return;
      }
      // The stream announces itself once it watches.
      res.once('data', () => resolve(stream));
    });
    req.end();
  });
}

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
  const id = '/identity/v3';
  const proj = await k.http('POST', `${id}/projects`, {
    token,
    body: { project: { name: 'ev-other', domain_id: 'default' } },
  });
  const user = await k.http('POST', `${id}/users`, {
    token,
    body: { user: { name: 'ev-member', domain_id: 'default', password: 'pw-ev-member-1' } },
  });
  const member = (await k.http('GET', `${id}/roles?name=member`, { token })).json.roles[0];
  await k.http('PUT', `${id}/projects/${proj.json.project.id}/users/${user.json.user.id}/roles/${member.id}`, {
    token,
  });
  memberToken = (await k.passwordToken('ev-member', 'pw-ev-member-1', 'ev-other')).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('GET /containers/{id}/wait (long poll)', () => {
  it('answers as soon as the status matches, with the view', async () => {
    const created = await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] });
    const t0 = Date.now();
    const r = await api('GET', `/containers/${created.json.uuid}/wait?status=Running&timeout=30`);
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get('krater-wait')).toBe('matched');
    expect(r.json).toMatchObject({ uuid: created.json.uuid, status: 'Running', task_state: null });
    expect(Date.now() - t0).toBeLessThan(15_000);
    // Already there: at once.
    const again = await api('GET', `/containers/${created.json.uuid}/wait?status=running`);
    expect(again.headers.get('krater-wait')).toBe('matched');
    await api('DELETE', `/containers/${created.json.uuid}?stop=true`);
  });

  it('answers the current view at the timeout', async () => {
    const c = (await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] })).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const t0 = Date.now();
    const r = await api('GET', `/containers/${c.uuid}/wait?status=Paused&status=Stopped&timeout=1`);
    const took = Date.now() - t0;
    expect(r.status).toBe(200);
    expect(r.headers.get('krater-wait')).toBe('timeout');
    expect(r.json.status).toBe('Running');
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });

  it('follows a change made by another request, and an action by its request id', async () => {
    const c = (await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] })).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const waiting = api('GET', `/containers/${c.uuid}/wait?status=Stopped,Error&timeout=60`);
    await new Promise((r) => setTimeout(r, 300));
    const stop = await api('POST', `/containers/${c.uuid}/stop?timeout=0`);
    expect(stop.status).toBe(202);
    const r = await waiting;
    expect(r.headers.get('krater-wait')).toBe('matched');
    expect(r.json.status).toBe('Stopped');
    // The start's request id: matched once that action finished.
    const start = await api('POST', `/containers/${c.uuid}/start`);
    const rid = start.headers.get('x-openstack-request-id');
    const w = await api('GET', `/containers/${c.uuid}/wait?request_id=${rid}&timeout=60`);
    expect(w.headers.get('krater-wait')).toBe('matched');
    expect(w.json.status).toBe('Running');
    const actions = (await api('GET', `/containers/${c.uuid}/container_actions/${rid}`)).json;
    expect(actions.finish_time).not.toBeNull();
    expect((await api('GET', `/containers/${c.uuid}/wait?request_id=req-nope&timeout=1`)).status).toBe(404);
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });

  it('is a 404 when the container goes away, and validates its parameters', async () => {
    const c = (await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] })).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const waiting = api('GET', `/containers/${c.uuid}/wait?status=Deleted&timeout=60`);
    await new Promise((r) => setTimeout(r, 200));
    expect((await api('DELETE', `/containers/${c.uuid}?stop=true`)).status).toBe(204);
    expect((await waiting).status).toBe(404);
    expect((await api('GET', `/containers/${c.uuid}/wait`)).status).toBe(404);
    const x = (await api('POST', '/containers', { image: 'busybox', command: ['true'] })).json;
    expect((await api('GET', `/containers/${x.uuid}/wait?status=Sleeping`)).status).toBe(400);
    expect((await api('GET', `/containers/${x.uuid}/wait?timeout=9999`)).status).toBe(400);
    expect((await api('GET', `/containers/${x.uuid}/wait?colour=red`)).status).toBe(400);
    // Another project cannot wait on it.
    expect((await api('GET', `/containers/${x.uuid}/wait?timeout=1`, undefined, memberToken)).status).toBe(404);
    await api('GET', `/containers/${x.uuid}/wait?status=Created&timeout=30`);
    await api('DELETE', `/containers/${x.uuid}`);
  });
});

describe('GET /events (server-sent events)', () => {
  it("streams the project's container changes: create, status and task changes, delete", async () => {
    const s = await openEvents();
    expect(s.status).toBe(200);
    try {
      const c = (
        await api('POST', '/containers?run=true', { name: 'ev1', image: 'busybox', command: ['sleep', '600'] })
      ).json;
      const mine = (e: any) => e.uuid === c.uuid;
      const created = await s.next((e) => mine(e) && e.action === 'create', 'create');
      expect(created).toMatchObject({ type: 'container', name: 'ev1', project_id: c.project_id });
      await s.next((e) => mine(e) && e.status === 'Running' && e.task_state === null, 'Running');
      expect((await api('POST', `/containers/${c.uuid}/stop?timeout=0`)).status).toBe(202);
      const stopped = await s.next((e) => mine(e) && e.status === 'Stopped', 'Stopped');
      expect(stopped).toMatchObject({ action: 'update', previous_status: 'Running' });
      expect((await api('DELETE', `/containers/${c.uuid}`)).status).toBe(204);
      const deleted = await s.next((e) => mine(e) && e.action === 'delete', 'delete');
      expect(deleted.status).toBe('Deleted');
      // In order: each change once, the stream never repeats an unchanged state.
      const statuses = s.events.filter(mine).map((e) => `${e.status}/${e.task_state}`);
      for (let i = 1; i < statuses.length; i++) expect(statuses[i]).not.toBe(statuses[i - 1]);
    } finally {
      s.close();
    }
  });

  it('is scoped to the project; admins see every project with all_projects', async () => {
    const member = await openEvents('', memberToken);
    const everyone = await openEvents('?all_projects=True');
    try {
      const c = (await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] })).json;
      const mc = (
        await api('POST', '/containers?run=true', { image: 'busybox', command: ['sleep', '600'] }, memberToken)
      ).json;
      await member.next((e) => e.uuid === mc.uuid && e.status === 'Running', 'member Running');
      await everyone.next((e) => e.uuid === mc.uuid && e.status === 'Running', 'member container seen by admin');
      await everyone.next((e) => e.uuid === c.uuid && e.status === 'Running', 'admin container');
      expect(member.events.some((e) => e.uuid === c.uuid)).toBe(false);
      await api('DELETE', `/containers/${c.uuid}?stop=true`);
      await api('DELETE', `/containers/${mc.uuid}?stop=true`, undefined, memberToken);
      await member.next((e) => e.uuid === mc.uuid && e.action === 'delete', 'member delete');
    } finally {
      member.close();
      everyone.close();
    }
    const refused = await openEvents('?all_projects=True', memberToken);
    expect(refused.status).toBe(403);
    expect((await k.http('GET', '/container/v1/events')).status).toBe(401);
  });
});
