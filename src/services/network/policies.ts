/**
 * Neutron's default policies (`neutron/conf/policies/*.py`, the admin-or-owner defaults), in the shared policy
 * engine's language. Every rule carries a `neutron:` prefix because all services share one rule namespace (Glance
 * already owns names like `get_image`); after the prefix the names are Neutron's (`neutron:create_port`,
 * `neutron:update_port:binding:host_id`), so a Neutron policy file translates by prefixing its keys.
 *
 * Targets are the resource's view plus `network:project_id` (the owner of the network a port or subnet sits on),
 * `shared` / `router:external` as 'True'/'False' and `network_device` ('True' for `network:*` device owners).
 */
const ADMIN = 'rule:context_is_admin';
const OWNER = 'rule:neutron:admin_or_owner';
const NET_OWNER = 'rule:neutron:admin_or_network_owner';
const ANY_OWNER = 'rule:neutron:admin_owner_or_network_owner';

const crud = (res: string, create: string, get: string, update: string, del: string) => ({
  [`neutron:create_${res}`]: create,
  [`neutron:get_${res}`]: get,
  [`neutron:update_${res}`]: update,
  [`neutron:delete_${res}`]: del,
});

export const networkPolicies: Record<string, string> = {
  context_is_admin: 'role:admin',
  'neutron:admin_only': ADMIN,
  'neutron:owner': 'project_id:%(project_id)s',
  'neutron:admin_or_owner': `${ADMIN} or rule:neutron:owner`,
  'neutron:network_owner': 'project_id:%(network:project_id)s',
  'neutron:admin_or_network_owner': `${ADMIN} or rule:neutron:network_owner`,
  'neutron:admin_owner_or_network_owner': 'rule:neutron:owner or rule:neutron:admin_or_network_owner',
  'neutron:shared': "'True':%(shared)s",
  'neutron:external': "'True':%(router:external)s",
  'neutron:network_device': "'True':%(network_device)s",

  ...crud(
    'network',
    'rule:neutron:regular_user',
    `${OWNER} or rule:neutron:shared or rule:neutron:external`,
    OWNER,
    OWNER,
  ),
  'neutron:regular_user': '',
  'neutron:create_network:shared': ADMIN,
  'neutron:create_network:router:external': ADMIN,
  'neutron:create_network:is_default': ADMIN,
  'neutron:create_network:provider:network_type': ADMIN,
  'neutron:create_network:provider:physical_network': ADMIN,
  'neutron:create_network:provider:segmentation_id': ADMIN,
  'neutron:update_network:shared': ADMIN,
  'neutron:update_network:router:external': ADMIN,
  'neutron:update_network:is_default': ADMIN,
  'neutron:get_network:provider:network_type': ADMIN,
  'neutron:get_network:provider:physical_network': ADMIN,
  'neutron:get_network:provider:segmentation_id': ADMIN,

  ...crud('subnet', NET_OWNER, `${OWNER} or rule:neutron:shared`, NET_OWNER, NET_OWNER),

  ...crud('subnetpool', 'rule:neutron:regular_user', `${OWNER} or rule:neutron:shared`, OWNER, OWNER),
  'neutron:create_subnetpool:shared': ADMIN,
  'neutron:create_subnetpool:is_default': ADMIN,
  'neutron:update_subnetpool:is_default': ADMIN,

  ...crud('port', 'rule:neutron:regular_user', ANY_OWNER, ANY_OWNER, ANY_OWNER),
  'neutron:create_port:device_owner': `not rule:neutron:network_device or ${NET_OWNER}`,
  'neutron:create_port:mac_address': NET_OWNER,
  'neutron:create_port:fixed_ips:ip_address': NET_OWNER,
  'neutron:create_port:fixed_ips:subnet_id': `${NET_OWNER} or rule:neutron:shared`,
  'neutron:create_port:port_security_enabled': NET_OWNER,
  'neutron:create_port:binding:host_id': ADMIN,
  'neutron:create_port:binding:profile': ADMIN,
  'neutron:create_port:binding:vnic_type': OWNER,
  'neutron:create_port:allowed_address_pairs': NET_OWNER,
  'neutron:get_port:binding:vif_type': ADMIN,
  'neutron:get_port:binding:vif_details': ADMIN,
  'neutron:get_port:binding:host_id': ADMIN,
  'neutron:get_port:binding:profile': ADMIN,
  'neutron:update_port:device_owner': `not rule:neutron:network_device or ${NET_OWNER}`,
  'neutron:update_port:mac_address': ADMIN,
  'neutron:update_port:fixed_ips:ip_address': NET_OWNER,
  'neutron:update_port:fixed_ips:subnet_id': `${NET_OWNER} or rule:neutron:shared`,
  'neutron:update_port:port_security_enabled': NET_OWNER,
  'neutron:update_port:binding:host_id': ADMIN,
  'neutron:update_port:binding:profile': ADMIN,
  'neutron:update_port:binding:vnic_type': OWNER,
  'neutron:update_port:allowed_address_pairs': NET_OWNER,

  ...crud('security_group', OWNER, OWNER, OWNER, OWNER),
  'neutron:create_security_group_rule': OWNER,
  'neutron:get_security_group_rule': OWNER,
  'neutron:delete_security_group_rule': OWNER,

  ...crud('router', 'rule:neutron:regular_user', OWNER, OWNER, OWNER),
  'neutron:create_router:external_gateway_info': OWNER,
  'neutron:create_router:external_gateway_info:network_id': OWNER,
  'neutron:create_router:external_gateway_info:enable_snat': ADMIN,
  'neutron:create_router:external_gateway_info:external_fixed_ips': ADMIN,
  'neutron:update_router:external_gateway_info': OWNER,
  'neutron:update_router:external_gateway_info:network_id': OWNER,
  'neutron:update_router:external_gateway_info:enable_snat': ADMIN,
  'neutron:update_router:external_gateway_info:external_fixed_ips': ADMIN,
  'neutron:add_router_interface': OWNER,
  'neutron:remove_router_interface': OWNER,

  ...crud('floatingip', 'rule:neutron:regular_user', OWNER, OWNER, OWNER),
  'neutron:create_floatingip:floating_ip_address': ADMIN,

  'neutron:get_quota': OWNER,
  'neutron:update_quota': ADMIN,
  'neutron:delete_quota': ADMIN,
};
