/**
 * Store rows → Neutron's JSON views. Every resource carries the standard attributes (project_id and tenant_id,
 * description, revision_number, created_at/updated_at, tags where Neutron tags it). Attributes only admins may read
 * (`binding:*`, `provider:*`) are dropped by the caller's `hide` list.
 */
import type {
  NetFloatingIpRow,
  NetNetworkRow,
  NetPortRow,
  NetRouterRow,
  NetSecurityGroupRow,
  NetSecurityGroupRuleRow,
  NetSubnetPoolRow,
  NetSubnetRow,
} from '../../core/store/schema.js';

export type View = Record<string, any>;

const json = <T>(text: string | null | undefined, fallback: T): T => {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
};

function std(row: {
  project_id: string;
  description: string;
  revision_number: number;
  created_at: string;
  updated_at: string;
}) {
  return {
    project_id: row.project_id,
    tenant_id: row.project_id,
    description: row.description,
    revision_number: Number(row.revision_number),
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function without(view: View, hide: string[]): View {
  for (const h of hide) delete view[h];
  return view;
}

export function networkView(row: NetNetworkRow, subnets: string[], tags: string[], hide: string[] = []): View {
  return without(
    {
      id: row.id,
      name: row.name,
      admin_state_up: !!row.admin_state_up,
      status: row.status,
      subnets,
      shared: !!row.shared,
      'router:external': !!row.external,
      mtu: Number(row.mtu),
      port_security_enabled: !!row.port_security_enabled,
      availability_zone_hints: [],
      availability_zones: [],
      ipv4_address_scope: null,
      ipv6_address_scope: null,
      l2_adjacency: true,
      is_default: false,
      dns_domain: row.dns_domain ?? '',
      'provider:network_type': row.network_type,
      'provider:physical_network': row.physical_network,
      'provider:segmentation_id': row.segmentation_id === null ? null : Number(row.segmentation_id),
      ...std(row),
      tags,
    },
    hide,
  );
}

export function subnetView(row: NetSubnetRow, tags: string[]): View {
  return {
    id: row.id,
    name: row.name,
    network_id: row.network_id,
    ip_version: Number(row.ip_version),
    cidr: row.cidr,
    gateway_ip: row.gateway_ip,
    allocation_pools: json(row.allocation_pools, []),
    dns_nameservers: json(row.dns_nameservers, []),
    host_routes: json(row.host_routes, []),
    enable_dhcp: !!row.enable_dhcp,
    subnetpool_id: row.subnetpool_id,
    ipv6_ra_mode: row.ipv6_ra_mode,
    ipv6_address_mode: row.ipv6_address_mode,
    service_types: [],
    segment_id: null,
    ...std(row),
    tags,
  };
}

export function subnetPoolView(row: NetSubnetPoolRow, tags: string[]): View {
  return {
    id: row.id,
    name: row.name,
    ip_version: Number(row.ip_version),
    prefixes: json(row.prefixes, []),
    default_prefixlen: Number(row.default_prefixlen),
    min_prefixlen: Number(row.min_prefixlen),
    max_prefixlen: Number(row.max_prefixlen),
    shared: !!row.shared,
    is_default: !!row.is_default,
    default_quota: row.default_quota === null ? null : Number(row.default_quota),
    address_scope_id: row.address_scope_id,
    ...std(row),
    tags,
  };
}

export interface FixedIp {
  subnet_id: string;
  ip_address: string;
}

/** Neutron's dns_assignment: the port's DNS name (or one derived from the address) per fixed IP. */
function dnsAssignment(dnsName: string, fixedIps: FixedIp[]) {
  return fixedIps.map((f) => {
    const hostname = dnsName || `host-${f.ip_address.replace(/[.:]/g, '-')}`;
    return { hostname, ip_address: f.ip_address, fqdn: `${hostname}.openstacklocal.` };
  });
}

export function portView(
  row: NetPortRow,
  fixedIps: FixedIp[],
  sgs: string[],
  tags: string[],
  hide: string[] = [],
): View {
  const pairs = json<{ ip_address: string; mac_address?: string }[]>(row.allowed_address_pairs, []).map((p) => ({
    ip_address: p.ip_address,
    mac_address: p.mac_address ?? row.mac_address,
  }));
  return without(
    {
      id: row.id,
      name: row.name,
      network_id: row.network_id,
      mac_address: row.mac_address,
      admin_state_up: !!row.admin_state_up,
      status: row.status,
      device_id: row.device_id,
      device_owner: row.device_owner,
      fixed_ips: fixedIps,
      allowed_address_pairs: pairs,
      extra_dhcp_opts: [],
      security_groups: sgs,
      port_security_enabled: !!row.port_security_enabled,
      dns_name: row.dns_name,
      dns_assignment: dnsAssignment(row.dns_name, fixedIps),
      ip_allocation: 'immediate',
      'binding:host_id': row.binding_host_id,
      'binding:vif_type': row.binding_vif_type,
      'binding:vif_details': json(row.binding_vif_details, {}),
      'binding:vnic_type': row.binding_vnic_type,
      'binding:profile': json(row.binding_profile, {}),
      ...std(row),
      tags,
    },
    hide,
  );
}

export function ruleView(row: NetSecurityGroupRuleRow): View {
  return {
    id: row.id,
    security_group_id: row.security_group_id,
    direction: row.direction,
    ethertype: row.ethertype,
    protocol: row.protocol,
    port_range_min: row.port_range_min === null ? null : Number(row.port_range_min),
    port_range_max: row.port_range_max === null ? null : Number(row.port_range_max),
    remote_ip_prefix: row.remote_ip_prefix,
    normalized_cidr: row.remote_ip_prefix,
    remote_group_id: row.remote_group_id,
    remote_address_group_id: row.remote_address_group_id,
    ...std(row),
  };
}

export function securityGroupView(row: NetSecurityGroupRow, rules: View[], tags: string[]): View {
  return {
    id: row.id,
    name: row.name,
    stateful: !!row.stateful,
    shared: !!row.shared,
    security_group_rules: rules,
    ...std(row),
    tags,
  };
}

export function routerView(row: NetRouterRow, gwFixedIps: FixedIp[], tags: string[]): View {
  return {
    id: row.id,
    name: row.name,
    admin_state_up: !!row.admin_state_up,
    status: row.status,
    external_gateway_info: row.gw_network_id
      ? { network_id: row.gw_network_id, enable_snat: !!row.enable_snat, external_fixed_ips: gwFixedIps }
      : null,
    routes: json(row.routes, []),
    availability_zone_hints: [],
    availability_zones: [],
    ...std(row),
    tags,
  };
}

export function floatingIpView(row: NetFloatingIpRow, tags: string[]): View {
  return {
    id: row.id,
    floating_ip_address: row.floating_ip_address,
    floating_network_id: row.floating_network_id,
    router_id: row.router_id,
    port_id: row.port_id,
    fixed_ip_address: row.fixed_ip_address,
    status: row.status,
    ...std(row),
    tags,
  };
}
