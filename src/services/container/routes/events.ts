import { PassThrough } from 'node:stream';
import { containerChanges } from '../../../compute/changes.js';
import type { ContainerRepo } from '../../../compute/repo.js';
import { Status } from '../../../compute/states.js';
import type { App } from '../../../core/http/server.js';
import type { ContainerRow } from '../../../core/store/schema.js';
import { actorOf, authorize, loadContainer, view, type ZunContext } from '../context.js';
import { parseBool, parseNumber, schemaError, zunError } from '../params.js';

/**
 * Krater's extensions so clients need not poll (docs/container-extensions.md):
 *
 *  - `GET /v1/containers/{id}/wait?status=<Status>[&status=…][&request_id=req-…][&timeout=<s>]` — a long poll that
 *    answers the container view as soon as it matches (status among the given ones and no task in flight; the
 *    action of `request_id` finished), or at the timeout with the current view. The `Krater-Wait` header says which
 *    (`matched` | `timeout`); a container that goes away is a 404.
 *  - `GET /v1/events[?all_projects=1]` — a server-sent event stream of container status and task-state changes
 *    in the token's project (every project for admins with `all_projects`).
 *
 * Both watch the store, so they see changes made through any API replica or agent; changes made in this process
 * wake them at once (changes.ts), others are found by polling.
 */

const STATUSES: readonly string[] = Object.values(Status);
const EVENT_POLL_MS = 200;
const KEEPALIVE_MS = 15_000;
const WAIT_DEFAULT_S = 30;
const WAIT_MAX_S = 300;

/** Statuses from `status=a&status=b` or `status=a,b`, matched case-insensitively, returned as Zun spells them. */
export function parseWaitStatuses(raw: unknown): string[] {
  if (raw === undefined || raw === null || raw === '') return [];
  const list = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => String(v).split(','));
  return list
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const found = STATUSES.find((x) => x.toLowerCase() === s.toLowerCase());
      if (!found)
        throw schemaError(
          `Invalid input for field/attribute status. Value: ${s}. '${s}' is not one of ${JSON.stringify(STATUSES)}`,
        );
      return found;
    });
}

/** One change of a container, as the event stream sends it. */
export interface ContainerEvent {
  action: 'create' | 'update' | 'delete';
  uuid: string;
  name: string | null;
  project_id: string;
  status: string;
  task_state: string | null;
  status_reason: string | null;
  exit_code: number | null;
  previous_status: string | null;
  previous_task_state: string | null;
  time: string;
}

type Snap = Pick<
  ContainerRow,
  'uuid' | 'name' | 'project_id' | 'status' | 'task_state' | 'status_reason' | 'exit_code'
>;

/**
 * Watches the containers of one scope (a project, or all) by reading the store periodically and fans the changes
 * out to its subscribers; it runs while it has any.
 */
class ScopeWatcher {
  private readonly subscribers = new Set<(e: ContainerEvent) => void>();
  private snapshot: Map<string, Snap> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private ticking = false;
  /** A change arrived while a tick was reading: read again right after. */
  private dirty = false;
  private readonly onChange = () => {
    if (this.stopped) return;
    if (this.ticking) {
      this.dirty = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
  };
  /** Resolves once the first snapshot is taken (changes after that are reported). */
  ready: Promise<void> = Promise.resolve();

  constructor(
    private readonly repo: ContainerRepo,
    private readonly projectId: string | null,
    private readonly onIdle: () => void,
  ) {}

  subscribe(fn: (e: ContainerEvent) => void): { ready: Promise<void>; unsubscribe: () => void } {
    this.subscribers.add(fn);
    if (this.stopped) {
      this.stopped = false;
      containerChanges(this.repo.db).on('change', this.onChange);
      this.ready = this.tick();
    }
    return {
      ready: this.ready,
      unsubscribe: () => {
        this.subscribers.delete(fn);
        if (this.subscribers.size === 0) {
          this.stopped = true;
          containerChanges(this.repo.db).off('change', this.onChange);
          if (this.timer) clearTimeout(this.timer);
          this.snapshot = undefined;
          this.onIdle();
        }
      },
    };
  }

  private async read(): Promise<Map<string, Snap>> {
    return new Map((await this.repo.statusSnapshot(this.projectId)).map((r) => [r.uuid, r]));
  }

  private async tick(): Promise<void> {
    this.ticking = true;
    this.dirty = false;
    try {
      const now = await this.read();
      if (this.stopped) return;
      const before = this.snapshot;
      this.snapshot = now;
      if (before) {
        const time = new Date().toISOString();
        const emit = (e: ContainerEvent) => {
          for (const fn of this.subscribers) fn(e);
        };
        for (const [uuid, c] of now) {
          const old = before.get(uuid);
          if (old && old.status === c.status && old.task_state === c.task_state) continue;
          emit({
            action: old ? 'update' : 'create',
            ...pick(c),
            previous_status: old?.status ?? null,
            previous_task_state: old?.task_state ?? null,
            time,
          });
        }
        for (const [uuid, old] of before) {
          if (now.has(uuid)) continue;
          emit({
            action: 'delete',
            ...pick(old),
            status: Status.Deleted,
            task_state: null,
            previous_status: old.status,
            previous_task_state: old.task_state,
            time,
          });
        }
      }
    } catch {
      // A store hiccup: try again on the next tick.
    }
    this.ticking = false;
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.dirty ? 0 : EVENT_POLL_MS);
  }
}

