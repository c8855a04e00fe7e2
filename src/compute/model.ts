/**
 * The container as the domain sees it: the store row decoded once (`decodeContainer`) — limits as numbers with
 * their units, the JSON text columns as values. Code that reasons about a container reads this; the row stays
 * what is written to the store (and what the agent port still takes).
 */
import type { ContainerRow } from '../core/store/schema.js';
import type { Addresses, NetRequest } from './networking.js';
import type { OwnerRef } from './ownership.js';
import { type PublishedPort, storedPorts, toView } from './publish.js';
import type { RestartPolicy, Status } from './states.js';

/** What a container may use. Memory is stored as a decimal string of MiB (Zun's field is a string). */
export interface Limits {
  cpu: number;
  memoryMiB: number;
  /** GiB; null: no disk limit asked for. */
  diskGiB: number | null;
}

/** Zun's healthcheck as stored: `test` is a shell command, times in seconds (0 = the default). */
export interface Healthcheck {
  test: string | null;
  interval: number;
  retries: number;
  timeout: number;
}

export interface Container {
  uuid: string;
  name: string;
  projectId: string;
  userId: string;
  image: string;
  imageDriver: string;
  imagePullPolicy: string | null;
  command: string[] | null;
  entrypoint: string[] | null;
  limits: Limits;
  workdir: string | null;
  hostname: string | null;
  environment: Record<string, string>;
  labels: Record<string, string>;
  restartPolicy: RestartPolicy | null;
  healthcheck: Healthcheck | null;
  interactive: boolean;
  tty: boolean;
  autoRemove: boolean;
  autoHeal: boolean;
  privileged: boolean;
  runtime: string | null;
  cpuPolicy: string;
  registryId: string | null;
  exposedPorts: Record<string, object> | null;
  securityGroups: string[] | null;
  nets: NetRequest[];
  mounts: unknown[];
  addresses: Addresses | null;
  /** Ports of the container's Neutron ports as Zun renders them (`ports`). */
  ports: unknown[] | null;
  publishedPorts: PublishedPort[];
  /** The object it belongs to (deleted with it), if any. */
  owner: OwnerRef | null;
  availabilityZone: string | null;
  host: string | null;
  status: Status;
  statusReason: string | null;
  taskState: string | null;
  health: string | null;
  exitCode: number | null;
  restartCount: number;
  desired: string;
  startedAt: string | null;
  finishedAt: string | null;
  createdAt: string;
  updatedAt: string | null;
  /** The row it was decoded from: what policy targets and the agent port take. */
  readonly row: ContainerRow;
}

