/**
 * An agent on the in-memory FakeEngine over a real SQLite store in a temp dir, without networking (as
 * KRATER_NETWORKING=none) and with millisecond timings: what the agent-*.test.ts files drive.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { Agent } from '../../../src/agent/agent.js';
import type { AgentImageWork, AgentTiming } from '../../../src/agent/context.js';
import { ContainerRepo } from '../../../src/compute/repo.js';
import { openStore, type Store } from '../../../src/core/store/db.js';
import type { ContainerRow } from '../../../src/core/store/schema.js';
import { FakeEngine } from '../../../src/engine/fake-engine.js';

export const HOST = 'unit-host';
export const eid = (uuid: string) => `zun-${uuid}`;

/** Image work that resolves every container's image to its own name and records image tasks. */
export class FakeImages implements AgentImageWork {
  readonly tasks: { action: string; uuid: string }[] = [];
  readonly commits: string[] = [];
  async ensureForContainer(c: ContainerRow): Promise<string> {
    return `docker.io/library/${c.image}:latest`;
  }
  async commit(c: ContainerRow): Promise<void> {
    this.commits.push(c.uuid);
  }
  async runTask(action: string, uuid: string): Promise<void> {
    this.tasks.push({ action, uuid });
  }
}

export interface Harness {
  dir: string;
  store: Store;
  repo: ContainerRepo;
  engine: FakeEngine;
  images: FakeImages;
  agent: Agent;
  /** Back-off delays the agent asked for, by restart count. */
  backoffs: number[];
  /** A container row on this host (defaults: busybox, Creating, desired running). */
  container(patch?: Partial<ContainerRow>): Promise<ContainerRow>;
  /** Queues an action as the API does (with a container_actions record) and wakes the agent. */
  act(uuid: string, action: string, params?: Record<string, unknown>): Promise<number>;
  /** Waits until no task of this host is queued or running and the agent's lanes are idle. */
  settle(): Promise<void>;
  row(uuid: string): Promise<ContainerRow | undefined>;
  /** Waits until `check` holds (bounded: fails after `tries` × 5 ms). */
  until(check: () => boolean | Promise<boolean>, what: string, tries?: number): Promise<void>;
  /** Stops this agent (containers kept) and starts a new one on the same store and engine: a restart. */
  restart(): Promise<Agent>;
  /** The agent dies where it stands (kill -9: nothing finishes, its watchers are dead) and a new one starts. */
  crash(): Promise<Agent>;
  close(): Promise<void>;
}

const TIMING: Partial<AgentTiming> = { healthIntervalMs: () => 5, oomGraceMs: 30, readoptDelayMs: 1 };

export async function agentHarness(): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'krater-agent-unit-'));
  const store = await openStore(`sqlite:${join(dir, 'krater.db')}`);
  const repo = new ContainerRepo(store.db);
  const engine = new FakeEngine({ logDir: join(dir, 'logs') });
  const images = new FakeImages();
  const backoffs: number[] = [];
  const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
  const make = () =>
    new Agent({
      store,
      log,
      engine,
      images,
      host: HOST,
      heartbeatMs: 0,
      pollMs: 0,
      timing: {
        ...TIMING,
        restartDelayMs: (n) => {
          backoffs.push(n);
          return 1;
        },
      },
    });
  let agent = make();
  await agent.start();
  const until = async (check: () => boolean | Promise<boolean>, what: string, tries = 400) => {
    for (let i = 0; i < tries; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`not reached: ${what}`);
  };
  const idle = async () =>
    (await store.db.selectFrom('agent_tasks').select('id').where('host', '=', HOST).execute()).length === 0;
  const h: Harness = {
    dir,
    store,
    repo,
    engine,
    images,
    get agent() {
      return agent;
    },
    backoffs,
    async container(patch = {}) {
      const uuid = randomUUID();
      const now = new Date().toISOString();
      const row: ContainerRow = {
        uuid,
        name: `c-${uuid.slice(0, 8)}`,
        project_id: 'p1',
        user_id: 'u1',
        image: 'busybox',
        image_driver: 'docker',
        image_pull_policy: null,
        command: JSON.stringify(['sleep', '600']),
        entrypoint: null,
        cpu: 1,
        memory: '64',
        disk: null,
        workdir: null,
        hostname: null,
        environment: JSON.stringify({ A: '1' }),
        labels: '{}',
        hints: null,
        restart_policy: null,
        interactive: 0,
        tty: 0,
        auto_remove: 0,
        auto_heal: 0,
        privileged: 0,
        runtime: null,
        cpu_policy: 'shared',
        cpuset: null,
        registry_id: null,
        healthcheck: null,
        exposed_ports: null,
        security_groups: null,
        nets: null,
        mounts: null,
        addresses: null,
        ports: null,
        published_ports: null,
        availability_zone: 'nova',
        host: HOST,
        status: 'Creating',
        status_reason: null,
        task_state: null,
        health: null,
        exit_code: null,
        restart_count: 0,
        desired: 'running',
        started_at: null,
        finished_at: null,
        websocket_token: null,
        created_at: now,
        updated_at: null,
        ...patch,
      };
      await repo.insert(row);
      return row;
    },
    async act(uuid, action, params = {}) {
      const actionId = await repo.startAction({ uuid }, action, `req-${randomUUID()}`, 'u1', 'p1');
      await repo.enqueue(HOST, uuid, action, params, actionId);
      agent.wake();
      return actionId;
    },
    async settle() {
      await until(idle, 'the task queue drained');
    },
    row: (uuid) => repo.get(uuid),
    until,
    async restart() {
      await agent.stop('keep');
      agent = make();
      await agent.start();
      return agent;
    },
    async crash() {
      agent.closed = true;
      agent = make();
      await agent.start();
      return agent;
    },
    async close() {
      await agent.stop('keep');
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** The event the agent wrote for an action: `Success` or `Error` (undefined: not finished). */
export async function actionResult(store: Store, actionId: number): Promise<string | undefined> {
  const ev = await store.db
    .selectFrom('container_action_events')
    .select(['result'])
    .where('action_id', '=', actionId)
    .executeTakeFirst();
  return ev?.result ?? undefined;
}
