/**
 * Zun's default policies (`zun/common/policies/*.py`), in the shared policy engine's language. Zun's base rules
 * (`admin_or_owner`, `admin_api`, `deny_everybody`) carry a `zun:` prefix here because every service shares one
 * rule namespace, and identity's `admin_or_owner` means something else.
 */
const ADMIN_API = 'rule:context_is_admin';

const containerActions = [
  'create', 'get_all', 'get_one', 'update', 'delete', 'start', 'stop', 'reboot', 'pause', 'unpause', 'kill', 'logs',
  'execute', 'execute_resize', 'attach', 'resize', 'top', 'stats', 'get_archive', 'put_archive', 'commit', 'rename',
  'rebuild', 'resize_container', 'network_attach', 'network_detach', 'network_list', 'add_security_group',
  'remove_security_group', 'actions',
];

export const containerPolicies: Record<string, string> = {
  context_is_admin: 'role:admin',
  'zun:admin_or_owner': 'is_admin:True or project_id:%(project_id)s',
  'zun:admin_api': ADMIN_API,
  'zun:deny_everybody': '!',
  ...Object.fromEntries(containerActions.map((a) => [`container:${a}`, 'rule:zun:admin_or_owner'])),
  'container:create:runtime': ADMIN_API,
  'container:create:requested_destination': ADMIN_API,
  'container:create:image_pull_policy': ADMIN_API,
  'container:create:privileged': 'rule:zun:deny_everybody',
  'container:delete_all_projects': ADMIN_API,
  'container:delete_force': ADMIN_API,
  'container:get_one_all_projects': ADMIN_API,
  'container:get_all_all_projects': ADMIN_API,
  'container:action:events': ADMIN_API,
  'container:get_one:host': ADMIN_API,
  'container:get_one:image_pull_policy': ADMIN_API,
  'container:get_one:privileged': ADMIN_API,
  'container:get_one:runtime': ADMIN_API,
  'host:get_all': ADMIN_API,
  'host:get': ADMIN_API,
  'zun-service:get_all': ADMIN_API,
  'zun-service:delete': ADMIN_API,
  'zun-service:enable': ADMIN_API,
  'zun-service:disable': ADMIN_API,
  'zun-service:force_down': ADMIN_API,
  'availability_zones:get_all': 'rule:zun:admin_or_owner',
  'quota:update': ADMIN_API,
  'quota:delete': ADMIN_API,
  'quota:get': 'rule:zun:admin_or_owner',
  'quota:get_default': 'rule:zun:admin_or_owner',
  'quota_class:update': ADMIN_API,
  'quota_class:get': ADMIN_API,
  'image:pull': ADMIN_API,
  'image:get_all': ADMIN_API,
  'image:get_one': ADMIN_API,
  'image:delete': ADMIN_API,
  'image:search': 'rule:zun:admin_or_owner',
  'registry:create': 'rule:zun:admin_or_owner',
  'registry:delete': 'rule:zun:admin_or_owner',
  'registry:get_one': 'rule:zun:admin_or_owner',
  'registry:get_all': 'rule:zun:admin_or_owner',
  'registry:update': 'rule:zun:admin_or_owner',
  'registry:get_all_all_projects': ADMIN_API,
};

/** Fields hidden unless `container:get_one:<field>` passes (other fields have no rule: always shown). */
export const ADMIN_ONLY_FIELDS = ['host', 'image_pull_policy', 'privileged', 'runtime'];
