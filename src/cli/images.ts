/**
 * Docker's image commands over Krater's image API (`/container/v1/images/local`): `krater pull` (a progress bar per
 * layer on a terminal, one line per step otherwise), `images`, `rmi`, `load -i`, `save -o`.
 */
import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Command } from 'commander';
import { CloudClient, CloudError, loadCloud } from './cloud-client.js';

const HEADERS = { 'OpenStack-API-Version': 'container 1.40' };

async function connect() {
  const client = new CloudClient(loadCloud());
  await client.authenticate();
  return { client, base: client.endpoint('container') };
}

function action(fn: (...args: any[]) => Promise<number | undefined>) {
  return async (...args: any[]) => {
    try {
      process.exitCode = (await fn(...args)) ?? 0;
    } catch (err) {
      process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  };
}

/** 1.2MB, 512kB, 17B (Docker's decimal units). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[i]}`;
}

function ago(iso: string | null): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const [n, unit] =
    s < 60
      ? [s, 'second']
      : s < 3600
        ? [Math.round(s / 60), 'minute']
        : s < 86400
          ? [Math.round(s / 3600), 'hour']
          : [Math.round(s / 86400), 'day'];
  return `${n} ${unit}${n === 1 ? '' : 's'} ago`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3)))
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

/** `docker.io/library/busybox:latest` → [`busybox`, `latest`]. */
function repoTag(name: string): [string, string] {
  let n = name.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
  const at = n.indexOf('@');
  if (at >= 0) return [n.slice(0, at), '<none>'];
  const colon = n.lastIndexOf(':');
  if (colon > n.lastIndexOf('/')) return [n.slice(0, colon), n.slice(colon + 1)];
  n ||= '<none>';
  return [n, '<none>'];
}

interface Progress {
  id: string;
  status: string;
  digest?: string;
  current?: number;
  total?: number;
  message?: string;
  image?: { name: string; digest: string; downloaded: number; layers: number };
}

const LABELS: Record<string, string> = {
  waiting: 'Waiting',
  exists: 'Already exists',
  downloading: 'Downloading',
  retrying: 'Retrying',
  downloaded: 'Download complete',
};

/** Draws one line per layer, redrawn in place (a terminal), or prints each change of step (a pipe). */
class PullView {
  private layers = new Map<string, Progress>();
  private drawn = 0;
  private lastStep = new Map<string, string>();
  constructor(private readonly tty: boolean) {}

  private bar(p: Progress): string {
    const label = LABELS[p.status] ?? p.status;
    if (p.status !== 'downloading' || !p.total) return label;
    const width = 40;
    const done = Math.min(width, Math.floor(((p.current ?? 0) / p.total) * width));
    return `${label} [${'='.repeat(Math.max(0, done - 1))}${done > 0 ? '>' : ''}${' '.repeat(width - done)}] ${humanSize(p.current ?? 0)}/${humanSize(p.total)}`;
  }

  update(p: Progress): void {
    if (!p.digest) {
      this.line(p);
      return;
    }
    this.layers.set(p.id, p);
    if (this.tty) {
      this.redraw();
    } else if (this.lastStep.get(p.id) !== p.status) {
      this.lastStep.set(p.id, p.status);
      if (p.status !== 'downloading')
        process.stdout.write(
          `${p.id}: ${LABELS[p.status] ?? p.status}${p.message && p.status === 'retrying' ? ` (${p.message})` : ''}\n`,
        );
    }
  }

  private redraw(): void {
    let out = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const p of this.layers.values()) out += `\x1b[2K${p.id}: ${this.bar(p)}\n`;
    this.drawn = this.layers.size;
    process.stdout.write(out);
  }

  private line(p: Progress): void {
    if (p.status === 'resolving') process.stdout.write(`${p.id}: Pulling from registry\n`);
    else if (p.status === 'extracting') process.stdout.write(`${p.id}: Extracting\n`);
    else return;
    this.drawn = 0;
  }
}

