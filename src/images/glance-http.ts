/**
 * The Glance port of a separate `krater agent`: image records come from the store as in-process (`records`, a port
 * over the image repository), image data travels through the image API (`GET`/`PUT /v2/images/{id}/file`, `DELETE
 * /v2/images/{id}`) as Zun's glance driver fetches it, so an agent never opens the API's data backend. The agent
 * authenticates with the host name and the RPC secret it advertised in the store (`agentCredentialHeaders`).
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { GlanceData, GlanceImage, GlanceLookup, GlancePort, GlanceViewer } from './glance-port.js';

export const AGENT_HOST_HEADER = 'x-krater-agent-host';
export const AGENT_SECRET_HEADER = 'x-krater-agent-secret';

export interface AgentCredentials {
  host: string;
  secret: string;
}

export function agentCredentialHeaders(c: AgentCredentials): Record<string, string> {
  return { [AGENT_HOST_HEADER]: c.host, [AGENT_SECRET_HEADER]: c.secret };
}

export interface GlanceHttpOptions {
  /** Resolves once the credentials are known to the API (the agent has advertised its secret). */
  ready?: Promise<void>;
  /** The image API's root (`…/image`): the catalog's image endpoint, or configured. */
  baseUrl: () => Promise<string>;
  /** The agent's current credentials (its secret changes at every start). */
  credentials: () => AgentCredentials;
}

export class GlanceHttpError extends Error {}

export class HttpGlance implements GlancePort {
  constructor(
    private readonly records: GlancePort,
    private readonly opts: GlanceHttpOptions,
  ) {}

  visibleTo(projectId: string, idOrName: string): Promise<GlanceLookup> {
    return this.records.visibleTo(projectId, idOrName);
  }

  search(viewer: GlanceViewer, query: { name: string; exact: boolean; tag?: string }) {
    return this.records.search(viewer, query);
  }

  createFromCommit(params: { projectId: string; name: string; tag: string }): Promise<GlanceImage> {
    return this.records.createFromCommit(params);
  }

  private async call(method: string, id: string, suffix: string, init: RequestInit = {}): Promise<Response> {
    await this.opts.ready;
    const base = (await this.opts.baseUrl()).replace(/\/+$/, '');
    const url = `${base}/v2/images/${encodeURIComponent(id)}${suffix}`;
    try {
      return await fetch(url, {
        ...init,
        method,
        headers: { ...(init.headers as Record<string, string>), ...agentCredentialHeaders(this.opts.credentials()) },
      });
    } catch (err) {
      throw new GlanceHttpError(`the image API at ${base} is unreachable: ${(err as Error).message}`);
    }
  }

  private static async failure(what: string, res: Response): Promise<GlanceHttpError> {
    const text = (await res.text().catch(() => '')).replace(/\s+/g, ' ').slice(0, 300);
    return new GlanceHttpError(`${what}: the image API answered ${res.status} ${text}`);
  }

  async open(imageId: string): Promise<GlanceData | null> {
    const res = await this.call('GET', imageId, '/file');
    if (res.status === 404 || res.status === 204) {
      await res.body?.cancel();
      return null;
    }
    if (res.status !== 200 || !res.body) throw await HttpGlance.failure(`downloading image ${imageId}`, res);
    return {
      data: Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>),
      checksum: res.headers.get('content-md5'),
    };
  }

  async finishCommit(imageId: string, data: Readable): Promise<GlanceImage> {
    let res: Response;
    try {
      res = await this.call('PUT', imageId, '/file', {
        headers: { 'content-type': 'application/octet-stream' },
        body: Readable.toWeb(data) as unknown as BodyInit,
        duplex: 'half',
      } as RequestInit);
    } catch (err) {
      data.destroy();
      throw err;
    }
    if (res.status !== 204) {
      data.destroy();
      throw await HttpGlance.failure(`uploading the commit of image ${imageId}`, res);
    }
    const got = await this.call('GET', imageId, '');
    if (got.status !== 200) throw await HttpGlance.failure(`reading image ${imageId} after its upload`, got);
    const img = (await got.json()) as { id: string; name: string | null; status: string; checksum: string | null };
    return {
      id: img.id,
      name: img.name,
      status: img.status,
      checksum: img.checksum,
      hasData: img.status === 'active',
    };
  }

  async failCommit(imageId: string): Promise<void> {
    const res = await this.call('DELETE', imageId, '');
    await res.body?.cancel();
    if (res.status !== 204 && res.status !== 404) throw await HttpGlance.failure(`deleting image ${imageId}`, res);
  }
}
