/**
 * The host agent's knobs: runtimes, shim grouping, user namespaces, shutdown, where containerd's API definitions are
 * (KRATER_GOCODE_DIR) and the host name (KRATER_HOST).
 */
import { choice, type Env } from './values.js';

/** Tenant networking for containers: Neutron ports on the kernel dataplane (`kernel`), or none (`none`: each
 * container gets an empty network namespace of its own; the Neutron API is still served). */
export type NetworkingMode = 'kernel' | 'none';

export function networkingMode(env: Env): NetworkingMode {
  return choice(env, 'KRATER_NETWORKING', ['kernel', 'none']);
}

export interface AgentSettings {
  /** The name the agent registers its host under (KRATER_HOST); undefined: the machine's name. */
  host?: string;
  /** On shutdown the agent keeps containers running (`keep`) or removes them and stops containerd (`purge`). */
  shutdown: 'keep' | 'purge';
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
  /** Base of the Debian Go source tree holding containerd's .proto files (KRATER_GOCODE_DIR). */
  gocodeDir: string;
}

export function agentSettings(env: Env, networking: NetworkingMode): AgentSettings {
  return {
    host: env.KRATER_HOST || undefined,
    // Anything but `purge` keeps containers: the safe reading of a typo.
    shutdown: env.KRATER_AGENT_SHUTDOWN === 'purge' ? 'purge' : 'keep',
    runtimes: runtimeMap(env.KRATER_RUNTIMES),
    shimGrouping: choice(env, 'KRATER_SHIM_GROUPING', ['project', 'none']),
    usernsRemap: usernsRemap(env.KRATER_USERNS_REMAP, networking),
    gocodeDir: env.KRATER_GOCODE_DIR ?? '/usr/share/gocode/src',
  };
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

function usernsRemap(value: string | undefined, networking: NetworkingMode): AgentSettings['usernsRemap'] {
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
