import { join } from 'node:path';
import { Command, Option } from 'commander';
import { writeCloudEntry } from '../app/clouds-yaml.js';
import { startControlPlane, tokenKeyRepository } from '../app/control-plane.js';
import { type ConfigInput, resolveConfig } from '../core/config/config.js';
import { ADMIN_PASSWORD_FILE } from '../services/identity/bootstrap.js';

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
    .option('--clouds-yaml <path>', 'clouds.yaml to write the "krater" cloud into (default ~/.config/openstack/clouds.yaml)')
    .option('--no-clouds-yaml', 'do not write any clouds.yaml');

async function serve(opts: Record<string, unknown>, mode: 'up' | 'api'): Promise<void> {
  const config = resolveConfig({ ...(opts as ConfigInput), cloudsYaml: opts.cloudsYaml === false ? false : (opts.cloudsYaml as string | undefined) });
  const cp = await startControlPlane(config);
  const authUrl = `${config.publicUrl}/identity/v3`;
  if (config.cloudsYaml && cp.bootstrap.adminPassword) {
    writeCloudEntry(config.cloudsYaml, 'krater', { authUrl, username: 'admin', password: cp.bootstrap.adminPassword, projectName: 'admin', region: config.region });
  }
  const out = process.stdout;
  out.write(`Krater ${mode === 'up' ? 'all-in-one cloud' : 'control plane'} listening on ${config.publicUrl} (store: ${cp.store.kind}, data: ${config.dataDir})\n`);
  out.write(`  identity   ${authUrl}\n`);
  if (cp.bootstrap.generatedPassword) {
    out.write(`Bootstrapped: user "admin" in project "admin", password: ${cp.bootstrap.generatedPassword}\n`);
    out.write(`  (shown once; kept in ${join(config.dataDir, ADMIN_PASSWORD_FILE)})\n`);
  }
  if (config.cloudsYaml) out.write(`  clouds.yaml: cloud "krater" in ${config.cloudsYaml} — try: openstack --os-cloud krater token issue\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    cp.app.log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => process.exit(1), 10_000);
    timer.unref();
    await cp.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

serverOptions(program.command('up').description('run the all-in-one cloud (control plane and local agent) in the foreground')).action((opts) => serve(opts, 'up'));
serverOptions(program.command('api').description('run the control plane only (API servers over the shared store)')).action((opts) => serve(opts, 'api'));

const keys = program.command('token-keys').description('manage the token encryption keys');
keys
  .command('rotate')
  .description('promote the staged key to primary, stage a new key and prune the oldest (restart or wait for replicas to pick it up)')
  .addOption(new Option('--data-dir <dir>', 'state directory').env('KRATER_DATA_DIR'))
  .action((opts) => {
    const repo = tokenKeyRepository(resolveConfig({ dataDir: opts.dataDir, cloudsYaml: false }));
    repo.rotate();
    process.stdout.write(`rotated token keys in ${repo.dir}: ${repo.load().map((k) => k.index).sort((a, b) => a - b).join(', ')}\n`);
  });

program.parseAsync(process.argv).catch((err) => {
  process.stderr.write(`krater: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
