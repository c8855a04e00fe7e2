import { createHash, timingSafeEqual } from 'node:crypto';
import { Agent } from '../agent/agent.js';
import { RemoteAgent } from '../agent/rpc-client.js';
import type { AgentDirectory, AgentRpc } from '../compute/agent-port.js';
import type { Store } from '../core/store/db.js';

/**
 * Which agent serves which host: the in-process agent of `krater up` answers for its host; any other host's
 * agent (`krater agent`) is reached over RPC at the URL and with the secret it wrote into `compute_hosts`. The
 * endpoint is read for every call (one indexed row): an agent that restarted, moved or stopped is seen at once.
 */
export class HostAgents implements AgentDirectory {
  /** The local agent (`krater up`). */
  agent?: Agent;
  private readonly remotes = new Map<string, RemoteAgent>();

  constructor(private readonly store: Store) {}

  async forHost(host: string): Promise<AgentRpc | undefined> {
    if (this.agent && this.agent.host === host) return this.agent;
    const row = await this.store.db
      .selectFrom('compute_hosts')
      .select(['rpc_url', 'rpc_secret'])
      .where('hostname', '=', host)
      .executeTakeFirst();
    if (!row?.rpc_url || !row.rpc_secret) {
      this.remotes.delete(host);
      return undefined;
    }
    const known = this.remotes.get(host);
    if (known?.url === row.rpc_url && known.secret === row.rpc_secret) return known;
    const rpc = new RemoteAgent(host, row.rpc_url, row.rpc_secret);
    this.remotes.set(host, rpc);
    return rpc;
  }

  /** Whether `secret` is the one the agent of `host` advertised (its image API calls carry it). */
  async checkSecret(host: string, secret: string): Promise<boolean> {
    if (host.length > 255 || secret.length > 512) return false;
    const row = await this.store.db
      .selectFrom('compute_hosts')
      .select('rpc_secret')
      .where('hostname', '=', host)
      .executeTakeFirst();
    if (!row?.rpc_secret) return false;
    const digest = (s: string) => createHash('sha256').update(s).digest();
    return timingSafeEqual(digest(row.rpc_secret), digest(secret));
  }

  wake(host: string): void {
    if (this.agent && this.agent.host === host) {
      this.agent.wake();
      return;
    }
    this.forHost(host).then(
      (a) => a?.wake(),
      () => undefined, // best effort: the agent polls the store too
    );
  }

  schedulableHosts(): Promise<string[]> {
    return Agent.schedulableHosts(this.store);
  }
}
