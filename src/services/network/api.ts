/**
 * The in-process Neutron API the Zun facade (and the agent) use, as Zun calls Neutron: same handlers, same checks,
 * same errors (ApiError with Neutron kinds) as the HTTP routes, and the same JSON views.
 */
import type { NeutronActor } from './context.js';
import type { Query, View } from './list-query.js';
import type { ResourceHandler } from './resources/shared.js';
import { listCollection } from './routes/resources.js';
import type { Neutron } from './service.js';

export type Filters = Record<string, string | string[]>;

export interface NeutronApi {
  listNetworks(actor: NeutronActor, filters: Filters): Promise<View[]>;
  getNetwork(actor: NeutronActor, id: string): Promise<View>;
  listSubnets(actor: NeutronActor, filters: Filters): Promise<View[]>;
  listPorts(actor: NeutronActor, filters: Filters): Promise<View[]>;
  getPort(actor: NeutronActor, id: string): Promise<View>;
  /** body = what `POST /v2.0/ports {"port": body}` carries. */
  createPort(actor: NeutronActor, body: Record<string, unknown>): Promise<View>;
  updatePort(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View>;
  deletePort(actor: NeutronActor, id: string): Promise<void>;
  listSecurityGroups(actor: NeutronActor, filters: Filters): Promise<View[]>;
  getSecurityGroup(actor: NeutronActor, id: string): Promise<View>;
  createSecurityGroup(actor: NeutronActor, body: Record<string, unknown>): Promise<View>;
  deleteSecurityGroup(actor: NeutronActor, id: string): Promise<void>;
  createSecurityGroupRule(actor: NeutronActor, body: Record<string, unknown>): Promise<View>;
  listFloatingIps(actor: NeutronActor, filters: Filters): Promise<View[]>;
  updateFloatingIp(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View>;
  /**
   * Krater's default network for a project (so `openstack appcontainer run` works on a fresh project): created
   * once, race-safe, named `default` (KRATER_NETWORK_DEFAULT_NAME) with an IPv4 subnet (KRATER_NETWORK_DEFAULT_CIDR,
   * 10.0.0.0/24); KRATER_NETWORK_DEFAULT=0 disables it (404 NetworkNotFound). Recreated if it was deleted.
   */
  ensureDefaultNetwork(projectId: string): Promise<View>;
  /** The project's `default` security group id (created on first use). */
  ensureDefaultSecurityGroup(projectId: string): Promise<string | undefined>;
  /** The agent reports a port plugged (`ACTIVE`) or unplugged (`DOWN`); bumps the port's revision when changed. */
  setPortStatus(portId: string, status: 'ACTIVE' | 'DOWN' | 'BUILD' | 'ERROR'): Promise<void>;
}

export function createNeutronApi(n: Neutron, base: string): NeutronApi {
  const list = async (h: ResourceHandler, actor: NeutronActor, filters: Filters) =>
    (await listCollection(h, actor, filters as Query, `${base}/v2.0/${h.path}`, ''))[h.plural] as View[];
  return {
    listNetworks: (actor, filters) => list(n.networks, actor, filters),
    getNetwork: (actor, id) => n.networks.show(actor, id),
    listSubnets: (actor, filters) => list(n.subnets, actor, filters),
    listPorts: (actor, filters) => list(n.ports, actor, filters),
    getPort: (actor, id) => n.ports.show(actor, id),
    createPort: (actor, body) => n.ports.create(actor, body),
    updatePort: (actor, id, body) => n.ports.update!(actor, id, body),
    deletePort: (actor, id) => n.ports.remove(actor, id),
    listSecurityGroups: (actor, filters) => list(n.securityGroups, actor, filters),
    getSecurityGroup: (actor, id) => n.securityGroups.show(actor, id),
    createSecurityGroup: (actor, body) => n.securityGroups.create(actor, body),
    deleteSecurityGroup: (actor, id) => n.securityGroups.remove(actor, id),
    createSecurityGroupRule: (actor, body) => n.securityGroupRules.create(actor, body),
    listFloatingIps: (actor, filters) => list(n.floatingips, actor, filters),
    updateFloatingIp: (actor, id, body) => n.floatingips.update!(actor, id, body),
    ensureDefaultNetwork: (projectId) => n.networks.ensureDefault(projectId),
    ensureDefaultSecurityGroup: (projectId) => n.ensureDefaultSecurityGroup(projectId),
    setPortStatus: (portId, status) => n.ports.setStatus(portId, status),
  };
}
