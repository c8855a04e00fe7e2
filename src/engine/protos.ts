/**
 * Run-time loading of containerd's 1.6 API definitions.
 *
 * The .proto files are not part of this repository: they come from Debian's
 * `golang-github-containerd-containerd-dev` package (and its dependencies
 * `golang-github-gogo-protobuf-dev`, `golang-github-gogo-googleapis-dev`,
 * `golang-github-containerd-cgroups-dev`, `libprotobuf-dev`).
 *
 * Two views of the same files are loaded once per process (lazily):
 *  - a @grpc/proto-loader package definition, from which the gRPC service clients are built;
 *  - a protobufjs Root, used to pack and unpack `google.protobuf.Any` payloads (events, metrics,
 *    runtime options), which proto-loader does not expose.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

let gocodeDir = '/usr/share/gocode/src';

/**
 * Where the Debian Go source tree is (configured as KRATER_GOCODE_DIR). The definitions are loaded once per process,
 * so this is process-wide and must be set before the first engine call.
 */
export function useGocodeDir(dir: string): void {
  if (cached && dir !== gocodeDir) throw new Error(`containerd API protos already loaded from ${gocodeDir}`);
  gocodeDir = dir;
}

/** Include paths for the containerd API protos and what they import. */
function protoIncludeDirs(base = gocodeDir): string[] {
  return [
    base,
    join(base, 'github.com/gogo/protobuf'), // gogoproto/gogo.proto
    join(base, 'github.com/gogo/googleapis'), // google/rpc/status.proto
    '/usr/include', // google/protobuf/descriptor.proto (imported by gogo.proto)
  ];
}

const CTRD = 'github.com/containerd/containerd';

/** Every file Krater loads; imports are followed from these. */
export const PROTO_FILES = [
  `${CTRD}/api/services/version/v1/version.proto`,
  `${CTRD}/api/services/introspection/v1/introspection.proto`,
  `${CTRD}/api/services/namespaces/v1/namespace.proto`,
  `${CTRD}/api/services/content/v1/content.proto`,
  `${CTRD}/api/services/images/v1/images.proto`,
  `${CTRD}/api/services/leases/v1/leases.proto`,
  `${CTRD}/api/services/snapshots/v1/snapshots.proto`,
  `${CTRD}/api/services/diff/v1/diff.proto`,
  `${CTRD}/api/services/containers/v1/containers.proto`,
  `${CTRD}/api/services/tasks/v1/tasks.proto`,
  `${CTRD}/api/services/events/v1/events.proto`,
  `${CTRD}/api/events/task.proto`,
  `${CTRD}/api/events/container.proto`,
  `${CTRD}/api/events/image.proto`,
  `${CTRD}/api/events/content.proto`,
  `${CTRD}/api/events/namespace.proto`,
  `${CTRD}/api/events/snapshot.proto`,
  `${CTRD}/runtime/v2/runc/options/oci.proto`,
  'github.com/containerd/cgroups/stats/v1/metrics.proto',
  'github.com/containerd/cgroups/v2/stats/metrics.proto',
];

/** Conversion options shared by proto-loader and our Any decoding (see containerd.md §2). */
export const CONVERSION = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true } as const;

export interface ContainerdProtos {
  /** `grpc.loadPackageDefinition` of all files: `services.containerd.services.tasks.v1.Tasks` etc. */
  grpc: grpc.GrpcObject;
  /** protobufjs view of the same files, for `Any` payloads. */
  root: protobuf.Root;
  includeDirs: string[];
}

let cached: ContainerdProtos | undefined;

function findInclude(dirs: string[], target: string): string | undefined {
  for (const dir of dirs) {
    const p = join(dir, target);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Load (once) and return the containerd API definitions. Throws a helpful error if the protos are missing. */
export function loadContainerdProtos(): ContainerdProtos {
  if (cached) return cached;
  const includeDirs = protoIncludeDirs();
  const missing = PROTO_FILES.filter((f) => !findInclude(includeDirs, f));
  if (missing.length > 0) {
    throw new Error(
      `containerd API protos not found (${missing[0]}${missing.length > 1 ? ` and ${missing.length - 1} more` : ''}) ` +
        `under ${includeDirs[0]}: apt-get install golang-github-containerd-containerd-dev ` +
        'golang-github-containerd-cgroups-dev (or set KRATER_GOCODE_DIR)',
    );
  }
  const packageDefinition = protoLoader.loadSync(PROTO_FILES, { ...CONVERSION, includeDirs });
  const root = new protobuf.Root();
  root.resolvePath = (origin: string, target: string): string | null => {
    if (isAbsolute(target)) return target;
    return findInclude(includeDirs, target) ?? join(origin.replace(/[^/]*$/, ''), target);
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  cached = { grpc: grpc.loadPackageDefinition(packageDefinition), root, includeDirs };
  return cached;
}

/** A `google.protobuf.Any` as containerd sends and expects it. */
export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/** JSON-valued Any type URLs (containerd's typeurl registers the OCI types as JSON). */
export const OCI_SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';

/** Pack a JSON-encoded Any (runtime spec, process spec, resources). */
export function jsonAny(typeUrl: string, value: unknown): AnyMessage {
  return { type_url: typeUrl, value: Buffer.from(JSON.stringify(value)) };
}

/** The protobuf type name of an Any (containerd type URLs carry no `type.googleapis.com/` prefix, but accept one). */
function typeNameOf(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl;
}

/** Pack a protobuf message into an Any: `packAny('containerd.runc.v1.Options', {root: '/x'})`. */
export function packAny(typeName: string, value: Record<string, unknown>): AnyMessage {
  const type = loadContainerdProtos().root.lookupType(typeName);
  const err = type.verify(value);
  if (err) throw new Error(`invalid ${typeName}: ${err}`);
  return { type_url: typeName, value: Buffer.from(type.encode(type.fromObject(value)).finish()) };
}

/**
 * Unpack an Any. JSON payloads (type URLs starting with `types.containerd.io/`) are parsed as JSON;
 * protobuf payloads are decoded if the type is known. Returns undefined for unknown types.
 */
export function unpackAny<T = Record<string, unknown>>(any: AnyMessage | null | undefined): T | undefined {
  if (!any?.type_url) return undefined;
  const value = any.value ?? Buffer.alloc(0);
  if (any.type_url.startsWith('types.containerd.io/')) {
    return JSON.parse(Buffer.from(value).toString('utf8')) as T;
  }
  let type: protobuf.Type;
  try {
    type = loadContainerdProtos().root.lookupType(typeNameOf(any.type_url));
  } catch {
    return undefined;
  }
  return type.toObject(type.decode(value), { ...CONVERSION, bytes: Buffer }) as T;
}
