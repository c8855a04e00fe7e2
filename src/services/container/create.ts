import { randomBytes } from 'node:crypto';
import type { ContainerSpec, Healthcheck } from '../../compute/model.js';
import type { NetRequest } from '../../compute/networking.js';
import { type PublishedPort, publishedPorts } from '../../compute/publish.js';
import type { RestartPolicy } from '../../compute/states.js';
import { atLeast, type Version } from '../../core/http/microversion.js';
import {
  expectString,
  expectStringMap,
  invalid,
  parseBool,
  parseNumber,
  schemaError,
  shlexSplit,
  versionCheck,
} from './params.js';

/** Body keys of `POST /v1/containers` and the microversion each appeared in (Zun's schema + version_check). */
const CREATE_FIELDS: Record<string, [number, number]> = {
  name: [1, 1],
  image: [1, 1],
  command: [1, 1],
  cpu: [1, 1],
  memory: [1, 1],
  disk: [1, 1],
  workdir: [1, 1],
  environment: [1, 1],
  labels: [1, 1],
  hints: [1, 1],
  restart_policy: [1, 1],
  interactive: [1, 1],
  image_driver: [1, 1],
  image_pull_policy: [1, 1],
  security_groups: [1, 1],
  availability_zone: [1, 1],
  auto_heal: [1, 1],
  cpu_policy: [1, 1],
  nets: [1, 2],
  auto_remove: [1, 3],
  runtime: [1, 5],
  hostname: [1, 9],
  mounts: [1, 11],
  privileged: [1, 21],
  healthcheck: [1, 22],
  exposed_ports: [1, 24],
  registry: [1, 31],
  tty: [1, 36],
  host: [1, 39],
  entrypoint: [1, 40],
  run: [1, 1],
};

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const HOSTNAME = /^[a-zA-Z0-9-._]*$/;

export interface ParsedCreate {
  /** The new container (its published ports from the `krater.publish` label, the CLI's wire form). */
  spec: ContainerSpec;
  run: boolean;
  requestedHost?: string;
  /** Fields that need an extra policy check (admin-only ones). */
  privilegedFields: string[];
}

