/**
 * Zun's image-side API: `/v1/images` (admin: list, show, pull onto a host, delete; `search` for owners),
 * `/v1/registries` (per-project registry credentials), `POST /v1/containers/{id}/commit` (into a Glance image), and
 * Krater's extensions under `/v1/images/local` for the `krater` CLI (streamed pull with progress, list, rmi, load,
 * save on a host's containerd).
 */

import { randomUUID } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { toHostError } from '../../../compute/host-errors.js';
import type { App } from '../../../core/http/server.js';
import type { ContainerRow, RegistryRow, ZunImageRow } from '../../../core/store/schema.js';
import { SecretBox } from '../../../images/credentials.js';
import type { HostImages } from '../../../images/host.js';
import { PullError } from '../../../images/pull.js';
import { hasExplicitDomain, parseReference } from '../../../images/reference.js';
import { RegistryClient, type RegistryCredentials } from '../../../images/registry.js';
import { authorize, checkState, engineErrorToZun, fieldAllowed, isEngineFailure, type ZunContext } from '../context.js';
import { PAGING_PARAMS, pageOf, parsePaging } from '../paging.js';
import { expectString, invalid, mergedParams, parseBool, schemaError, zunError } from '../params.js';
import { renderRegistry } from '../registries.js';

type Req = FastifyRequest;

