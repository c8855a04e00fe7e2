import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix, resolve } from 'node:path';
import type { Command } from 'commander';
import WebSocket from 'ws';
import { PUBLISH_LABEL, type PublishedPortView, parsePublishList } from '../compute/publish.js';
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

const SETTLED = ['Running', 'Stopped', 'Error'];
const ENDED = ['Stopped', 'Error'];

/**
 * Waits for a container through Krater's long-poll wait endpoint (no client-side polling): until its status is one
 * of `statuses` with no task in flight and, with `requestId`, that action has finished. Returns its view, or
 * undefined when it is gone.
 */
async function waitFor(
  client: CloudClient,
  base: string,
  id: string,
  opts: { statuses?: string[]; requestId?: string | null },
): Promise<any | undefined> {
  const q = new URLSearchParams();
  for (const s of opts.statuses ?? []) q.append('status', s);
  if (opts.requestId) q.set('request_id', opts.requestId);
  q.set('timeout', '60');
  for (;;) {
    let res: Response;
    try {
      res = await client.request('GET', `${base}/containers/${id}/wait?${q}`, { headers: HEADERS });
    } catch (err) {
      if (err instanceof CloudError && err.status === 404) return undefined;
      throw err;
    }
    const c = await res.json();
    if (res.headers.get('krater-wait') === 'matched') return c;
  }
}

/** Waits until the container is gone (Zun deletes asynchronously). */
async function waitGone(client: CloudClient, base: string, id: string): Promise<void> {
  await waitFor(client, base, id, { statuses: ['Deleted'] });
}

/** Runs an asynchronous container action and returns once the agent has finished it (its error as a CloudError). */
async function act(client: CloudClient, base: string, id: string, path: string): Promise<any> {
  const res = await client.request('POST', `${base}/containers/${id}/${path}`, { headers: HEADERS });
  const requestId = res.headers.get('x-openstack-request-id');
  await res.arrayBuffer();
  const c = await waitFor(client, base, id, { requestId });
  if (!c) throw new CloudError(`container ${id} is gone`, 404);
  await checkAction(client, base, c, requestId);
  return c;
}

/** Throws the failure of a finished container action (its event's traceback, else the container's status_reason). */
async function checkAction(client: CloudClient, base: string, c: any, requestId: string | null): Promise<void> {
  if (!requestId) return;
  const a = await (
    await client.request('GET', `${base}/containers/${c.uuid}/container_actions/${requestId}`, { headers: HEADERS })
  ).json();
  if (a.message === 'Error')
    throw new CloudError(
      a.events?.find((e: any) => e.traceback)?.traceback ?? c.status_reason ?? `${a.action} of ${c.uuid} failed`,
    );
}

async function streamLogs(client: CloudClient, base: string, id: string, tail: string): Promise<void> {
  const res = await client.request('GET', `${base}/containers/${id}/logs?follow=true&tail=${tail}`, {
    headers: HEADERS,
  });
  if (!res.body) return;
  for await (const chunk of res.body) process.stdout.write(chunk);
}

/**
 * Relays this terminal to a container stream (attach URL or exec proxy_url) over Krater's WebSocket, as zunclient
 * does: binary frames, the terminal in raw mode when it is one, its size sent on start and on SIGWINCH. Resolves
 * when the server closes the stream (the process ended) or stdin ends and `detachOnEof` is set.
 */
async function relay(url: string, resize: (cols: number, rows: number) => Promise<unknown>): Promise<void> {
  const ws = new WebSocket(url, ['binary', 'base64'], { origin: new URL(url.replace(/^ws/, 'http')).origin });
  await new Promise<void>((ok, fail) => {
    ws.once('open', () => ok());
    ws.once('unexpected-response', (_req, res) => fail(new CloudError(`stream refused: HTTP ${res.statusCode}`)));
    ws.once('error', fail);
  });
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  const sendSize = () => {
    if (process.stdout.isTTY) void resize(process.stdout.columns, process.stdout.rows).catch(() => undefined);
  };
  if (raw) stdin.setRawMode(true);
  sendSize();
  process.on('SIGWINCH', sendSize);
  const onData = (d: Buffer) => {
    if (ws.readyState === ws.OPEN) ws.send(d, { binary: true });
  };
  stdin.on('data', onData);
  stdin.resume();
  ws.on('message', (d: Buffer) => process.stdout.write(d));
  try {
    await new Promise<void>((ok) => {
      ws.once('close', () => ok());
      ws.once('error', () => ok());
    });
  } finally {
    process.off('SIGWINCH', sendSize);
    stdin.off('data', onData);
    stdin.pause();
    if (raw) stdin.setRawMode(false);
  }
}

