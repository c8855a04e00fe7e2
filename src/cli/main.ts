import cluster from 'node:cluster';
import { Command, Option } from 'commander';
import { startAgentProcess } from '../app/agent-process.js';
import { writeCloudEntry } from '../app/clouds-yaml.js';
import { type BootstrapResult, startControlPlane } from '../app/control-plane.js';
import { adminPasswordPath } from '../app/data-dir.js';
import { rotateTokenKeys } from '../app/shared-secrets.js';
import { type ConfigInput, resolveConfig } from '../core/config/config.js';
import { registerDockerCommands } from './docker.js';
import { registerImageCommands } from './images.js';

const program = new Command();
program.name('krater').description('Krater: an OpenStack-compatible container cloud').version('0.1.0');

const serverOptions = (cmd: Command) =>
  cmd
    .addOption(new Option('--data-dir <dir>', 'state directory').env('KRATER_DATA_DIR'))
    .addOption(new Option('--bind <address>', 'listen address').env('KRATER_BIND'))
    .addOption(new Option('--port <port>', 'listen port').env('KRATER_PORT'))
    .addOption(new Option('--database <url>', 'store URL: sqlite:<path> or postgres://…').env('KRATER_DATABASE'))
    .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace').env('KRATER_LOG_LEVEL'))
    .addOption(new Option('--public-url <url>', 'URL clients use to reach this listener').env('KRATER_PUBLIC_URL'))
    .addOption(new Option('--region <name>', 'catalog region').env('KRATER_REGION'))
    .addOption(new Option('--token-ttl <seconds>', 'token lifetime').env('KRATER_TOKEN_TTL'))
    .addOption(new Option('--policy-file <path>', 'policy overrides (YAML)').env('KRATER_POLICY_FILE'))
    .addOption(
      new Option('--workers <n>', 'API worker processes sharing the listener (like uwsgi processes)')
        .env('KRATER_WORKERS')
        .default('1'),
    )
    .addOption(
      new Option('--containerd <socket>', 'use this containerd instead of a private one (agent)').env(
        'KRATER_CONTAINERD',
      ),
    )
    .addOption(
      new Option('--default-image <archive>', 'image archive imported as busybox when missing (agent)').env(
        'KRATER_DEFAULT_IMAGE',
      ),
    )
    .option(
      '--clouds-yaml <path>',
      'clouds.yaml to write the "krater" cloud into (default ~/.config/openstack/clouds.yaml)',
    )
    .option('--no-clouds-yaml', 'do not write any clouds.yaml');

