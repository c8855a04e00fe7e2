/**
 * Krater's configuration, resolved once at start: flags win over environment variables, which win over defaults.
 * This is the one place that reads `process.env` for Krater's settings; every area (network, images, controllers,
 * publish, agent) has its parser here in src/core/config and the values travel down in `KraterConfig`. A bad value
 * stops the start with a message naming its variable.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { type AgentSettings, agentSettings, type NetworkingMode, networkingMode } from './agent.js';
import { type ControllerSettings, controllerSettings } from './controllers.js';
import { type ImageSettings, imageSettings, insecureRegistries } from './images.js';
import { type NetworkSettings, networkSettings } from './network.js';
import { type PublishConfig, publishConfig } from './publish.js';
import { type SchedulerSettings, schedulerSettings } from './scheduler.js';
import { type Env, nonNegativeInt } from './values.js';

export type { PublishConfig };

/** Everything a Krater process is configured with; each field has a CLI flag or an environment variable. */
export interface KraterConfig {
  dataDir: string;
  bind: string;
  port: number;
  /** Store URL: `sqlite:<path>` (default: `<dataDir>/krater.db`) or `postgres://…`. */
  database: string;
  logLevel: string;
  /** The URL clients use to reach this listener; derived from bind/port when not given. */
  publicUrl: string;
  region: string;
  tokenTtlSeconds: number;
  policyFile?: string;
  /** Write the `krater` cloud into this clouds.yaml (undefined: do not touch any clouds.yaml). */
  cloudsYaml?: string;
  /** An existing containerd socket for the agent; default: a private containerd under the data dir. */
  containerdAddress?: string;
  /** Image archive (OCI or docker-save) imported as `busybox` when missing: the offline default image. */
  defaultImageArchive?: string;
  /** The first start's admin password (KRATER_ADMIN_PASSWORD); unset: a random one, written to the data dir. */
  bootstrapAdminPassword?: string;
  networking: NetworkingMode;
  /** The host agent (`krater up`, `krater agent`). */
  agent: AgentSettings;
  /**
   * Keystone's `[security_compliance] lockout_failure_attempts` and `lockout_duration`: after this many failed
   * password checks in a row a user is locked (0: never, Keystone's default) for `lockoutDurationSeconds`
   * (0: until an admin enables the user again or sets a new password).
   */
  lockoutFailureAttempts: number;
  lockoutDurationSeconds: number;
  /** Published host ports (`krater run -p`). */
  publish: PublishConfig;
  /** The Neutron facade: default network, MTU, default quotas. */
  network: NetworkSettings;
  /** Glance's limits. */
  image: ImageSettings;
  /** Registries pulls reach over plain HTTP besides loopback. */
  insecureRegistries: string[];
  /** The control-plane controllers' concurrency, lease, polling, back-off and extra modules. */
  controllers: ControllerSettings;
  /** How the scheduler weighs the hosts that fit (spread or pack). */
  scheduler: SchedulerSettings;
  /** Whether `publicUrl` was configured (flag or environment) rather than derived from bind and port. */
  publicUrlConfigured: boolean;
  /**
   * The master key sealing the secrets replicas share in the store (`KRATER_MASTER_KEY_FILE`, or the key itself in
   * `KRATER_MASTER_KEY`); neither: `<dataDir>/keys/master.key`, made on first start (core/secrets/master-key.ts).
   */
  masterKeyFile?: string;
  masterKey?: string;
  /** Where the Glance file backend keeps image data (`KRATER_IMAGE_DIR`, default `<dataDir>/images`); a shared
   * filesystem when several API replicas serve images. */
  imageDir: string;
}

export interface ConfigInput {
  dataDir?: string;
  bind?: string;
  port?: string | number;
  database?: string;
  logLevel?: string;
  publicUrl?: string;
  region?: string;
  tokenTtl?: string | number;
  policyFile?: string;
  cloudsYaml?: string | false;
  containerd?: string;
  defaultImage?: string;
}

function defaultDataDir(env: Env): string {
  return env.KRATER_DATA_DIR ?? (process.getuid?.() === 0 ? '/var/lib/krater' : join(homedir(), '.local/share/krater'));
}

/** Flags win over environment variables, which win over defaults. */
export function resolveConfig(input: ConfigInput, env: Env = process.env): KraterConfig {
  const dataDir = resolve(input.dataDir ?? defaultDataDir(env));
  const bind = input.bind ?? env.KRATER_BIND ?? '127.0.0.1';
  const port = Number(input.port ?? env.KRATER_PORT ?? 8786);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`invalid port: ${input.port ?? env.KRATER_PORT}`);
  const database = input.database ?? env.KRATER_DATABASE ?? `sqlite:${join(dataDir, 'krater.db')}`;
  const host = bind === '0.0.0.0' || bind === '::' ? '127.0.0.1' : bind.includes(':') ? `[${bind}]` : bind;
  const configuredUrl = input.publicUrl ?? env.KRATER_PUBLIC_URL;
  const publicUrl = (configuredUrl ?? `http://${host}:${port}`).replace(/\/+$/, '');
  const tokenTtlSeconds = Number(input.tokenTtl ?? env.KRATER_TOKEN_TTL ?? 3600);
  if (!Number.isInteger(tokenTtlSeconds) || tokenTtlSeconds <= 0)
    throw new Error(`invalid token TTL: ${input.tokenTtl ?? env.KRATER_TOKEN_TTL}`);
  let cloudsYaml: string | undefined;
  if (input.cloudsYaml !== false) {
    cloudsYaml = input.cloudsYaml ?? env.KRATER_CLOUDS_YAML ?? join(homedir(), '.config/openstack/clouds.yaml');
  }
  const networking = networkingMode(env);
  return {
    dataDir,
    bind,
    port,
    database,
    logLevel: input.logLevel ?? env.KRATER_LOG_LEVEL ?? 'info',
    publicUrl,
    region: input.region ?? env.KRATER_REGION ?? 'RegionOne',
    tokenTtlSeconds,
    policyFile: input.policyFile ?? env.KRATER_POLICY_FILE,
    cloudsYaml,
    containerdAddress: input.containerd ?? env.KRATER_CONTAINERD,
    defaultImageArchive: input.defaultImage ?? env.KRATER_DEFAULT_IMAGE ?? join(dataDir, 'default-image.oci.tar'),
    bootstrapAdminPassword: env.KRATER_ADMIN_PASSWORD || undefined,
    networking,
    agent: agentSettings(env, networking),
    lockoutFailureAttempts: nonNegativeInt(env, 'KRATER_LOCKOUT_FAILURE_ATTEMPTS', 0),
    lockoutDurationSeconds: nonNegativeInt(env, 'KRATER_LOCKOUT_DURATION', 1800),
    publish: publishConfig(env),
    network: networkSettings(env),
    image: imageSettings(env),
    insecureRegistries: insecureRegistries(env),
    controllers: controllerSettings(env),
    scheduler: schedulerSettings(env),
    publicUrlConfigured: !!configuredUrl,
    masterKeyFile: env.KRATER_MASTER_KEY_FILE || undefined,
    masterKey: env.KRATER_MASTER_KEY || undefined,
    imageDir: resolve(env.KRATER_IMAGE_DIR || join(dataDir, 'images')),
  };
}
