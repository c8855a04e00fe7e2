import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ActionRequest, UpdateRequest } from '../../../compute/container-api.js';
import { outsideMemberPolicy, PUBLISH_ANY_RULE } from '../../../compute/publish.js';
import { atLeast } from '../../../core/http/microversion.js';
import type { App } from '../../../core/http/server.js';
import type { ContainerRow } from '../../../core/store/schema.js';
import { unsafeArchiveReason } from '../archive-check.js';
import {
  actorOf,
  allowed,
  authorize,
  callAgent,
  checkState,
  fieldAllowed,
  loadContainer,
  view,
  type ZunContext,
} from '../context.js';
import { parseCreate } from '../create.js';
import { PAGING_PARAMS, pageOf, parsePaging } from '../paging.js';
import {
  expectString,
  invalid,
  mergedParams,
  parseBool,
  parseNumber,
  schemaError,
  shlexSplit,
  zunError,
} from '../params.js';

const LIST_FILTERS = [
  'name',
  'image',
  'project_id',
  'user_id',
  'memory',
  'host',
  'task_state',
  'status',
  'auto_remove',
];
const SORTABLE = [
  'id',
  'uuid',
  'name',
  'image',
  'status',
  'created_at',
  'updated_at',
  'memory',
  'cpu',
  'host',
  'project_id',
  'user_id',
  'task_state',
];

type Req = FastifyRequest;
const params = (req: Req) => mergedParams(req.query, req.body);
const ident = (req: Req) => (req.params as { id: string }).id;

