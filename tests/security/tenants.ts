/**
 * Two tenants for attack tests: project A's member creates one object of every kind Krater serves, project B's
 * member is the attacker. Everything is made over HTTP as a user would.
 */
import { randomBytes } from 'node:crypto';
import { describeHttp, type HttpResult, type Krater, sleep } from '../helpers/krater.js';
import { projectUser } from '../image/helpers.js';

export interface Tenant {
  projectId: string;
  userId: string;
  token: string;
}

/** Project A's objects: ids by collection name (as they appear in URLs), names, and every string that is A's. */
export interface TenantObjects {
  ids: Record<string, string>;
  names: Record<string, string>;
  /** Ids and unique names of A's objects: none may appear in a 2xx answer to B. */
  markers: string[];
  /** Objects that could not be made here, with the reason (reported, not fatal). */
  skipped: string[];
}

const ZUN = { 'OpenStack-API-Version': 'container 1.40' };
const tag = () => randomBytes(4).toString('hex');

async function must(r: Promise<HttpResult>, what: string, ok = [200, 201, 202, 204]): Promise<any> {
  const res = await r;
  if (!ok.includes(res.status)) throw new Error(`${what}: ${describeHttp('', what, res)}`);
  return res.json;
}

export async function twoTenants(k: Krater, admin: string): Promise<{ a: Tenant; b: Tenant }> {
  const suffix = tag();
  const a = await projectUser(k, admin, `tenant-a-${suffix}`);
  const b = await projectUser(k, admin, `tenant-b-${suffix}`);
  return { a, b };
}

/** A's objects: container (run=false), image, network, subnet, port, router (+interface), security group and rule,
 * subnet pool, floating IP (on an external network the admin makes), registry, application credential, tags. */
export async function makeObjects(k: Krater, admin: string, a: Tenant): Promise<TenantObjects> {
  const t = tag();
  const ids: Record<string, string> = {};
  const names: Record<string, string> = {};
  const skipped: string[] = [];
  const as = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
    k.http(method, path, { token: a.token, body, headers });
  const name = (kind: string) => {
    names[kind] = `iso-${kind}-${t}`;
    return names[kind];
  };
  const N = '/network/v2.0';

  const net = await must(as('POST', `${N}/networks`, { network: { name: name('networks') } }), 'network');
  ids.networks = net.network.id;
  const subnet = await must(
    as('POST', `${N}/subnets`, {
      subnet: { name: name('subnets'), network_id: ids.networks, cidr: '10.231.7.0/24', ip_version: 4 },
    }),
    'subnet',
  );
  ids.subnets = subnet.subnet.id;
  const port = await must(
    as('POST', `${N}/ports`, { port: { name: name('ports'), network_id: ids.networks } }),
    'port',
  );
  ids.ports = port.port.id;
  const router = await must(as('POST', `${N}/routers`, { router: { name: name('routers') } }), 'router');
  ids.routers = router.router.id;
  await must(as('PUT', `${N}/routers/${ids.routers}/add_router_interface`, { subnet_id: ids.subnets }), 'interface');
  const sg = await must(
    as('POST', `${N}/security-groups`, { security_group: { name: name('security-groups') } }),
    'security group',
  );
  ids['security-groups'] = sg.security_group.id;
  const rule = await must(
    as('POST', `${N}/security-group-rules`, {
      security_group_rule: {
        security_group_id: ids['security-groups'],
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: 8123,
        port_range_max: 8123,
      },
    }),
    'security group rule',
  );
  ids['security-group-rules'] = rule.security_group_rule.id;
  const pool = await must(
    as('POST', `${N}/subnetpools`, {
      subnetpool: { name: name('subnetpools'), prefixes: ['10.232.0.0/16'], default_prefixlen: 24 },
    }),
    'subnet pool',
  );
  ids.subnetpools = pool.subnetpool.id;
  names.tags = `isotag${t}`;
  await must(as('PUT', `${N}/networks/${ids.networks}/tags/${names.tags}`), 'network tag');

  // A floating IP needs an external network, which only an admin makes.
  const ext = await k.http('POST', `${N}/networks`, {
    token: admin,
    body: { network: { name: `iso-ext-${t}`, 'router:external': true } },
  });
  if (ext.status === 201) {
    await k.http('POST', `${N}/subnets`, {
      token: admin,
      body: { subnet: { network_id: ext.json.network.id, cidr: '10.233.0.0/24', ip_version: 4 } },
    });
    const fip = await as('POST', `${N}/floatingips`, { floatingip: { floating_network_id: ext.json.network.id } });
    if (fip.status === 201) ids.floatingips = fip.json.floatingip.id;
    else skipped.push(`floating IP: ${fip.status} ${fip.text.slice(0, 200)}`);
  } else skipped.push(`external network: ${ext.status} ${ext.text.slice(0, 200)}`);

  const image = await must(
    as('POST', '/image/v2/images', {
      name: name('images'),
      container_format: 'bare',
      disk_format: 'raw',
      tags: [names.tags],
    }),
    'image',
  );
  ids.images = image.id;

  const c = await must(
    as('POST', '/container/v1/containers?run=false', { image: 'busybox', name: name('containers') }, ZUN),
    'container',
  );
  ids.containers = c.uuid;
  for (let i = 0; i < 300; i++) {
    const r = await as('GET', `/container/v1/containers/${ids.containers}`, undefined, ZUN);
    if (r.status === 200 && r.json.status !== 'Creating') break;
    await sleep(100);
  }
  const actions = await must(
    as('GET', `/container/v1/containers/${ids.containers}/container_actions`, undefined, ZUN),
    'actions',
  );
  ids.container_actions = actions.containerActions?.[0]?.request_id ?? '';
  if (!ids.container_actions) skipped.push('container action: none listed');

  const reg = await must(
    as(
      'POST',
      '/container/v1/registries',
      {
        registry: { name: name('registries'), domain: `iso-${t}.example`, username: 'u', password: `p-${t}` },
      },
      ZUN,
    ),
    'registry',
  );
  ids.registries = reg.registry?.uuid ?? reg.uuid;

  const cred = await must(
    as('POST', `/identity/v3/users/${a.userId}/application_credentials`, {
      application_credential: { name: name('application_credentials') },
    }),
    'application credential',
  );
  ids.application_credentials = cred.application_credential.id;
  ids.users = a.userId;
  ids.projects = a.projectId;

  const markers = [...Object.values(ids), ...Object.values(names), a.projectId, a.userId].filter(Boolean);
  return { ids, names, markers, skipped };
}
