/**
 * The container state machine, as Zun defines it: statuses, task states, which actions each status allows
 * (VALID_STATES) and what the engine's view of a task maps to.
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

export type TaskState =
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

/** What the engine reports for a container's task. */
export type EngineState = 'running' | 'paused' | 'stopped' | 'created' | 'missing' | 'unknown';

/** Maps the engine's state to a Zun status (Zun: `zun/container/docker/driver.py` `_populate_container`). */
export function statusFromEngine(engine: EngineState, current: string): Status {
  switch (engine) {
    case 'running':
      return Running;
    case 'paused':
      return Paused;
    case 'stopped':
      return Stopped;
    case 'created':
      return current === Creating ? Created : current === Created ? Created : Stopped;
    default:
      return Unknown;
  }
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