export function containerRoutes(app: App, zx: ZunContext): void {
  const { repo } = zx;

  const load = (req: Req, action: string): Promise<ContainerRow> => loadContainer(zx, req, action);

  // ---------------------------------------------------------------- create / run
  app.post('/containers', async (req, reply) => {
    const v = req.zunVersion;
    authorize(zx, req, 'container:create', { project_id: req.auth.projectId, user_id: req.auth.userId });
    if (!req.auth.projectId)
      throw zunError(403, 'PolicyNotAuthorized', 'A project-scoped token is required to create containers.');
    const args = params(req);
    const create = parseCreate(args, v);
    for (const rule of create.privilegedFields) authorize(zx, req, rule, { project_id: req.auth.projectId });
    const published = create.spec.publishedPorts ?? [];
    if (published.length && !zx.networking)
      throw invalid('Published ports need tenant networking (this Krater runs with KRATER_NETWORKING=none).');
    const outside = outsideMemberPolicy(published, zx.core.config.publish);
    if (outside.length && !allowed(zx, req, PUBLISH_ANY_RULE, { project_id: req.auth.projectId })) {
      const { memberHostIps, memberPorts } = zx.core.config.publish;
      throw zunError(
        403,
        'PolicyNotAuthorized',
        `Policy doesn't allow ${PUBLISH_ANY_RULE} to be performed: ${outside.join(', ')} is outside the host addresses (${memberHostIps.join(', ')}) and ports (${memberPorts.min}-${memberPorts.max}) open to members.`,
      );
    }
    if (args.registry !== undefined && args.registry !== null)
      create.spec.registryId = (
        await zx.registries.find(String(args.registry), req.auth.projectId, req.auth.isAdmin)
      ).uuid;
    const c = await zx.api.create(actorOf(req), { spec: create.spec, run: create.run, host: create.requestedHost });
    reply.code(202).header('Location', `${zx.base}/v1/containers/${c.uuid}`);
    return view(zx, req, c.row);
  });

  // ---------------------------------------------------------------- list / show
  app.get('/containers', async (req) => {
    const q = req.query as Record<string, string>;
    const unknown = Object.keys(q).filter((k) => !LIST_FILTERS.includes(k) && !PAGING_PARAMS.includes(k));
    if (unknown.length) throw invalid(`Unknown parameters: ${unknown.join(', ')}`);
    authorize(zx, req, 'container:get_all', { project_id: req.auth.projectId });
    const all = parseBool('all_projects', q.all_projects);
    if (all) authorize(zx, req, 'container:get_all_all_projects', { project_id: req.auth.projectId });
    const paging = parsePaging(q, SORTABLE);
    const filters: Record<string, string | number> = {};
    for (const f of LIST_FILTERS) {
      if (q[f] === undefined) continue;
      if (!fieldAllowed(zx, req, `container:get_one:${f}`, { project_id: req.auth.projectId }))
        throw zunError(403, 'PolicyNotAuthorized', `Policy doesn't allow container:get_one:${f} to be performed.`);
      filters[f] = f === 'auto_remove' ? (parseBool(f, q[f]) ? 1 : 0) : q[f];
    }
    const rows = await repo.list(all ? null : (req.auth.projectId ?? ''), filters, paging);
    const { page, next } = pageOf(rows, paging, `${zx.base}/v1/containers`, (m) =>
      zunError(404, 'ContainerNotFound', `Container ${m} could not be found.`),
    );
    return { containers: page.map((c) => view(zx, req, c)), next };
  });

  app.get('/containers/:id', async (req) => view(zx, req, await load(req, 'get_one')));

  // ---------------------------------------------------------------- update / rename / resize
  const applyUpdate = async (req: Req, action: 'update' | 'resize_container') => {
    const c = await load(req, action);
    const body = (action === 'update' ? req.body : params(req)) as Record<string, unknown> | undefined;
    const allowedKeys = ['cpu', 'memory', 'name', 'auto_heal'];
    const unknown = Object.keys(body ?? {}).filter((k) => !allowedKeys.includes(k));
    if (unknown.length)
      throw schemaError(`Additional properties are not allowed ('${unknown.join("', '")}' was unexpected)`);
    if (!body || Object.keys(body).length === 0)
      throw invalid('Please provide at least one of the following: cpu, memory, name, auto_heal.');
    if (body.name !== undefined && !atLeast(req.zunVersion, 1, 14))
      throw zunError(
        400,
        'InvalidParamInVersion',
        `Invalid param name because current request version is ${req.zunVersion.major}.${req.zunVersion.minor}. name is only supported from version 1.14`,
      );
    const update: UpdateRequest = {};
    if (body.name !== undefined)
      update.name = expectString('name', body.name, { min: 2, max: 255, pattern: /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/ });
    if (body.auto_heal !== undefined) update.autoHeal = parseBool('auto_heal', body.auto_heal);
    if (body.cpu !== undefined) update.cpu = parseNumber('cpu', body.cpu, 0.1, 16);
    if (body.memory !== undefined) update.memoryMiB = parseNumber('memory', body.memory, 4, 8192, true);
    return (await zx.api.update(actorOf(req), c, update, action)).row;
  };
  app.patch('/containers/:id', async (req) => view(zx, req, await applyUpdate(req, 'update')));
  app.post('/containers/:id/resize_container', async (req, reply) => {
    apiRange(req, 'resize_container', [1, 19]);
    const c = await applyUpdate(req, 'resize_container');
    reply.code(202);
    return view(zx, req, c);
  });
  // Renaming has its own endpoint up to 1.13 (PATCH `name` from 1.14); its one query parameter is `name`.
  app.post('/containers/:id/rename', async (req) => {
    apiRange(req, 'rename', undefined, [1, 13]);
    const p = params(req);
    const unknown = Object.keys(p).filter((k) => k !== 'name');
    if (unknown.length)
      throw schemaError(`Additional properties are not allowed ('${unknown.join("', '")}' was unexpected)`);
    const c = await load(req, 'rename');
    const name = expectString('name', p.name, { min: 2, max: 255, pattern: /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/ });
    if (name === c.name) throw zunError(409, 'Conflict', 'The new name for the container is the same as the old name.');
    return view(zx, req, (await zx.api.update(actorOf(req), c, { name })).row);
  });

  // ---------------------------------------------------------------- delete
  app.delete('/containers/:id', async (req, reply) => {
    const q = params(req);
    const force = parseBool('force', q.force);
    const stop = atLeast(req.zunVersion, 1, 12) ? parseBool('stop', q.stop) : false;
    const all = parseBool('all_projects', q.all_projects);
    if (all) authorize(zx, req, 'container:delete_all_projects', { project_id: req.auth.projectId });
    const c = await repo.find(ident(req), req.auth.projectId, all || req.auth.isAdmin);
    authorize(zx, req, 'container:delete', c as unknown as Record<string, unknown>);
    if (force && atLeast(req.zunVersion, 1, 7))
      authorize(zx, req, 'container:delete_force', c as unknown as Record<string, unknown>);
    await zx.api.delete(actorOf(req), c, { force, stop });
    reply.code(204).send();
  });

  // ---------------------------------------------------------------- async actions
  /** An action whose parameters are parsed after the state check (a 409 wins over a bad parameter, as in Zun). */
  const action = <A extends ActionRequest['action']>(
    path: string,
    name: A,
    parse: (req: Req) => Omit<Extract<ActionRequest, { action: A }>, 'action'> = () => ({}) as never,
  ) => {
    app.post(`/containers/:id/${path}`, async (req, reply: FastifyReply) => {
      const c = await load(req, name);
      checkState(c, name);
      await zx.api.action(actorOf(req), c, { action: name, ...parse(req) } as ActionRequest);
      reply.code(202).send();
    });
  };
  const timeoutParam = (req: Req) => {
    const t = params(req).timeout;
    return { timeout: t === undefined || t === null || t === 'None' ? 10 : parseNumber('timeout', t, 0, 86400, true) };
  };
  action('start', 'start');
  action('stop', 'stop', timeoutParam);
  action('reboot', 'reboot', timeoutParam);
  action('pause', 'pause');
  action('unpause', 'unpause');
  action('kill', 'kill', (req) => {
    const s = params(req).signal;
    return { signal: s === undefined || s === null || s === 'None' ? 'SIGKILL' : normalizeSignal(String(s)) };
  });
  action('rebuild', 'rebuild', (req) => {
    const p = params(req);
    const out: { image?: string; imageDriver?: 'docker' | 'glance' } = {};
    if (p.image !== undefined && p.image !== null && p.image !== 'None')
      out.image = expectString('image', p.image, { min: 2, max: 255 });
    if (p.image_driver !== undefined && p.image_driver !== null && p.image_driver !== 'None') {
      if (!['docker', 'glance'].includes(p.image_driver as string))
        throw schemaError(`Invalid input for field/attribute image_driver. Value: ${p.image_driver}.`);
      out.imageDriver = p.image_driver as 'docker' | 'glance';
    }
    return out;
  });

  // ---------------------------------------------------------------- synchronous calls
  app.get('/containers/:id/logs', async (req, reply) => {
    const c = await load(req, 'logs');
    checkState(c, 'logs');
    const q = params(req);
    const unknown = Object.keys(q).filter((k) => !LOGS_PARAMS.includes(k));
    if (unknown.length)
      throw schemaError(`Additional properties are not allowed ('${unknown.join("', '")}' was unexpected)`);
    const stdout = parseBool('stdout', q.stdout, true);
    const stderr = parseBool('stderr', q.stderr, true);
    const timestamps = parseBool('timestamps', q.timestamps);
    const tail = parseTail(q.tail);
    const since = parseSince(q.since);
    if (parseBool('follow', q.follow)) {
      // Krater's extension: a plain-text stream that ends when the container stops.
      const stream = await callAgent(zx, c, async (a) => a.followLogs(c, { stdout, stderr, tail }));
      return reply.type('text/plain; charset=utf-8').send(stream);
    }
    // Zun answers with a JSON string.
    const text = await callAgent(zx, c, (a) => a.logs(c, { stdout, stderr, timestamps, tail, since }));
    return reply.type('application/json; charset=utf-8').send(JSON.stringify(text));
  });

  app.post('/containers/:id/execute', async (req) => {
    const c = await load(req, 'execute');
    checkState(c, 'execute');
    const p = params(req);
    if (p.command === undefined || p.command === null || p.command === '') throw invalid('Command is required.');
    const command = Array.isArray(p.command) ? (p.command as string[]) : shlexSplit(String(p.command));
    const run = parseBool('run', p.run, true);
    const interactive = parseBool('interactive', p.interactive);
    if (interactive || !run) {
      // Zun's interactive exec: an exec instance whose process starts when the client opens proxy_url.
      const { execId, token } = await callAgent(zx, c, async (a) => a.createExec(c, command), 'execute');
      const proxyUrl = `${zx.wsBase}?token=${token}&uuid=${c.uuid}&exec_id=${execId}`;
      return { output: null, exit_code: null, exec_id: execId, proxy_url: proxyUrl };
    }
    const result = await callAgent(zx, c, (a) => a.exec(c, command, { tty: false }), 'execute');
    return { output: result.output, exit_code: result.exitCode, exec_id: null, proxy_url: null };
  });

  const size = (p: Record<string, unknown>) => ({
    cols: parseNumber('w', p.w, 1, 65535, true),
    rows: parseNumber('h', p.h, 1, 65535, true),
  });

  app.post('/containers/:id/execute_resize', async (req) => {
    const c = await load(req, 'execute_resize');
    checkState(c, 'execute_resize');
    const p = params(req);
    const execId = expectString('exec_id', p.exec_id, { pattern: /^[a-f0-9]{64}$/ });
    const { cols, rows } = size(p);
    const found = await callAgent(zx, c, (a) => a.resizeExec(c, execId, cols, rows));
    if (!found) throw zunError(404, 'ExecInstanceNotFound', `Exec instance ${execId} could not be found.`);
    return null;
  });

  app.get('/containers/:id/attach', async (req, reply) => {
    const c = await load(req, 'attach');
    checkState(c, 'attach');
    if (!c.interactive)
      throw zunError(
        400,
        'NoInteractiveFlag',
        `Cannot attach to container ${c.uuid}: it was not created with the interactive flag.`,
      );
    const token = await callAgent(zx, c, async (a) => a.createAttach(c), 'attach');
    return reply
      .type('application/json; charset=utf-8')
      .send(JSON.stringify(`${zx.wsBase}?token=${token}&uuid=${c.uuid}`));
  });

  app.post('/containers/:id/resize', async (req) => {
    const c = await load(req, 'resize');
    checkState(c, 'resize');
    const { cols, rows } = size(params(req));
    await callAgent(zx, c, (a) => a.resizeAttach(c, cols, rows));
    return null;
  });

  app.get('/containers/:id/top', async (req) => {
    const c = await load(req, 'top');
    checkState(c, 'top');
    const psArgs = params(req).ps_args;
    return callAgent(
      zx,
      c,
      (a) => a.top(c, psArgs === undefined || psArgs === null || psArgs === 'None' ? undefined : String(psArgs)),
      'top',
    );
  });

  app.get('/containers/:id/stats', async (req) => {
    const c = await load(req, 'stats');
    checkState(c, 'stats');
    return callAgent(zx, c, (a) => a.stats(c), 'stats');
  });

  app.get('/containers/:id/get_archive', async (req) => {
    const c = await load(req, 'get_archive');
    checkState(c, 'get_archive');
    const path = expectString('path', params(req).path, { min: 1 });
    const { tar, stat } = await callAgent(zx, c, (a) => a.getArchive(c, path), 'get_archive');
    return { data: atLeast(req.zunVersion, 1, 25) ? tar.toString('base64') : tar.toString('latin1'), stat };
  });

  // Archives are files users copy in (`appcontainer cp`, `krater cp`): larger than the API's usual 1 MiB bodies.
  app.post('/containers/:id/put_archive', { bodyLimit: 256 * 1024 ** 2 }, async (req) => {
    const c = await load(req, 'put_archive');
    checkState(c, 'put_archive');
    const p = params(req);
    const path = expectString('path', p.path, { min: 1 });
    const data = expectString('data', p.data);
    let tar: Buffer;
    if (atLeast(req.zunVersion, 1, 25)) {
      if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(data))
        throw zunError(400, 'Base64Exception', 'Failed to decode the archive data: it is not valid base64.');
      tar = Buffer.from(data, 'base64');
    } else tar = Buffer.from(data, 'latin1');
    const unsafe = unsafeArchiveReason(tar);
    if (unsafe) throw invalid(`Cannot extract the archive: ${unsafe}.`);
    await callAgent(zx, c, (a) => a.putArchive(c, path, tar), 'put_archive');
    return null;
  });

  // ---------------------------------------------------------------- actions history
  app.get('/containers/:id/container_actions', async (req) => {
    const c = await load(req, 'actions');
    const rows = await repo.listActions(c.uuid);
    return { containerActions: rows.map((a) => renderAction(a)) };
  });
  app.get('/containers/:id/container_actions/:request_id', async (req) => {
    const c = await load(req, 'actions');
    const { request_id } = req.params as { request_id: string };
    const a = await repo.findAction(c.uuid, request_id);
    if (!a) throw zunError(404, 'ResourceNotFound', `Action ${request_id} on container ${c.uuid} could not be found.`);
    const showTrace = allowed(zx, req, 'container:action:events', c as unknown as Record<string, unknown>);
    const events = await repo.actionEvents(a.id);
    return {
      ...renderAction(a),
      events: events.map((e) => ({
        event: e.event,
        start_time: actionTime(e.start_time),
        finish_time: actionTime(e.finish_time),
        result: e.result,
        traceback: showTrace ? e.traceback : null,
      })),
    };
  });
}

