import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import type { Agent } from '../agent/agent.js';
import { startAgentRpcServer } from '../agent/rpc-server.js';
import { ContainerRepo } from '../compute/repo.js';
import type { KraterConfig } from '../core/config/config.js';
import { PolicyEngine } from '../core/policy/engine.js';
import { openStore } from '../core/store/db.js';
import { HttpGlance } from '../images/glance-http.js';
import { catalogEndpoint } from '../services/identity/catalog.js';
import { IdentityRepo } from '../services/identity/repo.js';
import { RecordsOnlyImageStore } from '../services/image/data-store.js';
import { InProcessGlance } from '../services/image/in-process.js';
import { ImageRepo } from '../services/image/repo.js';
import { createNetworkService } from '../services/network/index.js';
import { createAgent } from './control-plane.js';
import { prepareDataDir } from './data-dir.js';
import { agentRegistryKey } from './shared-secrets.js';

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
  opts: {
    host?: string;
    bind: string;
    port: number;
    advertiseUrl?: string;
    /** The image API's root (`…/image`); default: the internal image endpoint of the catalog in the store. */
    imageApiUrl?: string;
  },
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
    // Image records from the store; image data only through the image API (any replica), never the API's backend.
    const secret = randomBytes(32).toString('base64url');
    let advertised!: () => void;
    const ready = new Promise<void>((resolve) => {
      advertised = resolve;
    });
    const identity = new IdentityRepo(store);
    const glance = new HttpGlance(new InProcessGlance(new ImageRepo(store.db), new RecordsOnlyImageStore()), {
      ready,
      baseUrl: async () => {
        const url = opts.imageApiUrl ?? (await catalogEndpoint(identity, 'image', 'internal'));
        if (!url)
          throw new Error('the catalog has no image endpoint: start `krater api` first, or give --image-api-url');
        return url;
      },
      credentials: () => ({ host: agent!.host, secret }),
    });
    const registryKey = await agentRegistryKey(config, store);
    app.log.info({ registryKey }, 'registry passwords open with the key from the store or the data dir');
    agent = await createAgent(config, store, app.log, neutron, glance, opts.host);
    await agent.start();
    const host = agent.host;
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
    advertised();
    return {
      agent: agent,
      rpcUrl: rpc.url,
      async close() {
        // The API then reports the host as not up instead of timing out on a dead endpoint.
        await advertise(null, null).catch(() => undefined);
        await rpc.close();
        await agent!.stop(config.agent.shutdown);
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
