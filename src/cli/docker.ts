import type { Command } from 'commander';
import { CloudClient, CloudError, loadCloud } from './cloud-client.js';

/**
 * Docker's habits over the Zun API: `krater run/ps/logs/exec/stop/…` are thin clients of the HTTP API, using the
 * `krater` cloud from clouds.yaml (or OS_CLOUD / OS_* variables) like the `openstack` CLI.
 */
const HEADERS = { 'OpenStack-API-Version': 'container 1.40' };

async function connect() {
  const client = new CloudClient(loadCloud());
  await client.authenticate();
  return { client, base: `${client.endpoint('container')}` };
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** `64m`, `1g`, `512` (MiB) → MiB as Zun wants it. */
export function parseMemory(v: string): string {
  const m = /^(\d+(?:\.\d+)?)([bkmg]?)i?b?$/i.exec(v.trim());
  if (!m) throw new CloudError(`invalid memory size: ${v}`);
  const n = Number(m[1]);
  const unit = m[2].toLowerCase();
  const mib = unit === 'g' ? n * 1024 : unit === 'k' ? n / 1024 : unit === 'b' ? n / 1024 / 1024 : n;
  return String(Math.max(1, Math.round(mib)));
}

function exitCodeOf(c: { status_detail?: string | null }): number {
  const m = /Exited\((\d+)\)/.exec(c.status_detail ?? '');
  return m ? Number(m[1]) : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(client: CloudClient, base: string, id: string, pred: (c: any) => boolean): Promise<any> {
  for (;;) {
    const c = await (await client.request('GET', `${base}/containers/${id}`, { headers: HEADERS })).json();
    if (pred(c)) return c;
    await sleep(100);
  }
}

async function streamLogs(client: CloudClient, base: string, id: string, tail: string): Promise<void> {
  const res = await client.request('GET', `${base}/containers/${id}/logs?follow=true&tail=${tail}`, {
    headers: HEADERS,
  });
  if (!res.body) return;
  for await (const chunk of res.body) process.stdout.write(chunk);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] + 2)))
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

/** Runs an action and turns API errors into a message and exit code 1, as Docker does. */
function action(fn: (...args: any[]) => Promise<number | undefined>) {
  return async (...args: any[]) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (err) {
      process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = err instanceof CloudError && err.status === 404 ? 1 : 1;
    }
  };
}

