import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';

/** A cloud from clouds.yaml (or OS_* variables), authenticated once per command, as the `openstack` CLI does. */
export interface CloudAuth {
  auth_url: string;
  username?: string;
  password?: string;
  project_name?: string;
  project_id?: string;
  user_domain_name?: string;
  project_domain_name?: string;
  application_credential_id?: string;
  application_credential_secret?: string;
}

export class CloudError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

function cloudsYamlPaths(): string[] {
  const explicit = process.env.OS_CLIENT_CONFIG_FILE;
  return explicit
    ? [explicit]
    : ['clouds.yaml', join(homedir(), '.config/openstack/clouds.yaml'), '/etc/openstack/clouds.yaml'];
}

export function loadCloud(name = process.env.OS_CLOUD ?? 'krater'): { auth: CloudAuth; region?: string } {
  if (process.env.OS_AUTH_URL && !process.env.OS_CLOUD) {
    const e = process.env;
    return {
      auth: {
        auth_url: e.OS_AUTH_URL!,
        username: e.OS_USERNAME,
        password: e.OS_PASSWORD,
        project_name: e.OS_PROJECT_NAME,
        project_id: e.OS_PROJECT_ID,
        user_domain_name: e.OS_USER_DOMAIN_NAME,
        project_domain_name: e.OS_PROJECT_DOMAIN_NAME,
        application_credential_id: e.OS_APPLICATION_CREDENTIAL_ID,
        application_credential_secret: e.OS_APPLICATION_CREDENTIAL_SECRET,
      },
      region: e.OS_REGION_NAME,
    };
  }
  for (const path of cloudsYamlPaths()) {
    if (!existsSync(path)) continue;
    const doc = parseYaml(readFileSync(path, 'utf8')) as {
      clouds?: Record<string, { auth: CloudAuth; region_name?: string }>;
    };
    const cloud = doc?.clouds?.[name];
    if (cloud) return { auth: cloud.auth, region: cloud.region_name };
  }
  throw new CloudError(
    `cloud "${name}" not found in ${cloudsYamlPaths().join(', ')} (start Krater with \`krater up\`, or set OS_CLOUD / OS_* variables)`,
  );
}

interface CatalogEntry {
  type: string;
  endpoints: Array<{ interface: string; region_id: string; url: string }>;
}

/** A small HTTP client for Krater's (and OpenStack's) APIs with a token from the cloud's credentials. */
export class CloudClient {
  private token = '';
  private catalog: CatalogEntry[] = [];

  constructor(private cloud: { auth: CloudAuth; region?: string }) {}

  async authenticate(): Promise<void> {
    const a = this.cloud.auth;
    const identity = a.application_credential_id
      ? {
          methods: ['application_credential'],
          application_credential: { id: a.application_credential_id, secret: a.application_credential_secret },
        }
      : {
          methods: ['password'],
          password: {
            user: { name: a.username, password: a.password, domain: { name: a.user_domain_name ?? 'Default' } },
          },
        };
    const auth: Record<string, unknown> = { identity };
    if (!a.application_credential_id) {
      auth.scope = a.project_id
        ? { project: { id: a.project_id } }
        : { project: { name: a.project_name, domain: { name: a.project_domain_name ?? 'Default' } } };
    }
    const url = `${a.auth_url.replace(/\/+$/, '')}/auth/tokens`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ auth }),
      });
    } catch (err) {
      throw new CloudError(`cannot reach ${a.auth_url}: ${(err as Error).message}`);
    }
    if (res.status !== 201)
      throw new CloudError(`authentication failed (HTTP ${res.status}): ${await errorText(res)}`, res.status);
    this.token = res.headers.get('x-subject-token') ?? '';
    this.catalog = ((await res.json()) as { token: { catalog?: CatalogEntry[] } }).token.catalog ?? [];
  }

  endpoint(type: string): string {
    const svc = this.catalog.find((s) => s.type === type);
    const ep = svc?.endpoints.find(
      (e) => e.interface === 'public' && (!this.cloud.region || e.region_id === this.cloud.region),
    );
    if (!ep) throw new CloudError(`the cloud has no public ${type} endpoint`);
    return ep.url.replace(/\/+$/, '');
  }

  /** `body` is sent as JSON; `raw` (a buffer or a stream, e.g. an image archive) is sent as it is. */
  async request(
    method: string,
    url: string,
    opts: { body?: unknown; raw?: Buffer | ReadableStream<Uint8Array>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { 'X-Auth-Token': this.token, Accept: 'application/json', ...opts.headers };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    const init: RequestInit & { duplex?: 'half' } = {
      method,
      headers,
      body: (opts.raw as BodyInit | undefined) ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
    };
    if (opts.raw && !Buffer.isBuffer(opts.raw)) init.duplex = 'half';
    const res = await fetch(url, init);
    if (res.status >= 400) throw new CloudError(await errorText(res), res.status);
    return res;
  }
}

/** The human message of any OpenStack error envelope. */
async function errorText(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const j = JSON.parse(text);
    return j.errors?.[0]?.detail ?? j.error?.message ?? j.NeutronError?.message ?? j.message ?? text;
  } catch {
    return text || res.statusText;
  }
}
