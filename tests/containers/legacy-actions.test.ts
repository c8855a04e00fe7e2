import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Krater } from '../helpers/krater.js';
import { startCloud, waitContainer, ZUN } from './fixtures.js';

/** `rename` (≤ 1.13), `resize_container` (≥ 1.19) and the `logs` parameters, over HTTP as Zun defines them. */
let k: Krater;
let token: string;
const api = (method: string, path: string, opts: { body?: unknown; v?: string } = {}) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(opts.v), body: opts.body });

async function run(body: Record<string, unknown>) {
  const r = await api('POST', '/containers?run=true', { body: { image: 'busybox', ...body } });
  expect(r.status, r.text).toBe(202);
  return r.json;
}

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('rename (microversions 1.1–1.13)', () => {
  it('renames up to 1.13 and refuses later versions with 406 naming the API', async () => {
    const c = await run({ name: 'old-name', command: ['sleep', '600'] });
    for (const v of ['1.1', '1.13']) {
      const name = `renamed-${v.replace('.', '-')}`;
      const r = await api('POST', `/containers/${c.uuid}/rename?name=${name}`, { v });
      expect(r.status, r.text).toBe(200);
      expect(r.headers.get('openstack-api-version')).toBe(`container ${v}`);
      expect(r.json).toMatchObject({ uuid: c.uuid, name });
      expect((await api('GET', `/containers/${name}`)).json.uuid).toBe(c.uuid);
    }
    const same = await api('POST', `/containers/${c.uuid}/rename?name=renamed-1-13`, { v: '1.13' });
    expect(same.status).toBe(409);
    expect(same.json.errors[0].title).toBe('The new name for the container is the same as the old name.');
    for (const v of ['1.14', '1.40']) {
      const r = await api('POST', `/containers/${c.uuid}/rename?name=never`, { v });
      expect(r.status, r.text).toBe(406);
      expect(r.json.errors[0].title).toBe(
        `Version ${v} was requested but the requested API rename is not supported for this version.`,
      );
    }
    expect((await api('GET', `/containers/${c.uuid}`)).json.name).toBe('renamed-1-13');
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });

  it('validates the new name and its parameters', async () => {
    const c = await run({ name: 'rn-valid', command: ['sleep', '600'] });
    const bad = await api('POST', `/containers/${c.uuid}/rename?name=-bad`, { v: '1.13' });
    expect(bad.status).toBe(400);
    expect(bad.json.errors[0].code).toBe('container.schema-validation-error');
    const extra = await api('POST', `/containers/${c.uuid}/rename?name=okname&color=red`, { v: '1.13' });
    expect(extra.status).toBe(400);
    const missing = await api('POST', `/containers/${c.uuid}/rename`, { v: '1.13' });
    expect(missing.status).toBe(400);
    expect((await api('POST', '/containers/no-such-container/rename?name=abc', { v: '1.13' })).status).toBe(404);
    // Below 1.14, PATCH may not carry `name`: renaming is this endpoint's job.
    const patch = await api('PATCH', `/containers/${c.uuid}`, { v: '1.13', body: { name: 'via-patch' } });
    expect(patch.status).toBe(400);
    expect(patch.json.errors[0].code).toBe('container.invalid-param-in-version');
    const patched = await api('PATCH', `/containers/${c.uuid}`, { v: '1.14', body: { name: 'via-patch' } });
    expect(patched.status).toBe(200);
    expect(patched.json.name).toBe('via-patch');
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });
});

describe('resize_container (1.19+)', () => {
  it('refuses versions before 1.19 and records the new limits with 202', async () => {
    const c = await run({ name: 'rs1', command: ['sleep', '600'], memory: '256', cpu: '1' });
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const old = await api('POST', `/containers/${c.uuid}/resize_container`, { v: '1.18', body: { memory: '128' } });
    expect(old.status).toBe(406);
    expect(old.json.errors[0].title).toBe(
      'Version 1.18 was requested but the requested API resize_container is not supported for this version.',
    );
    const r = await api('POST', `/containers/${c.uuid}/resize_container`, {
      v: '1.19',
      body: { memory: '128', cpu: '0.5' },
    });
    expect(r.status, r.text).toBe(202);
    expect(r.json).toMatchObject({ uuid: c.uuid, memory: '128', cpu: 0.5 });
    const shown = (await api('GET', `/containers/${c.uuid}`)).json;
    expect(shown).toMatchObject({ memory: '128', cpu: 0.5, status: 'Running' });
    // Bad values and keys are schema errors; nothing changes.
    for (const body of [{ memory: '2' }, { cpu: 99 }, { image: 'x' }, {}]) {
      const bad = await api('POST', `/containers/${c.uuid}/resize_container`, { v: '1.40', body });
      expect(bad.status, JSON.stringify(body)).toBe(400);
    }
    expect((await api('GET', `/containers/${c.uuid}`)).json.memory).toBe('128');
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });

  it('resizes a stopped container too (VALID_STATES)', async () => {
    const c = (await api('POST', '/containers', { body: { image: 'busybox', command: ['true'] } })).json;
    const creating = await waitContainer(k, token, c.uuid, (x) => x.task_state === null, 'settled');
    expect(creating.status).toBe('Created');
    const r = await api('POST', `/containers/${c.uuid}/start`);
    expect(r.status).toBe(202);
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Stopped' && x.task_state === null, 'Stopped');
    // Stopped is allowed (VALID_STATES), Error is not.
    const ok = await api('POST', `/containers/${c.uuid}/resize_container`, { v: '1.40', body: { memory: '64' } });
    expect(ok.status).toBe(202);
    await api('DELETE', `/containers/${c.uuid}`);
  });
});

