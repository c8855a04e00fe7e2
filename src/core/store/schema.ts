/**
 * Row types of every table. Booleans are stored as integers (0/1) and JSON as text so that SQLite and PostgreSQL
 * return identical values; timestamps are ISO-8601 UTC strings.
 */
export interface DomainRow {
  id: string;
  name: string;
  description: string;
  enabled: number;
  extra: string;
}
export interface ProjectRow {
  id: string;
  name: string;
  domain_id: string;
  parent_id: string | null;
  description: string;
  enabled: number;
  tags: string;
  options: string;
  extra: string;
}
export interface UserRow {
  id: string;
  name: string;
  domain_id: string;
  password_hash: string | null;
  enabled: number;
  default_project_id: string | null;
  password_expires_at: string | null;
  description: string | null;
  email: string | null;
  options: string;
  extra: string;
  created_at: string;
}
export interface GroupRow {
  id: string;
  name: string;
  domain_id: string;
  description: string;
}
export interface GroupMemberRow {
  group_id: string;
  user_id: string;
}
export interface RoleRow {
  id: string;
  name: string;
  /** '' for global roles, so that (name, domain_key) can be unique in both engines. */
  domain_key: string;
  description: string | null;
  options: string;
}
export interface ImpliedRoleRow {
  prior_role_id: string;
  implied_role_id: string;
}
/** type: UserProject | UserDomain | GroupProject | GroupDomain | UserSystem | GroupSystem. */
export interface AssignmentRow {
  type: string;
  actor_id: string;
  target_id: string;
  role_id: string;
  inherited: number;
}
export interface ServiceRow {
  id: string;
  type: string;
  name: string;
  description: string;
  enabled: number;
}
export interface EndpointRow {
  id: string;
  service_id: string;
  interface: string;
  region_id: string | null;
  url: string;
  enabled: number;
}
export interface RegionRow {
  id: string;
  description: string;
  parent_region_id: string | null;
}
export interface AppCredRow {
  id: string;
  name: string;
  user_id: string;
  project_id: string;
  secret_hash: string;
  description: string | null;
  expires_at: string | null;
  unrestricted: number;
  roles: string;
  access_rules: string;
  created_at: string;
}
export interface RevocationRow {
  id: string;
  audit_id: string | null;
  user_id: string | null;
  project_id: string | null;
  domain_id: string | null;
  app_cred_id: string | null;
  /** Tokens issued at or before this instant (ms since epoch, as text for engine parity) are revoked. */
  issued_before: string;
  /** When the event can be forgotten: the latest expiry of any token it could match. */
  expires_at: string;
}
export interface MetaRow {
  key: string;
  value: string;
}

export interface Database {
  domains: DomainRow;
  projects: ProjectRow;
  users: UserRow;
  groups: GroupRow;
  group_members: GroupMemberRow;
  roles: RoleRow;
  implied_roles: ImpliedRoleRow;
  assignments: AssignmentRow;
  services: ServiceRow;
  endpoints: EndpointRow;
  regions: RegionRow;
  application_credentials: AppCredRow;
  revocations: RevocationRow;
  meta: MetaRow;
}