export function registerDockerCommands(program: Command): void {
  program.enablePositionalOptions();

  program
    .command('run')
    .description('create and start a container')
    .argument('<image>')
    .argument('[command...]')
    .option('-d, --detach', 'run in the background and print the container id')
    .option('--rm', 'remove the container when it exits')
    .option('--name <name>', 'container name')
    .option('-e, --env <KEY=VALUE>', 'environment variable (repeatable)', collect, [])
    .option('-l, --label <KEY=VALUE>', 'label (repeatable)', collect, [])
    .option('-m, --memory <size>', 'memory limit (e.g. 64m, 1g)')
    .option('--cpus <n>', 'CPUs (e.g. 0.5)')
    .option('-w, --workdir <dir>', 'working directory')
    .option('--hostname <name>', 'hostname')
    .option('--restart <policy>', 'no | always | unless-stopped | on-failure[:max]')
    .option('--entrypoint <cmd>', 'override the image entrypoint')
    .passThroughOptions()
    .action(
      action(async (image: string, command: string[], o: Record<string, any>) => {
        const { client, base } = await connect();
        const kv = (list: string[]) =>
          Object.fromEntries(list.map((s) => [s.split('=')[0], s.split('=').slice(1).join('=')]));
        // Attached `--rm` removes the container after reading its exit code; detached, the agent's auto_remove does.
        const body: Record<string, unknown> = {
          image,
          environment: kv(o.env),
          labels: kv(o.label),
          auto_remove: !!o.rm && !!o.detach,
        };
        if (command.length) body.command = command;
        if (o.name) body.name = o.name;
        if (o.memory) body.memory = parseMemory(o.memory);
        if (o.cpus) body.cpu = o.cpus;
        if (o.workdir) body.workdir = o.workdir;
        if (o.hostname) body.hostname = o.hostname;
        if (o.entrypoint) body.entrypoint = [o.entrypoint];
        if (o.restart) {
          const [name, max] = String(o.restart).split(':');
          body.restart_policy = { Name: name, MaximumRetryCount: max ?? '0' };
        }
        const created = await (
          await client.request('POST', `${base}/containers?run=true`, { body, headers: HEADERS })
        ).json();
        const started = await waitFor(
          client,
          base,
          created.uuid,
          (c) => c.status !== 'Creating' && c.task_state === null,
        );
        if (started.status === 'Error') throw new CloudError(started.status_reason ?? 'the container failed to start');
        if (o.detach) {
          process.stdout.write(`${created.uuid}\n`);
          return 0;
        }
        await streamLogs(client, base, created.uuid, 'all');
        const done = await waitFor(client, base, created.uuid, (c) => c.status !== 'Running' && c.task_state === null);
        if (o.rm) {
          await client.request('DELETE', `${base}/containers/${created.uuid}`, { headers: HEADERS });
          // Like Docker, return once it is gone (Zun deletes asynchronously).
          for (;;) {
            const gone = await client.request('GET', `${base}/containers/${created.uuid}`, { headers: HEADERS }).then(
              () => false,
              (err) => err instanceof CloudError && err.status === 404,
            );
            if (gone) break;
            await sleep(50);
          }
        }
        return exitCodeOf(done);
      }),
    );

  program
    .command('ps')
    .description('list containers')
    .option('-a, --all', 'show all containers (default: running only)')
    .option('-q, --quiet', 'only ids')
    .action(
      action(async (o: { all?: boolean; quiet?: boolean }) => {
        const { client, base } = await connect();
        const { containers } = await (await client.request('GET', `${base}/containers`, { headers: HEADERS })).json();
        const shown = containers.filter((c: any) => o.all || c.status === 'Running');
        if (o.quiet) process.stdout.write(shown.map((c: any) => `${c.uuid}\n`).join(''));
        else {
          const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NAMES']];
          for (const c of shown)
            rows.push([
              c.uuid.slice(0, 12),
              c.image,
              JSON.stringify((c.command ?? []).join(' ')).slice(0, 24),
              c.created_at ?? '',
              c.status_detail ?? c.status,
              c.name,
            ]);
          process.stdout.write(`${table(rows)}\n`);
        }
        return 0;
      }),
    );

  program
    .command('logs')
    .description("fetch a container's logs")
    .argument('<container>')
    .option('-f, --follow', 'follow the log output')
    .option('-n, --tail <lines>', 'number of lines from the end', 'all')
    .action(
      action(async (id: string, o: { follow?: boolean; tail: string }) => {
        const { client, base } = await connect();
        if (o.follow) await streamLogs(client, base, id, o.tail);
        else
          process.stdout.write(
            await (
              await client.request('GET', `${base}/containers/${id}/logs?tail=${o.tail}`, { headers: HEADERS })
            ).json(),
          );
        return 0;
      }),
    );

  program
    .command('exec')
    .description('run a command in a running container')
    .argument('<container>')
    .argument('<command...>')
    .passThroughOptions()
    .action(
      action(async (id: string, command: string[]) => {
        const { client, base } = await connect();
        const r = await (
          await client.request('POST', `${base}/containers/${id}/execute`, {
            body: { command: command.map((a) => `"${a.replace(/(["\\$`])/g, '\\$1')}"`).join(' ') },
            headers: HEADERS,
          })
        ).json();
        process.stdout.write(r.output ?? '');
        return r.exit_code ?? 0;
      }),
    );

  const simple = (name: string, path: string, description: string, query = '') =>
    program
      .command(name)
      .description(description)
      .argument('<containers...>')
      .action(
        action(async (ids: string[]) => {
          const { client, base } = await connect();
          for (const id of ids) {
            await client.request('POST', `${base}/containers/${id}/${path}${query}`, { headers: HEADERS });
            process.stdout.write(`${id}\n`);
          }
          return 0;
        }),
      );
  simple('start', 'start', 'start stopped containers');
  simple('stop', 'stop', 'stop running containers');
  simple('restart', 'reboot', 'restart containers');
  simple('kill', 'kill', 'kill running containers');
  simple('pause', 'pause', 'pause containers');
  simple('unpause', 'unpause', 'unpause containers');

  program
    .command('rm')
    .description('remove containers')
    .argument('<containers...>')
    .option('-f, --force', 'stop a running container first')
    .action(
      action(async (ids: string[], o: { force?: boolean }) => {
        const { client, base } = await connect();
        for (const id of ids) {
          await client.request('DELETE', `${base}/containers/${id}${o.force ? '?stop=true' : ''}`, {
            headers: HEADERS,
          });
          process.stdout.write(`${id}\n`);
        }
        return 0;
      }),
    );

  for (const [name, path, description] of [
    ['inspect', '', 'show a container as JSON'],
    ['stats', '/stats', "show a container's resource usage"],
    ['top', '/top', "show a container's processes"],
  ] as const) {
    program
      .command(name)
      .description(description)
      .argument('<container>')
      .action(
        action(async (id: string) => {
          const { client, base } = await connect();
          const r = await (await client.request('GET', `${base}/containers/${id}${path}`, { headers: HEADERS })).json();
          if (name === 'top') process.stdout.write(`${table([r.Titles, ...r.Processes])}\n`);
          else process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return 0;
        }),
      );
  }
}