/** A JSON text column; a value that does not parse (never written by Krater) reads as `fallback`. */
function json<T>(text: string | null | undefined, fallback: T): T {
  if (text === null || text === undefined || text === '') return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** MiB from the stored string (`"512"`); what a row written by Krater always holds. */
export const memoryMiB = (row: Pick<ContainerRow, 'memory'>): number => Number(row.memory ?? 0) || 0;

/** The one place a container row is decoded. */
export function decodeContainer(row: ContainerRow): Container {
  return {
    uuid: row.uuid,
    name: row.name,
    projectId: row.project_id,
    userId: row.user_id,
    image: row.image,
    imageDriver: row.image_driver,
    imagePullPolicy: row.image_pull_policy,
    command: json<string[] | null>(row.command, null),
    entrypoint: json<string[] | null>(row.entrypoint, null),
    limits: { cpu: Number(row.cpu), memoryMiB: memoryMiB(row), diskGiB: row.disk === null ? null : Number(row.disk) },
    workdir: row.workdir,
    hostname: row.hostname,
    environment: json<Record<string, string>>(row.environment, {}),
    labels: json<Record<string, string>>(row.labels, {}),
    restartPolicy: json<RestartPolicy | null>(row.restart_policy, null),
    healthcheck: json<Healthcheck | null>(row.healthcheck, null),
    interactive: !!row.interactive,
    tty: !!row.tty,
    autoRemove: !!row.auto_remove,
    autoHeal: !!row.auto_heal,
    privileged: !!row.privileged,
    runtime: row.runtime,
    cpuPolicy: row.cpu_policy,
    registryId: row.registry_id,
    exposedPorts: json<Record<string, object> | null>(row.exposed_ports, null),
    securityGroups: json<string[] | null>(row.security_groups, null),
    nets: json<NetRequest[]>(row.nets, []),
    mounts: json<unknown[]>(row.mounts, []),
    addresses: json<Addresses | null>(row.addresses, null),
    ports: json<unknown[] | null>(row.ports, null),
    publishedPorts: storedPorts(row.published_ports),
    owner: row.owner_kind && row.owner_id ? { kind: row.owner_kind, id: row.owner_id } : null,
    availabilityZone: row.availability_zone,
    host: row.host,
    status: row.status as Status,
    statusReason: row.status_reason,
    taskState: row.task_state,
    health: row.health,
    exitCode: row.exit_code,
    restartCount: row.restart_count,
    desired: row.desired,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    row,
  };
}

/** The stored form of limits (memory as Zun's string of MiB). */
export function encodeLimits(l: Partial<Limits>): Partial<Pick<ContainerRow, 'cpu' | 'memory' | 'disk'>> {
  const out: Partial<Pick<ContainerRow, 'cpu' | 'memory' | 'disk'>> = {};
  if (l.cpu !== undefined) out.cpu = l.cpu;
  if (l.memoryMiB !== undefined) out.memory = String(l.memoryMiB);
  if (l.diskGiB !== undefined) out.disk = l.diskGiB;
  return out;
}

/**
 * What a new container is asked to be (the caller has validated it: Zun's schema in the facade, or an in-process
 * caller's own code). Unset fields take Zun's defaults.
 */
export interface ContainerSpec {
  name: string;
  image: string;
  imageDriver?: 'docker' | 'glance';
  imagePullPolicy?: 'never' | 'always' | 'ifnotpresent' | null;
  command?: string[] | null;
  entrypoint?: string[] | null;
  limits?: Partial<Limits>;
  workdir?: string | null;
  hostname?: string | null;
  environment?: Record<string, string>;
  labels?: Record<string, string>;
  /** Zun's scheduler hints, kept as given. */
  hints?: unknown;
  restartPolicy?: RestartPolicy | null;
  healthcheck?: Healthcheck | null;
  interactive?: boolean;
  tty?: boolean;
  autoRemove?: boolean;
  autoHeal?: boolean;
  privileged?: boolean;
  runtime?: string | null;
  cpuPolicy?: 'shared' | 'dedicated';
  registryId?: string | null;
  exposedPorts?: Record<string, object> | null;
  securityGroups?: string[] | null;
  nets?: NetRequest[];
  mounts?: unknown[];
  publishedPorts?: PublishedPort[];
  availabilityZone?: string | null;
}

export const DEFAULT_LIMITS: Limits = { cpu: 1.0, memoryMiB: 512, diskGiB: null };

/** The row of a new container (status Creating, no host yet) for `spec`, owned by `owner`. */
export function newContainerRow(
  spec: ContainerSpec,
  owner: { projectId: string; userId: string },
  uuid: string,
  now = new Date().toISOString(),
): ContainerRow {
  const limits = { ...DEFAULT_LIMITS, ...spec.limits };
  const published = spec.publishedPorts ?? [];
  const jsonOrNull = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));
  return {
    uuid,
    name: spec.name,
    project_id: owner.projectId,
    user_id: owner.userId,
    image: spec.image,
    image_driver: spec.imageDriver ?? 'docker',
    image_pull_policy: spec.imagePullPolicy ?? null,
    command: jsonOrNull(spec.command),
    entrypoint: jsonOrNull(spec.entrypoint),
    cpu: limits.cpu,
    memory: String(limits.memoryMiB),
    disk: limits.diskGiB,
    workdir: spec.workdir ?? null,
    hostname: spec.hostname ?? null,
    environment: JSON.stringify(spec.environment ?? {}),
    labels: JSON.stringify(spec.labels ?? {}),
    hints: JSON.stringify(spec.hints ?? {}),
    restart_policy: jsonOrNull(spec.restartPolicy),
    interactive: spec.interactive ? 1 : 0,
    tty: spec.tty ? 1 : 0,
    auto_remove: spec.autoRemove ? 1 : 0,
    auto_heal: spec.autoHeal ? 1 : 0,
    privileged: spec.privileged ? 1 : 0,
    runtime: spec.runtime ?? null,
    cpu_policy: spec.cpuPolicy ?? 'shared',
    cpuset: null,
    registry_id: spec.registryId ?? null,
    healthcheck: jsonOrNull(spec.healthcheck),
    exposed_ports: jsonOrNull(spec.exposedPorts),
    security_groups: jsonOrNull(spec.securityGroups),
    nets: JSON.stringify(spec.nets ?? []),
    mounts: JSON.stringify(spec.mounts ?? []),
    addresses: null,
    ports: null,
    published_ports: published.length ? JSON.stringify(published.map(toView)) : null,
    availability_zone: spec.availabilityZone ?? null,
    host: null,
    status: 'Creating',
    status_reason: null,
    task_state: null,
    health: null,
    exit_code: null,
    restart_count: 0,
    desired: 'stopped',
    started_at: null,
    finished_at: null,
    websocket_token: null,
    created_at: now,
    updated_at: null,
  };
}
