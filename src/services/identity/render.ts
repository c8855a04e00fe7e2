import type {
  AppCredRow,
  DomainRow,
  EndpointRow,
  GroupRow,
  ProjectRow,
  RegionRow,
  RoleRow,
  ServiceRow,
  UserRow,
} from '../../core/store/schema.js';
import { type IdentityContext, selfLink } from './context.js';
import { keystoneTime } from './ids.js';

const extra = (json: string) => JSON.parse(json) as Record<string, unknown>;

export function renderDomain(ix: IdentityContext, d: DomainRow) {
  return {
    ...extra(d.extra),
    id: d.id,
    name: d.name,
    description: d.description,
    enabled: !!d.enabled,
    tags: [],
    options: {},
    links: selfLink(ix, `domains/${d.id}`),
  };
}

export function renderProject(ix: IdentityContext, p: ProjectRow) {
  return {
    ...extra(p.extra),
    id: p.id,
    name: p.name,
    domain_id: p.domain_id,
    description: p.description,
    enabled: !!p.enabled,
    parent_id: p.parent_id ?? p.domain_id,
    is_domain: false,
    tags: JSON.parse(p.tags),
    options: JSON.parse(p.options),
    links: selfLink(ix, `projects/${p.id}`),
  };
}

export function renderUser(ix: IdentityContext, u: UserRow) {
  const out: Record<string, unknown> = {
    ...extra(u.extra),
    id: u.id,
    name: u.name,
    domain_id: u.domain_id,
    enabled: !!u.enabled,
    password_expires_at: u.password_expires_at ? keystoneTime(Number(u.password_expires_at)) : null,
    options: JSON.parse(u.options),
    links: selfLink(ix, `users/${u.id}`),
  };
  if (u.default_project_id) out.default_project_id = u.default_project_id;
  if (u.description !== null) out.description = u.description;
  if (u.email !== null) out.email = u.email;
  return out;
}

export function renderGroup(ix: IdentityContext, g: GroupRow) {
  return {
    id: g.id,
    name: g.name,
    domain_id: g.domain_id,
    description: g.description,
    links: selfLink(ix, `groups/${g.id}`),
  };
}

export function renderRole(ix: IdentityContext, r: RoleRow) {
  return {
    id: r.id,
    name: r.name,
    domain_id: r.domain_key || null,
    description: r.description,
    options: JSON.parse(r.options),
    links: selfLink(ix, `roles/${r.id}`),
  };
}

export function renderService(ix: IdentityContext, s: ServiceRow) {
  return {
    id: s.id,
    type: s.type,
    name: s.name,
    description: s.description,
    enabled: !!s.enabled,
    links: selfLink(ix, `services/${s.id}`),
  };
}

export function renderEndpoint(ix: IdentityContext, e: EndpointRow) {
  return {
    id: e.id,
    service_id: e.service_id,
    interface: e.interface,
    region: e.region_id,
    region_id: e.region_id,
    url: e.url,
    enabled: !!e.enabled,
    links: selfLink(ix, `endpoints/${e.id}`),
  };
}

export function renderRegion(ix: IdentityContext, r: RegionRow) {
  return {
    id: r.id,
    description: r.description,
    parent_region_id: r.parent_region_id,
    links: selfLink(ix, `regions/${r.id}`),
  };
}

export function renderAppCred(ix: IdentityContext, a: AppCredRow) {
  return {
    id: a.id,
    name: a.name,
    description: a.description,
    user_id: a.user_id,
    project_id: a.project_id,
    roles: JSON.parse(a.roles),
    expires_at: a.expires_at ? keystoneTime(Number(a.expires_at)) : null,
    unrestricted: !!a.unrestricted,
    access_rules: JSON.parse(a.access_rules),
    system: null,
    links: selfLink(ix, `users/${a.user_id}/application_credentials/${a.id}`),
  };
}
