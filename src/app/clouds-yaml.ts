import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseDocument } from 'yaml';

export interface CloudEntry {
  authUrl: string;
  username: string;
  password: string;
  projectName: string;
  region: string;
}

/**
 * Sets `clouds.<name>` in a clouds.yaml, keeping every other cloud, key and comment as it was. Written atomically
 * with mode 0600 because it holds a password.
 */
export function writeCloudEntry(path: string, name: string, entry: CloudEntry): void {
  const doc = existsSync(path) ? parseDocument(readFileSync(path, 'utf8')) : parseDocument('clouds: {}\n');
  if (doc.errors.length) throw new Error(`cannot update ${path}: it is not valid YAML (${doc.errors[0].message})`);
  if (!doc.has('clouds') || doc.get('clouds') === null) doc.set('clouds', doc.createNode({}));
  doc.setIn(
    ['clouds', name],
    doc.createNode({
      auth: {
        auth_url: entry.authUrl,
        username: entry.username,
        password: entry.password,
        project_name: entry.projectName,
        user_domain_name: 'Default',
        project_domain_name: 'Default',
      },
      region_name: entry.region,
      interface: 'public',
      identity_api_version: 3,
    }),
  );
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.krater-tmp`;
  writeFileSync(tmp, doc.toString(), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