const actionTime = (iso: string | null) => (iso ? iso.replace(/\.(\d{3})Z$/, '.$1000').replace(/Z$/, '') : null);

function renderAction(a: {
  action: string;
  container_uuid: string;
  request_id: string;
  user_id: string | null;
  project_id: string | null;
  start_time: string;
  finish_time: string | null;
  message: string | null;
}) {
  return {
    action: a.action,
    container_uuid: a.container_uuid,
    request_id: a.request_id,
    user_id: a.user_id,
    project_id: a.project_id,
    start_time: actionTime(a.start_time),
    finish_time: actionTime(a.finish_time),
    message: a.message,
  };
}

const SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  KILL: 9,
  USR1: 10,
  USR2: 12,
  TERM: 15,
  STOP: 19,
  CONT: 18,
};
/** Zun accepts `SIGKILL`, `KILL`, `kill`, `9`, …; returns the canonical `SIGxxx` name. */
export function normalizeSignal(s: string): string {
  const up = s.toUpperCase().replace(/^SIG/, '');
  if (/^\d+$/.test(up)) {
    const name = Object.entries(SIGNALS).find(([, n]) => n === Number(up))?.[0];
    if (!name) throw invalid(`Invalid signal: ${s}`);
    return `SIG${name}`;
  }
  if (!(up in SIGNALS)) throw invalid(`Invalid signal: ${s}`);
  return `SIG${up}`;
}

