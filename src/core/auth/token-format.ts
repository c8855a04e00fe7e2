import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { TokenKey } from './keys.js';

/**
 * The token format: a stateless token, authenticated-encrypted (AES-256-GCM) with the primary key of the
 * repository. Layout (then base64url): version(1) | key id(4) | nonce(12) | ciphertext | tag(16); the first 17
 * bytes are authenticated as associated data. The payload names the user, scope and methods only: roles and the
 * catalog are looked up at validation so that revocations and role changes take effect at once.
 */
export interface TokenPayload {
  userId: string;
  methods: string[];
  projectId?: string;
  domainId?: string;
  system?: boolean;
  /** Unix milliseconds. */
  issuedAt: number;
  expiresAt: number;
  /** [own audit id, audit id of the token this one was rescoped from…]. */
  auditIds: string[];
  appCredId?: string;
}

const VERSION = 0x01;
const HEADER = 1 + 4 + 12;

export class TokenError extends Error {}

interface Wire {
  u: string;
  m: string[];
  p?: string;
  d?: string;
  s?: 1;
  i: number;
  e: number;
  a: string[];
  c?: string;
}

export function newAuditId(): string {
  return randomBytes(16).toString('base64url');
}

export function encodeToken(payload: TokenPayload, primary: TokenKey): string {
  const wire: Wire = {
    u: payload.userId,
    m: payload.methods,
    i: payload.issuedAt,
    e: payload.expiresAt,
    a: payload.auditIds,
  };
  if (payload.projectId) wire.p = payload.projectId;
  if (payload.domainId) wire.d = payload.domainId;
  if (payload.system) wire.s = 1;
  if (payload.appCredId) wire.c = payload.appCredId;
  const header = Buffer.alloc(HEADER);
  header[0] = VERSION;
  primary.id.copy(header, 1);
  randomBytes(12).copy(header, 5);
  const cipher = createCipheriv('aes-256-gcm', primary.key, header.subarray(5));
  cipher.setAAD(header);
  const body = Buffer.concat([cipher.update(JSON.stringify(wire), 'utf8'), cipher.final()]);
  return Buffer.concat([header, body, cipher.getAuthTag()]).toString('base64url');
}

/** Decrypts and authenticates; throws TokenError on anything malformed, tampered or signed with an unknown key. */
export function decodeToken(token: string, keys: TokenKey[]): TokenPayload {
  if (token.length < 40 || token.length > 2048 || !/^[A-Za-z0-9_-]+$/.test(token))
    throw new TokenError('malformed token');
  const raw = Buffer.from(token, 'base64url');
  if (raw.length < HEADER + 16 + 2 || raw[0] !== VERSION) throw new TokenError('malformed token');
  const header = raw.subarray(0, HEADER);
  const kid = raw.subarray(1, 5);
  const key = keys.find((k) => k.id.equals(kid));
  if (!key) throw new TokenError('token signed with an unknown key');
  let plain: string;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, raw.subarray(5, HEADER));
    decipher.setAAD(header);
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    plain = Buffer.concat([decipher.update(raw.subarray(HEADER, raw.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    throw new TokenError('token failed authentication');
  }
  const w = JSON.parse(plain) as Wire;
  return {
    userId: w.u,
    methods: w.m,
    projectId: w.p,
    domainId: w.d,
    system: w.s === 1,
    issuedAt: w.i,
    expiresAt: w.e,
    auditIds: w.a,
    appCredId: w.c,
  };
}

/** The primary key is the highest-numbered one; the staged key (0) never encrypts. */
export function primaryKey(keys: TokenKey[]): TokenKey {
  const primary = keys.filter((k) => k.index !== 0).sort((a, b) => b.index - a.index)[0];
  if (!primary) throw new Error('the token key repository has no primary key');
  return primary;
}
