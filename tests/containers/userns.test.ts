/**
 * `KRATER_USERNS_REMAP`: every container of the host runs in a user namespace, its root an unprivileged host id
 * (as Docker's userns-remap), through the whole Zun API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Krater } from '../helpers/krater.js';
import { busyboxArchive, startCloud, waitContainer, ZUN } from './fixtures.js';

let k: Krater;
let token: string;
const api = (method: string, path: string, body?: unknown) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });
const exec = async (uuid: string, command: string) =>
  (await api('POST', `/containers/${uuid}/execute?command=${encodeURIComponent(command)}&run=true`)).json;

beforeAll(async () => {
  k = await startCloud({ KRATER_NETWORKING: 'none', KRATER_USERNS_REMAP: '296608:65536' });
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('user namespaces (KRATER_USERNS_REMAP)', () => {
  it('runs containers as an unprivileged host id; exec, archives and logs work as usual', async () => {
    const r = await api('POST', '/containers?run=true', {
      image: 'busybox',
      command: ['sh', '-c', 'id -u; sleep 600'],
    });
    expect(r.status, r.text).toBe(202);
    const uuid = r.json.uuid;
    await waitContainer(k, token, uuid, (c) => c.status === 'Running', 'Running');
    expect((await exec(uuid, 'cat /proc/self/uid_map')).output.trim().split(/\s+/)).toEqual(['0', '296608', '65536']);
    expect((await exec(uuid, 'sh -c "echo hi > /etc/motd && cat /etc/motd"')).output).toBe('hi\n');
    const got = await api('GET', `/containers/${uuid}/get_archive?path=/etc/motd`);
    expect(got.status, got.text).toBe(200);
    expect((await api('POST', `/containers/${uuid}/put_archive?path=/tmp`, { data: got.json.data })).status).toBe(200);
    expect((await exec(uuid, 'stat -c %u:%s /tmp/motd')).output).toBe('0:3\n');
    expect((await api('GET', `/containers/${uuid}/logs`)).json).toBe('0\n');
    expect((await api('DELETE', `/containers/${uuid}?force=true`)).status).toBe(204);
  });

  it('refuses to start with tenant networking (not user-namespace aware yet)', async () => {
    await expect(
      Krater.start({
        env: { KRATER_DEFAULT_IMAGE: busyboxArchive(), KRATER_NETWORKING: 'kernel', KRATER_USERNS_REMAP: '296608' },
        readyTimeoutMs: 20_000,
      }),
    ).rejects.toThrow(/KRATER_USERNS_REMAP needs KRATER_NETWORKING=none/);
  });
});
