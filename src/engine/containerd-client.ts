/**
 * A typed client for containerd's gRPC API (containerd 1.6), built at run time from Debian's protos
 * (see protos.ts). It is a thin layer: message shapes mirror containerd's (snake_case fields, int64
 * values as decimal strings on output), errors carry gRPC codes, and every call carries the
 * `containerd-namespace` header (and `containerd-lease` when a lease is attached with `withLease`).
 *
 * Higher layers (image import, the Engine) give these calls meaning; see containerd.md for the
 * orderings that matter (leases against GC, Kill → Wait → Delete teardown).
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { type AnyMessage, loadContainerdProtos, packAny, unpackAny } from './protos.js';

// ───────────────────────────── message types ─────────────────────────────

export type Labels = Record<string, string>;

/** protobuf Timestamp as decoded (`seconds` is an int64 string). */
export interface Timestamp {
  seconds: string;
  nanos: number;
}

export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export interface Descriptor {
  media_type: string;
  digest: string;
  /** int64: a number when sending, a decimal string when received. */
  size: number | string;
  annotations?: Labels;
}

export interface VersionInfo {
  version: string;
  revision: string;
}

export interface PluginInfo {
  type: string;
  id: string;
  requires: string[];
  exports: Labels;
  capabilities: string[];
  init_err: { code: number; message: string } | null;
}

export interface Namespace {
  name: string;
  labels: Labels;
}

export interface ContentInfo {
  digest: string;
  size: string;
  created_at: Timestamp | null;
  updated_at: Timestamp | null;
  labels: Labels;
}

export interface Image {
  name: string;
  labels: Labels;
  target: Descriptor;
  created_at?: Timestamp | null;
  updated_at?: Timestamp | null;
}

export interface Lease {
  id: string;
  created_at: Timestamp | null;
  labels: Labels;
}

export type SnapshotKind = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  created_at: Timestamp | null;
  updated_at: Timestamp | null;
  labels: Labels;
}

export interface Container {
  id: string;
  labels?: Labels;
  image?: string;
  runtime: { name: string; options?: AnyMessage | null };
  spec: AnyMessage;
  snapshotter?: string;
  snapshot_key?: string;
  created_at?: Timestamp | null;
  updated_at?: Timestamp | null;
  extensions?: Record<string, AnyMessage>;
}

export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';

export interface Process {
  /** Empty in `Tasks.Get` answers; `id` holds the container id (or exec id) there. */
  container_id: string;
  id: string;
  pid: number;
  status: TaskStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exit_status: number;
  exited_at: Timestamp | null;
}

export interface CreateTaskRequest {
  container_id: string;
  rootfs?: Mount[];
  /** '' = null IO; a path to an existing regular file (appended to) or FIFO; `file://`, `binary://` URIs. */
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
  options?: AnyMessage;
  runtime_path?: string;
}

export interface ExecRequest {
  container_id: string;
  exec_id: string;
  /** The OCI process spec (JSON), packed by the client. */
  process: Record<string, unknown>;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
}

export interface ExitStatus {
  exit_status: number;
  exited_at: Timestamp | null;
}

export interface DeleteTaskResponse {
  id: string;
  pid: number;
  exit_status: number;
  exited_at: Timestamp | null;
}

/** A task metric with its payload decoded (`io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`). */
export interface TaskMetric {
  id: string;
  timestamp: Timestamp | null;
  type_url: string;
  data: Record<string, any> | undefined;
}

/** An event envelope with its payload decoded when the type is known. */
export interface ContainerdEvent {
  timestamp: Timestamp | null;
  namespace: string;
  topic: string;
  type_url: string;
  event: Record<string, any> | undefined;
}

// ───────────────────────────── errors and helpers ─────────────────────────────

/** An error from a containerd call; `code` is the gRPC status code. */
export class ContainerdError extends Error {
  readonly code: grpc.status;
  readonly details: string;
  readonly call: string;
  constructor(call: string, code: grpc.status, details: string) {
    super(`containerd ${call}: ${grpc.status[code] ?? code}: ${details}`);
    this.name = 'ContainerdError';
    this.code = code;
    this.details = details;
    this.call = call;
  }
}

