/**
 * Image references, Docker style: `busybox` → `docker.io/library/busybox:latest`, `host:port/repo:tag`,
 * `repo@sha256:…`. Normalisation is `normalizeImageRef` (engine/image-import.ts); this module splits and checks the
 * parts and knows which host serves a registry's API.
 */
import { normalizeImageRef } from '../engine/image-import.js';

export interface ImageReference {
  /** The normalised reference (`docker.io/library/busybox:latest`, `127.0.0.1:5000/kr/busybox@sha256:…`). */
  name: string;
  /** Registry domain as written (`docker.io`, `127.0.0.1:5000`). */
  domain: string;
  /** Repository path inside the registry (`library/busybox`). */
  path: string;
  tag?: string;
  digest?: string;
}

export class ImageReferenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageReferenceError';
  }
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d+)?$/;

/** Parse and normalise a reference; throws `ImageReferenceError` for names Docker would refuse. */
export function parseReference(ref: string): ImageReference {
  const input = ref.trim();
  if (!input || input.length > 512) throw new ImageReferenceError(`invalid reference format: ${JSON.stringify(ref)}`);
  const name = normalizeImageRef(input);
  let rest = name;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ImageReferenceError(`invalid reference format: bad digest in ${ref}`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw new ImageReferenceError(`invalid reference format: bad sha256 digest in ${ref}`);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ImageReferenceError(`invalid reference format: bad tag in ${ref}`);
  }
  const slash = rest.indexOf('/');
  const domain = rest.slice(0, slash);
  const path = rest.slice(slash + 1);
  if (!DOMAIN.test(domain)) throw new ImageReferenceError(`invalid reference format: bad registry ${domain} in ${ref}`);
  const components = path ? path.split('/') : [];
  if (components.length === 0 || !components.every((c) => PATH_COMPONENT.test(c))) {
    throw new ImageReferenceError(`invalid reference format: repository name must be lowercase in ${ref}`);
  }
  if (path.length > 255) throw new ImageReferenceError(`invalid reference format: repository name too long in ${ref}`);
  // `repo:tag@digest`: the digest decides; Docker keeps both in the name.
  return { name, domain, path, tag, digest };
}

/** Whether a reference names a registry explicitly (`host.tld/…`, `host:port/…`, `localhost/…`). */
export function hasExplicitDomain(ref: string): boolean {
  const first = ref.split('/')[0]!;
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
}

/** The host that serves a registry's API (Docker Hub's is not `docker.io`). */
export function registryApiHost(domain: string): string {
  return domain === 'docker.io' || domain === 'index.docker.io' ? 'registry-1.docker.io' : domain;
}

/** Docker's short form of a normalised name: `docker.io/library/busybox:latest` → `busybox:latest`. */
export function familiarName(name: string): string {
  if (name.startsWith('docker.io/library/')) return name.slice('docker.io/library/'.length);
  if (name.startsWith('docker.io/')) return name.slice('docker.io/'.length);
  return name;
}
