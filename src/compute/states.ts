/**
 * The container state machine, as Zun defines it: statuses, task states, which actions each status allows
 * (VALID_STATES), the agent's action table (ACTIONS: guard, task state, success and error status, work) and what
 * the engine's view of a task maps to.
 */
export const Status = {
  Creating: 'Creating',
  Created: 'Created',
  Running: 'Running',
  Stopped: 'Stopped',
  Paused: 'Paused',
  Restarting: 'Restarting',
  Rebuilding: 'Rebuilding',
  Deleting: 'Deleting',
  Deleted: 'Deleted',
  Error: 'Error',
  Unknown: 'Unknown',
  Dead: 'Dead',
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** What a container's `task_state` says while the agent works on it (Zun's task states). */
export type TaskState =
  /** Set by the image side (src/images/host.ts) while a create waits for its image. */
  | 'image_pulling'
  | 'container_creating'
  | 'container_starting'
  | 'container_deleting'
  | 'container_stopping'
  | 'container_rebooting'
  | 'container_pausing'
  | 'container_unpausing'
  | 'container_killing'
  | 'network_attaching'
  | 'network_detaching'
  | 'container_rebuilding';

const { Creating, Created, Running, Stopped, Paused, Restarting, Rebuilding, Deleting, Deleted, Unknown, Dead } =
  Status;
const Errored = Status.Error;

/** Zun's VALID_STATES: an action on a container in any other status is a 409. */
export const VALID_STATES: Record<string, readonly Status[]> = {
  start: [Created, Stopped, Errored],
  stop: [Running],
  pause: [Running],
  kill: [Running],
  execute: [Running],
  execute_resize: [Running],
  attach: [Running],
  resize: [Running],
  top: [Running],
  stats: [Running],
  unpause: [Paused],
  reboot: [Created, Running, Stopped, Errored],
  rebuild: [Created, Running, Stopped, Errored],
  update: [Created, Running, Stopped, Paused],
  resize_container: [Created, Running, Stopped, Paused],
  add_security_group: [Created, Running, Stopped, Paused],
  remove_security_group: [Created, Running, Stopped, Paused],
  commit: [Running, Stopped, Paused],
  get_archive: [Created, Paused, Running, Stopped],
  put_archive: [Created, Paused, Running, Stopped],
  logs: [Created, Errored, Paused, Running, Stopped, Unknown],
  delete: [Created, Errored, Stopped, Deleted, Dead],
  delete_after_stop: [Running, Created, Errored, Stopped, Deleted, Dead],
  delete_force: [
    Creating,
    Created,
    Running,
    Stopped,
    Restarting,
    Rebuilding,
    Deleting,
    Deleted,
    Errored,
    Unknown,
    Dead,
  ],
};

export function canDo(action: string, status: string): boolean {
  const allowed = VALID_STATES[action];
  if (!allowed) throw new Error(`no VALID_STATES entry for ${action}`);
  return (allowed as readonly string[]).includes(status);
}

/** Zun's message for an action refused in the current status. */
export function invalidStateMessage(action: string, uuid: string, status: string): string {
  return `Cannot ${action.replace(/_/g, ' ')} container ${uuid} in ${status} state.`;
}

/** What the engine reports for a container's task (`missing`: the engine does not have the container). */
export type EngineState = 'running' | 'paused' | 'stopped' | 'created' | 'missing' | 'unknown';

/**
 * The one engine → status mapping (Zun: `zun/container/docker/driver.py` `_populate_container`), used when the
 * agent brings its rows in line with the engine. Undefined: the row keeps its status (a container the engine has
 * only created is Created while it was being created and otherwise left alone; a container still being created,
 * or already in Error, is not judged by its absence; `unknown` decides nothing). A `missing` container is Error
 * unless the agent's rules (auto_remove, auto_heal) say otherwise.
 */
export function statusFromEngine(engine: EngineState, current: string): Status | undefined {
  switch (engine) {
    case 'running':
      return Running;
    case 'paused':
      return Paused;
    case 'stopped':
      return Stopped;
    case 'created':
      return current === Creating ? Created : undefined;
    case 'missing':
      return current === Creating || current === Errored ? undefined : Errored;
    default:
      return undefined;
  }
}

/**
 * The work an agent task does, by name: the executor (src/agent/executor.ts) holds one handler per name. A task's
 * `kind` says what its subject is: a container, or a host image (`zun_images` row) for image pulls and deletes.
 */
export type AgentWork =
  | 'create'
  | 'start'
  | 'stop'
  | 'kill'
  | 'reboot'
  | 'pause'
  | 'unpause'
  | 'rebuild'
  | 'delete'
  | 'commit'
  | 'network_attach'
  | 'network_detach'
  | 'security_groups'
  | 'update_resources'
  | 'image_pull'
  | 'image_delete';

export interface ActionRule {
  /** The subject of the task: a container row, or a host image (`zun_images`). */
  kind: 'container' | 'image';
  /**
   * The VALID_STATES entry the API checks before it queues the action (null: none, e.g. create, or an action the
   * API only queues from a state it set itself). The agent runs what was queued; the guard is the API's.
   */
  guard: string | null;
  /** `desired` recorded before the work runs (what reconcile and the restart policy follow). */
  desired?: 'running' | 'stopped';
  /** `task_state` while the work runs (null: the row is not marked, and a failure does not touch it). */
  taskState: TaskState | null;
  /**
   * Status when the work succeeded (`task_state` cleared with it). Null: the status is not the action's to say
   * (kill: the exit watch records Stopped; network calls leave it). Deleted: the row is gone.
   */
  success: Status | null;
  /** Status when the work failed, with the message as `status_reason` (null: status unchanged, reason set). */
  error: Status | null;
  /** The handler (src/agent/executor.ts). */
  work: AgentWork;
  /** An action to run after this one succeeded, with the same parameters (create with `run`, rebuild of a running container). */
  followedBy?: (params: Record<string, unknown>) => AgentWork | undefined;
}

