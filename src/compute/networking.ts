import { ApiError } from '../core/http/errors.js';
import type { ContainerRow } from '../core/store/schema.js';
import { computeError as zunError } from './errors.js';
import { decodeContainer } from './model.js';

/** Who calls Neutron: the request's project (resolving names) or the service acting for a project (ports). */
export interface NeutronActor {
  projectId: string;
  userId?: string;
  isAdmin: boolean;
}
type Obj = Record<string, any>;
type Filters = Record<string, string | string[]>;

/**
 * The part of Neutron Zun talks to (`zun/network/neutron.py`). Krater's Neutron facade implements it in-process;
 * the views are Neutron's JSON objects and errors are Neutron's (ApiError with Neutron kinds).
 */
export interface NeutronClient {
  listNetworks(actor: NeutronActor, filters: Filters): Promise<Obj[]>;
  listPorts(actor: NeutronActor, filters: Filters): Promise<Obj[]>;
  getPort(actor: NeutronActor, id: string): Promise<Obj>;
  createPort(actor: NeutronActor, body: Obj): Promise<Obj>;
  updatePort(actor: NeutronActor, id: string, body: Obj): Promise<Obj>;
  deletePort(actor: NeutronActor, id: string): Promise<void>;
  listSecurityGroups(actor: NeutronActor, filters: Filters): Promise<Obj[]>;
  createSecurityGroup(actor: NeutronActor, body: Obj): Promise<Obj>;
  deleteSecurityGroup(actor: NeutronActor, id: string): Promise<void>;
  createSecurityGroupRule(actor: NeutronActor, body: Obj): Promise<Obj>;
  ensureDefaultNetwork(projectId: string): Promise<Obj>;
}

/** One requested network of `nets` (zunclient: `--net network=…,port=…,v4-fixed-ip=…,v6-fixed-ip=…`). */
export interface NetRequest {
  network?: string;
  port?: string;
  'v4-fixed-ip'?: string;
  'v6-fixed-ip'?: string;
  fixed_ip?: string;
}

/** One entry of a container's `addresses[<network id>]`, as Zun renders it. */
export interface AddressEntry {
  addr: string;
  version: 4 | 6;
  port: string;
  subnet_id: string;
  preserve_on_delete: boolean;
}
export type Addresses = Record<string, AddressEntry[]>;

export const DEVICE_OWNER = 'compute:zun';
/** The per-container group Zun makes for `exposed_ports`. */
export const exposedGroupName = (uuid: string) => `zun-${uuid}`;

const isNotFound = (err: unknown) => err instanceof ApiError && err.status === 404;

export function parseAddresses(c: Pick<ContainerRow, 'addresses'>): Addresses {
  return c.addresses ? (JSON.parse(c.addresses) as Addresses) : {};
}

/**
 * Zun's network side in the API (`zun/network/neutron.py`, `kuryr_network.py`): resolving `nets` and security
 * groups, making or taking the container's ports, and giving them back. Ports are made here, synchronously, so a
 * bad request fails with Neutron's error and the container's `addresses` are known at once; the agent binds them.
 */
export class ContainerNetworking {
  constructor(private neutron: NeutronClient) {}

  private service(projectId: string): NeutronActor {
    return { projectId, isAdmin: true };
  }

  /** A network by id or name, as the caller sees it (Zun: none → 404, several → 409). */
  async findNetwork(caller: NeutronActor, ref: string): Promise<Obj> {
    let found = await this.neutron.listNetworks(caller, { id: ref });
    if (!found.length) found = await this.neutron.listNetworks(caller, { name: ref });
    if (!found.length) throw zunError(404, 'NetworkNotFound', `Network ${ref} could not be found.`);
    if (found.length > 1)
      throw zunError(409, 'Conflict', `Multiple neutron networks exist with same name. Please use the uuid instead.`);
    return found[0]!;
  }

