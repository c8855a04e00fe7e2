import type { Readable, Writable } from 'node:stream';
import type { ContainerRow } from '../core/store/schema.js';
import type { HostImages } from '../images/host.js';

/** A live stream into a container: what a WebSocket relays. */
export interface StreamSession {
  stdin: Writable;
  output: Readable;
  /** Resolves when the process (exec) or the run (attach) is over. */
  done: Promise<unknown>;
  close(): void;
}

/**
 * What the API asks of a host's agent. Long work (create, start, stop, delete, …) goes through `agent_tasks` in
 * the store and `wake` only shortens the agent's wait; short synchronous calls (Zun's "call" operations) go here:
 * in-process in `krater up` (the Agent itself), over HTTP to a `krater agent` (rpc-client.ts → rpc-server.ts).
 */
export interface AgentRpc {
  wake(): void;
  /** Image calls (pull with progress, list, rmi, load, save on this host's engine). */
  images?: HostImages;
  logs(
    c: ContainerRow,
    opts: { stdout: boolean; stderr: boolean; timestamps: boolean; tail: number | 'all'; since?: number },
  ): Promise<string>;
  /** Krater's extension: the log as it grows, until the container stops (Zun itself has no follow). */
  followLogs(c: ContainerRow, opts: { stdout: boolean; stderr: boolean; tail: number | 'all' }): NodeJS.ReadableStream;
  exec(c: ContainerRow, command: string[], opts: { tty: boolean }): Promise<{ output: string; exitCode: number }>;
  /** Interactive exec: the process starts when the returned token's WebSocket connects. */
  createExec(c: ContainerRow, command: string[]): Promise<{ execId: string; token: string }>;
  resizeExec(c: ContainerRow, execId: string, cols: number, rows: number): Promise<boolean>;
  createAttach(c: ContainerRow): Promise<string>;
  resizeAttach(c: ContainerRow, cols: number, rows: number): Promise<void>;
  /** Redeems a one-time stream token (undefined: refused). */
  openStream(token: string, uuid: string, execId?: string): Promise<StreamSession | undefined>;
  top(c: ContainerRow, psArgs?: string): Promise<{ Titles: string[]; Processes: string[][] }>;
  stats(c: ContainerRow): Promise<Record<string, string | number>>;
  getArchive(
    c: ContainerRow,
    path: string,
  ): Promise<{ tar: Buffer; stat: { name: string; size: number; mode: number; mtime: string; linkTarget: string } }>;
  putArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void>;
}

/** Finds the agent serving a host: the in-process one (`krater up`) or a `krater agent` over RPC. */
export interface AgentDirectory {
  /** Undefined when no agent of that host can be reached from here. */
  forHost(host: string): Promise<AgentRpc | undefined>;
  /** Tells the host's agent that tasks are queued (best effort: agents also poll the store). */
  wake(host: string): void;
  /** Hosts that may receive new containers, in scheduling order. */
  schedulableHosts(): Promise<string[]>;
}
