import { ApiError } from './errors.js';

/** A microversion X.Y; only major 1 (Zun, Magnum) or 2 (Nova) exists per service. */
export interface Version {
  major: number;
  minor: number;
}

export interface MicroversionSpec {
  /** Service words accepted in `OpenStack-API-Version`; the first is the canonical one. */
  words: string[];
  min: Version;
  max: Version;
  /** Echo the word the client sent (Zun) or always the canonical word. */
  echo: 'requested' | 'canonical';
  /** Legacy single-service header (e.g. `X-OpenStack-Nova-API-Version`). */
  legacyHeader?: string;
}

export interface Negotiated {
  version: Version;
  word: string;
  /** The four response headers, ready to set. */
  headers: Record<string, string>;
}

export const fmt = (v: Version) => `${v.major}.${v.minor}`;
export const cmp = (a: Version, b: Version) => a.major - b.major || a.minor - b.minor;
export const atLeast = (v: Version, major: number, minor: number) => cmp(v, { major, minor }) >= 0;

export function parseVersion(text: string): Version | null {
  const m = /^(\d+)\.(\d+)$/.exec(text.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

/** Thrown as 406; services render it in their own envelope and may add min/max fields. */
export class MicroversionError extends ApiError {
  constructor(
    message: string,
    readonly spec: MicroversionSpec,
  ) {
    super(406, message, 'NotAcceptable');
  }
}

/**
 * Negotiates the microversion of one request: the entry for one of `spec.words` in `OpenStack-API-Version`
 * (comma-separated entries for several services may be present), `latest` = max, no entry = min.
 */
export function negotiate(headers: Record<string, string | string[] | undefined>, spec: MicroversionSpec): Negotiated {
  let requested: string | undefined;
  let word = spec.words[0];
  const raw = headers['openstack-api-version'];
  const values = (Array.isArray(raw) ? raw.join(',') : (raw ?? ''))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const entry of values) {
    const [w, ...rest] = entry.split(/\s+/);
    if (spec.words.includes(w.toLowerCase())) {
      word = w.toLowerCase();
      requested = rest.join(' ');
      break;
    }
  }
  if (requested === undefined && spec.legacyHeader) {
    const legacy = headers[spec.legacyHeader.toLowerCase()];
    if (typeof legacy === 'string') requested = legacy.trim();
  }
  let version: Version;
  if (requested === undefined) {
    version = spec.min;
  } else if (requested.toLowerCase() === 'latest') {
    version = spec.max;
  } else {
    const parsed = parseVersion(requested);
    if (!parsed)
      throw new MicroversionError(
        `Invalid API version format: '${requested}'. It must be of the form X.Y or 'latest'.`,
        spec,
      );
    if (parsed.major !== spec.min.major || cmp(parsed, spec.min) < 0 || cmp(parsed, spec.max) > 0) {
      throw new MicroversionError(
        `Version ${requested} was requested but the minor version is not supported by this version of the service. Minimum version is ${fmt(spec.min)}, maximum is ${fmt(spec.max)}.`,
        spec,
      );
    }
    version = parsed;
  }
  const echoWord = spec.echo === 'canonical' ? spec.words[0] : word;
  return {
    version,
    word: echoWord,
    headers: {
      'OpenStack-API-Minimum-Version': `${echoWord} ${fmt(spec.min)}`,
      'OpenStack-API-Maximum-Version': `${echoWord} ${fmt(spec.max)}`,
      'OpenStack-API-Version': `${echoWord} ${fmt(version)}`,
      Vary: 'OpenStack-API-Version',
    },
  };
}