  /** Zun's default network: the project's oldest non-shared network, else the oldest shared one, else Krater's. */
  async defaultNetwork(caller: NeutronActor): Promise<Obj> {
    const oldest = (nets: Obj[]) =>
      nets
        .filter((n) => !n['router:external'])
        .sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)))[0];
    const own = oldest(await this.neutron.listNetworks(caller, { project_id: caller.projectId, shared: 'False' }));
    if (own) return own;
    const shared = oldest(await this.neutron.listNetworks(caller, { shared: 'True' }));
    if (shared) return shared;
    try {
      return await this.neutron.ensureDefaultNetwork(caller.projectId);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404)
        throw zunError(409, 'Conflict', 'There is no neutron network available');
      throw err;
    }
  }

  /** Names or ids → ids, in the caller's view (unknown → 400, ambiguous → 409). */
  async resolveSecurityGroups(caller: NeutronActor, refs: string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const ref of refs) {
      let found = await this.neutron.listSecurityGroups(caller, { id: ref });
      if (!found.length) found = await this.neutron.listSecurityGroups(caller, { name: ref });
      if (!found.length) throw zunError(400, 'ZunException', `Security group ${ref} not found.`);
      if (found.length > 1)
        throw zunError(409, 'Conflict', `Multiple security groups exist with name ${ref}. Please use the uuid.`);
      if (!ids.includes(found[0]!.id)) ids.push(found[0]!.id);
    }
    return ids;
  }

  /** `exposed_ports` → the per-container group with one ingress rule per port, open to everyone. */
  async exposePorts(projectId: string, uuid: string, exposed: Record<string, unknown>): Promise<string> {
    const actor = this.service(projectId);
    const sg = await this.neutron.createSecurityGroup(actor, {
      name: exposedGroupName(uuid),
      description: `Security group for exposed ports of container ${uuid}`,
      project_id: projectId,
    });
    try {
      for (const key of Object.keys(exposed)) {
        const [port, proto = 'tcp'] = key.split('/');
        for (const ethertype of ['IPv4', 'IPv6'])
          await this.neutron.createSecurityGroupRule(actor, {
            security_group_id: sg.id,
            direction: 'ingress',
            ethertype,
            protocol: proto,
            port_range_min: Number(port),
            port_range_max: Number(port),
            remote_ip_prefix: ethertype === 'IPv4' ? '0.0.0.0/0' : '::/0',
          });
      }
    } catch (err) {
      await this.neutron.deleteSecurityGroup(actor, sg.id).catch(() => undefined);
      throw err;
    }
    return sg.id;
  }

  /**
   * Makes (or takes, for a requested port) one port per requested network and returns the container's
   * `addresses`. On any failure, what was made is given back before the error propagates.
   */
  async allocate(
    caller: NeutronActor,
    c: { uuid: string; project_id: string; host: string | null },
    nets: NetRequest[],
    securityGroupIds: string[] | null,
  ): Promise<Addresses> {
    const addresses: Addresses = {};
    const made: { id: string; preserve: boolean }[] = [];
    try {
      const requests = nets.length ? nets : [{} as NetRequest];
      for (const req of requests) {
        const port = await this.bindPort(caller, c, req, securityGroupIds);
        made.push({ id: port.id, preserve: !!req.port });
        mergeAddresses(addresses, port, !!req.port);
      }
      return addresses;
    } catch (err) {
      for (const m of made) await this.releasePort(c.project_id, m.id, m.preserve).catch(() => undefined);
      throw err;
    }
  }

  /** One port for `req` bound to the container: a requested port is updated, otherwise a new one is made. */
  async bindPort(
    caller: NeutronActor,
    c: { uuid: string; project_id: string; host: string | null },
    req: NetRequest,
    securityGroupIds: string[] | null,
  ): Promise<Obj> {
    const actor = this.service(c.project_id);
    // Zun leaves the binding of a port attached later to kuryr; here the host's agent binds it, so it is set now.
    const binding: Obj = { device_owner: DEVICE_OWNER, ...(c.host ? { 'binding:host_id': c.host } : {}) };
    if (req.port) {
      let port: Obj | undefined;
      try {
        port = await this.neutron.getPort(caller, req.port);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        const byName = await this.neutron.listPorts(caller, { name: req.port });
        if (byName.length > 1) throw zunError(409, 'Conflict', `Multiple ports exist with name ${req.port}.`);
        port = byName[0];
      }
      if (!port) throw zunError(404, 'PortNotFound', `Neutron port ${req.port} could not be found.`);
      if (port.project_id !== c.project_id || port.device_id || port['binding:vif_type'] === 'binding_failed')
        throw zunError(400, 'PortNotUsable', `Port ${port.id} is still in use.`);
      const update: Obj = { device_id: c.uuid, ...binding };
      if (securityGroupIds) update.security_groups = securityGroupIds;
      return this.neutron.updatePort(actor, port.id, update);
    }
    const network = req.network ? await this.findNetwork(caller, req.network) : await this.defaultNetwork(caller);
    if (network['router:external'] && !network.shared && !caller.isAdmin)
      throw zunError(
        403,
        'PolicyNotAuthorized',
        "Policy doesn't allow network:attach_external_network to be performed.",
      );
    const body: Obj = { network_id: network.id, project_id: c.project_id, device_id: c.uuid, ...binding };
    const fixed = [req['v4-fixed-ip'], req['v6-fixed-ip'], req.fixed_ip].filter((ip): ip is string => !!ip);
    if (fixed.length) body.fixed_ips = fixed.map((ip_address) => ({ ip_address }));
    if (securityGroupIds) body.security_groups = securityGroupIds;
    return this.neutron.createPort(actor, body);
  }

  /** Ports Zun made are deleted; a user's port is unbound and kept (`preserve_on_delete`). */
  async releasePort(projectId: string, portId: string, preserve: boolean): Promise<void> {
    const actor = this.service(projectId);
    try {
      if (preserve)
        await this.neutron.updatePort(actor, portId, { device_id: '', device_owner: '', 'binding:host_id': null });
      else await this.neutron.deletePort(actor, portId);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Everything the container holds in Neutron: its ports and its exposed-ports group. */
  async releaseAll(c: Pick<ContainerRow, 'uuid' | 'project_id' | 'addresses'>): Promise<void> {
    const preserved = new Set(
      Object.values(parseAddresses(c))
        .flat()
        .filter((a) => a.preserve_on_delete)
        .map((a) => a.port),
    );
    const actor = this.service(c.project_id);
    for (const port of await this.neutron.listPorts(actor, { device_id: c.uuid }))
      await this.releasePort(c.project_id, port.id, preserved.has(port.id));
    for (const sg of await this.neutron.listSecurityGroups(actor, {
      name: exposedGroupName(c.uuid),
      project_id: c.project_id,
    }))
      await this.neutron.deleteSecurityGroup(actor, sg.id).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
  }

  async setPortSecurityGroups(projectId: string, portId: string, ids: string[]): Promise<void> {
    await this.neutron.updatePort(this.service(projectId), portId, { security_groups: ids });
  }

  /** The container's ports (for network_list and for the agent). */
  ports(c: Pick<ContainerRow, 'uuid' | 'project_id'>): Promise<Obj[]> {
    return this.neutron.listPorts(this.service(c.project_id), { device_id: c.uuid });
  }
}

/** Adds a port's fixed IPs to `addresses[network_id]` in Zun's shape. */
export function mergeAddresses(addresses: Addresses, port: Obj, preserve: boolean): void {
  const list = addresses[port.network_id] ?? [];
  addresses[port.network_id] = list;
  for (const ip of port.fixed_ips as { ip_address: string; subnet_id: string }[])
    list.push({
      addr: ip.ip_address,
      version: ip.ip_address.includes(':') ? 6 : 4,
      port: port.id,
      subnet_id: ip.subnet_id,
      preserve_on_delete: preserve,
    });
}

/**
 * Create-time networking of a new container row (after scheduling, before the row is written): resolves its
 * security groups (names → ids), makes the exposed-ports group, and makes or takes its ports. Fills
 * `addresses` and `security_groups` on the row; returns an undo for when the row cannot be written.
 */
export async function allocateForNewContainer(
  networking: ContainerNetworking,
  caller: NeutronActor,
  row: ContainerRow,
): Promise<() => Promise<void>> {
  const spec = decodeContainer(row);
  const requestedGroups = spec.securityGroups;
  const exposed = spec.exposedPorts;
  let groups = requestedGroups ? await networking.resolveSecurityGroups(caller, requestedGroups) : null;
  if (exposed && Object.keys(exposed).length)
    groups = [...(groups ?? []), await networking.exposePorts(row.project_id, row.uuid, exposed)];
  const undo = () => networking.releaseAll(row);
  try {
    const addresses = await networking.allocate(caller, row, spec.nets, groups);
    row.addresses = JSON.stringify(addresses);
    if (groups) row.security_groups = JSON.stringify(groups);
  } catch (err) {
    await undo().catch(() => undefined);
    throw err;
  }
  return undo;
}
