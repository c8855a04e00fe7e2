/**
 * Configuration resolution (src/core/config): every KRATER_* variable is read once, into `KraterConfig`, with its
 * default; a bad value stops the start with a message naming the variable.
 */
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/core/config/config.js';

const base = { dataDir: '/tmp/krater-config-unit', cloudsYaml: false as const };
const resolveWith = (env: Record<string, string>) => resolveConfig(base, env);

describe('resolveConfig', () => {
  it('gives every area its default from an empty environment', () => {
    const c = resolveWith({});
    expect(c).toMatchObject({
      dataDir: '/tmp/krater-config-unit',
      bind: '127.0.0.1',
      port: 8786,
      database: 'sqlite:/tmp/krater-config-unit/krater.db',
      publicUrl: 'http://127.0.0.1:8786',
      region: 'RegionOne',
      tokenTtlSeconds: 3600,
      cloudsYaml: undefined,
      defaultImageArchive: '/tmp/krater-config-unit/default-image.oci.tar',
      bootstrapAdminPassword: undefined,
      networking: 'kernel',
      lockoutFailureAttempts: 0,
      lockoutDurationSeconds: 1800,
      insecureRegistries: [],
    });
    expect(c.agent).toEqual({
      host: undefined,
      shutdown: 'keep',
      runtimes: {},
      shimGrouping: 'project',
      usernsRemap: undefined,
      gocodeDir: '/usr/share/gocode/src',
    });
    expect(c.publish).toEqual({
      memberHostIps: ['127.0.0.1'],
      memberPorts: { min: 1024, max: 65535 },
      transit: '169.254.64.0/18',
    });
    expect(c.network.defaultNetwork).toEqual({ enabled: true, name: 'default', cidr: '10.0.0.0/24' });
    expect(c.network.mtu).toBe(1500);
    expect(c.network.quotas).toMatchObject({ network: 100, port: 500, subnetpool: -1, router: 10 });
    expect(c.image).toMatchObject({ maxUploadBytes: 10 * 1024 ** 3, quotaBytes: null });
    expect(c.scheduler).toEqual({ weigher: 'spread' });
    expect(c.controllers).toEqual({
      concurrency: 4,
      leaseMs: 15_000,
      pollMs: 1000,
      backoffMs: 1000,
      backoffMaxMs: 300_000,
      gcIntervalMs: 30_000,
      sweepIntervalMs: 60_000,
      sweepGraceMs: 120_000,
      modules: [],
    });
  });

  it('takes the values of the environment, flags winning over it', () => {
    const c = resolveConfig(
      { ...base, port: 9000 },
      {
        KRATER_PORT: '7000',
        KRATER_BIND: '::1',
        KRATER_HOST: 'node-7',
        KRATER_ADMIN_PASSWORD: 'pw',
        KRATER_AGENT_SHUTDOWN: 'purge',
        KRATER_NETWORKING: 'none',
        KRATER_USERNS_REMAP: '200000',
        KRATER_RUNTIMES: 'kata=io.containerd.kata.v2',
        KRATER_GOCODE_DIR: '/opt/gocode',
        KRATER_INSECURE_REGISTRIES: 'a.example:5000, http://b.example/',
        KRATER_NETWORK_DEFAULT: 'off',
        KRATER_NETWORK_DEFAULT_CIDR: '192.168.7.0/24',
        KRATER_NETWORK_MTU: '1400',
        KRATER_NETWORK_QUOTA_PORT: '-1',
        KRATER_IMAGE_MAX_UPLOAD_BYTES: '2m',
        KRATER_IMAGE_QUOTA_BYTES: '1GiB',
        KRATER_CONTROLLER_LEASE_MS: '600',
        KRATER_CONTROLLER_BACKOFF_MS: '5000',
        KRATER_CONTROLLER_BACKOFF_MAX_MS: '10',
        KRATER_CONTROLLER_SWEEP_INTERVAL_MS: '5000',
        KRATER_CONTROLLER_SWEEP_GRACE_MS: '8000',
        KRATER_CONTROLLER_MODULES: 'a.mjs, b.mjs',
        KRATER_SCHEDULER_WEIGHER: 'pack',
      },
    );
    expect(c.port).toBe(9000);
    expect(c.publicUrl).toBe('http://[::1]:9000');
    expect(c.bootstrapAdminPassword).toBe('pw');
    expect(c.networking).toBe('none');
    expect(c.agent).toEqual({
      host: 'node-7',
      shutdown: 'purge',
      runtimes: { kata: 'io.containerd.kata.v2' },
      shimGrouping: 'project',
      usernsRemap: { uid: 200000, gid: 200000, size: 65536 },
      gocodeDir: '/opt/gocode',
    });
    expect(c.insecureRegistries).toEqual(['a.example:5000', 'b.example']);
    expect(c.scheduler.weigher).toBe('pack');
    expect(c.network.defaultNetwork).toEqual({ enabled: false, name: 'default', cidr: '192.168.7.0/24' });
    expect(c.network.mtu).toBe(1400);
    expect(c.network.quotas.port).toBe(-1);
    expect(c.image).toMatchObject({ maxUploadBytes: 2 * 1024 ** 2, quotaBytes: 1024 ** 3 });
    // The cap never falls below the base.
    expect(c.controllers).toMatchObject({
      leaseMs: 600,
      backoffMs: 5000,
      backoffMaxMs: 5000,
      sweepIntervalMs: 5000,
      sweepGraceMs: 8000,
      modules: ['a.mjs', 'b.mjs'],
    });
  });

  it('refuses each bad value, naming its variable', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ KRATER_PORT: '70000' }, /invalid port: 70000/],
      [{ KRATER_TOKEN_TTL: '0' }, /invalid token TTL: 0/],
      [{ KRATER_NETWORKING: 'bridge' }, /KRATER_NETWORKING: bridge \(expected kernel or none\)/],
      [{ KRATER_SHIM_GROUPING: 'host' }, /KRATER_SHIM_GROUPING: host \(expected project or none\)/],
      [{ KRATER_RUNTIMES: 'kata' }, /KRATER_RUNTIMES entry: kata/],
      [{ KRATER_USERNS_REMAP: '200000' }, /KRATER_USERNS_REMAP needs KRATER_NETWORKING=none/],
      [{ KRATER_NETWORKING: 'none', KRATER_USERNS_REMAP: '0:10' }, /invalid KRATER_USERNS_REMAP: 0:10/],
      [{ KRATER_LOCKOUT_FAILURE_ATTEMPTS: '-1' }, /KRATER_LOCKOUT_FAILURE_ATTEMPTS/],
      [{ KRATER_LOCKOUT_DURATION: '1.5' }, /KRATER_LOCKOUT_DURATION/],
      [{ KRATER_PUBLISH_PORTS: '2000-1000' }, /KRATER_PUBLISH_PORTS/],
      [{ KRATER_PUBLISH_HOST_IPS: '::1' }, /KRATER_PUBLISH_HOST_IPS/],
      [{ KRATER_PUBLISH_TRANSIT: '10.0.0.0/32' }, /KRATER_PUBLISH_TRANSIT/],
      [{ KRATER_NETWORK_DEFAULT_CIDR: '10.0.0.1/24' }, /KRATER_NETWORK_DEFAULT_CIDR/],
      [{ KRATER_NETWORK_DEFAULT_CIDR: 'fd00::/64' }, /KRATER_NETWORK_DEFAULT_CIDR/],
      [{ KRATER_NETWORK_MTU: '60' }, /KRATER_NETWORK_MTU/],
      [{ KRATER_NETWORK_QUOTA_ROUTER: '-2' }, /KRATER_NETWORK_QUOTA_ROUTER/],
      [{ KRATER_IMAGE_MAX_UPLOAD_BYTES: 'lots' }, /KRATER_IMAGE_MAX_UPLOAD_BYTES/],
      [{ KRATER_IMAGE_QUOTA_BYTES: '5x' }, /KRATER_IMAGE_QUOTA_BYTES/],
      [{ KRATER_CONTROLLER_CONCURRENCY: '0' }, /KRATER_CONTROLLER_CONCURRENCY/],
      [{ KRATER_CONTROLLER_LEASE_MS: '100' }, /KRATER_CONTROLLER_LEASE_MS/],
      [{ KRATER_CONTROLLER_POLL_MS: 'often' }, /KRATER_CONTROLLER_POLL_MS/],
      [{ KRATER_CONTROLLER_BACKOFF_MS: '0' }, /KRATER_CONTROLLER_BACKOFF_MS/],
      [{ KRATER_CONTROLLER_BACKOFF_MAX_MS: '1e9' }, /KRATER_CONTROLLER_BACKOFF_MAX_MS/],
      [{ KRATER_SCHEDULER_WEIGHER: 'random' }, /KRATER_SCHEDULER_WEIGHER: random \(expected spread or pack\)/],
      [{ KRATER_CONTROLLER_SWEEP_INTERVAL_MS: '50' }, /KRATER_CONTROLLER_SWEEP_INTERVAL_MS/],
      [{ KRATER_CONTROLLER_SWEEP_GRACE_MS: '500' }, /KRATER_CONTROLLER_SWEEP_GRACE_MS/],
    ];
    for (const [env, message] of bad) expect(() => resolveWith(env), JSON.stringify(env)).toThrow(message);
  });

  it('treats unset and blank the same for numeric variables', () => {
    const c = resolveWith({
      KRATER_NETWORK_QUOTA_PORT: ' ',
      KRATER_CONTROLLER_CONCURRENCY: '',
      KRATER_LOCKOUT_DURATION: '',
    });
    expect(c.network.quotas.port).toBe(500);
    expect(c.controllers.concurrency).toBe(4);
    expect(c.lockoutDurationSeconds).toBe(1800);
  });
});