/**
 * The state machine of the agent's tasks, one row per action the API queues: the guard the API checked, the
 * task state while it runs, the status it ends in on success and on error, and the work.
 */
export const ACTIONS: Record<AgentWork, ActionRule> = {
  create: {
    kind: 'container',
    guard: null,
    taskState: 'container_creating',
    success: Created,
    error: Errored,
    work: 'create',
    followedBy: (p) => (p.run ? 'start' : undefined),
  },
  start: {
    kind: 'container',
    guard: 'start',
    desired: 'running',
    taskState: 'container_starting',
    success: Running,
    error: Errored,
    work: 'start',
  },
  stop: {
    kind: 'container',
    guard: 'stop',
    desired: 'stopped',
    taskState: 'container_stopping',
    success: Stopped,
    error: null,
    work: 'stop',
  },
  kill: {
    kind: 'container',
    guard: 'kill',
    desired: 'stopped',
    taskState: 'container_killing',
    success: null,
    error: null,
    work: 'kill',
  },
  reboot: {
    kind: 'container',
    guard: 'reboot',
    taskState: 'container_rebooting',
    success: Running,
    error: Errored,
    work: 'reboot',
  },
  pause: {
    kind: 'container',
    guard: 'pause',
    taskState: 'container_pausing',
    success: Paused,
    error: null,
    work: 'pause',
  },
  unpause: {
    kind: 'container',
    guard: 'unpause',
    taskState: 'container_unpausing',
    success: Running,
    error: null,
    work: 'unpause',
  },
  rebuild: {
    kind: 'container',
    guard: 'rebuild',
    taskState: 'container_rebuilding',
    success: Created,
    error: Errored,
    work: 'rebuild',
    followedBy: (p) => (p.wasRunning ? 'start' : undefined),
  },
  delete: {
    kind: 'container',
    guard: 'delete_force',
    taskState: 'container_deleting',
    success: Deleted,
    error: Errored,
    work: 'delete',
  },
  commit: { kind: 'container', guard: 'commit', taskState: null, success: null, error: null, work: 'commit' },
  network_attach: {
    kind: 'container',
    guard: null,
    taskState: 'network_attaching',
    success: null,
    error: null,
    work: 'network_attach',
  },
  network_detach: {
    kind: 'container',
    guard: null,
    taskState: 'network_detaching',
    success: null,
    error: null,
    work: 'network_detach',
  },
  security_groups: {
    kind: 'container',
    guard: 'add_security_group',
    taskState: null,
    success: null,
    error: null,
    work: 'security_groups',
  },
  update_resources: {
    kind: 'container',
    guard: 'update',
    taskState: null,
    success: null,
    error: null,
    work: 'update_resources',
  },
  image_pull: { kind: 'image', guard: null, taskState: null, success: null, error: null, work: 'image_pull' },
  image_delete: { kind: 'image', guard: null, taskState: null, success: null, error: null, work: 'image_delete' },
};

/** The rule of a queued action (undefined: not an action the agent knows). */
export function actionRule(action: string): ActionRule | undefined {
  return Object.hasOwn(ACTIONS, action) ? ACTIONS[action as AgentWork] : undefined;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m < 60) return m === 1 ? '1 min' : `${m} mins`;
  const h = Math.floor(m / 60);
  if (h < 48) return h === 1 ? '1 hour' : `${h} hours`;
  return `${Math.floor(h / 24)} days`;
}

/** Docker-style `status_detail`: "Up 3 mins", "Exited(0) 10 mins ago ", "Paused", "Created". */
export function statusDetail(
  c: {
    status: string;
    started_at: string | null;
    finished_at: string | null;
    exit_code: number | null;
    health?: string | null;
  },
  now = Date.now(),
): string | null {
  switch (c.status) {
    case Running: {
      const up = c.started_at ? `Up ${ago(now - Date.parse(c.started_at))}` : 'Up';
      return c.health ? `${up} (${c.health})` : up;
    }
    case Paused:
      return 'Paused';
    case Stopped:
      return c.finished_at ? `Exited(${c.exit_code ?? 0}) ${ago(now - Date.parse(c.finished_at))} ago ` : 'Exited';
    case Created:
      return 'Created';
    default:
      return null;
  }
}

export interface RestartPolicy {
  Name: 'no' | 'always' | 'on-failure' | 'unless-stopped';
  MaximumRetryCount: string;
}

/**
 * Whether the agent restarts a container whose task exited on its own (not stopped by a user action).
 * `restartCount` is the number of restarts already made.
 */
export function shouldRestart(policy: RestartPolicy | null, exitCode: number, restartCount: number): boolean {
  if (!policy) return false;
  switch (policy.Name) {
    case 'always':
    case 'unless-stopped':
      return true;
    case 'on-failure': {
      const max = Number(policy.MaximumRetryCount || '0');
      return exitCode !== 0 && (max === 0 || restartCount < max);
    }
    default:
      return false;
  }
}

/** Back-off between automatic restarts: 100 ms doubling to 10 s, like Docker's. */
export function restartDelayMs(restartCount: number): number {
  return Math.min(10_000, 100 * 2 ** Math.min(restartCount, 10));
}