/** Zun's `parse_image_name`: `repo[:tag]` or `repo@digest` → (repo, tag); tag defaults to `latest`. */
export function splitRepoTag(image: string): { repo: string; tag: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { repo: image.slice(0, at), tag: image.slice(at + 1) };
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { repo: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { repo: image, tag: 'latest' };
}

const refOf = (r: { repo: string; tag: string }) => (r.tag.includes(':') ? `${r.repo}@${r.tag}` : `${r.repo}:${r.tag}`);

function normalized(ref: string): string | undefined {
  try {
    return parseReference(ref).name;
  } catch {
    return undefined;
  }
}

function imageView(zx: ZunContext, i: ZunImageRow): Record<string, unknown> {
  return {
    uuid: i.uuid,
    links: [
      { href: `${zx.base}/v1/images/${i.uuid}`, rel: 'self' },
      { href: `${zx.base}/images/${i.uuid}`, rel: 'bookmark' },
    ],
    image_id: i.image_id,
    repo: i.repo,
    tag: i.tag,
    size: i.size === null ? null : Number(i.size),
    project_id: i.project_id,
    image_pull_policy: i.image_pull_policy,
    host: i.host,
  };
}

const SORTABLE = ['id', 'uuid', 'repo', 'tag', 'size', 'host', 'project_id', 'created_at', 'updated_at'];

export function imageRoutes(app: App, zx: ZunContext): void {
  const { images: imageRecords, registries, hosts: hostRepo } = zx;
  const secrets = SecretBox.forDataDir(zx.core.config.dataDir);

  const requireJson = (req: Req) => {
    const ct = String(req.headers['content-type'] ?? '').toLowerCase();
    if (!ct.includes('application/json')) throw zunError(415, 'UnsupportedMediaType', `Unsupported Content-Type`);
  };

  /** The host for an image call: the one asked for (must exist), else the first schedulable one. */
  const pickHost = async (requested: unknown): Promise<string> => {
    if (requested !== undefined && requested !== null && requested !== '') {
      const h = String(requested);
      const row = await hostRepo.findHost(h);
      if (!row) throw invalid(`The host ${h} does not exist.`);
      return row.hostname;
    }
    const hosts = await zx.agents.schedulableHosts();
    if (!hosts[0]) throw zunError(500, 'NoValidHost', 'No valid host was found. There are not enough hosts available.');
    return hosts[0];
  };

  // `krater load` streams the archive as the request body.
  app.addContentTypeParser('application/x-tar', (_req, payload, done) => done(null, payload));

  const hostImages = async (host: string): Promise<HostImages> => {
    const agent = await zx.agents.forHost(host);
    if (!agent?.images)
      throw zunError(500, 'ContainerHostNotUp', `The agent of host ${host} is not reachable from this API process.`);
    return agent.images;
  };

  /** Engine errors of image calls become Zun's codes. */
  const engineCall = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof PullError)
        throw zunError(
          err.code === 'not_found' || err.code === 'invalid_reference' ? 404 : err.code === 'unauthorized' ? 403 : 400,
          'ImageNotFound',
          err.message,
        );
      if (isEngineFailure(err)) throw engineErrorToZun(toHostError(err), 'ImageNotFound');
      throw err;
    }
  };

  const credentialsFor = (reg: RegistryRow | undefined): RegistryCredentials | undefined =>
    reg?.username ? { username: reg.username, password: reg.password ? secrets.decrypt(reg.password) : '' } : undefined;

  // ================================================================ /v1/images (Zun)

  app.get('/images', async (req) => {
    authorize(zx, req, 'image:get_all', {});
    const q = req.query as Record<string, string>;
    const paging = parsePaging(q, SORTABLE);
    const rows = await imageRecords.list(paging);
    const { page, next } = pageOf(rows, paging, `${zx.base}/v1/images`, (m) =>
      zunError(400, 'ImageNotFound', `Image ${m} could not be found.`),
    );
    return { images: page.map((i) => imageView(zx, i)), next };
  });

  // ---------------------------------------------------------------- Krater extensions (before /images/:id)

  /** `krater images`: what a host's containerd holds. */
  app.get('/images/local', async (req) => {
    authorize(zx, req, 'image:get_all', {});
    const host = await pickHost((req.query as Record<string, unknown>).host);
    return { host, images: await engineCall(async () => (await hostImages(host)).list()) };
  });

  /**
   * `krater pull`: pulls onto a host and streams progress as NDJSON (one JSON object per line: the puller's progress
   * events, then `{"status":"done","image":{…}}` or `{"status":"error","message":…}`).
   */
  app.post('/images/local/pull', async (req, reply: FastifyReply) => {
    authorize(zx, req, 'image:pull', {});
    const p = mergedParams(req.query, req.body);
    const image = expectString('image', p.image, { min: 1, max: 512 });
    const host = await pickHost(p.host);
    let credentials: RegistryCredentials | undefined;
    if (p.registry !== undefined && p.registry !== null && p.registry !== '') {
      credentials = credentialsFor(await registries.find(String(p.registry), req.auth.projectId, req.auth.isAdmin));
    }
    const images = await hostImages(host);
    try {
      parseReference(image);
    } catch (err) {
      throw invalid((err as Error).message);
    }
    const out = new PassThrough();
    const line = (o: unknown) => {
      if (!out.writableEnded && !out.destroyed) out.write(`${JSON.stringify(o)}\n`);
    };
    void images
      .pull(image, { credentials, onProgress: (e) => line(e) })
      .then(
        (r) =>
          line({
            status: 'done',
            host,
            image: {
              name: r.name,
              digest: r.target.digest,
              id: r.config.digest,
              size: r.size,
              layers: r.layers.length,
              downloaded: r.downloaded,
            },
          }),
        (err) => line({ status: 'error', message: (err as Error).message }),
      )
      .catch((err) => line({ status: 'error', message: (err as Error).message }))
      .finally(() => out.end());
    return reply.type('application/x-ndjson').send(out);
  });

  /** `krater rmi`: refused (409) while a container uses the image. */
  app.delete('/images/local', async (req) => {
    authorize(zx, req, 'image:delete', {});
    const q = req.query as Record<string, unknown>;
    const image = expectString('image', q.image, { min: 1, max: 512 });
    const host = await pickHost(q.host);
    return { host, deleted: await engineCall(async () => (await hostImages(host)).remove(image)) };
  });

  /** `krater load`: the request body is the archive (`application/x-tar`). */
  app.post('/images/local/load', { bodyLimit: 64 * 1024 ** 3 }, async (req) => {
    authorize(zx, req, 'image:pull', {});
    const host = await pickHost((req.query as Record<string, unknown>).host);
    const body = req.body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== 'function')
      throw zunError(415, 'UnsupportedMediaType', 'Send the archive as application/x-tar.');
    return { host, images: await engineCall(async () => (await hostImages(host)).load(body)) };
  });

  /** `krater save`: a `docker save` archive of one or more images. */
  app.get('/images/local/save', { config: { repeatableQuery: ['image'] } }, async (req, reply) => {
    authorize(zx, req, 'image:get_one', {});
    const q = req.query as Record<string, unknown>;
    const list = Array.isArray(q.image) ? q.image : q.image === undefined ? [] : [q.image];
    if (!list.length) throw invalid('Name at least one image.');
    const host = await pickHost(q.host);
    const stream = await engineCall(async () => (await hostImages(host)).save(list.map(String)));
    return reply.type('application/x-tar').send(stream);
  });

  // ---------------------------------------------------------------- Zun's per-image routes

  const loadImage = async (id: string): Promise<ZunImageRow> => {
    const row = await imageRecords.get(id);
    if (!row) throw zunError(400, 'ImageNotFound', `Image ${id} could not be found.`);
    return row;
  };

  app.get('/images/:id', async (req) => {
    const row = await loadImage((req.params as { id: string }).id);
    authorize(zx, req, 'image:get_one', row as unknown as Record<string, unknown>);
    return imageView(zx, row);
  });

  app.post('/images', async (req, reply) => {
    requireJson(req);
    authorize(zx, req, 'image:pull', {});
    const body = (req.body ?? {}) as Record<string, unknown>;
    const known = ['repo', 'tag', 'image_id', 'size', 'image_pull_policy', 'host'];
    const extra = Object.keys(body).filter((k) => !known.includes(k));
    if (extra.length)
      throw schemaError(
        `Additional properties are not allowed ('${extra.join("', '")}' ${extra.length > 1 ? 'were' : 'was'} unexpected)`,
      );
    if (body.repo === undefined) throw schemaError("'repo' is a required property");
    const repoTag = expectString('repo', body.repo, { min: 2, max: 255 });
    let policy: string | null = null;
    if (body.image_pull_policy !== undefined && body.image_pull_policy !== null) {
      policy = String(body.image_pull_policy).toLowerCase();
      if (!['never', 'always', 'ifnotpresent'].includes(policy))
        throw schemaError(
          `Invalid input for field/attribute image_pull_policy. Value: ${body.image_pull_policy}. is not one of ['never', 'always', 'ifnotpresent']`,
        );
    }
    const host = await pickHost(body.host);
    const { repo, tag } = splitRepoTag(repoTag);
    if (!normalized(refOf({ repo, tag }))) throw invalid(`Invalid image name ${repoTag}: invalid reference format.`);
    const now = new Date().toISOString();
    const row: ZunImageRow = {
      uuid: randomUUID(),
      image_id: null,
      repo,
      tag,
      size: null,
      project_id: req.auth.projectId ?? null,
      user_id: req.auth.userId,
      host,
      image_pull_policy: policy,
      status: 'pulling',
      status_reason: null,
      created_at: now,
      updated_at: null,
    };
    await imageRecords.insert(row);
    await zx.repo.enqueueImageTask(host, row.uuid, 'image_pull');
    zx.agents.wake(host);
    reply.code(202).header('Location', `${zx.base}/v1/images/${row.uuid}`);
    return imageView(zx, row);
  });

  /** Containers on `host` created from `name` (a normalised reference), registry prefixes applied. */
  const containersUsing = async (host: string, name: string): Promise<ContainerRow[]> =>
    (await imageRecords.dockerContainersOn(host))
      .filter(({ container: c, registryDomain: d }) => {
        return normalized(d && !hasExplicitDomain(c.image) ? `${d}/${c.image}` : c.image) === name;
      })
      .map(({ container }) => container);

  app.delete('/images/:id', async (req, reply) => {
    authorize(zx, req, 'image:delete', {});
    const row = await loadImage((req.params as { id: string }).id);
    const q = req.query as Record<string, unknown>;
    const host = q.host !== undefined && q.host !== null && q.host !== '' ? await pickHost(q.host) : row.host;
    if (host !== row.host)
      throw zunError(400, 'ImageNotFound', `Image ${row.uuid} could not be found on host ${host}.`);
    const name = normalized(refOf(row));
    const users = name ? await containersUsing(host, name) : [];
    if (users.length)
      throw zunError(
        409,
        'Conflict',
        `Image ${refOf(row)} is in use by container${users.length > 1 ? 's' : ''} ${users.map((u) => u.uuid).join(', ')}.`,
      );
    await imageRecords.setStatus(row.uuid, 'deleting');
    await zx.repo.enqueueImageTask(host, row.uuid, 'image_delete');
    zx.agents.wake(host);
    return reply.code(200).type('application/json').send('null');
  });

  app.get('/images/:image/search', async (req) => {
    authorize(zx, req, 'image:search', { project_id: req.auth.projectId });
    const q = req.query as Record<string, unknown>;
    const unknown = Object.keys(q).filter((k) => !['image_driver', 'exact_match'].includes(k));
    if (unknown.length)
      throw schemaError(`Additional properties are not allowed ('${unknown.join("', '")}' was unexpected)`);
    let exact: boolean;
    try {
      exact = parseBool('exact_match', q.exact_match);
    } catch {
      throw invalid('Valid exact_match values are: 1, t, true, on, y, yes, 0, f, false, off, n, no');
    }
    let driver =
      q.image_driver === undefined || q.image_driver === null || q.image_driver === 'None' || q.image_driver === ''
        ? 'docker'
        : String(q.image_driver);
    if (!['docker', 'glance'].includes(driver))
      throw schemaError(
        `Invalid input for field/attribute image_driver. Value: ${driver}. '${driver}' is not one of ['glance', 'docker']`,
      );
    const image = (req.params as { image: string }).image;
    const { repo, tag } = splitRepoTag(image);
    if (driver === 'glance') {
      const viewer = { projectId: req.auth.projectId, admin: req.auth.isAdmin };
      return zx.glance.search(viewer, { name: repo, exact, tag: image.includes(':') && tag ? tag : undefined });
    }
    driver = 'docker';
    // A registry named in the image: its catalog; otherwise Docker Hub's search.
    const projectRegs = req.auth.projectId ? await registries.list({ projectId: req.auth.projectId }) : [];
    try {
      if (hasExplicitDomain(repo)) {
        const slash = repo.indexOf('/');
        const domain = repo.slice(0, slash);
        const term = repo.slice(slash + 1);
        const client = new RegistryClient({
          insecure: zx.core.config.insecureRegistries,
          credentials: (d) => credentialsFor(projectRegs.find((r) => r.domain === d)),
        });
        const names = await client.catalog(domain);
        return names
          .filter((n) => (exact ? n === term : n.includes(term)))
          .map((n) => ({ name: `${domain}/${n}`, description: '', is_automated: false, metadata: {} }));
      }
      const hits = await new RegistryClient().hubSearch(repo);
      return hits
        .filter((h) => !exact || h.name === repo)
        .map((h) => {
          const { is_official, star_count, ...rest } = h;
          const metadata: Record<string, unknown> = {};
          if (is_official !== undefined && is_official !== null) metadata.is_official = is_official;
          if (star_count !== undefined && star_count !== null) metadata.star_count = star_count;
          return { ...rest, metadata };
        });
    } catch (err) {
      // The registry is not reachable or refused us: the reason, as a 503 (nothing is wrong with the request).
      throw zunError(503, 'ZunException', `Cannot search image in docker: ${(err as Error).message}`);
    }
  });

  // ================================================================ commit

  app.post('/containers/:id/commit', async (req, reply) => {
    const p = mergedParams(req.query, req.body);
    const all = req.auth.isAdmin;
    const c = await zx.repo.find((req.params as { id: string }).id, req.auth.projectId, all);
    authorize(zx, req, 'container:commit', c as unknown as Record<string, unknown>);
    if (p.repository === undefined || p.repository === null) throw schemaError("'repository' is a required property");
    const repository = expectString('repository', p.repository, { min: 1, max: 255 });
    const tag =
      p.tag === undefined || p.tag === null || p.tag === '' || p.tag === 'None'
        ? 'latest'
        : expectString('tag', p.tag, { min: 1, max: 128 });
    checkState(c, 'commit');
    if (!c.host) throw zunError(500, 'ContainerHostNotUp', `Container ${c.uuid} is not scheduled on any host.`);
    // The Glance image is created now (queued); the host fills it.
    const { id } = await zx.glance.createFromCommit({ projectId: c.project_id, name: repository, tag });
    const actionId = await zx.repo.startAction(
      c,
      'commit',
      req.id,
      req.auth.userId,
      req.auth.projectId ?? c.project_id,
    );
    await zx.repo.enqueue(c.host, c.uuid, 'commit', { imageId: id, repository, tag }, actionId);
    zx.agents.wake(c.host);
    reply.code(202);
    return { uuid: id };
  });

  // ================================================================ /v1/registries

  // Zun strips a field when a `registry:get_one:<field>` rule exists and denies it (no rule: shown).
  const canSeeRegistryField = (req: Req, r: RegistryRow) => (field: string) =>
    fieldAllowed(zx, req, `registry:get_one:${field}`, r as unknown as Record<string, unknown>);

  const regView = (req: Req, r: RegistryRow) => renderRegistry(r, zx.base, canSeeRegistryField(req, r));

  const registryBody = (req: Req, create: boolean): Record<string, unknown> => {
    const body = req.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw schemaError("'registry' is a required property");
    const extra = Object.keys(body).filter((k) => k !== 'registry');
    if (extra.length)
      throw schemaError(`Additional properties are not allowed ('${extra.join("', '")}' was unexpected)`);
    const r = body.registry as Record<string, unknown> | undefined;
    if (r === undefined) throw schemaError("'registry' is a required property");
    if (!r || typeof r !== 'object' || Array.isArray(r))
      throw schemaError("Invalid input for field/attribute registry. is not of type 'object'");
    const bad = Object.keys(r).filter((k) => !['name', 'domain', 'username', 'password'].includes(k));
    if (bad.length) throw schemaError(`Additional properties are not allowed ('${bad.join("', '")}' was unexpected)`);
    if (create && r.domain === undefined) throw schemaError("'domain' is a required property");
    const out: Record<string, unknown> = {};
    if (r.domain !== undefined) out.domain = expectString('domain', r.domain, { min: 2, max: 255 });
    for (const k of ['name', 'username', 'password'] as const) {
      if (r[k] === undefined) continue;
      out[k] = r[k] === null ? null : expectString(k, r[k], { min: k === 'password' ? 0 : 1, max: 255 });
    }
    if (out.name !== undefined && out.name !== null && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(out.name as string)) {
      throw schemaError(
        `Invalid input for field/attribute name. Value: ${out.name}. '${out.name}' does not match '^[a-zA-Z0-9][a-zA-Z0-9_.-]*$'`,
      );
    }
    return out;
  };

  app.post('/registries', async (req, reply) => {
    requireJson(req);
    authorize(zx, req, 'registry:create', { project_id: req.auth.projectId, user_id: req.auth.userId });
    if (!req.auth.projectId)
      throw zunError(403, 'PolicyNotAuthorized', 'A project-scoped token is required to create registries.');
    const r = registryBody(req, true);
    const row: RegistryRow = {
      uuid: randomUUID(),
      name: (r.name as string | null | undefined) ?? null,
      domain: r.domain as string,
      username: (r.username as string | null | undefined) ?? null,
      password: typeof r.password === 'string' ? secrets.encrypt(r.password) : null,
      project_id: req.auth.projectId,
      user_id: req.auth.userId,
      created_at: new Date().toISOString(),
      updated_at: null,
    };
    await registries.insert(row);
    reply.code(201).header('Location', `${zx.base}/v1/registries/${row.uuid}`);
    return { registry: regView(req, row) };
  });

  app.get('/registries', async (req) => {
    authorize(zx, req, 'registry:get_all', { project_id: req.auth.projectId });
    const q = { ...(req.query as Record<string, string>) };
    const all = parseBool('all_projects', q.all_projects);
    if (all) authorize(zx, req, 'registry:get_all_all_projects', { project_id: req.auth.projectId });
    const filters = ['name', 'domain', 'username', 'project_id', 'user_id'];
    const unknown = Object.keys(q).filter((k) => !filters.includes(k) && !PAGING_PARAMS.includes(k));
    if (unknown.length) throw invalid(`Unknown parameters: ${unknown.join(', ')}`);
    const paging = parsePaging(q, [
      'id',
      'uuid',
      'name',
      'domain',
      'username',
      'project_id',
      'user_id',
      'created_at',
      'updated_at',
    ]);
    const rows = await registries.list({
      projectId: req.auth.projectId,
      allProjects: all,
      filters: Object.fromEntries(filters.filter((f) => q[f] !== undefined).map((f) => [f, q[f]!])),
      order: paging,
    });
    const { page, next } = pageOf(rows, paging, `${zx.base}/v1/registries`, (m) =>
      zunError(404, 'RegistryNotFound', `Registry ${m} could not be found.`),
    );
    return { registries: page.map((r) => regView(req, r)), next };
  });

  const loadRegistry = async (req: Req, action: string) => {
    const r = await registries.find((req.params as { id: string }).id, req.auth.projectId, req.auth.isAdmin);
    authorize(zx, req, `registry:${action}`, r as unknown as Record<string, unknown>);
    return r;
  };

  app.get('/registries/:id', async (req) => ({ registry: regView(req, await loadRegistry(req, 'get_one')) }));

  app.patch('/registries/:id', async (req) => {
    const r = await loadRegistry(req, 'update');
    const patch = registryBody(req, false);
    const values: Partial<RegistryRow> = { updated_at: new Date().toISOString() };
    if (patch.name !== undefined) values.name = patch.name as string | null;
    if (patch.domain !== undefined) values.domain = patch.domain as string;
    if (patch.username !== undefined) values.username = patch.username as string | null;
    if (patch.password !== undefined)
      values.password = typeof patch.password === 'string' ? secrets.encrypt(patch.password) : null;
    const fresh = await registries.update(r.uuid, values);
    return { registry: regView(req, fresh) };
  });

  app.delete('/registries/:id', async (req, reply) => {
    const r = await loadRegistry(req, 'delete');
    await registries.remove(r.uuid);
    reply.code(204).send();
  });
}
