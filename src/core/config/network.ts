/**
 * The network service's knobs:
 *
 * - KRATER_NETWORK_DEFAULT=0 turns off the per-project default network (`ensureDefaultNetwork`);
 * - KRATER_NETWORK_DEFAULT_NAME (`default`) and KRATER_NETWORK_DEFAULT_CIDR (`10.0.0.0/24`) shape it;
 * - KRATER_NETWORK_MTU (1500): MTU of new networks;
 * - KRATER_NETWORK_QUOTA_<RESOURCE> (e.g. KRATER_NETWORK_QUOTA_PORT=500; -1 = unlimited): default quotas.
 */
import { type Env, parseIpv4Cidr, unset } from './values.js';

export const QUOTA_RESOURCES = [
  'network',
  'subnet',
  'subnetpool',
  'port',
  'router',
  'floatingip',
  'security_group',
  'security_group_rule',
  'rbac_policy',
] as const;
export type QuotaResource = (typeof QUOTA_RESOURCES)[number];

/** Neutron's `[quotas]` defaults. */
const DEFAULT_QUOTAS: Record<QuotaResource, number> = {
  network: 100,
  subnet: 100,
  subnetpool: -1,
  port: 500,
  router: 10,
  floatingip: 50,
  security_group: 10,
  security_group_rule: 100,
  rbac_policy: 10,
};

export interface NetworkSettings {
  defaultNetwork: { enabled: boolean; name: string; cidr: string };
  mtu: number;
  quotas: Record<QuotaResource, number>;
}

export function networkSettings(env: Env): NetworkSettings {
  const flag = (env.KRATER_NETWORK_DEFAULT ?? '1').trim().toLowerCase();
  const cidr = env.KRATER_NETWORK_DEFAULT_CIDR ?? '10.0.0.0/24';
  const parsed = parseIpv4Cidr(cidr);
  if (!parsed || parsed.hostBits) throw new Error(`KRATER_NETWORK_DEFAULT_CIDR: not an IPv4 network CIDR: ${cidr}`);
  const mtu = Number(env.KRATER_NETWORK_MTU ?? 1500);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new Error(`KRATER_NETWORK_MTU: invalid MTU ${mtu}`);
  const quotas = { ...DEFAULT_QUOTAS };
  for (const r of QUOTA_RESOURCES) {
    const name = `KRATER_NETWORK_QUOTA_${r.toUpperCase()}`;
    const raw = env[name];
    if (unset(raw)) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < -1) throw new Error(`${name}: invalid ${raw}`);
    quotas[r] = n;
  }
  return {
    defaultNetwork: {
      enabled: !['0', 'false', 'no', 'off'].includes(flag),
      name: env.KRATER_NETWORK_DEFAULT_NAME ?? 'default',
      cidr,
    },
    mtu,
    quotas,
  };
}
