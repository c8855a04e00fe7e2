import type { FastifyRequest } from 'fastify';
import { atLeast } from '../../../core/http/microversion.js';
import type { App } from '../../../core/http/server.js';
import type { ZunNetworkRow } from '../../../core/store/schema.js';
import { authorize, type ZunContext } from '../context.js';
import { schemaError, zunError } from '../params.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `views/network_view.py`: the record's basic keys. */
const networkView = (n: ZunNetworkRow) => ({
  uuid: n.uuid,
  name: n.name,
  project_id: n.project_id,
  user_id: n.user_id,
  network_id: n.network_id,
  neutron_net_id: n.neutron_net_id,
});

/**
 * Zun's `/v1/networks` (admin): `POST {name, neutron_net_id}` registers a Neutron network for containers (what
 * Kuryr-style clients call before use), `DELETE /v1/networks/{neutron_net_id}` (≥1.27) removes the registration.
 */
export function zunNetworkRoutes(app: App, zx: ZunContext): void {
  const { zunNetworks } = zx;

  app.post('/networks', async (req: FastifyRequest) => {
    const ct = String(req.headers['content-type'] ?? '').toLowerCase();
    if (!ct.includes('application/json')) throw zunError(415, 'UnsupportedMediaType', 'Unsupported Content-Type');
    authorize(zx, req, 'network:create', { project_id: req.auth.projectId });
    const body = req.body;
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw schemaError('The request body must be an object.');
    const b = body as Record<string, unknown>;
    const unknown = Object.keys(b).filter((k) => k !== 'name' && k !== 'neutron_net_id');
    if (unknown.length)
      throw schemaError(
        `Additional properties are not allowed (${unknown.map((k) => `'${k}'`).join(', ')} were unexpected)`,
      );
    if (b.name === undefined) throw schemaError("'name' is a required property");
    if (b.name !== null && (typeof b.name !== 'string' || b.name.length > 255))
      throw schemaError(`Invalid input for field/attribute name. Value: ${String(b.name)}.`);
    if (typeof b.neutron_net_id !== 'string' || !UUID.test(b.neutron_net_id))
      throw schemaError(`Invalid input for field/attribute neutron_net_id. Value: ${String(b.neutron_net_id)}.`);
    const neutronNetId = b.neutron_net_id.toLowerCase();
    if (!zx.networking) throw zunError(400, 'Invalid', 'Networking is disabled on this cloud.');
    // The caller is an admin: any project's network may be registered, but it must exist.
    await zx.networking.findNetwork(
      { projectId: req.auth.projectId ?? '', userId: req.auth.userId, isAdmin: true },
      neutronNetId,
    );
    const row = await zunNetworks.ensure(neutronNetId, b.name as string | null, {
      projectId: req.auth.projectId ?? '',
      userId: req.auth.userId,
    });
    return networkView(row);
  });

  app.delete('/networks/:id', async (req, reply) => {
    if (!atLeast(req.zunVersion, 1, 27)) throw zunError(404, 'NotFound', 'The resource could not be found.');
    authorize(zx, req, 'network:delete', { project_id: req.auth.projectId });
    const { id } = req.params as { id: string };
    await zunNetworks.remove(id.toLowerCase());
    reply.code(204);
    return null;
  });
}
