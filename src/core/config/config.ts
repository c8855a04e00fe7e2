import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Everything a Krater process is configured with; each field has a CLI flag and an environment variable. */
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
  /** On shutdown the agent keeps containers running (`keep`) or removes them and stops containerd (`purge`). */
  agentShutdown: 'keep' | 'purge';
  /** Tenant networking for containers: Neutron ports on the kernel dataplane (`kernel`), or none (`none`: each
   * container gets an empty network namespace of its own; the Neutron API is still served). */
  networking: 'kernel' | 'none';
  /** Zun `runtime` names the agent offers besides `runc` → containerd runtime types (`KRATER_RUNTIMES=name=type,…`). */
  runtimes: Record<string, string>;
  /** Which containers share a runc shim (src/engine/shim-groups.ts): a project's (`project`) or none (`none`). */
  shimGrouping: 'project' | 'none';
  /**
   * Containers in user namespaces (`KRATER_USERNS_REMAP=<first host id>[:<count>]`, count default 65536): container
   * root is that unprivileged host id, as with Docker's userns-remap. Unset: off. Privileged containers are exempt.
   * For now only with `networking: none`.
   */
  usernsRemap?: { uid: number; gid: number; size: number };
  /**
   * Keystone's `[security_compliance] lockout_failure_attempts` and `lockout_duration`: after this many failed
   * password checks in a row a user is locked (0: never, Keystone's default) for `lockoutDurationSeconds`
   * (0: until an admin enables the user again or sets a new password).
   */
  lockoutFailureAttempts: number;
  lockoutDurationSeconds: number;
  /** Published host ports (`krater run -p`): where members may publish without `container:create:publish_any_host_port`
   * (`KRATER_PUBLISH_HOST_IPS`, default 127.0.0.1; `KRATER_PUBLISH_PORTS`, default 1024-65535), and the IPv4 range the
   * dataplane's publish legs take their point-to-point pairs from (`KRATER_PUBLISH_TRANSIT`, default 169.254.64.0/18). */
  publish: PublishConfig;
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

export interface PublishConfig {
  memberHostIps: string[];
  memberPorts: { min: number; max: number };
  transit: string;
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

const env = process.env;

export function defaultDataDir(): string {
  return env.KRATER_DATA_DIR ?? (process.getuid?.() === 0 ? '/var/lib/krater' : join(homedir(), '.local/share/krater'));
}

/** Flags win over environment variables, which win over defaults. */
export function resolveConfig(input: ConfigInput): KraterConfig {
  const dataDir = resolve(input.dataDir ?? defaultDataDir());
  const bind = input.bind ?? env.KRATER_BIND ?? '127.0.0.1';
  const port = Number(input.port ?? env.KRATER_PORT ?? 8786);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port: ${input.port}`);
  const database = input.database ?? env.KRATER_DATABASE ?? `sqlite:${join(dataDir, 'krater.db')}`;
  const host = bind === '0.0.0.0' || bind === '::' ? '127.0.0.1' : bind.includes(':') ? `[${bind}]` : bind;
  const configuredUrl = input.publicUrl ?? env.KRATER_PUBLIC_URL;
  const publicUrl = (configuredUrl ?? `http://${host}:${port}`).replace(/\/+$/, '');
  const tokenTtlSeconds = Number(input.tokenTtl ?? env.KRATER_TOKEN_TTL ?? 3600);
  if (!Number.isInteger(tokenTtlSeconds) || tokenTtlSeconds <= 0)
    throw new Error(`invalid token TTL: ${input.tokenTtl}`);
  let cloudsYaml: string | undefined;
  if (input.cloudsYaml !== false) {
    cloudsYaml = input.cloudsYaml ?? env.KRATER_CLOUDS_YAML ?? join(homedir(), '.config/openstack/clouds.yaml');
  }
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
    agentShutdown: env.KRATER_AGENT_SHUTDOWN === 'purge' ? 'purge' : 'keep',
    networking: networkingMode(env.KRATER_NETWORKING),
    runtimes: runtimeMap(env.KRATER_RUNTIMES),
    shimGrouping: shimGrouping(env.KRATER_SHIM_GROUPING),
    usernsRemap: usernsRemap(env.KRATER_USERNS_REMAP, networkingMode(env.KRATER_NETWORKING)),
    lockoutFailureAttempts: nonNegativeInt('KRATER_LOCKOUT_FAILURE_ATTEMPTS', env.KRATER_LOCKOUT_FAILURE_ATTEMPTS, 0),
    lockoutDurationSeconds: nonNegativeInt('KRATER_LOCKOUT_DURATION', env.KRATER_LOCKOUT_DURATION, 1800),
    publish: publishConfig(env),
    publicUrlConfigured: !!configuredUrl,
    masterKeyFile: env.KRATER_MASTER_KEY_FILE || undefined,
    masterKey: env.KRATER_MASTER_KEY || undefined,
    imageDir: resolve(env.KRATER_IMAGE_DIR || join(dataDir, 'images')),
  };
}

function nonNegativeInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`invalid ${name}: ${value} (expected a whole number ≥ 0)`);
  return n;
}

export function publishConfig(e: NodeJS.ProcessEnv = env): PublishConfig {
  const ips = (e.KRATER_PUBLISH_HOST_IPS ?? '127.0.0.1')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const v4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
  for (const ip of ips)
    if (!v4.test(ip)) throw new Error(`invalid KRATER_PUBLISH_HOST_IPS entry: ${ip} (IPv4 addresses, 0.0.0.0 = any)`);
  const range = (e.KRATER_PUBLISH_PORTS ?? '1024-65535').trim();
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(range);
  const min = Number(m?.[1]);
  const max = Number(m?.[2] ?? m?.[1]);
  if (!m || min < 1 || max > 65535 || min > max)
    throw new Error(`invalid KRATER_PUBLISH_PORTS: ${range} (expected <min>-<max> within 1-65535)`);
  const transit = (e.KRATER_PUBLISH_TRANSIT ?? '169.254.64.0/18').trim();
  const t = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(transit);
  if (!t || Number(t[2]) > 31 || !v4.test(t[1]))
    throw new Error(`invalid KRATER_PUBLISH_TRANSIT: ${transit} (expected an IPv4 CIDR up to /31)`);
  return { memberHostIps: ips, memberPorts: { min, max }, transit };
}

function runtimeMap(value: string | undefined): Record<string, string> {
  const map: Record<string, string> = {};
  for (const entry of (value ?? '').split(',').filter((e) => e.trim())) {
    const [name, type] = entry.split('=').map((x) => x.trim());
    if (!name || !type || !/^[a-z0-9][a-z0-9_.-]*$/i.test(name))
      throw new Error(`invalid KRATER_RUNTIMES entry: ${entry} (expected name=containerd.runtime.type)`);
    map[name] = type;
  }
  return map;
}

function usernsRemap(value: string | undefined, networking: KraterConfig['networking']): KraterConfig['usernsRemap'] {
  if (value === undefined || value === '') return undefined;
  // Tenant ports live in network namespaces the dataplane makes (owned by the host's user namespace), which a
  // user-namespaced container cannot join for exec with runc 1.1 (oci-spec.ts).
  if (networking !== 'none')
    throw new Error(
      'KRATER_USERNS_REMAP needs KRATER_NETWORKING=none (tenant networks are not yet user-namespace aware)',
    );
  const m = /^(\d+)(?::(\d+))?$/.exec(value.trim());
  const first = Number(m?.[1]);
  const size = Number(m?.[2] ?? 65536);
  if (!m || first < 1 || size < 1 || first + size > 2 ** 32 - 1)
    throw new Error(`invalid KRATER_USERNS_REMAP: ${value} (expected <first host id>[:<count>], e.g. 200000:65536)`);
  return { uid: first, gid: first, size };
}

function shimGrouping(value: string | undefined): KraterConfig['shimGrouping'] {
  if (value === undefined || value === '' || value === 'project') return 'project';
  if (value === 'none') return 'none';
  throw new Error(`invalid KRATER_SHIM_GROUPING: ${value} (expected project or none)`);
}

function networkingMode(value: string | undefined): KraterConfig['networking'] {
  if (value === undefined || value === '' || value === 'kernel') return 'kernel';
  if (value === 'none') return 'none';
  throw new Error(`invalid KRATER_NETWORKING: ${value} (expected kernel or none)`);
}