/** Validates a create request exactly as Zun does and gives the container it asks for. */
export function parseCreate(args: Record<string, unknown>, v: Version): ParsedCreate {
  const unknown = Object.keys(args).filter((k) => !(k in CREATE_FIELDS));
  if (unknown.length)
    throw schemaError(
      `Additional properties are not allowed ('${unknown.join("', '")}' ${unknown.length > 1 ? 'were' : 'was'} unexpected)`,
    );
  for (const [k, since] of Object.entries(CREATE_FIELDS))
    if (k in args && args[k] !== undefined) versionCheck(k, since, v);
  if (args.image === undefined) throw schemaError("'image' is a required property");
  const image = expectString('image', args.image, { min: 2, max: 255 });
  const name =
    args.name === undefined || args.name === null
      ? `${randomBytes(4).toString('hex')}-container`
      : expectString('name', args.name, { min: 2, max: 255, pattern: NAME });

  let command: string[] | null = null;
  if (args.command !== undefined && args.command !== null) {
    if (atLeast(v, 1, 20)) {
      if (!Array.isArray(args.command) || !args.command.every((x) => typeof x === 'string'))
        throw schemaError(
          `Invalid input for field/attribute command. Value: ${JSON.stringify(args.command)}. ${JSON.stringify(args.command)} is not of type 'array'`,
        );
      command = args.command as string[];
    } else {
      command = shlexSplit(expectString('command', args.command));
    }
  }
  let entrypoint: string[] | null = null;
  if (args.entrypoint !== undefined && args.entrypoint !== null) {
    if (!Array.isArray(args.entrypoint) || !args.entrypoint.every((x) => typeof x === 'string'))
      throw schemaError(
        `Invalid input for field/attribute entrypoint. Value: ${JSON.stringify(args.entrypoint)}. is not of type 'array'`,
      );
    entrypoint = args.entrypoint as string[];
  }
  const cpu = args.cpu === undefined || args.cpu === null ? 1.0 : parseNumber('cpu', args.cpu, 0.1, 16);
  const memory =
    args.memory === undefined || args.memory === null ? 512 : parseNumber('memory', args.memory, 4, 8192, true);
  const disk = args.disk === undefined || args.disk === null ? null : parseNumber('disk', args.disk, 1, 160, true);

  let restartPolicy: RestartPolicy | null = null;
  if (args.restart_policy !== undefined && args.restart_policy !== null) {
    const rp = args.restart_policy as Record<string, unknown>;
    if (typeof rp !== 'object' || Array.isArray(rp))
      throw schemaError("Invalid input for field/attribute restart_policy. is not of type 'object'");
    const extra = Object.keys(rp).filter((k) => k !== 'Name' && k !== 'MaximumRetryCount');
    if (extra.length)
      throw schemaError(`Additional properties are not allowed ('${extra.join("', '")}' was unexpected)`);
    if (!['no', 'always', 'on-failure', 'unless-stopped'].includes(rp.Name as string))
      throw schemaError(
        `Invalid input for field/attribute Name. Value: ${rp.Name}. '${rp.Name}' is not one of ['no', 'always', 'on-failure', 'unless-stopped']`,
      );
    let count =
      rp.MaximumRetryCount === undefined || rp.MaximumRetryCount === null
        ? 0
        : parseNumber('MaximumRetryCount', rp.MaximumRetryCount, 0, Number.MAX_SAFE_INTEGER, true);
    if (count !== 0 && (rp.Name === 'always' || rp.Name === 'unless-stopped'))
      throw invalid(`maximum retry count not valid with restart policy "${rp.Name}"`);
    if (rp.Name === 'no') count = 0;
    restartPolicy = { Name: rp.Name as RestartPolicy['Name'], MaximumRetryCount: String(count) };
  }

  const interactive = parseBool('interactive', args.interactive);
  let tty = false;
  if (atLeast(v, 1, 36)) tty = parseBool('tty', args.tty);
  else if (atLeast(v, 1, 20)) tty = interactive;

  let imageDriver = 'docker';
  if (args.image_driver !== undefined && args.image_driver !== null && args.image_driver !== 'None') {
    if (!['docker', 'glance'].includes(args.image_driver as string))
      throw schemaError(
        `Invalid input for field/attribute image_driver. Value: ${args.image_driver}. '${args.image_driver}' is not one of ['glance', 'docker']`,
      );
    imageDriver = args.image_driver as string;
  }
  let pullPolicy: string | null = null;
  if (args.image_pull_policy !== undefined && args.image_pull_policy !== null) {
    const p = String(args.image_pull_policy).toLowerCase();
    if (!['never', 'always', 'ifnotpresent'].includes(p))
      throw schemaError(
        `Invalid input for field/attribute image_pull_policy. Value: ${args.image_pull_policy}. is not one of ['never', 'always', 'ifnotpresent']`,
      );
    pullPolicy = p;
  }
  let hostname: string | null = null;
  if (args.hostname !== undefined && args.hostname !== null)
    hostname = expectString('hostname', args.hostname, { min: 1, max: 255, pattern: HOSTNAME });
  let cpuPolicy = 'shared';
  if (args.cpu_policy !== undefined && args.cpu_policy !== null) {
    if (!['shared', 'dedicated'].includes(args.cpu_policy as string))
      throw schemaError(
        `Invalid input for field/attribute cpu_policy. Value: ${args.cpu_policy}. is not one of ['dedicated', 'shared']`,
      );
    cpuPolicy = args.cpu_policy as string;
  }
  let healthcheck: Healthcheck | null = null;
  if (args.healthcheck !== undefined && args.healthcheck !== null) {
    const h = args.healthcheck as Record<string, unknown>;
    if (typeof h !== 'object' || Array.isArray(h))
      throw schemaError("Invalid input for field/attribute healthcheck. is not of type 'object'");
    const extra = Object.keys(h).filter((k) => !['cmd', 'interval', 'retries', 'timeout'].includes(k));
    if (extra.length)
      throw schemaError(`Additional properties are not allowed ('${extra.join("', '")}' was unexpected)`);
    healthcheck = {
      test: h.cmd === undefined ? null : expectString('cmd', h.cmd),
      interval: h.interval === undefined ? 0 : parseNumber('interval', h.interval, 0, 86400, true),
      retries: h.retries === undefined ? 0 : parseNumber('retries', h.retries, 0, 1000, true),
      timeout: h.timeout === undefined ? 0 : parseNumber('timeout', h.timeout, 0, 86400, true),
    };
  }
  let exposedPorts: Record<string, object> | null = null;
  if (args.exposed_ports !== undefined && args.exposed_ports !== null) {
    const e = args.exposed_ports as Record<string, unknown>;
    if (typeof e !== 'object' || Array.isArray(e))
      throw schemaError("Invalid input for field/attribute exposed_ports. is not of type 'object'");
    for (const key of Object.keys(e)) {
      const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(key);
      if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) throw invalid(`Invalid exposed port: ${key}`);
    }
    exposedPorts = e as Record<string, object>;
  }
  const labels = expectStringMap('labels', args.labels);
  let published: PublishedPort[];
  try {
    published = publishedPorts(labels);
  } catch (e) {
    throw invalid((e as Error).message);
  }
  const securityGroups =
    args.security_groups === undefined || args.security_groups === null
      ? null
      : [...new Set(args.security_groups as string[])];
  if (securityGroups && exposedPorts && atLeast(v, 1, 20))
    throw invalid('security_groups can not be used together with exposed_ports.');
  const nets = args.nets === undefined || args.nets === null ? [] : args.nets;
  if (!Array.isArray(nets)) throw schemaError("Invalid input for field/attribute nets. is not of type 'array'");
  const mounts = args.mounts === undefined || args.mounts === null ? [] : args.mounts;
  if (!Array.isArray(mounts)) throw schemaError("Invalid input for field/attribute mounts. is not of type 'array'");
  for (const m of mounts as Array<Record<string, unknown>>) {
    if (!m || typeof m !== 'object')
      throw schemaError("Invalid input for field/attribute mounts. is not of type 'object'");
    if (typeof m.destination !== 'string' || !m.destination) throw invalid('A mount needs a destination.');
    const type = (m.type as string | undefined) ?? 'volume';
    if (type === 'bind') {
      if (typeof m.source !== 'string') throw invalid('A bind mount needs a source (base64 file content).');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(m.source)) throw zunErrorBase64();
    } else if (type === 'volume') {
      if (m.source === undefined && m.size === undefined) throw invalid('A volume mount needs a source or a size.');
    } else throw invalid(`Invalid mount type: ${type}`);
  }
  // Accepting a mount and running without it would lose the data written there without a word.
  if (mounts.length > 0)
    throw invalid('Mounts are not supported yet: Krater has no volumes; create the container without mounts.');

  const privilegedFields: string[] = [];
  if (pullPolicy) privilegedFields.push('container:create:image_pull_policy');
  if (args.runtime !== undefined && args.runtime !== null) privilegedFields.push('container:create:runtime');
  const privileged = parseBool('privileged', args.privileged);
  if (privileged) privilegedFields.push('container:create:privileged');
  let requestedHost: string | undefined;
  if (args.host !== undefined && args.host !== null) {
    requestedHost = expectString('host', args.host, { min: 1, max: 255 });
    privilegedFields.push('container:create:requested_destination');
  }

  const spec: ContainerSpec = {
    name,
    image,
    imageDriver: imageDriver as 'docker' | 'glance',
    imagePullPolicy: pullPolicy as ContainerSpec['imagePullPolicy'],
    command,
    entrypoint,
    limits: { cpu, memoryMiB: memory, diskGiB: disk },
    workdir:
      args.workdir === undefined || args.workdir === null ? null : expectString('workdir', args.workdir, { max: 255 }),
    hostname,
    environment: expectStringMap('environment', args.environment),
    labels,
    hints: args.hints ?? {},
    restartPolicy,
    interactive,
    tty,
    autoRemove: parseBool('auto_remove', args.auto_remove),
    autoHeal: parseBool('auto_heal', args.auto_heal),
    privileged,
    runtime:
      args.runtime === undefined || args.runtime === null
        ? null
        : expectString('runtime', args.runtime, { min: 1, max: 255 }),
    cpuPolicy: cpuPolicy as 'shared' | 'dedicated',
    healthcheck,
    exposedPorts,
    securityGroups,
    nets: nets as NetRequest[],
    mounts,
    publishedPorts: published,
    availabilityZone:
      args.availability_zone === undefined || args.availability_zone === null
        ? null
        : expectString('availability_zone', args.availability_zone),
  };
  return { spec, run: parseBool('run', args.run), requestedHost, privilegedFields };
}

function zunErrorBase64() {
  return invalid('The bind mount source is not valid base64.');
}