export function registerImageCommands(program: Command): void {
  program
    .command('pull')
    .description('pull an image from a registry onto a host')
    .argument('<image>')
    .option('--host <host>', 'compute host (default: the first available)')
    .option('--registry <registry>', 'use the credentials of this Zun registry (name or uuid)')
    .option('-q, --quiet', 'print only the image name')
    .action(
      action(async (image: string, o: { host?: string; registry?: string; quiet?: boolean }) => {
        const { client, base } = await connect();
        const res = await client.request('POST', `${base}/images/local/pull`, {
          body: { image, host: o.host, registry: o.registry },
          headers: HEADERS,
        });
        const view = new PullView(!!process.stdout.isTTY && !o.quiet);
        let final: Progress | undefined;
        let buf = '';
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += Buffer.from(chunk).toString('utf8');
          let nl = buf.indexOf('\n');
          while (nl >= 0) {
            const lineText = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            nl = buf.indexOf('\n');
            if (!lineText) continue;
            const p = JSON.parse(lineText) as Progress;
            if (p.status === 'done' && p.image) final = p;
            else if (p.status === 'error' && !p.digest) final = p;
            else if (!o.quiet) view.update(p);
          }
        }
        if (!final) throw new CloudError('the pull ended without a result');
        if (final.status === 'error') throw new CloudError(final.message ?? 'pull failed');
        const img = final.image!;
        if (o.quiet) process.stdout.write(`${img.name}\n`);
        else {
          process.stdout.write(`Digest: ${img.digest}\n`);
          process.stdout.write(
            `Status: ${img.downloaded ? 'Downloaded newer image' : 'Image is up to date'} for ${img.name}\n${img.name}\n`,
          );
        }
        return 0;
      }),
    );

  program
    .command('images')
    .description('list the images on a host')
    .option('--host <host>', 'compute host')
    .option('--digests', 'show digests')
    .option('-q, --quiet', 'only image ids')
    .action(
      action(async (o: { host?: string; digests?: boolean; quiet?: boolean }) => {
        const { client, base } = await connect();
        const q = o.host ? `?host=${encodeURIComponent(o.host)}` : '';
        const { images } = (await (
          await client.request('GET', `${base}/images/local${q}`, { headers: HEADERS })
        ).json()) as {
          images: { name: string; digest: string; id: string; size: number; created_at: string | null }[];
        };
        const short = (d: string) => d.replace(/^sha256:/, '').slice(0, 12);
        if (o.quiet) {
          process.stdout.write([...new Set(images.map((i) => short(i.id)))].map((x) => `${x}\n`).join(''));
          return 0;
        }
        const header = ['REPOSITORY', 'TAG', ...(o.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
        const rows = images.map((i) => {
          const [repo, tag] = repoTag(i.name);
          return [repo, tag, ...(o.digests ? [i.digest] : []), short(i.id), ago(i.created_at), humanSize(i.size)];
        });
        process.stdout.write(`${table([header, ...rows])}\n`);
        return 0;
      }),
    );

  program
    .command('rmi')
    .description('remove images from a host (refused while a container uses one)')
    .argument('<image...>')
    .option('--host <host>', 'compute host')
    .action(
      action(async (images: string[], o: { host?: string }) => {
        const { client, base } = await connect();
        let code = 0;
        for (const image of images) {
          const q = new URLSearchParams({ image, ...(o.host ? { host: o.host } : {}) });
          try {
            const r = (await (
              await client.request('DELETE', `${base}/images/local?${q}`, { headers: HEADERS })
            ).json()) as { deleted: string };
            process.stdout.write(`Untagged: ${r.deleted}\n`);
          } catch (err) {
            process.stderr.write(`Error: ${(err as Error).message}\n`);
            code = 1;
          }
        }
        return code;
      }),
    );

  program
    .command('load')
    .description('load images from a docker-save or OCI archive')
    .requiredOption('-i, --input <file>', 'archive to read')
    .option('--host <host>', 'compute host')
    .action(
      action(async (o: { input: string; host?: string }) => {
        statSync(o.input);
        const { client, base } = await connect();
        const q = o.host ? `?host=${encodeURIComponent(o.host)}` : '';
        const raw = Readable.toWeb(createReadStream(o.input)) as unknown as ReadableStream<Uint8Array>;
        const r = (await (
          await client.request('POST', `${base}/images/local/load${q}`, {
            raw,
            headers: { ...HEADERS, 'Content-Type': 'application/x-tar' },
          })
        ).json()) as { images: string[] };
        for (const name of r.images) process.stdout.write(`Loaded image: ${name}\n`);
        return 0;
      }),
    );

  program
    .command('save')
    .description('save images to a docker-save archive')
    .argument('<image...>')
    .option('-o, --output <file>', 'write to this file (default: standard output, when it is not a terminal)')
    .option('--host <host>', 'compute host')
    .action(
      action(async (images: string[], o: { output?: string; host?: string }) => {
        if (!o.output && process.stdout.isTTY)
          throw new CloudError('refusing to write an archive to a terminal: use -o FILE or redirect');
        const { client, base } = await connect();
        const q = new URLSearchParams(images.map((i) => ['image', i]));
        if (o.host) q.set('host', o.host);
        const res = await client.request('GET', `${base}/images/local/save?${q}`, {
          headers: { ...HEADERS, Accept: 'application/x-tar' },
        });
        if (!res.body) throw new CloudError('empty answer');
        const body = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
        if (o.output) {
          const tmp = `${o.output}.partial`;
          try {
            await pipeline(body, createWriteStream(tmp));
            renameSync(tmp, o.output);
          } catch (err) {
            rmSync(tmp, { force: true });
            throw err;
          }
        } else {
          await pipeline(body, process.stdout);
        }
        return 0;
      }),
    );
}
