import type { Generated } from 'kysely';

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
/** Consecutive failed password checks of a user (lockout); `last_failed_at` is ms since epoch as text. */
export interface AuthFailureRow {
  user_id: string;
  count: number;
  last_failed_at: string;
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

export interface ContainerRow {
  uuid: string;
  name: string;
  project_id: string;
  user_id: string;
  image: string;
  image_driver: string;
  image_pull_policy: string | null;
  command: string | null;
  entrypoint: string | null;
  cpu: number;
  memory: string;
  disk: number | null;
  workdir: string | null;
  hostname: string | null;
  environment: string;
  labels: string;
  hints: string | null;
  restart_policy: string | null;
  interactive: number;
  tty: number;
  auto_remove: number;
  auto_heal: number;
  privileged: number;
  runtime: string | null;
  cpu_policy: string;
  /** Host CPUs of a dedicated container (`0,1`), set by the agent. */
  cpuset: string | null;
  registry_id: string | null;
  healthcheck: string | null;
  exposed_ports: string | null;
  security_groups: string | null;
  nets: string | null;
  mounts: string | null;
  addresses: string | null;
  ports: string | null;
  /** Published host ports (JSON list of {host_ip, host_port, container_port, protocol}); null for none. */
  published_ports: string | null;
  /** Owner reference (migration 0013): the object this container belongs to, by kind and id; deleted with it. */
  owner_kind?: string | null;
  owner_id?: string | null;
  availability_zone: string | null;
  host: string | null;
  status: string;
  status_reason: string | null;
  task_state: string | null;
  health: string | null;
  exit_code: number | null;
  restart_count: number;
  desired: string;
  started_at: string | null;
  finished_at: string | null;
  websocket_token: string | null;
  created_at: string;
  updated_at: string | null;
}
export interface ContainerActionRow {
  id: Generated<number>;
  action: string;
  container_uuid: string;
  request_id: string;
  user_id: string | null;
  project_id: string | null;
  start_time: string;
  finish_time: string | null;
  message: string | null;
}
export interface ContainerActionEventRow {
  id: Generated<number>;
  action_id: number;
  event: string;
  start_time: string;
  finish_time: string | null;
  result: string | null;
  traceback: string | null;
}
/** Work the API hands to a host's agent; its subject is a container or a host image (`kind`, migration 0011). */
export interface AgentTaskRow {
  id: Generated<number>;
  host: string;
  /** `container` (subject: `container_uuid`) or `image` (subject: `image_uuid`, a `zun_images` row). */
  kind: Generated<string>;
  container_uuid: string | null;
  image_uuid: string | null;
  action: string;
  params: string;
  action_id: number | null;
  state: string;
  created_at: string;
}
/** One published port's claim on its host's address:port:protocol (unique per host, see migration 0008). */
export interface ContainerPublishedPortRow {
  container_uuid: string;
  project_id: string;
  host: string;
  host_ip: string;
  host_port: number;
  protocol: string;
  container_port: number;
}
export interface QuotaRow {
  /** `project:<id>` or `class:<name>`. */
  scope: string;
  resource: string;
  hard_limit: number;
}
export interface ComputeServiceRow {
  id: Generated<number>;
  host: string;
  binary: string;
  availability_zone: string;
  disabled: number;
  disabled_reason: string | null;
  forced_down: number;
  report_count: number;
  last_seen_up: string | null;
  created_at: string;
  updated_at: string | null;
}
export interface ComputeHostRow {
  uuid: string;
  hostname: string;
  info: string;
  created_at: string;
  updated_at: string | null;
  /** A separate agent's RPC endpoint and bearer secret (`krater agent`); null for the in-process one. */
  rpc_url: string | null;
  rpc_secret: string | null;
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
  auth_failures: AuthFailureRow;
  meta: MetaRow;
  containers: ContainerRow;
  container_actions: ContainerActionRow;
  container_action_events: ContainerActionEventRow;
  agent_tasks: AgentTaskRow;
  container_published_ports: ContainerPublishedPortRow;
  quotas: QuotaRow;
  compute_services: ComputeServiceRow;
  compute_hosts: ComputeHostRow;
}

// ---- Glance (images); merged into Database by declaration merging so each service appends its own block.
/** `size`/`virtual_size` are bigint columns: PostgreSQL returns them as strings, so readers coerce with Number(). */
export interface ImageRow {
  id: string;
  name: string | null;
  /** queued | saving | active | deactivated | killed */
  status: string;
  /** public | private | shared | community */
  visibility: string;
  protected: number;
  os_hidden: number;
  /** Owning project id. */
  owner: string | null;
  container_format: string | null;
  disk_format: string | null;
  size: number | string | null;
  virtual_size: number | string | null;
  /** MD5 hex of the data. */
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  min_disk: number;
  min_ram: number;
  /** Where the ImageDataStore keeps the data (store-specific key); null until an upload completes. */
  location: string | null;
  created_at: string;
  updated_at: string;
}
/** Custom (non-base) image properties: top-level string keys on the wire. */
export interface ImagePropertyRow {
  image_id: string;
  name: string;
  value: string;
}
export interface ImageTagRow {
  image_id: string;
  value: string;
}
/** Projects a `shared` image is shared with; status pending | accepted | rejected. */
export interface ImageMemberRow {
  image_id: string;
  member_id: string;
  status: string;
  created_at: string;
  updated_at: string;
}
export interface Database {
  images: ImageRow;
  image_properties: ImagePropertyRow;
  image_tags: ImageTagRow;
  image_members: ImageMemberRow;
}

// ---- Zun's images and registries (migration 0004).
/** An image pulled onto a host through `/v1/images`. `size` is bigint: PostgreSQL returns a string. */
export interface ZunImageRow {
  uuid: string;
  image_id: string | null;
  repo: string;
  tag: string;
  size: number | string | null;
  project_id: string | null;
  user_id: string | null;
  host: string;
  image_pull_policy: string | null;
  /** pulling | ready | error | deleting */
  status: string;
  status_reason: string | null;
  created_at: string;
  updated_at: string | null;
}
/** Per-project registry credentials; `password` is encrypted (src/images/credentials.ts). */
export interface RegistryRow {
  uuid: string;
  name: string | null;
  domain: string;
  username: string | null;
  password: string | null;
  project_id: string;
  user_id: string;
  created_at: string;
  updated_at: string | null;
}
export interface Database {
  zun_images: ZunImageRow;
  registries: RegistryRow;
}

/** Zun's record of a Neutron network registered for containers (`/v1/networks`, migration 0022). */
export interface ZunNetworkRow {
  uuid: string;
  name: string | null;
  neutron_net_id: string;
  /** The host-side network's id: Krater's dataplane keys a network by its Neutron id, so the same value. */
  network_id: string;
  project_id: string;
  user_id: string;
  created_at: string;
}
export interface Database {
  zun_networks: ZunNetworkRow;
}

// ---- Neutron (migration 0005). Every resource has description, revision_number, created_at, updated_at.
interface NetStandard {
  description: string;
  revision_number: number;
  created_at: string;
  updated_at: string;
}
export interface NetNetworkRow extends NetStandard {
  id: string;
  name: string;
  project_id: string;
  admin_state_up: number;
  status: string;
  shared: number;
  /** `router:external` */
  external: number;
  mtu: number;
  port_security_enabled: number;
  network_type: string;
  physical_network: string | null;
  segmentation_id: number | null;
  dns_domain: string | null;
}
export interface NetSubnetPoolRow extends NetStandard {
  id: string;
  name: string;
  project_id: string;
  ip_version: number;
  /** JSON array of CIDRs */
  prefixes: string;
  default_prefixlen: number;
  min_prefixlen: number;
  max_prefixlen: number;
  shared: number;
  is_default: number;
  default_quota: number | null;
  address_scope_id: string | null;
}
export interface NetSubnetPoolAllocationRow {
  subnetpool_id: string;
  cidr: string;
  subnet_id: string;
}
export interface NetSubnetRow extends NetStandard {
  id: string;
  name: string;
  network_id: string;
  project_id: string;
  ip_version: number;
  cidr: string;
  gateway_ip: string | null;
  /** JSON [{start,end}] */
  allocation_pools: string;
  /** JSON string[] */
  dns_nameservers: string;
  /** JSON [{destination,nexthop}] */
  host_routes: string;
  enable_dhcp: number;
  subnetpool_id: string | null;
  ipv6_ra_mode: string | null;
  ipv6_address_mode: string | null;
}
export interface NetPortRow extends NetStandard {
  id: string;
  name: string;
  network_id: string;
  project_id: string;
  mac_address: string;
  admin_state_up: number;
  /** DOWN | ACTIVE | BUILD | ERROR */
  status: string;
  device_id: string;
  device_owner: string;
  port_security_enabled: number;
  /** JSON [{ip_address, mac_address}] */
  allowed_address_pairs: string;
  binding_host_id: string;
  binding_vif_type: string;
  /** JSON object */
  binding_vif_details: string;
  binding_vnic_type: string;
  /** JSON object */
  binding_profile: string;
  dns_name: string;
}
export interface NetIpAllocationRow {
  subnet_id: string;
  ip_address: string;
  network_id: string;
  port_id: string;
}
export interface NetPortSecurityGroupRow {
  port_id: string;
  security_group_id: string;
}
export interface NetSecurityGroupRow extends NetStandard {
  id: string;
  name: string;
  project_id: string;
  stateful: number;
  shared: number;
}
export interface NetDefaultSecurityGroupRow {
  project_id: string;
  security_group_id: string;
}
export interface NetSecurityGroupRuleRow extends NetStandard {
  id: string;
  security_group_id: string;
  project_id: string;
  /** ingress | egress */
  direction: string;
  /** IPv4 | IPv6 */
  ethertype: string;
  protocol: string | null;
  port_range_min: number | null;
  port_range_max: number | null;
  remote_ip_prefix: string | null;
  remote_group_id: string | null;
  remote_address_group_id: string | null;
  fingerprint: string;
}
export interface NetRouterRow extends NetStandard {
  id: string;
  name: string;
  project_id: string;
  admin_state_up: number;
  status: string;
  gw_network_id: string | null;
  gw_port_id: string | null;
  enable_snat: number;
  /** JSON [{destination,nexthop}] */
  routes: string;
  host: string | null;
}
export interface NetFloatingIpRow extends NetStandard {
  id: string;
  project_id: string;
  floating_network_id: string;
  floating_ip_address: string;
  floating_port_id: string;
  port_id: string | null;
  fixed_ip_address: string | null;
  router_id: string | null;
  /** DOWN | ACTIVE | ERROR */
  status: string;
}
export interface NetTagRow {
  resource_type: string;
  resource_id: string;
  tag: string;
}
export interface NetQuotaRow {
  project_id: string;
  resource: string;
  hard_limit: number;
}
export interface NetEndpointRow {
  container_uuid: string;
  host: string;
  netns: string;
  /** JSON: what the agent plugged (port id, interface names) */
  interfaces: string;
  created_at: string;
}
export interface Database {
  net_networks: NetNetworkRow;
  net_subnetpools: NetSubnetPoolRow;
  net_subnetpool_allocations: NetSubnetPoolAllocationRow;
  net_subnets: NetSubnetRow;
  net_ports: NetPortRow;
  net_ip_allocations: NetIpAllocationRow;
  net_port_security_groups: NetPortSecurityGroupRow;
  net_security_groups: NetSecurityGroupRow;
  net_default_security_groups: NetDefaultSecurityGroupRow;
  net_security_group_rules: NetSecurityGroupRuleRow;
  net_routers: NetRouterRow;
  net_floatingips: NetFloatingIpRow;
  net_tags: NetTagRow;
  net_quotas: NetQuotaRow;
  net_endpoints: NetEndpointRow;
}

// ---- Controllers (src/controllers): the claimed work queue of control-plane reconcilers.
/** One object of one kind waiting for (or under) reconcile; timestamps are ISO-8601 UTC. */
export interface ControllerQueueRow {
  kind: string;
  object_id: string;
  /** Bumped by every enqueue: a reconcile that ends with a newer generation leaves the row due. */
  generation: number;
  not_before: string;
  /** Failed reconciles in a row (drives the back-off); 0 after a success. */
  attempts: number;
  last_error: string | null;
  lease_owner: string | null;
  lease_expires_at: string | null;
  created_at: string;
  updated_at: string;
}
export interface Database {
  controller_queue: ControllerQueueRow;
}

/** A secret shared by the replicas, sealed under the master key (`core/secrets/sealed-store.ts`). */
export interface SealedSecretRow {
  name: string;
  sealed: string;
  updated_at: string;
}

export interface Database {
  sealed_secrets: SealedSecretRow;
}

// ---- Placement (migration 0014): one resource provider per compute host. Its generation is bumped, compare-and-
// swap, in every transaction that places a container there, so two concurrent claims on one host cannot both
// commit against the same view of its usage (compute/placement.ts).
export interface ResourceProviderRow {
  host: string;
  generation: number;
}

export interface Database {
  resource_providers: ResourceProviderRow;
}
