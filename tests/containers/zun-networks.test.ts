/**
 * Zun's `/v1/networks` (issue 13, item 5): an admin registers a Neutron network (idempotent), removes the
 * registration with DELETE (≥1.27, 204; 404 when unknown; 409 while a container is connected); members get 403;
 * bad bodies get Zun's envelope.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Krater, uniq } from '../helpers/krater.js';
import { startCloud, waitContainer, waitGone, ZUN } from './fixtures.js';

let k: Krater;
let admin: string;
let member: string;
let netId: string;
const api = (method: string, path: string, token: string, body?: unknown, v = '1.40') =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(v), body });

beforeAll(async () => {
  k = await startCloud();
  admin = (await k.passwordToken()).token;
  const project = uniq('other');
  const user = uniq('member');
  await k.oscOk(['project', 'create', project]);
  await k.oscOk(['user', 'create', '--password', 'member-pass-1', user]);
  await k.oscOk(['role', 'add', '--project', project, '--user', user, 'member'], { json: false });
  member = (await k.passwordToken(user, 'member-pass-1', project)).token;
  const net = await k.http('POST', '/network/v2.0/networks', { token: admin, body: { network: { name: uniq('zn') } } });
  expect(net.status, net.text).toBe(201);
  netId = net.json.network.id;
  const sub = await k.http('POST', '/network/v2.0/subnets', {
    token: admin,
    body: { subnet: { network_id: netId, ip_version: 4, cidr: '10.231.7.0/24' } },
  });
  expect(sub.status, sub.text).toBe(201);
});
afterAll(async () => {
  await k?.destroy();
});

describe('/v1/networks', () => {
  it('registers a Neutron network once and answers the same record again', async () => {
    const r = await api('POST', '/networks', admin, { name: 'zn1', neutron_net_id: netId });
    expect(r.status, r.text).toBe(200);
    expect(r.json).toMatchObject({ name: 'zn1', neutron_net_id: netId, network_id: netId });
    expect(Object.keys(r.json).sort()).toEqual([
      'name',
      'network_id',
      'neutron_net_id',
      'project_id',
      'user_id',
      'uuid',
    ]);
    const again = await api('POST', '/networks', admin, { name: 'zn1', neutron_net_id: netId });
    expect(again.json.uuid).toBe(r.json.uuid);
  });

  it('refuses members, unknown networks and bad bodies with Zun errors', async () => {
    expect((await api('POST', '/networks', member, { name: 'x', neutron_net_id: netId })).status).toBe(403);
    expect((await api('DELETE', `/networks/${netId}`, member)).status).toBe(403);
    const missing = await api('POST', '/networks', admin, {
      name: 'x',
      neutron_net_id: '00000000-0000-4000-8000-000000000000',
    });
    expect(missing.status).toBe(404);
    for (const body of [
      { neutron_net_id: netId },
      { name: 'x', neutron_net_id: 'nope' },
      { name: 'x', neutron_net_id: netId, extra: 1 },
      [1],
    ]) {
      const r = await api('POST', '/networks', admin, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.errors[0].status).toBe(400);
    }
    const noJson = await k.http('POST', '/container/v1/networks', {
      token: admin,
      headers: { ...ZUN(), 'Content-Type': 'text/plain' },
      body: 'x',
    });
    expect(noJson.status).toBe(415);
  });

  it('deletes from 1.27 on, refuses while a container is connected, then 404', async () => {
    expect((await api('DELETE', `/networks/${netId}`, admin, undefined, '1.26')).status).toBe(404);
    const c = await api('POST', '/containers?run=true', admin, {
      image: 'busybox',
      command: ['sleep', '600'],
      nets: [{ network: netId }],
    });
    expect(c.status, c.text).toBe(202);
    await waitContainer(k, admin, c.json.uuid, (x) => x.status === 'Running', 'Running');
    const busy = await api('DELETE', `/networks/${netId}`, admin);
    expect(busy.status, busy.text).toBe(409);
    expect((await api('DELETE', `/containers/${c.json.uuid}?force=true`, admin)).status).toBe(204);
    await waitGone(k, admin, c.json.uuid);
    expect((await api('DELETE', `/networks/${netId}`, admin)).status).toBe(204);
    expect((await api('DELETE', `/networks/${netId}`, admin)).status).toBe(404);
  });
});