function codeOf(err: unknown): grpc.status | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number'
    ? ((err as { code: number }).code as grpc.status)
    : undefined;
}
export const isNotFound = (err: unknown): boolean => codeOf(err) === grpc.status.NOT_FOUND;
export const isAlreadyExists = (err: unknown): boolean => codeOf(err) === grpc.status.ALREADY_EXISTS;
export const isUnavailable = (err: unknown): boolean => codeOf(err) === grpc.status.UNAVAILABLE;

/** Timestamp → Date; containerd's zero time (year 1) and missing values give undefined. */
export function toDate(ts: Timestamp | null | undefined): Date | undefined {
  if (!ts) return undefined;
  const seconds = Number(ts.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) return undefined;
  return new Date(seconds * 1000 + Math.floor(ts.nanos / 1e6));
}

function wrapError(call: string, err: unknown): Error {
  const code = codeOf(err);
  if (code === undefined) return err instanceof Error ? err : new Error(String(err));
  const details = (err as { details?: string }).details ?? (err as Error).message;
  return new ContainerdError(call, code, details);
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ───────────────────────────── client ─────────────────────────────

type ServiceName =
  | 'version'
  | 'introspection'
  | 'namespaces'
  | 'content'
  | 'images'
  | 'leases'
  | 'snapshots'
  | 'diff'
  | 'containers'
  | 'tasks'
  | 'events';

const SERVICE_PATHS: Record<ServiceName, string> = {
  version: 'containerd.services.version.v1.Version',
  introspection: 'containerd.services.introspection.v1.Introspection',
  namespaces: 'containerd.services.namespaces.v1.Namespaces',
  content: 'containerd.services.content.v1.Content',
  images: 'containerd.services.images.v1.Images',
  leases: 'containerd.services.leases.v1.Leases',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  diff: 'containerd.services.diff.v1.Diff',
  containers: 'containerd.services.containers.v1.Containers',
  tasks: 'containerd.services.tasks.v1.Tasks',
  events: 'containerd.services.events.v1.Events',
};

export interface ContainerdClientOptions {
  /** Socket path (`/run/…/containerd.sock`) or a gRPC target (`unix:///…`). */
  address: string;
  /** containerd namespace every call runs in (created on demand by containerd). */
  namespace: string;
  /** Snapshotter used when a call does not name one (default `overlayfs`). */
  snapshotter?: string;
  /** Deadline for unary calls in ms (default 120 000; `Tasks.Wait` never has one). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Override the client's deadline for this call (0 = none). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Shared connection state: one channel and one stub per service, reused by derived clients. */
class Connection {
  readonly channel: grpc.Channel;
  readonly stubs = new Map<ServiceName, grpc.Client>();
  readonly target: string;
  closed = false;
  constructor(address: string) {
    this.target = address.includes('://') ? address : `unix://${address}`;
    this.channel = new grpc.Channel(this.target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      // containerd reconnects quickly after restarts; keep the backoff short.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
    });
  }
  stub(name: ServiceName): grpc.Client {
    let s = this.stubs.get(name);
    if (!s) {
      const services = loadContainerdProtos().grpc;
      let ctor: any = services;
      for (const part of SERVICE_PATHS[name].split('.')) ctor = ctor?.[part];
      if (typeof ctor !== 'function') throw new Error(`containerd service ${SERVICE_PATHS[name]} missing from protos`);
      s = new ctor(this.target, grpc.credentials.createInsecure(), { channelOverride: this.channel }) as grpc.Client;
      this.stubs.set(name, s);
    }
    return s;
  }
}

export class ContainerdClient {
  readonly namespace: string;
  readonly snapshotter: string;
  /** The lease attached to this client's calls, if any. */
  readonly lease: string | undefined;
  readonly address: string;
  private readonly conn: Connection;
  private readonly timeoutMs: number;

  constructor(options: ContainerdClientOptions);
  constructor(options: ContainerdClientOptions, conn: Connection, lease?: string);
  constructor(options: ContainerdClientOptions, conn?: Connection, lease?: string) {
    if (!options.namespace) throw new Error('containerd namespace is required');
    this.address = options.address;
    this.namespace = options.namespace;
    this.snapshotter = options.snapshotter ?? 'overlayfs';
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.conn = conn ?? new Connection(options.address);
    this.lease = lease;
  }

  private get options(): ContainerdClientOptions {
    return {
      address: this.address,
      namespace: this.namespace,
      snapshotter: this.snapshotter,
      timeoutMs: this.timeoutMs,
    };
  }

  /** A client for another namespace on the same connection. */
  withNamespace(namespace: string): ContainerdClient {
    return new ContainerdClient({ ...this.options, namespace }, this.conn, this.lease);
  }

  /** A client whose calls carry `containerd-lease: <id>` (resources it creates are held by the lease). */
  withLease(leaseId: string | undefined): ContainerdClient {
    return new ContainerdClient(this.options, this.conn, leaseId);
  }

  /** Close the shared channel (all derived clients stop working). */
  close(): void {
    if (this.conn.closed) return;
    this.conn.closed = true;
    for (const s of this.conn.stubs.values()) s.close();
    this.conn.channel.close();
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', this.namespace);
    if (this.lease) md.set('containerd-lease', this.lease);
    return md;
  }

  private callOptions(opts?: CallOptions): grpc.CallOptions {
    const timeout = opts?.timeoutMs ?? this.timeoutMs;
    return timeout > 0 ? { deadline: Date.now() + timeout } : {};
  }

  /** Generic unary call: `unary('tasks', 'Get', {container_id})`. */
  unary<T>(service: ServiceName, method: string, request: object, opts?: CallOptions): Promise<T> {
    const stub = this.conn.stub(service) as any;
    const name = `${SERVICE_PATHS[service].split('.').pop()}.${method}`;
    return new Promise<T>((resolve, reject) => {
      if (opts?.signal?.aborted) return reject(opts.signal.reason ?? new Error('aborted'));
      const call: grpc.ClientUnaryCall = stub[method](
        request,
        this.metadata(),
        this.callOptions(opts),
        (err: grpc.ServiceError | null, res: T) => {
          opts?.signal?.removeEventListener('abort', onAbort);
          if (err) reject(wrapError(name, err));
          else resolve(res);
        },
      );
      const onAbort = () => call.cancel();
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Collect a server stream. */
  private collect<T>(service: ServiceName, method: string, request: object, opts?: CallOptions): Promise<T[]> {
    const stub = this.conn.stub(service) as any;
    const name = `${SERVICE_PATHS[service].split('.').pop()}.${method}`;
    return new Promise<T[]>((resolve, reject) => {
      const out: T[] = [];
      const call: grpc.ClientReadableStream<T> = stub[method](request, this.metadata(), this.callOptions(opts));
      call.on('data', (m: T) => out.push(m));
      call.on('error', (err) => reject(wrapError(name, err)));
      call.on('end', () => resolve(out));
    });
  }

  // ── version / introspection ──

  async version(opts?: CallOptions): Promise<VersionInfo> {
    return this.unary<VersionInfo>('version', 'Version', {}, opts);
  }

  async plugins(filters: string[] = [], opts?: CallOptions): Promise<PluginInfo[]> {
    return (await this.unary<{ plugins: PluginInfo[] }>('introspection', 'Plugins', { filters }, opts)).plugins;
  }

  // ── namespaces ──

  readonly namespaces = {
    create: async (name: string, labels: Labels = {}): Promise<Namespace> =>
      (await this.unary<{ namespace: Namespace }>('namespaces', 'Create', { namespace: { name, labels } })).namespace,
    get: async (name: string): Promise<Namespace> =>
      (await this.unary<{ namespace: Namespace }>('namespaces', 'Get', { name })).namespace,
    list: async (): Promise<Namespace[]> =>
      (await this.unary<{ namespaces: Namespace[] }>('namespaces', 'List', { filter: '' })).namespaces,
    /** Fails with FAILED_PRECONDITION while the namespace still holds images, containers, content or snapshots. */
    delete: async (name: string): Promise<void> => {
      await this.unary('namespaces', 'Delete', { name });
    },
  };

  // ── content ──

  readonly content = {
    info: async (digest: string): Promise<ContentInfo> =>
      (await this.unary<{ info: ContentInfo }>('content', 'Info', { digest })).info,
    list: async (filters: string[] = []): Promise<ContentInfo[]> =>
      (await this.collect<{ info: ContentInfo[] }>('content', 'List', { filters })).flatMap((r) => r.info),
    delete: async (digest: string): Promise<void> => {
      await this.unary('content', 'Delete', { digest });
    },
    /** Set (or, with an empty value, remove) the given labels only. */
    updateLabels: async (digest: string, labels: Labels): Promise<ContentInfo> => {
      const paths = Object.keys(labels).map((k) => `labels.${k}`);
      return (
        await this.unary<{ info: ContentInfo }>('content', 'Update', {
          info: { digest, labels },
          update_mask: { paths },
        })
      ).info;
    },
    /** Read a whole blob (meant for manifests and configs; use `readStream` for layers). */
    read: async (digest: string): Promise<Buffer> => {
      const parts = await this.collect<{ offset: string; data: Buffer }>('content', 'Read', {
        digest,
        offset: 0,
        size: 0,
      });
      return Buffer.concat(parts.map((p) => p.data));
    },
    readStream: (digest: string): AsyncIterable<Buffer> => this.readContentStream(digest),
    abort: async (ref: string): Promise<void> => {
      await this.unary('content', 'Abort', { ref });
    },
    /**
     * Write a blob with the STAT → WRITE… → COMMIT sequence on one `Content.Write` stream.
     * Resumes an interrupted ingest with the same ref; retries while another writer holds the ref.
     * A blob that already exists is not rewritten; its labels are applied with `Content.Update`.
     */
    write: (req: ContentWriteRequest): Promise<ContentWriteResult> => this.writeContent(req),
  };

  private async *readContentStream(digest: string): AsyncIterable<Buffer> {
    const stub = this.conn.stub('content') as any;
    const call: grpc.ClientReadableStream<{ data: Buffer }> = stub.Read(
      { digest, offset: 0, size: 0 },
      this.metadata(),
      {},
    );
    try {
      for await (const m of call) yield m.data;
    } catch (err) {
      throw wrapError('Content.Read', err);
    } finally {
      call.cancel();
    }
  }

  private async writeContent(req: ContentWriteRequest): Promise<ContentWriteResult> {
    const deadline = Date.now() + (req.lockedRetryMs ?? 30_000);
    for (;;) {
      try {
        return await this.writeContentOnce(req);
      } catch (err) {
        // "ref … locked for …: unavailable": someone else is writing the same ref right now.
        if (isUnavailable(err) && /locked/.test((err as Error).message) && Date.now() < deadline) {
          await delay(100);
          continue;
        }
        throw err;
      }
    }
  }

  private async writeContentOnce(req: ContentWriteRequest): Promise<ContentWriteResult> {
    const stub = this.conn.stub('content') as any;
    const call: grpc.ClientDuplexStream<any, any> = stub.Write(this.metadata(), {});
    const responses = call[Symbol.asyncIterator]();
    const exchange = async (msg: object): Promise<any> => {
      call.write(msg);
      const r = await responses.next();
      if (r.done) throw new Error('containerd Content.Write: stream ended early');
      return r.value;
    };
    const labels = req.labels ?? {};
    try {
      let status: { offset: string };
      try {
        status = await exchange({ action: 'STAT', ref: req.ref, total: req.size, expected: req.digest });
      } catch (err) {
        if (isAlreadyExists(err)) return this.existingContent(req);
        throw wrapError('Content.Write', err);
      }
      let offset = Number(status.offset);
      // resume: drop what containerd already has (a `dataFrom` source starts at the offset itself)
      let skip = req.dataFrom ? 0 : offset;
      const chunkSize = 1024 * 1024;
      const source = req.dataFrom ? req.dataFrom(offset) : typeof req.data === 'function' ? req.data() : req.data;
      if (source === undefined) throw new Error(`content ${req.digest}: no data given`);
      const chunks: Iterable<Buffer> | AsyncIterable<Buffer> = Buffer.isBuffer(source) ? [source] : source;
      for await (let chunk of chunks) {
        if (skip > 0) {
          if (chunk.length <= skip) {
            skip -= chunk.length;
            continue;
          }
          chunk = chunk.subarray(skip);
          skip = 0;
        }
        for (let i = 0; i < chunk.length; i += chunkSize) {
          const data = chunk.subarray(i, i + chunkSize);
          await exchange({ action: 'WRITE', ref: req.ref, offset, data });
          offset += data.length;
        }
      }
      if (offset !== req.size) {
        throw new Error(`content ${req.digest}: wrote ${offset} bytes, expected ${req.size}`);
      }
      try {
        const r = await exchange({
          action: 'COMMIT',
          ref: req.ref,
          total: req.size,
          expected: req.digest,
          offset,
          labels,
        });
        return { digest: r.digest || req.digest, existed: false };
      } catch (err) {
        if (isAlreadyExists(err)) return this.existingContent(req);
        throw wrapError('Content.Write', err);
      }
    } catch (err) {
      throw err instanceof ContainerdError ? err : wrapError('Content.Write', err);
    } finally {
      call.end();
      call.cancel();
    }
  }

  private async existingContent(req: ContentWriteRequest): Promise<ContentWriteResult> {
    if (req.labels && Object.keys(req.labels).length > 0) await this.content.updateLabels(req.digest, req.labels);
    return { digest: req.digest, existed: true };
  }

  // ── images ──

  readonly images = {
    get: async (name: string): Promise<Image> => (await this.unary<{ image: Image }>('images', 'Get', { name })).image,
    list: async (filters: string[] = []): Promise<Image[]> =>
      (await this.unary<{ images: Image[] }>('images', 'List', { filters })).images,
    create: async (image: Image): Promise<Image> =>
      (await this.unary<{ image: Image }>('images', 'Create', { image })).image,
    /** Update the given fields (`target`, `labels`, `labels.<k>`); all fields when `paths` is empty. */
    update: async (image: Image, paths: string[] = []): Promise<Image> =>
      (await this.unary<{ image: Image }>('images', 'Update', { image, update_mask: paths.length ? { paths } : null }))
        .image,
    /** Create, or point an existing name at a new target (and labels). */
    put: async (image: Image): Promise<Image> => {
      try {
        return await this.images.create(image);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        return this.images.update(image, ['target', 'labels']);
      }
    },
    /** `sync` waits for garbage collection to finish. */
    delete: async (name: string, sync = false): Promise<void> => {
      await this.unary('images', 'Delete', { name, sync });
    },
  };

  // ── leases ──

  readonly leases = {
    /** `expireSeconds` adds `containerd.io/gc.expire` so a lease left behind by a crash expires by itself. */
    create: async (opts: { id?: string; labels?: Labels; expireSeconds?: number } = {}): Promise<Lease> => {
      const labels: Labels = { ...(opts.labels ?? {}) };
      if (opts.expireSeconds) {
        labels['containerd.io/gc.expire'] = new Date(Date.now() + opts.expireSeconds * 1000).toISOString();
      }
      const id = opts.id ?? `krater-${randomUUID()}`;
      return (await this.unary<{ lease: Lease }>('leases', 'Create', { id, labels })).lease;
    },
    list: async (filters: string[] = []): Promise<Lease[]> =>
      (await this.unary<{ leases: Lease[] }>('leases', 'List', { filters })).leases,
    delete: async (id: string, sync = false): Promise<void> => {
      await this.unary('leases', 'Delete', { id, sync });
    },
    listResources: async (id: string): Promise<{ id: string; type: string }[]> =>
      (await this.unary<{ resources: { id: string; type: string }[] }>('leases', 'ListResources', { id })).resources,
  };

  /**
   * Run a multi-step change inside a lease: `fn` gets a client whose calls carry the lease, so content
   * and snapshots it creates cannot be garbage-collected before they are referenced. The lease is deleted
   * afterwards (also on failure); it expires by itself after `expireSeconds` (default 1 h) if we crash.
   */
  async withTemporaryLease<T>(fn: (leased: ContainerdClient) => Promise<T>, expireSeconds = 3600): Promise<T> {
    const lease = await this.leases.create({ expireSeconds, labels: { 'krater.io/temporary': 'true' } });
    try {
      return await fn(this.withLease(lease.id));
    } finally {
      await this.leases.delete(lease.id).catch(() => undefined);
    }
  }

  // ── snapshots ──

  readonly snapshots = {
    prepare: async (key: string, parent = '', labels: Labels = {}, snapshotter = this.snapshotter): Promise<Mount[]> =>
      (await this.unary<{ mounts: Mount[] }>('snapshots', 'Prepare', { snapshotter, key, parent, labels })).mounts,
    view: async (key: string, parent: string, labels: Labels = {}, snapshotter = this.snapshotter): Promise<Mount[]> =>
      (await this.unary<{ mounts: Mount[] }>('snapshots', 'View', { snapshotter, key, parent, labels })).mounts,
    mounts: async (key: string, snapshotter = this.snapshotter): Promise<Mount[]> =>
      (await this.unary<{ mounts: Mount[] }>('snapshots', 'Mounts', { snapshotter, key })).mounts,
    commit: async (name: string, key: string, labels: Labels = {}, snapshotter = this.snapshotter): Promise<void> => {
      await this.unary('snapshots', 'Commit', { snapshotter, name, key, labels });
    },
    remove: async (key: string, snapshotter = this.snapshotter): Promise<void> => {
      await this.unary('snapshots', 'Remove', { snapshotter, key });
    },
    /** Snapshot info, or undefined if it does not exist. */
    stat: async (key: string, snapshotter = this.snapshotter): Promise<SnapshotInfo | undefined> => {
      try {
        return (await this.unary<{ info: SnapshotInfo }>('snapshots', 'Stat', { snapshotter, key })).info;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    list: async (filters: string[] = [], snapshotter = this.snapshotter): Promise<SnapshotInfo[]> =>
      (await this.collect<{ info: SnapshotInfo[] }>('snapshots', 'List', { snapshotter, filters })).flatMap(
        (r) => r.info,
      ),
    usage: async (key: string, snapshotter = this.snapshotter): Promise<{ size: number; inodes: number }> => {
      const r = await this.unary<{ size: string; inodes: string }>('snapshots', 'Usage', { snapshotter, key });
      return { size: Number(r.size), inodes: Number(r.inodes) };
    },
  };

  // ── diff ──

  readonly diff = {
    /** Apply a layer blob (from the content store) onto mounts; returns the uncompressed descriptor (diffID). */
    apply: async (layer: Descriptor, mounts: Mount[], opts?: CallOptions): Promise<Descriptor> =>
      (
        await this.unary<{ applied: Descriptor }>(
          'diff',
          'Apply',
          { diff: layer, mounts, payloads: {} },
          { timeoutMs: 0, ...opts },
        )
      ).applied,
  };

  // ── containers ──

  readonly containers = {
    create: async (container: Container): Promise<Container> =>
      (await this.unary<{ container: Container }>('containers', 'Create', { container })).container,
    get: async (id: string): Promise<Container> =>
      (await this.unary<{ container: Container }>('containers', 'Get', { id })).container,
    list: async (filters: string[] = []): Promise<Container[]> =>
      (await this.unary<{ containers: Container[] }>('containers', 'List', { filters })).containers,
    update: async (container: Container, paths: string[]): Promise<Container> =>
      (await this.unary<{ container: Container }>('containers', 'Update', { container, update_mask: { paths } }))
        .container,
    /** Does not stop a running task: Kill → Wait → Tasks.Delete first (containerd.md pitfall 2). */
    delete: async (id: string): Promise<void> => {
      await this.unary('containers', 'Delete', { id });
    },
  };

  // ── tasks ──

  readonly tasks = {
    create: async (req: CreateTaskRequest): Promise<{ container_id: string; pid: number }> =>
      this.unary('tasks', 'Create', {
        rootfs: [],
        stdin: '',
        stdout: '',
        stderr: '',
        terminal: false,
        ...req,
      }),
    start: async (containerId: string, execId = ''): Promise<{ pid: number }> =>
      this.unary('tasks', 'Start', { container_id: containerId, exec_id: execId }),
    /** Signal the task's init process (or an exec); `all` signals every process in the container. */
    kill: async (containerId: string, signal: number, opts: { all?: boolean; execId?: string } = {}): Promise<void> => {
      await this.unary('tasks', 'Kill', {
        container_id: containerId,
        exec_id: opts.execId ?? '',
        signal,
        all: opts.all ?? false,
      });
    },
    /** Long-poll until the process exits (no deadline unless given). Issue it before `start` to never miss an exit. */
    wait: async (containerId: string, execId = '', opts?: CallOptions): Promise<ExitStatus> =>
      this.unary('tasks', 'Wait', { container_id: containerId, exec_id: execId }, { timeoutMs: 0, ...opts }),
    delete: async (containerId: string): Promise<DeleteTaskResponse> =>
      this.unary('tasks', 'Delete', { container_id: containerId }),
    deleteProcess: async (containerId: string, execId: string): Promise<DeleteTaskResponse> =>
      this.unary('tasks', 'DeleteProcess', { container_id: containerId, exec_id: execId }),
    /** The init process (or an exec); throws NOT_FOUND when there is no task. */
    get: async (containerId: string, execId = ''): Promise<Process> =>
      (await this.unary<{ process: Process }>('tasks', 'Get', { container_id: containerId, exec_id: execId })).process,
    list: async (filter = ''): Promise<Process[]> =>
      (await this.unary<{ tasks: Process[] }>('tasks', 'List', { filter })).tasks,
    pause: async (containerId: string): Promise<void> => {
      await this.unary('tasks', 'Pause', { container_id: containerId });
    },
    resume: async (containerId: string): Promise<void> => {
      await this.unary('tasks', 'Resume', { container_id: containerId });
    },
    exec: async (req: ExecRequest): Promise<void> => {
      const { process, ...rest } = req;
      await this.unary('tasks', 'Exec', {
        stdin: '',
        stdout: '',
        stderr: '',
        terminal: false,
        ...rest,
        spec: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: jsonBuffer(process) },
      });
    },
    resizePty: async (containerId: string, width: number, height: number, execId = ''): Promise<void> => {
      await this.unary('tasks', 'ResizePty', { container_id: containerId, exec_id: execId, width, height });
    },
    closeIO: async (containerId: string, execId = ''): Promise<void> => {
      await this.unary('tasks', 'CloseIO', { container_id: containerId, exec_id: execId, stdin: true });
    },
    listPids: async (containerId: string): Promise<{ pid: number; info: Record<string, any> | undefined }[]> =>
      (
        await this.unary<{ processes: { pid: number; info: AnyMessage | null }[] }>('tasks', 'ListPids', {
          container_id: containerId,
        })
      ).processes.map((p) => ({ pid: p.pid, info: unpackAny(p.info) })),
    /** Update resources of a running task (`LinuxResources` JSON). */
    update: async (containerId: string, resources: Record<string, unknown>): Promise<void> => {
      await this.unary('tasks', 'Update', {
        container_id: containerId,
        resources: {
          type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources',
          value: jsonBuffer(resources),
        },
        annotations: {},
      });
    },
    /** Metrics with decoded payloads; filters like `id==<container id>`. */
    metrics: async (filters: string[] = []): Promise<TaskMetric[]> =>
      (
        await this.unary<{ metrics: { id: string; timestamp: Timestamp | null; data: AnyMessage | null }[] }>(
          'tasks',
          'Metrics',
          { filters },
        )
      ).metrics.map((m) => ({
        id: m.id,
        timestamp: m.timestamp,
        type_url: m.data?.type_url ?? '',
        data: unpackAny(m.data),
      })),
  };

  // ── events ──

  /** Publish an event in this namespace (topics look like `/krater/…`). */
  async publish(topic: string, event: AnyMessage): Promise<void> {
    await this.unary('events', 'Publish', { topic, event });
  }

  /**
   * Subscribe to events (`filters` are OR-ed containerd filter expressions, e.g.
   * `topic=="/tasks/exit"`; empty = everything). The subscription resubscribes by itself when the stream
   * breaks (containerd restart): events of the gap are lost, so `onResubscribe` is called once the new
   * stream is known to be live, and callers should reconcile (Tasks.List, re-issue Wait) there.
   * `ready` resolves once the first stream is live — events after that point will be delivered.
   */
  subscribe(filters: string[], onEvent: (event: ContainerdEvent) => void, opts: SubscribeOptions = {}): Subscription {
    return new Subscription(this, filters, onEvent, opts);
  }

  /** @internal Open a raw events stream (used by Subscription). */
  openEventStream(filters: string[]): grpc.ClientReadableStream<any> {
    const stub = this.conn.stub('events') as any;
    return stub.Subscribe({ filters }, this.metadata(), {});
  }
}

function jsonBuffer(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

export interface ContentWriteRequest {
  /** Ingest reference; concurrent writers of the same ref wait for each other. */
  ref: string;
  /** Expected digest (`sha256:…`) and size: containerd verifies both at commit. */
  digest: string;
  size: number;
  /** Labels applied at commit (or with Content.Update if the blob already exists). */
  labels?: Labels;
  data?: BlobData | (() => BlobData);
  /**
   * Alternative to `data` for sources that can start anywhere (HTTP Range): called with the offset containerd
   * already holds for this ref (0 for a new ingest), it yields the bytes from that offset on.
   */
  dataFrom?: (offset: number) => BlobData;
  /** How long to retry while the ref is locked by another writer (default 30 s). */
  lockedRetryMs?: number;
}

export type BlobData = Buffer | AsyncIterable<Buffer> | Iterable<Buffer>;

export interface ContentWriteResult {
  digest: string;
  /** True if the blob was already in the store (nothing was written). */
  existed: boolean;
}

export interface SubscribeOptions {
  /** Called after a broken stream was replaced by a live one (not for the first stream). */
  onResubscribe?: () => void;
  /** Called for every stream failure before a retry (informational). */
  onError?: (err: Error) => void;
  /** Upper bound of the retry backoff in ms (default 2000). */
  maxBackoffMs?: number;
}

const PROBE_PREFIX = '/krater/probe/';

/**
 * A self-healing events subscription. Liveness of each stream is established with a probe: the
 * subscription publishes `/krater/probe/<id>` events until it sees one come back, which proves the
 * server-side subscription exists (gRPC sends no headers before the first event).
 */
export class Subscription {
  /** Resolves when the first stream is live; rejects if the subscription is closed before. */
  readonly ready: Promise<void>;
  private call: grpc.ClientReadableStream<any> | undefined;
  private closed = false;
  private live = false;
  private everLive = false;
  private generation = 0;
  private readonly probeTopic = `${PROBE_PREFIX}${randomUUID()}`;
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;
  private backoff = 100;

  constructor(
    private readonly client: ContainerdClient,
    private readonly filters: string[],
    private readonly onEvent: (event: ContainerdEvent) => void,
    private readonly opts: SubscribeOptions,
  ) {
    this.ready = new Promise<void>((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => undefined);
    this.open();
  }

  private open(): void {
    if (this.closed) return;
    const gen = ++this.generation;
    this.live = false;
    const filters = this.filters.length ? [...this.filters, `topic=="${this.probeTopic}"`] : [];
    const call = this.client.openEventStream(filters);
    this.call = call;
    call.on('data', (env: any) => {
      if (gen !== this.generation) return;
      if (typeof env.topic === 'string' && env.topic.startsWith(PROBE_PREFIX)) {
        if (env.topic === this.probeTopic && !this.live) this.markLive();
        return;
      }
      let event: Record<string, any> | undefined;
      try {
        event = unpackAny(env.event);
      } catch {
        event = undefined;
      }
      this.onEvent({
        timestamp: env.timestamp ?? null,
        namespace: env.namespace,
        topic: env.topic,
        type_url: env.event?.type_url ?? '',
        event,
      });
    });
    const broken = (err?: Error) => {
      if (gen !== this.generation || this.closed) return;
      this.generation++; // ignore further callbacks of this stream
      call.cancel();
      if (err) this.opts.onError?.(err);
      const wait = this.backoff;
      this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 2000);
      setTimeout(() => this.open(), wait).unref?.();
    };
    call.on('error', (err) => broken(wrapError('Events.Subscribe', err)));
    call.on('end', () => broken(new Error('containerd Events.Subscribe: stream ended')));
    void this.probe(gen);
  }

  private markLive(): void {
    this.live = true;
    this.backoff = 100;
    if (!this.everLive) {
      this.everLive = true;
      this.resolveReady();
    } else {
      this.opts.onResubscribe?.();
    }
  }

  private async probe(gen: number): Promise<void> {
    const payload = packAny('containerd.events.TaskResumed', { container_id: '' });
    let interval = 20;
    while (!this.closed && gen === this.generation && !this.live) {
      try {
        await this.client.publish(this.probeTopic, payload);
      } catch {
        // daemon down: the stream will fail and reopen; keep probing this generation meanwhile
      }
      await delay(interval);
      interval = Math.min(interval * 2, 500);
    }
  }

  /** Stop receiving events. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.generation++;
    this.call?.cancel();
    if (!this.everLive) this.rejectReady(new Error('subscription closed'));
  }
}