async function attachTo(client: CloudClient, base: string, id: string): Promise<void> {
  const url = (await (
    await client.request('GET', `${base}/containers/${id}/attach`, { headers: HEADERS })
  ).json()) as string;
  await relay(url, (w, h) =>
    client.request('POST', `${base}/containers/${id}/resize?w=${w}&h=${h}`, { headers: HEADERS }),
  );
}

/** `container:path` (a container path) or a local path. */
function splitCopyArg(arg: string): { container?: string; path: string } {
  const m = /^([a-zA-Z0-9][a-zA-Z0-9_.-]*):(.*)$/.exec(arg);
  return m && !arg.startsWith('/') && !arg.startsWith('.') ? { container: m[1], path: m[2] || '/' } : { path: arg };
}

async function copyFromContainer(client: CloudClient, base: string, id: string, src: string, dest: string) {
  const r = await (
    await client.request('GET', `${base}/containers/${id}/get_archive?path=${encodeURIComponent(src)}`, {
      headers: HEADERS,
    })
  ).json();
  const tmp = mkdtempSync(join(tmpdir(), 'krater-cp-'));
  try {
    writeFileSync(join(tmp, 'archive.tar'), Buffer.from(r.data, 'base64'));
    mkdirSync(join(tmp, 'x'));
    execFileSync('tar', ['-x', '-f', join(tmp, 'archive.tar'), '-C', join(tmp, 'x'), '--no-same-owner']);
    const name = r.stat?.name ?? basename(src);
    // Like Docker: into an existing directory, else as the destination path itself.
    const target = existsSync(dest) && statSync(dest).isDirectory() ? join(dest, name) : dest;
    execFileSync('cp', ['-a', '--', join(tmp, 'x', name), target]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function copyToContainer(client: CloudClient, base: string, id: string, src: string, dest: string) {
  if (!existsSync(src)) throw new CloudError(`no such file or directory: ${src}`);
  // Into an existing directory (or one named with a trailing slash), else as the destination path itself.
  let dir = dest;
  let name = basename(resolve(src));
  if (!dest.endsWith('/')) {
    const isDir = await client
      .request('GET', `${base}/containers/${id}/get_archive?path=${encodeURIComponent(dest)}`, { headers: HEADERS })
      .then(
        async (res) => {
          // Docker reports Go's FileMode (directory bit 1<<31); a POSIX st_mode has S_IFDIR.
          const mode = Number((await res.json()).stat?.mode ?? 0);
          return mode >= 0x80000000 || (mode & 0o170000) === 0o040000;
        },
        () => false,
      );
    if (!isDir) {
      dir = posix.dirname(dest);
      name = posix.basename(dest);
    }
  }
  // The archive holds one entry under its new name (a staged copy), extracted into `dir` by the container.
  const tmp = mkdtempSync(join(tmpdir(), 'krater-cp-'));
  let tar: Buffer;
  try {
    execFileSync('cp', ['-a', '--', resolve(src), join(tmp, name)]);
    tar = execFileSync('tar', ['-c', '-f', '-', '-C', tmp, '--', name], { maxBuffer: 1024 * 1024 * 1024 });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  await client.request('POST', `${base}/containers/${id}/put_archive`, {
    body: { path: dir, data: tar.toString('base64') },
    headers: HEADERS,
  });
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

/** Docker's PORTS column: `127.0.0.1:8080->80/tcp, …` from the container's `published_ports`. */
function portsColumn(c: { published_ports?: PublishedPortView[] }): string {
  return (c.published_ports ?? [])
    .map((p) => `${p.host_ip}:${p.host_port}->${p.container_port}/${p.protocol}`)
    .join(', ');
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
    .option('-i, --interactive', 'keep stdin open and attach to it')
    .option('-t, --tty', 'allocate a terminal')
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
    .option('-p, --publish <[ip:]hostPort:containerPort[/proto]>', 'publish a container port on the host', collect, [])
    .option('--network <network>', 'connect to a network (name or id; repeatable)', collect, [])
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
        if (o.interactive) body.interactive = true;
        if (o.tty) body.tty = true;
        if (o.publish.length) {
          // Checked here for a clear message before anything is created (the API checks it again).
          parsePublishList(o.publish.join(','));
          (body.labels as Record<string, string>)[PUBLISH_LABEL] = o.publish.join(',');
        }
        if (o.network.length) body.nets = (o.network as string[]).map((network) => ({ network }));
        const res = await client.request('POST', `${base}/containers?run=true`, { body, headers: HEADERS });
        const created = await res.json();
        // The create action (with its start) is finished once the container has settled.
        const started = await waitFor(client, base, created.uuid, {
          statuses: SETTLED,
          requestId: res.headers.get('x-openstack-request-id'),
        });
        if (!started) throw new CloudError(`container ${created.uuid} is gone`);
        if (started.status === 'Error') throw new CloudError(started.status_reason ?? 'the container failed to start');
        if (o.detach) {
          process.stdout.write(`${created.uuid}\n`);
          return 0;
        }
        if (o.interactive && started.status === 'Running') await attachTo(client, base, created.uuid);
        else await streamLogs(client, base, created.uuid, 'all');
        const done = await waitFor(client, base, created.uuid, { statuses: ENDED });
        if (o.rm) {
          await client.request('DELETE', `${base}/containers/${created.uuid}`, { headers: HEADERS });
          // Like Docker, return once it is gone.
          await waitGone(client, base, created.uuid);
        }
        return done ? exitCodeOf(done) : 0;
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
          const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES']];
          for (const c of shown)
            rows.push([
              c.uuid.slice(0, 12),
              c.image,
              JSON.stringify((c.command ?? []).join(' ')).slice(0, 24),
              c.created_at ?? '',
              c.status_detail ?? c.status,
              portsColumn(c),
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
    .option('-i, --interactive', 'keep stdin open (with a terminal: interactive session)')
    .option('-t, --tty', 'allocate a terminal')
    .passThroughOptions()
    .action(
      action(async (id: string, command: string[], o: { interactive?: boolean; tty?: boolean }) => {
        const { client, base } = await connect();
        const quoted = command.map((a) => `"${a.replace(/(["\\$`])/g, '\\$1')}"`).join(' ');
        if (o.interactive || o.tty) {
          // Zun's interactive exec always has a terminal; the process starts when the stream connects.
          const r = await (
            await client.request('POST', `${base}/containers/${id}/execute`, {
              body: { command: quoted, interactive: true, run: false },
              headers: HEADERS,
            })
          ).json();
          await relay(r.proxy_url, (w, h) =>
            client.request('POST', `${base}/containers/${id}/execute_resize?exec_id=${r.exec_id}&w=${w}&h=${h}`, {
              headers: HEADERS,
            }),
          );
          return 0;
        }
        const r = await (
          await client.request('POST', `${base}/containers/${id}/execute`, {
            body: { command: quoted },
            headers: HEADERS,
          })
        ).json();
        process.stdout.write(r.output ?? '');
        return r.exit_code ?? 0;
      }),
    );

  // Docker's container commands return once the work is done: each waits for its action to finish.
  const simple = (name: string, path: string, description: string, timeout = false) => {
    const cmd = program.command(name).description(description).argument('<containers...>');
    if (timeout) cmd.option('-t, --time <seconds>', 'seconds to wait for the process to stop before killing it');
    cmd.action(
      action(async (ids: string[], o: { time?: string }) => {
        const { client, base } = await connect();
        const query = o.time !== undefined ? `?timeout=${encodeURIComponent(o.time)}` : '';
        for (const id of ids) {
          await act(client, base, id, `${path}${query}`);
          process.stdout.write(`${id}\n`);
        }
        return 0;
      }),
    );
  };
  simple('start', 'start', 'start stopped containers');
  simple('stop', 'stop', 'stop running containers', true);
  simple('restart', 'reboot', 'restart containers', true);
  simple('kill', 'kill', 'kill running containers');
  simple('pause', 'pause', 'pause containers');
  simple('unpause', 'unpause', 'unpause containers');

  program
    .command('wait')
    .description('block until containers stop, then print their exit codes')
    .argument('<containers...>')
    .action(
      action(async (ids: string[]) => {
        const { client, base } = await connect();
        let last = 0;
        for (const id of ids) {
          const c = await waitFor(client, base, id, { statuses: ENDED });
          if (!c) throw new CloudError(`No such container: ${id}`, 404);
          last = exitCodeOf(c);
          process.stdout.write(`${last}\n`);
        }
        return 0;
      }),
    );

  program
    .command('attach')
    .description("attach this terminal to a running container's main process (interactive containers)")
    .argument('<container>')
    .action(
      action(async (id: string) => {
        const { client, base } = await connect();
        await attachTo(client, base, id);
        // Like Docker: when the process ended, its exit code.
        const c = await (await client.request('GET', `${base}/containers/${id}`, { headers: HEADERS })).json();
        if (c.status !== 'Running' && c.status !== 'Paused') {
          const done = await waitFor(client, base, id, { statuses: ENDED });
          return done ? exitCodeOf(done) : 0;
        }
        return 0;
      }),
    );

  program
    .command('cp')
    .description(
      'copy files between a container and the local filesystem (CONTAINER:PATH LOCAL or LOCAL CONTAINER:PATH)',
    )
    .argument('<source>')
    .argument('<destination>')
    .action(
      action(async (source: string, destination: string) => {
        const src = splitCopyArg(source);
        const dest = splitCopyArg(destination);
        if (!!src.container === !!dest.container)
          throw new CloudError('copying needs exactly one container path (CONTAINER:PATH)');
        const { client, base } = await connect();
        if (src.container) await copyFromContainer(client, base, src.container, src.path, dest.path);
        else await copyToContainer(client, base, dest.container!, src.path, dest.path);
        return 0;
      }),
    );

  program
    .command('commit')
    .description("create an image (in the image service) from a container's changes")
    .argument('<container>')
    .argument('<repository[:tag]>')
    .action(
      action(async (id: string, ref: string) => {
        const { client, base } = await connect();
        const colon = ref.lastIndexOf(':');
        const [repository, tag] =
          colon > ref.lastIndexOf('/') && colon > 0 ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
        const res = await client.request(
          'POST',
          `${base}/containers/${id}/commit?repository=${encodeURIComponent(repository)}&tag=${encodeURIComponent(tag)}`,
          { headers: HEADERS },
        );
        const { uuid } = await res.json();
        const requestId = res.headers.get('x-openstack-request-id');
        const c = await waitFor(client, base, id, { requestId });
        if (c) await checkAction(client, base, c, requestId);
        process.stdout.write(`${uuid}\n`);
        return 0;
      }),
    );

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

  program
    .command('port')
    .description("list a container's published ports (Docker's `port`)")
    .argument('<container>')
    .argument('[private_port]', 'only this container port ([/tcp|udp])')
    .action(
      action(async (id: string, only?: string) => {
        const { client, base } = await connect();
        const c = await (await client.request('GET', `${base}/containers/${id}`, { headers: HEADERS })).json();
        const [want, wantProto] = (only ?? '').split('/');
        const lines = ((c.published_ports ?? []) as PublishedPortView[])
          .filter((p) => !want || (String(p.container_port) === want && (!wantProto || p.protocol === wantProto)))
          .map((p) =>
            only ? `${p.host_ip}:${p.host_port}` : `${p.container_port}/${p.protocol} -> ${p.host_ip}:${p.host_port}`,
          );
        if (only && lines.length === 0) throw new Error(`No public port '${only}' published for ${id}`);
        process.stdout.write(lines.map((l) => `${l}\n`).join(''));
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