async function serve(opts: Record<string, unknown>, mode: 'up' | 'api'): Promise<void> {
  const config = resolveConfig({
    ...(opts as ConfigInput),
    cloudsYaml: opts.cloudsYaml === false ? false : (opts.cloudsYaml as string | undefined),
  });
  const workers = Number(opts.workers ?? 1);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new Error(`invalid --workers: ${opts.workers}`);
  if (workers > 1 && mode === 'up')
    throw new Error('--workers applies to `krater api`; `krater up` runs the agent in its one process');
  if (workers > 1 && cluster.isPrimary) return supervise(config, workers, mode);
  const cp = await startControlPlane(config, { withAgent: mode === 'up' });
  if (cluster.isWorker) {
    // The primary already bootstrapped and announced; a worker only serves until told to stop.
    process.on('SIGTERM', () => void cp.close().then(() => process.exit(0)));
    process.on('SIGINT', () => {});
    return;
  }
  announce(config, cp.bootstrap, mode, 1);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    cp.app.log.info({ signal }, 'shutting down');
    exitIfStuck(config.agent.shutdown);
    await cp.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

/**
 * A shutdown that hangs must not keep the process forever; but a purge (containers, containerd, every network
 * object) is given a minute, since stopping half-way leaves kernel objects behind.
 */
function exitIfStuck(shutdown: 'keep' | 'purge'): void {
  const ms = shutdown === 'purge' ? 60_000 : 10_000;
  setTimeout(() => {
    process.stderr.write(`krater: shutdown did not finish within ${ms / 1000} s; exiting with it unfinished\n`);
    process.exit(1);
  }, ms).unref();
}

/**
 * Several API processes on one port (Node's cluster module): the store is shared, tokens are stateless and caches
 * follow the store's revision marker, so workers need no coordination. The primary bootstraps first, so workers
 * never race on a fresh store.
 */
async function supervise(config: ReturnType<typeof resolveConfig>, workers: number, mode: 'up' | 'api'): Promise<void> {
  const { bootstrapOnly } = await import('../app/control-plane.js');
  const boot = await bootstrapOnly(config, mode);
  announce(config, boot, mode, workers);
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code) => {
    if (stopping) return;
    process.stderr.write(`krater: API worker ${worker.process.pid} exited (${code}); restarting\n`);
    setTimeout(() => cluster.fork(), 500);
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    const timer = setTimeout(() => process.exit(1), 10_000);
    timer.unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** Writes the clouds.yaml entry and tells the operator where the cloud is. */
function announce(
  config: ReturnType<typeof resolveConfig>,
  boot: BootstrapResult,
  mode: 'up' | 'api',
  workers: number,
): void {
  const authUrl = `${config.publicUrl}/identity/v3`;
  if (config.cloudsYaml && boot.adminPassword) {
    writeCloudEntry(config.cloudsYaml, 'krater', {
      authUrl,
      username: 'admin',
      password: boot.adminPassword,
      projectName: 'admin',
      region: config.region,
    });
  }
  const out = process.stdout;
  const store = config.database.startsWith('postgres') ? 'postgresql' : 'sqlite';
  out.write(
    `Krater ${mode === 'up' ? 'all-in-one cloud' : 'control plane'} listening on ${config.publicUrl} (store: ${store}, data: ${config.dataDir}, workers: ${workers})\n`,
  );
  out.write(
    `  identity   ${authUrl}\n  image      ${config.publicUrl}/image\n  container  ${config.publicUrl}/container/v1\n  network    ${config.publicUrl}/network\n  console    ${config.publicUrl}/dashboard/\n`,
  );
  if (boot.generatedPassword) {
    // Never the password itself: stdout ends up in log files and journals.
    out.write(
      `Bootstrapped: user "admin" in project "admin"; its password is in ${adminPasswordPath(config.dataDir)} (mode 0600)\n`,
    );
  }
  if (boot.catalogKeptAt)
    process.stderr.write(
      `krater: the catalog stays at ${boot.catalogKeptAt} (no --public-url given to this replica); start every replica of a deployment with the same --public-url\n`,
    );
  if (config.cloudsYaml)
    out.write(`  clouds.yaml: cloud "krater" in ${config.cloudsYaml} — try: openstack --os-cloud krater token issue\n`);
}

serverOptions(
  program.command('up').description('run the all-in-one cloud (control plane and local agent) in the foreground'),
).action((opts) => serve(opts, 'up'));
serverOptions(
  program.command('api').description('run the control plane only (API servers over the shared store)'),
).action((opts) => serve(opts, 'api'));

program
  .command('agent')
  .description("run one host's agent alone (engine, network, volumes) over the store shared with `krater api`")
  .addOption(new Option('--data-dir <dir>', "this agent's state directory").env('KRATER_DATA_DIR'))
  .addOption(
    new Option('--database <url>', 'the store the API uses: sqlite:<path> or postgres://…').env('KRATER_DATABASE'),
  )
  .addOption(new Option('--host <name>', 'host name to register as (default: the machine name)').env('KRATER_HOST'))
  .addOption(new Option('--bind <address>', 'RPC listen address').env('KRATER_AGENT_BIND').default('127.0.0.1'))
  .addOption(new Option('--port <port>', 'RPC listen port (0: any free port)').env('KRATER_AGENT_PORT').default('0'))
  .addOption(
    new Option('--advertise-url <url>', 'URL the API uses to reach this agent (default: the RPC address)').env(
      'KRATER_AGENT_URL',
    ),
  )
  .addOption(
    new Option(
      '--image-api-url <url>',
      "the image API's root (…/image) for image data (default: the catalog's internal image endpoint)",
    ).env('KRATER_IMAGE_API_URL'),
  )
  .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace').env('KRATER_LOG_LEVEL'))
  .addOption(
    new Option('--containerd <socket>', 'use this containerd instead of a private one').env('KRATER_CONTAINERD'),
  )
  .addOption(
    new Option('--default-image <archive>', 'image archive imported as busybox when missing').env(
      'KRATER_DEFAULT_IMAGE',
    ),
  )
  .action(async (opts) => {
    const config = resolveConfig({ ...(opts as ConfigInput), port: undefined, bind: undefined, cloudsYaml: false });
    const port = Number(opts.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid --port: ${opts.port}`);
    const proc = await startAgentProcess(config, {
      host: opts.host,
      bind: opts.bind,
      port,
      advertiseUrl: opts.advertiseUrl,
      imageApiUrl: opts.imageApiUrl,
    });
    process.stdout.write(
      `Krater agent for host ${proc.agent.host} (store: ${config.database.startsWith('postgres') ? 'postgresql' : 'sqlite'}, data: ${config.dataDir}); RPC at ${proc.rpcUrl}\n`,
    );
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      exitIfStuck(config.agent.shutdown);
      await proc.close();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop());
    process.on('SIGTERM', () => void stop());
  });

const keys = program.command('token-keys').description('manage the token encryption keys (kept in the store)');
keys
  .command('rotate')
  .description(
    'promote the staged key to primary, stage a new key and prune the oldest; every replica sees it within seconds',
  )
  .addOption(new Option('--data-dir <dir>', 'state directory').env('KRATER_DATA_DIR'))
  .addOption(new Option('--database <url>', 'store URL: sqlite:<path> or postgres://…').env('KRATER_DATABASE'))
  .action(async (opts) => {
    const config = resolveConfig({ dataDir: opts.dataDir, database: opts.database, cloudsYaml: false });
    const keys = await rotateTokenKeys(config);
    process.stdout.write(
      `rotated the token keys in the store: ${keys.map((k) => `${k.index}${k.index === 0 ? ' (staged)' : ''}=${k.id}`).join(', ')}\n`,
    );
  });

registerDockerCommands(program);
registerImageCommands(program);

program.parseAsync(process.argv).catch((err) => {
  process.stderr.write(`krater: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
