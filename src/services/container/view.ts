import type { Container } from '../../compute/model.js';
import { toView } from '../../compute/publish.js';
import { statusDetail } from '../../compute/states.js';

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
  c: Container,
  base: string,
  canSee: (field: string) => boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    uuid: c.uuid,
    links: containerLinks(base, c.uuid),
    name: c.name,
    image: c.image,
    command: c.command,
    entrypoint: c.entrypoint,
    status: c.status,
    status_reason: c.statusReason,
    status_detail: statusDetail(c.row),
    task_state: c.taskState,
    cpu: c.limits.cpu,
    // Zun's memory is a string (of MiB here).
    memory: String(c.limits.memoryMiB),
    disk: c.limits.diskGiB,
    environment: c.environment,
    labels: c.labels,
    restart_policy: c.restartPolicy,
    workdir: c.workdir,
    hostname: c.hostname,
    ports: c.ports,
    // Krater's: the host ports published for the container (`krater run -p`), [] for none.
    published_ports: c.publishedPorts.map(toView),
    addresses: c.addresses,
    image_driver: c.imageDriver,
    security_groups: c.securityGroups,
    interactive: c.interactive,
    tty: c.tty,
    auto_remove: c.autoRemove,
    auto_heal: c.autoHeal,
    cpu_policy: c.cpuPolicy,
    registry_id: c.registryId,
    healthcheck: c.healthcheck,
    user_id: c.userId,
    project_id: c.projectId,
    created_at: zunTime(c.createdAt),
    updated_at: zunTime(c.updatedAt),
    host: c.host,
    image_pull_policy: c.imagePullPolicy,
    privileged: c.privileged,
    runtime: c.runtime,
  };
  for (const field of ['host', 'image_pull_policy', 'privileged', 'runtime']) if (!canSee(field)) delete out[field];
  return out;
}
