import type { Kysely } from 'kysely';

/**
 * Neutron's resources (networks, subnets, subnet pools, ports and their IP allocations, security groups and rules,
 * routers, floating IPs, tags, quotas) and the agent's record of what it plugged where (`net_endpoints`).
 * Booleans are integers, lists/dicts JSON text. Unique constraints carry the concurrency guarantees: an IP address
 * is allocated once per subnet, a MAC once per network, a project has one `default` security group, identical rules
 * collide on their fingerprint.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const s = db.schema;
  const std = <T extends { addColumn: (...a: any[]) => T }>(t: T): T =>
    t
      .addColumn('description', 'text', (c: any) => c.notNull().defaultTo(''))
      .addColumn('revision_number', 'integer', (c: any) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'text', (c: any) => c.notNull())
      .addColumn('updated_at', 'text', (c: any) => c.notNull());

  await std(
    s
      .createTable('net_networks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('status', 'text', (c) => c.notNull().defaultTo('ACTIVE'))
      .addColumn('shared', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('external', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('mtu', 'integer', (c) => c.notNull().defaultTo(1500))
      .addColumn('port_security_enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('network_type', 'text', (c) => c.notNull().defaultTo('local'))
      .addColumn('physical_network', 'text')
      .addColumn('segmentation_id', 'integer')
      .addColumn('dns_domain', 'text'),
  ).execute();
  await s.createIndex('net_networks_project').on('net_networks').columns(['project_id']).execute();

  await std(
    s
      .createTable('net_subnetpools')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('ip_version', 'integer', (c) => c.notNull())
      .addColumn('prefixes', 'text', (c) => c.notNull())
      .addColumn('default_prefixlen', 'integer', (c) => c.notNull())
      .addColumn('min_prefixlen', 'integer', (c) => c.notNull())
      .addColumn('max_prefixlen', 'integer', (c) => c.notNull())
      .addColumn('shared', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('is_default', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('default_quota', 'integer')
      .addColumn('address_scope_id', 'text'),
  ).execute();

  await std(
    s
      .createTable('net_subnets')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('network_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('ip_version', 'integer', (c) => c.notNull())
      .addColumn('cidr', 'text', (c) => c.notNull())
      .addColumn('gateway_ip', 'text')
      .addColumn('allocation_pools', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('dns_nameservers', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('host_routes', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('enable_dhcp', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('subnetpool_id', 'text')
      .addColumn('ipv6_ra_mode', 'text')
      .addColumn('ipv6_address_mode', 'text'),
  ).execute();
  await s.createIndex('net_subnets_network').on('net_subnets').columns(['network_id']).execute();
  // A pool never hands out the same prefix twice (also across API replicas).
  await s
    .createTable('net_subnetpool_allocations')
    .addColumn('subnetpool_id', 'text', (c) => c.notNull())
    .addColumn('cidr', 'text', (c) => c.notNull())
    .addColumn('subnet_id', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('net_subnetpool_allocations_pk', ['subnetpool_id', 'cidr'])
    .execute();

  await std(
    s
      .createTable('net_ports')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('network_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('mac_address', 'text', (c) => c.notNull())
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('status', 'text', (c) => c.notNull().defaultTo('DOWN'))
      .addColumn('device_id', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('device_owner', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('port_security_enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('allowed_address_pairs', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('binding_host_id', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('binding_vif_type', 'text', (c) => c.notNull().defaultTo('unbound'))
      .addColumn('binding_vif_details', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('binding_vnic_type', 'text', (c) => c.notNull().defaultTo('normal'))
      .addColumn('binding_profile', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('dns_name', 'text', (c) => c.notNull().defaultTo(''))
      .addUniqueConstraint('net_ports_mac', ['network_id', 'mac_address']),
  ).execute();
  await s.createIndex('net_ports_device').on('net_ports').columns(['device_id']).execute();
  await s.createIndex('net_ports_network').on('net_ports').columns(['network_id']).execute();
  await s
    .createTable('net_ip_allocations')
    .addColumn('subnet_id', 'text', (c) => c.notNull())
    .addColumn('ip_address', 'text', (c) => c.notNull())
    .addColumn('network_id', 'text', (c) => c.notNull())
    .addColumn('port_id', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('net_ip_allocations_pk', ['subnet_id', 'ip_address'])
    .execute();
  await s.createIndex('net_ip_allocations_port').on('net_ip_allocations').columns(['port_id']).execute();
  await s
    .createTable('net_port_security_groups')
    .addColumn('port_id', 'text', (c) => c.notNull())
    .addColumn('security_group_id', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('net_port_security_groups_pk', ['port_id', 'security_group_id'])
    .execute();
  await s
    .createIndex('net_port_security_groups_sg')
    .on('net_port_security_groups')
    .columns(['security_group_id'])
    .execute();

  await std(
    s
      .createTable('net_security_groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('stateful', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('shared', 'integer', (c) => c.notNull().defaultTo(0)),
  ).execute();
  await s.createIndex('net_security_groups_project').on('net_security_groups').columns(['project_id']).execute();
  await s
    .createTable('net_default_security_groups')
    .addColumn('project_id', 'text', (c) => c.primaryKey())
    .addColumn('security_group_id', 'text', (c) => c.notNull())
    .execute();
  await std(
    s
      .createTable('net_security_group_rules')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('security_group_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('direction', 'text', (c) => c.notNull())
      .addColumn('ethertype', 'text', (c) => c.notNull())
      .addColumn('protocol', 'text')
      .addColumn('port_range_min', 'integer')
      .addColumn('port_range_max', 'integer')
      .addColumn('remote_ip_prefix', 'text')
      .addColumn('remote_group_id', 'text')
      .addColumn('remote_address_group_id', 'text')
      /** Normalised rule content; identical rules collide here (409 SecurityGroupRuleExists). */
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addUniqueConstraint('net_security_group_rules_fp', ['security_group_id', 'fingerprint']),
  ).execute();

  await std(
    s
      .createTable('net_routers')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('status', 'text', (c) => c.notNull().defaultTo('ACTIVE'))
      .addColumn('gw_network_id', 'text')
      .addColumn('gw_port_id', 'text')
      .addColumn('enable_snat', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('routes', 'text', (c) => c.notNull().defaultTo('[]'))
      /** The agent host that runs the router's namespace. */
      .addColumn('host', 'text'),
  ).execute();

  await std(
    s
      .createTable('net_floatingips')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('floating_network_id', 'text', (c) => c.notNull())
      .addColumn('floating_ip_address', 'text', (c) => c.notNull())
      .addColumn('floating_port_id', 'text', (c) => c.notNull())
      .addColumn('port_id', 'text')
      .addColumn('fixed_ip_address', 'text')
      .addColumn('router_id', 'text')
      .addColumn('status', 'text', (c) => c.notNull().defaultTo('DOWN')),
  ).execute();

  await s
    .createTable('net_tags')
    .addColumn('resource_type', 'text', (c) => c.notNull())
    .addColumn('resource_id', 'text', (c) => c.notNull())
    .addColumn('tag', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('net_tags_pk', ['resource_id', 'tag'])
    .execute();
  await s
    .createTable('net_quotas')
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('resource', 'text', (c) => c.notNull())
    .addColumn('hard_limit', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('net_quotas_pk', ['project_id', 'resource'])
    .execute();

  // What an agent plugged for a container: its network namespace and the ports inside it (rebuilt by reconcile).
  await s
    .createTable('net_endpoints')
    .addColumn('container_uuid', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('netns', 'text', (c) => c.notNull())
    .addColumn('interfaces', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of [
    'net_endpoints',
    'net_quotas',
    'net_tags',
    'net_floatingips',
    'net_routers',
    'net_security_group_rules',
    'net_default_security_groups',
    'net_security_groups',
    'net_port_security_groups',
    'net_ip_allocations',
    'net_ports',
    'net_subnetpool_allocations',
    'net_subnets',
    'net_subnetpools',
    'net_networks',
  ])
    await db.schema.dropTable(t).execute();
}