describe('logs parameters', () => {
  let uuid: string;
  const logs = async (query: string) => {
    const r = await api('GET', `/containers/${uuid}/logs${query}`);
    return { status: r.status, text: r.status === 200 ? (r.json as string) : r.text, json: r.json };
  };

  beforeAll(async () => {
    const c = await run({
      name: 'logger',
      command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo out-$i; done; echo err-1 >&2; sleep 600'],
    });
    uuid = c.uuid;
    await waitContainer(k, token, uuid, (x) => x.status === 'Running', 'Running');
    for (let i = 0; i < 100 && !(await logs('')).text.includes('err-1'); i++)
      await new Promise((r) => setTimeout(r, 50));
  });
  afterAll(async () => {
    await api('DELETE', `/containers/${uuid}?stop=true`);
  });

  it('answers a JSON string with both streams by default, or one of them', async () => {
    const all = await api('GET', `/containers/${uuid}/logs`);
    expect(all.headers.get('content-type')).toMatch(/^application\/json/);
    expect(typeof all.json).toBe('string');
    expect(all.json).toBe('out-1\nout-2\nout-3\nout-4\nout-5\nerr-1\n');
    expect((await logs('?stdout=True&stderr=False')).text).toBe('out-1\nout-2\nout-3\nout-4\nout-5\n');
    expect((await logs('?stdout=false&stderr=true')).text).toBe('err-1\n');
    expect((await logs('?stdout=0&stderr=0')).text).toBe('');
  });

  it('tail: a count of the last lines; all, negative or non-numeric values mean everything', async () => {
    expect((await logs('?stdout=1&stderr=0&tail=2')).text).toBe('out-4\nout-5\n');
    expect((await logs('?stdout=1&stderr=0&tail=1')).text).toBe('out-5\n');
    expect((await logs('?stdout=1&stderr=0&tail=0')).text).toBe('');
    expect((await logs('?stdout=1&stderr=0&tail=99')).text).toBe('out-1\nout-2\nout-3\nout-4\nout-5\n');
    for (const t of ['all', '-1', 'abc'])
      expect((await logs(`?stdout=1&stderr=0&tail=${t}`)).text).toContain('out-1\n');
    // zunclient's own request.
    const z = await logs('?stdout=True&stderr=True&timestamps=False&tail=all');
    expect(z.status).toBe(200);
    expect(z.text).toContain('out-5');
  });

  it('since and timestamps: accepted in the forms Zun accepts, refused otherwise', async () => {
    const epoch = Math.floor(Date.now() / 1000) - 3600;
    for (const since of [String(epoch), '2020-01-02 03:04:05,678', 'None']) {
      const r = await logs(`?since=${encodeURIComponent(since)}`);
      expect(r.status, `${since}: ${r.text}`).toBe(200);
      expect(r.text).toContain('out-1');
    }
    for (const since of ['yesterday', '2020-01-02T03:04:05']) {
      const r = await logs(`?since=${encodeURIComponent(since)}`);
      expect(r.status, since).toBe(400);
      expect(r.json.errors[0].code).toBe('container.schema-validation-error');
    }
    expect((await logs('?timestamps=False')).status).toBe(200);
    const ts = await logs('?timestamps=maybe');
    expect(ts.status).toBe(400);
    const unknown = await logs('?colour=red');
    expect(unknown.status).toBe(400);
    expect(unknown.json.errors[0].title).toMatch(/colour/);
  });

  it('answers 404 for a missing container', async () => {
    expect((await api('GET', '/containers/no-such-one/logs')).status).toBe(404);
  });
});