const pick = (c: Snap) => ({
  uuid: c.uuid,
  name: c.name,
  project_id: c.project_id,
  status: c.status,
  task_state: c.task_state,
  status_reason: c.status_reason,
  exit_code: c.exit_code,
});

/** One watcher per scope per process, however many streams are open. */
class EventHub {
  private readonly watchers = new Map<string, ScopeWatcher>();
  constructor(private readonly repo: ContainerRepo) {}
  subscribe(projectId: string | null, fn: (e: ContainerEvent) => void) {
    const key = projectId ?? '*';
    let w = this.watchers.get(key);
    if (!w) {
      w = new ScopeWatcher(this.repo, projectId, () => this.watchers.delete(key));
      this.watchers.set(key, w);
    }
    return w.subscribe(fn);
  }
}

const hubs = new WeakMap<object, EventHub>();

export function eventRoutes(app: App, zx: ZunContext): void {
  const { repo } = zx;
  let hub = hubs.get(repo);
  if (!hub) {
    hub = new EventHub(repo);
    hubs.set(repo, hub);
  }
  const events = hub;

  app.get('/containers/:id/wait', { config: { repeatableQuery: ['status'] } }, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const unknown = Object.keys(q).filter((k) => !['status', 'request_id', 'timeout', 'all_projects'].includes(k));
    if (unknown.length) throw schemaError(`Unknown parameters: ${unknown.join(', ')}`);
    const statuses = parseWaitStatuses(q.status);
    const timeoutS = q.timeout === undefined ? WAIT_DEFAULT_S : parseNumber('timeout', q.timeout, 0, WAIT_MAX_S, false);
    const requestId = q.request_id === undefined ? undefined : String(q.request_id);
    const c = await loadContainer(zx, req, 'get_one');
    let gone = false;
    // The response's close before it was sent: the client went away.
    reply.raw.once('close', () => {
      gone = true;
    });
    const { container, matched } = await zx.api.wait(actorOf(req), c, {
      statuses,
      requestId,
      timeoutMs: timeoutS * 1000,
      cancelled: () => gone,
    });
    reply.header('Krater-Wait', matched ? 'matched' : 'timeout');
    return view(zx, req, container.row);
  });

  app.get('/events', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const unknown = Object.keys(q).filter((k) => !['all_projects'].includes(k));
    if (unknown.length) throw schemaError(`Unknown parameters: ${unknown.join(', ')}`);
    authorize(zx, req, 'container:get_all', { project_id: req.auth.projectId });
    const all = parseBool('all_projects', q.all_projects);
    if (all) authorize(zx, req, 'container:get_all_all_projects', { project_id: req.auth.projectId });
    else if (!req.auth.projectId)
      throw zunError(403, 'PolicyNotAuthorized', 'A project-scoped token is required to watch container events.');
    const out = new PassThrough();
    let seq = 0;
    const sub = events.subscribe(all ? null : (req.auth.projectId as string), (e) => {
      seq += 1;
      out.write(`id: ${seq}\nevent: container\ndata: ${JSON.stringify(e)}\n\n`);
    });
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
    const end = () => {
      clearInterval(keepalive);
      sub.unsubscribe();
      out.end();
    };
    reply.raw.once('close', end);
    out.once('close', end);
    // The stream starts once the watcher has its first snapshot: every later change is reported.
    await sub.ready;
    out.write(': krater container events\n\n');
    reply
      .header('Content-Type', 'text/event-stream; charset=utf-8')
      .header('Cache-Control', 'no-cache')
      .header('X-Accel-Buffering', 'no');
    return reply.send(out);
  });
}
