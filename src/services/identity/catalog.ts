import type { IdentityRepo } from './repo.js';

/** The token catalog: enabled services with their enabled endpoints, in Keystone's shape. Cached until a write. */
export async function buildCatalog(repo: IdentityRepo): Promise<unknown[]> {
  if (repo.catalogCache) return repo.catalogCache;
  const [services, endpoints] = await Promise.all([repo.services(), repo.endpoints()]);
  const catalog = services
    .filter((s) => s.enabled)
    .map((s) => ({
      endpoints: endpoints
        .filter((e) => e.service_id === s.id && e.enabled)
        .map((e) => ({ id: e.id, interface: e.interface, region: e.region_id, region_id: e.region_id, url: e.url })),
      id: s.id,
      type: s.type,
      name: s.name,
    }));
  repo.catalogCache = catalog;
  return catalog;
}

/** The URL of the catalog's `iface` endpoint of service `type` (how an agent finds the image API), if any. */
export async function catalogEndpoint(
  repo: IdentityRepo,
  type: string,
  iface: 'public' | 'internal' | 'admin',
): Promise<string | undefined> {
  await repo.sync();
  const catalog = (await buildCatalog(repo)) as Array<{
    type: string;
    endpoints: Array<{ interface: string; url: string }>;
  }>;
  return catalog.find((s) => s.type === type)?.endpoints.find((e) => e.interface === iface)?.url;
}