/** A route outside its microversion range: Zun's versioned-method lookup answers 406 naming the API. */
function apiRange(req: FastifyRequest, api: string, min?: [number, number], max?: [number, number]): void {
  const v = req.zunVersion;
  if ((min && !atLeast(v, min[0], min[1])) || (max && atLeast(v, max[0], max[1] + 1)))
    throw zunError(
      406,
      'NotAcceptable',
      `Version ${v.major}.${v.minor} was requested but the requested API ${api} is not supported for this version.`,
    );
}

/** `logs` parameters: Zun's schema plus `all_projects` and Krater's `follow`. */
const LOGS_PARAMS = ['stdout', 'stderr', 'timestamps', 'tail', 'since', 'follow', 'all_projects'];

/** Zun's `tail` is any string or integer: a non-negative integer is a line count, anything else means all lines. */
export function parseTail(v: unknown): number | 'all' {
  if (v === undefined || v === null || v === '') return 'all';
  if (typeof v !== 'string' && typeof v !== 'number')
    throw schemaError(
      `Invalid input for field/attribute tail. Value: ${JSON.stringify(v)}. ${JSON.stringify(v)} is not of type 'string', 'integer', 'null'`,
    );
  const s = String(v).trim();
  return /^\+?\d+$/.test(s) ? Number(s) : 'all';
}

const SINCE_PATTERN = /(^[0-9]*$)|([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{1,3})/;

/** Zun's `since`: epoch seconds, or `YYYY-MM-DD HH:MM:SS,fff` (UTC); `None` or empty means no limit. Returns ms. */
export function parseSince(v: unknown): number | undefined {
  if (v === undefined || v === null || v === 'None' || v === '') return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v * 1000;
  if (typeof v !== 'string' || !SINCE_PATTERN.test(v))
    throw schemaError(
      `Invalid input for field/attribute since. Value: ${v}. '${v}' does not match '${SINCE_PATTERN.source}'`,
    );
  if (/^[0-9]+$/.test(v)) return Number(v) * 1000;
  const m = /([0-9]{4}-[0-9]{2}-[0-9]{2}) ([0-9]{2}:[0-9]{2}:[0-9]{2}),([0-9]{1,3})/.exec(v)!;
  const ms = Date.parse(`${m[1]}T${m[2]}.${m[3].padEnd(3, '0')}Z`);
  if (Number.isNaN(ms)) throw invalid(`Invalid since value: ${v}`);
  return ms;
}
