import type { FastifyRequest } from 'fastify';
import { decodeContainer } from '../../../compute/model.js';
import {
  type ContainerNetworking,
  mergeAddresses,
  type NeutronActor,
  parseAddresses,
} from '../../../compute/networking.js';
import { atLeast } from '../../../core/http/microversion.js';
import type { App } from '../../../core/http/server.js';
import type { ContainerRow } from '../../../core/store/schema.js';
import { checkState, loadContainer, type ZunContext } from '../context.js';
import { expectString, mergedParams, zunError } from '../params.js';

type Req = FastifyRequest;
const params = (req: Req) => mergedParams(req.query, req.body);
const str = (v: unknown) => (v === undefined || v === null || v === '' || v === 'None' ? undefined : String(v));

/**
 * A container's networks: `network_attach` (≥1.8), `network_detach` (≥1.6, by port ≥1.17), `network_list` (≥1.13)
 * and `add/remove_security_group` (≤1.14). Ports are made or given back here; the agent plugs or unplugs them in
 * the container's namespace (tasks `network_attach` / `network_detach` / `security_groups`).
 */
export function networkRoutes(app: App, zx: ZunContext): void {
  const { repo } = zx;
  const networking = (): ContainerNetworking => {
    if (!zx.networking) throw zunError(400, 'Invalid', 'Networking is disabled on this cloud.');
    return zx.networking;
  };
  const caller = (req: Req): NeutronActor => ({
    projectId: req.auth.projectId ?? '',
    userId: req.auth.userId,
    isAdmin: req.auth.isAdmin,
  });
  const minVersion = (req: Req, minor: number) => {
    if (!atLeast(req.zunVersion, 1, minor)) throw zunError(404, 'NotFound', 'The resource could not be found.');
  };
  /** Records the action and queues the agent's part of it (the port work is already done). */
  const dispatch = async (req: Req, c: ContainerRow, action: string, task: string, taskParams = {}) => {
    const actionId = await repo.startAction(c, action, req.id, req.auth.userId, req.auth.projectId ?? c.project_id);
    if (!c.host) {
      await repo.finishAction(actionId, `compute__do_container_${action}`);
      return;
    }
    await repo.enqueue(c.host, c.uuid, task, taskParams, actionId);
    zx.agents.wake(c.host);
  };

  app.post('/containers/:id/network_attach', async (req, reply) => {
    minVersion(req, 8);
    const c = await loadContainer(zx, req, 'network_attach');
    const p = params(req);
    const network = str(p.network);
    const port = str(p.port);
    const fixedIp = str(p.fixed_ip);
    if (network && port) throw zunError(400, 'InvalidValue', 'Specify either network or port, not both.');
    if (!network && !port) throw zunError(400, 'InvalidValue', 'Either network or port must be given.');
    const n = networking();
    const addresses = parseAddresses(c);
    if (network) {
      const net = await n.findNetwork(caller(req), network);
      if (addresses[net.id])
        throw zunError(400, 'InvalidValue', `Container ${c.uuid} is already connected to network ${network}.`);
    }
    const groups = decodeContainer(c).securityGroups;
    const bound = await n.bindPort(
      caller(req),
      c,
      { network, port, ...(fixedIp ? { fixed_ip: fixedIp } : {}) },
      groups?.length ? groups : null,
    );
    if (addresses[bound.network_id] && port) {
      await n.releasePort(c.project_id, bound.id, true);
      throw zunError(400, 'InvalidValue', `Container ${c.uuid} is already connected to network ${bound.network_id}.`);
    }
    mergeAddresses(addresses, bound, !!port);
    await repo.update(c.uuid, { addresses: JSON.stringify(addresses) });
    await dispatch(req, c, 'network_attach', 'network_attach', { port: bound.id });
    reply.code(200);
    return null;
  });

  app.post('/containers/:id/network_detach', async (req, reply) => {
    minVersion(req, 6);
    const c = await loadContainer(zx, req, 'network_detach');
    const p = params(req);
    const network = str(p.network);
    const port = atLeast(req.zunVersion, 1, 17) ? str(p.port) : undefined;
    if (!network && !port) throw zunError(400, 'InvalidValue', 'Either network or port must be given.');
    const n = networking();
    const addresses = parseAddresses(c);
    let netId: string | undefined;
    if (port) netId = Object.keys(addresses).find((k) => addresses[k]!.some((a) => a.port === port));
    else {
      const net = await n.findNetwork(caller(req), network!);
      netId = addresses[net.id] ? net.id : undefined;
    }
    if (!netId)
      throw zunError(
        400,
        'InvalidValue',
        `Container ${c.uuid} is not connected to ${port ? 'port' : 'network'} ${port ?? network}.`,
      );
    const entries = addresses[netId]!;
    delete addresses[netId];
    await repo.update(c.uuid, { addresses: JSON.stringify(addresses) });
    const ports = [...new Set(entries.map((e) => e.port))].map((id) => ({
      id,
      preserve: entries.some((e) => e.port === id && e.preserve_on_delete),
    }));
    await dispatch(req, c, 'network_detach', 'network_detach', { ports });
    reply.code(202);
    return null;
  });

  app.get('/containers/:id/network_list', async (req) => {
    minVersion(req, 13);
    const c = await loadContainer(zx, req, 'network_list');
    const addresses = parseAddresses(c);
    if (atLeast(req.zunVersion, 1, 18))
      return {
        networks: Object.entries(addresses).flatMap(([netId, entries]) =>
          [...new Set(entries.map((e) => e.port))].map((portId) => ({
            net_id: netId,
            port_id: portId,
            fixed_ips: entries
              .filter((e) => e.port === portId)
              .map((e) => ({ subnet_id: e.subnet_id, version: e.version, ip_address: e.addr })),
          })),
        ),
      };
    return {
      networks: Object.entries(addresses).flatMap(([netId, entries]) =>
        entries.map((e) => ({
          net_id: netId,
          subnet_id: e.subnet_id,
          port_id: e.port,
          version: e.version,
          ip_address: e.addr,
        })),
      ),
    };
  });

  for (const [path, action] of [
    ['add_security_group', 'add_security_group'],
    ['remove_security_group', 'remove_security_group'],
  ] as const) {
    app.post(`/containers/:id/${path}`, async (req, reply) => {
      if (atLeast(req.zunVersion, 1, 15)) throw zunError(404, 'NotFound', 'The resource could not be found.');
      const c = await loadContainer(zx, req, action);
      checkState(c, action);
      const name = expectString('name', params(req).name, { min: 1, max: 255 });
      const n = networking();
      const [id] = await n.resolveSecurityGroups(caller(req), [name]);
      // Zun adds to (or removes from) the groups each port has — a container without explicit groups keeps
      // the project's default one next to the added group.
      const ports = await n.ports(c);
      const held = new Set(ports.flatMap((p) => p.security_groups as string[]));
      if (action === 'add_security_group' && held.has(id!))
        throw zunError(400, 'InvalidValue', `Security group ${name} has been added to container.`);
      if (action === 'remove_security_group' && !held.has(id!))
        throw zunError(400, 'InvalidValue', `Security group ${name} was not added to container.`);
      for (const port of ports) {
        const groups = (port.security_groups as string[]).filter((g) => g !== id);
        if (action === 'add_security_group') groups.push(id!);
        await n.setPortSecurityGroups(c.project_id, port.id, groups);
      }
      const current = decodeContainer(c).securityGroups ?? [];
      const next = action === 'add_security_group' ? [...new Set([...current, id!])] : current.filter((g) => g !== id);
      await repo.update(c.uuid, { security_groups: JSON.stringify(next) });
      await dispatch(req, c, action, 'security_groups');
      reply.code(202);
      return null;
    });
  }
}
