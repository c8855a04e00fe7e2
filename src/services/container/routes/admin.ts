import { QUOTA_DEFAULTS, QUOTA_RESOURCES } from '../../../compute/repo.js';
import { type HostUse, NO_USE } from '../../../compute/scheduler.js';
import { atLeast } from '../../../core/http/microversion.js';
import type { App } from '../../../core/http/server.js';
import { authorize, type ZunContext } from '../context.js';
import { invalid, parseBool, parseNumber, zunError } from '../params.js';
import { zunActionTime } from '../view.js';

/** A compute service is up while its heartbeat is younger than this and it is not forced down. */

export const SERVICE_DOWN_AFTER_MS = 180_000;

export function adminRoutes(app: App, zx: ZunContext): void {
  const { hosts: hostRepo } = zx;

  // ---- hosts (≥1.4)
  /** The host as Zun shows it: what the agent reported, with the containers' claims as `*_used` (as Zun's tracker). */
  const hostView = (h: { uuid: string; hostname: string; info: string }, use: HostUse = NO_USE) => ({
    uuid: h.uuid,
    links: [
      { href: `${zx.base}/v1/hosts/${h.uuid}`, rel: 'self' },
      { href: `${zx.base}/hosts/${h.uuid}`, rel: 'bookmark' },
    ],
    hostname: h.hostname,
    ...JSON.parse(h.info),
    cpu_used: Math.round(use.cpu * 1000) / 1000,
    mem_used: use.memory,
    disk_used: use.disk,
    total_containers: use.containers,
  });
  const needHosts = (v: { major: number; minor: number }) => {
    if (!atLeast(v, 1, 4))
      throw zunError(
        406,
        'NotAcceptable',
        `Version ${v.major}.${v.minor} was requested but the requested API is not supported for this version.`,
      );
  };
  app.get('/hosts', async (req) => {
    needHosts(req.zunVersion);
    authorize(zx, req, 'host:get_all', {});
    const [hosts, n] = await Promise.all([hostRepo.listHosts(), hostRepo.usage()]);
    return { hosts: hosts.map((h) => hostView(h, n.get(h.hostname))), next: null };
  });
  app.get('/hosts/:id', async (req) => {
    needHosts(req.zunVersion);
    authorize(zx, req, 'host:get', {});
    const { id } = req.params as { id: string };
    const h = await hostRepo.findHost(id);
    if (!h) throw zunError(404, 'ComputeNodeNotFound', `Compute node ${id} could not be found.`);
    return hostView(h, (await hostRepo.usage([h.hostname])).get(h.hostname));
  });

  // ---- services
  const serviceView = (s: {
    id: number;
    binary: string;
    host: string;
    availability_zone: string;
    disabled: number;
    disabled_reason: string | null;
    forced_down: number;
    report_count: number;
    last_seen_up: string | null;
    created_at: string;
    updated_at: string | null;
  }) => {
    const fresh = s.last_seen_up ? Date.now() - Date.parse(s.last_seen_up) < SERVICE_DOWN_AFTER_MS : false;
    return {
      id: s.id,
      binary: s.binary,
      host: s.host,
      availability_zone: s.availability_zone,
      state: fresh && !s.forced_down ? 'up' : 'down',
      disabled: !!s.disabled,
      disabled_reason: s.disabled_reason,
      forced_down: !!s.forced_down,
      report_count: s.report_count,
      last_seen_up: zunActionTime(s.last_seen_up),
      created_at: zunActionTime(s.created_at),
      updated_at: zunActionTime(s.updated_at),
    };
  };
  app.get('/services', async (req) => {
    authorize(zx, req, 'zun-service:get_all', {});
    return { services: (await hostRepo.listServices()).map(serviceView) };
  });
  const findService = async (q: Record<string, string>) => {
    if (!q.host || !q.binary) throw invalid('host and binary are required.');
    const s = await hostRepo.findService(q.host, q.binary);
    if (!s) throw zunError(404, 'ZunServiceNotFound', `Zun service ${q.binary} on host ${q.host} could not be found.`);
    return s;
  };
  app.delete('/services', async (req) => {
    authorize(zx, req, 'zun-service:delete', {});
    const s = await findService(req.query as Record<string, string>);
    await hostRepo.deleteService(s.id);
    return null;
  });
  app.put('/services/:action', async (req) => {
    const { action } = req.params as { action: string };
    if (!['enable', 'disable', 'force_down'].includes(action))
      throw zunError(404, 'NotFound', `Unknown action ${action}.`);
    authorize(zx, req, `zun-service:${action}`, {});
    const q = { ...(req.query as Record<string, string>), ...((req.body as Record<string, string>) ?? {}) };
    const s = await findService(q);
    if (action === 'force_down') {
      const forced = parseBool('forced_down', q.forced_down, true);
      await hostRepo.updateService(s.id, { forced_down: forced ? 1 : 0 });
      return { service: { host: s.host, binary: s.binary, forced_down: forced } };
    }
    const disabled = action === 'disable';
    const reason = disabled ? (q.disabled_reason ?? null) : null;
    await hostRepo.updateService(s.id, { disabled: disabled ? 1 : 0, disabled_reason: reason });
    return { service: { host: s.host, binary: s.binary, disabled, disabled_reason: reason } };
  });

  // ---- availability zones
  app.get('/availability_zones', async (req) => {
    authorize(zx, req, 'availability_zones:get_all', { project_id: req.auth.projectId });
    const zones = await hostRepo.availabilityZones();
    return { availability_zones: zones.map((availability_zone) => ({ availability_zone })), next: null };
  });

  // ---- quotas and quota classes
  const parseLimits = (body: unknown) => {
    const b = (body ?? {}) as Record<string, unknown>;
    const unknown = Object.keys(b).filter((k) => !QUOTA_RESOURCES.includes(k));
    if (unknown.length) throw invalid(`Unknown quota resources: ${unknown.join(', ')}`);
    return Object.entries(b).map(([resource, v]) => ({
      resource,
      limit: parseNumber(resource, v, -1, Number.MAX_SAFE_INTEGER, true),
    }));
  };
  const classLimits = async (name: string) => ({ ...QUOTA_DEFAULTS, ...(await zx.repo.quotaScope(`class:${name}`)) });
  app.put('/quotas/:project', async (req) => {
    const { project } = req.params as { project: string };
    authorize(zx, req, 'quota:update', { project_id: project });
    await zx.repo.setQuotas(`project:${project}`, parseLimits(req.body));
    return zx.repo.quotaLimits(project);
  });
  app.get('/quotas/:project', async (req) => {
    const { project } = req.params as { project: string };
    authorize(zx, req, 'quota:get', { project_id: project });
    const limits = await zx.repo.quotaLimits(project);
    const usages = (req.query as Record<string, string>).usages;
    if (usages === undefined || usages === '') return limits;
    const used = await zx.repo.quotaUsage(project);
    return Object.fromEntries(QUOTA_RESOURCES.map((r) => [r, { limit: limits[r], in_use: used[r] }]));
  });
  app.get('/quotas/:project/defaults', async (req) => {
    const { project } = req.params as { project: string };
    authorize(zx, req, 'quota:get_default', { project_id: project });
    return classLimits('default');
  });
  app.delete('/quotas/:project', async (req) => {
    const { project } = req.params as { project: string };
    authorize(zx, req, 'quota:delete', { project_id: project });
    await zx.repo.deleteQuotas(`project:${project}`);
    return null;
  });
  app.put('/quota_classes/:name', async (req) => {
    const { name } = req.params as { name: string };
    authorize(zx, req, 'quota_class:update', {});
    await zx.repo.setQuotas(`class:${name}`, parseLimits(req.body));
    return classLimits(name);
  });
  app.get('/quota_classes/:name', async (req) => {
    const { name } = req.params as { name: string };
    authorize(zx, req, 'quota_class:get', {});
    return classLimits(name);
  });
}
