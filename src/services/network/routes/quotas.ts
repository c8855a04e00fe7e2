/**
 * Neutron's quotas API (`quotas`, `quota_details`): per-project limits stored in `net_quotas` (absent = the
 * default), usage counted from the resource tables. Only admins change quotas or read another project's.
 */
import { Type } from '@sinclair/typebox';
import { QUOTA_RESOURCES, type QuotaResource } from '../../../core/config/network.js';
import type { App } from '../../../core/http/server.js';
import { int } from '../attributes.js';
import { actorFromAuth, type NetContext, type NeutronActor, target } from '../context.js';
import { badRequest, nerr } from '../errors.js';
import { quotaLimit, quotaUsage } from '../resources/shared.js';

const ProjectParams = Type.Object({ project: Type.String({ maxLength: 255 }) });
const AnyBody = Type.Unknown();

async function limits(nx: NetContext, projectId: string) {
  const out: Record<string, number> = {};
  for (const r of QUOTA_RESOURCES) out[r] = await quotaLimit(nx.db, nx, projectId, r);
  return out;
}

function mayRead(nx: NetContext, actor: NeutronActor, projectId: string) {
  if (!nx.allowed(actor, 'get_quota', target(projectId)))
    throw nerr(403, 'HTTPForbidden', 'Non-admin is not authorized to access quotas for another project');
}

export function quotaRoutes(app: App, nx: NetContext): void {
  app.get('/v2.0/quotas', async (req) => {
    const actor = actorFromAuth(req.auth);
    if (!nx.allowed(actor, 'update_quota', target(actor.projectId)))
      throw nerr(403, 'HTTPForbidden', 'Only admin can view or configure quota');
    const projects = await nx.db
      .selectFrom('net_quotas')
      .select('project_id')
      .distinct()
      .orderBy('project_id')
      .execute();
    const quotas = [];
    for (const { project_id } of projects)
      quotas.push({ ...(await limits(nx, project_id)), project_id, tenant_id: project_id });
    return { quotas };
  });
  // The caller's own project (python-neutronclient's `quota-show` without a project).
  app.get('/v2.0/quotas/tenant', async (req) => ({ tenant: { tenant_id: req.auth.projectId ?? '' } }));
  app.get('/v2.0/quotas/project', async (req) => ({ project: { project_id: req.auth.projectId ?? '' } }));

  app.get('/v2.0/quotas/:project', { schema: { params: ProjectParams } }, async (req) => {
    const { project } = req.params as { project: string };
    mayRead(nx, actorFromAuth(req.auth), project);
    return { quota: await limits(nx, project) };
  });
  app.get('/v2.0/quotas/:project/default', { schema: { params: ProjectParams } }, async (req) => {
    const { project } = req.params as { project: string };
    mayRead(nx, actorFromAuth(req.auth), project);
    return { quota: { ...nx.settings.quotas } };
  });
  app.get('/v2.0/quotas/:project/details', { schema: { params: ProjectParams } }, async (req) => {
    const { project } = req.params as { project: string };
    mayRead(nx, actorFromAuth(req.auth), project);
    const out: Record<string, { limit: number; used: number; reserved: number }> = {};
    for (const r of QUOTA_RESOURCES)
      out[r] = {
        limit: await quotaLimit(nx.db, nx, project, r),
        used: await quotaUsage(nx.db, project, r),
        reserved: 0,
      };
    return { quota: out };
  });
  app.put('/v2.0/quotas/:project', { schema: { params: ProjectParams, body: AnyBody } }, async (req) => {
    const { project } = req.params as { project: string };
    const actor = actorFromAuth(req.auth);
    nx.enforce(actor, 'update_quota', target(project));
    const body = req.body as { quota?: Record<string, unknown> } | undefined;
    if (!body || typeof body.quota !== 'object' || body.quota === null)
      throw badRequest("Unable to find 'quota' in request body");
    const set: [QuotaResource, number][] = [];
    const unknown: string[] = [];
    for (const [k, v] of Object.entries(body.quota)) {
      if (k === 'force' || k === 'check_limit') continue;
      if (!(QUOTA_RESOURCES as readonly string[]).includes(k)) {
        unknown.push(k);
        continue;
      }
      set.push([k as QuotaResource, int(-1, 2 ** 31 - 1)(v, k) as number]);
    }
    if (unknown.length) throw badRequest(`Unrecognized attribute(s) '${unknown.join(', ')}'`);
    if (body.quota.check_limit === true || body.quota.check_limit === 'true')
      for (const [r, limit] of set) {
        const used = await quotaUsage(nx.db, project, r);
        if (limit >= 0 && limit < used)
          throw badRequest(`Quota limit ${limit} for ${r} must be greater than or equal to already used ${used}`);
      }
    await nx.write(
      async (trx) => {
        for (const [resource, hard_limit] of set)
          await trx
            .insertInto('net_quotas')
            .values({ project_id: project, resource, hard_limit })
            .onConflict((oc) => oc.columns(['project_id', 'resource']).doUpdateSet({ hard_limit }))
            .execute();
      },
      { notify: false },
    );
    return { quota: await limits(nx, project) };
  });
  app.delete('/v2.0/quotas/:project', { schema: { params: ProjectParams } }, async (req, reply) => {
    const { project } = req.params as { project: string };
    nx.enforce(actorFromAuth(req.auth), 'delete_quota', target(project));
    await nx.write((trx) => trx.deleteFrom('net_quotas').where('project_id', '=', project).execute(), {
      notify: false,
    });
    reply.code(204);
    return reply.send();
  });
}
