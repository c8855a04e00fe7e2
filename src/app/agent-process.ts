import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import type { Agent } from '../agent/agent.js';
import { startAgentRpcServer } from '../agent/rpc-server.js';
import { ContainerRepo } from '../compute/repo.js';
import type { KraterConfig } from '../core/config/config.js';
import { PolicyEngine } from '../core/policy/engine.js';
import { openStore } from '../core/store/db.js';
import { InProcessGlance } from '../services/image/in-process.js';
import { createNetworkService } from '../services/network/index.js';
import { createAgent } from './control-plane.js';
import { prepareDataDir } from './data-dir.js';

export interface AgentProcess {
  agent: Agent;
  /** Where the API reaches this agent. */
  rpcUrl: string;
  close(): Promise<void>;
}

/**
 * `krater agent`: one host's agent as its own process, over the same store as the API replicas. It takes the
 * tasks queued for its host from the store, serves the API's synchronous calls on its RPC endpoint, and advertises
 * that endpoint (URL + a secret made at each start) in `compute_hosts` for the API to find.
 */
export async function startAgentProcess(
  config: KraterConfig,
  opts: { host?: string; bind: string; port: number; advertiseUrl?: string },
): Promise<AgentProcess> {
  prepareDataDir(config.dataDir);
  const store = await openStore(config.database);
  // Archives travel base64 in JSON: room for the API's 256 MiB put_archive limit.
  const app = Fastify({
    logger: { level: config.logLevel, redact: { paths: ['req.headers.authorization'], censor: '***' } },
    bodyLimit: 400 * 1024 * 1024,
    forceCloseConnections: true,
  });
  let agent: Agent | undefined;
  try {
    const neutron =
      config.networking === 'kernel'
        ? createNetworkService(config, store, new PolicyEngine(config.policyFile)).api
        : undefined;
    // As the API's Glance does: the image records in the store, the data under `<data-dir>/images`.
    const glance = InProcessGlance.onDataDir(store.db, config.dataDir);
    agent = await createAgent(config, store, app.log, neutron, glance, opts.host);
    await agent.start();
    const host = agent.host;
    const secret = randomBytes(32).toString('base64url');
    const rpc = await startAgentRpcServer({
      agent,
      repo: new ContainerRepo(store.db),
      secret,
      bind: opts.bind,
      port: opts.port,
      advertiseUrl: opts.advertiseUrl,
      app,
    });
    const advertise = (url: string | null, s: string | null) =>
      store.db.updateTable('compute_hosts').set({ rpc_url: url, rpc_secret: s }).where('hostname', '=', host).execute();
    await advertise(rpc.url, secret);
    return {
      agent: agent,
      rpcUrl: rpc.url,
      async close() {
        // The API then reports the host as not up instead of timing out on a dead endpoint.
        await advertise(null, null).catch(() => undefined);
        await rpc.close();
        await agent!.stop(config.agentShutdown);
        await store.close();
      },
    };
  } catch (err) {
    await app.close().catch(() => undefined);
    await agent?.stop('keep').catch(() => undefined);
    await store.close();
    throw err;
  }
}
