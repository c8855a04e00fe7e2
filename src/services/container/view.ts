import { statusDetail } from '../../compute/states.js';
import type { ContainerRow } from '../../core/store/schema.js';

const json = (s: string | null) => (s === null ? null : JSON.parse(s));

/** Zun renders resource timestamps with Python's str(datetime): `2019-05-18 21:02:12.304734`. */
export function zunTime(iso: string | null): string | null {
  if (!iso) return null;
  return iso
    .replace('T', ' ')
    .replace(/\.(\d{3})Z$/, '.$1000')
    .replace(/Z$/, '');
}

/** Actions and services use `%Y-%m-%dT%H:%M:%S.%f`. */
export function zunActionTime(iso: string | null): string | null {
  if (!iso) return null;
  return iso.replace(/\.(\d{3})Z$/, '.$1000').replace(/Z$/, '');
}

export function containerLinks(base: string, uuid: string) {
  return [
    { href: `${base}/v1/containers/${uuid}`, rel: 'self' },
    { href: `${base}/containers/${uuid}`, rel: 'bookmark' },
  ];
}

/**
 * The container view (`views/containers_view.py`): a key appears when it is set and the viewer may see it. `base`
 * is the service root including its path prefix, so every link is followable.
 */
export function renderContainer(
  c: ContainerRow,
  base: string,
  canSee: (field: string) => boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    uuid: c.uuid,
    links: containerLinks(base, c.uuid),
    name: c.name,
    image: c.image,
    command: json(c.command),
    entrypoint: json(c.entrypoint),
    status: c.status,
    status_reason: c.status_reason,
    status_detail: statusDetail(c),
    task_state: c.task_state,
    cpu: c.cpu,
    memory: c.memory,
    disk: c.disk,
    environment: json(c.environment),
    labels: json(c.labels),
    restart_policy: json(c.restart_policy),
    workdir: c.workdir,
    hostname: c.hostname,
    ports: json(c.ports),
    // Krater's: the host ports published for the container (`krater run -p`), [] for none.
    published_ports: json(c.published_ports) ?? [],
    addresses: json(c.addresses),
    image_driver: c.image_driver,
    security_groups: json(c.security_groups),
    interactive: !!c.interactive,
    tty: !!c.tty,
    auto_remove: !!c.auto_remove,
    auto_heal: !!c.auto_heal,
    cpu_policy: c.cpu_policy,
    registry_id: c.registry_id,
    healthcheck: json(c.healthcheck),
    user_id: c.user_id,
    project_id: c.project_id,
    created_at: zunTime(c.created_at),
    updated_at: zunTime(c.updated_at),
    host: c.host,
    image_pull_policy: c.image_pull_policy,
    privileged: !!c.privileged,
    runtime: c.runtime,
  };
  for (const field of ['host', 'image_pull_policy', 'privileged', 'runtime']) if (!canSee(field)) delete out[field];
  return out;
}
