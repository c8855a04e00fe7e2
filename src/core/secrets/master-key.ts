import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The operator's master key: 32 bytes that seal the secrets every API replica shares (token keys, …) in the store.
 * Every replica of a deployment is given the same one (`KRATER_MASTER_KEY_FILE` or `KRATER_MASTER_KEY`); with
 * neither, a single install keeps one in `<data-dir>/keys/master.key` (made 0600 on first start), so `krater up`
 * needs no configuration.
 */
export interface MasterKey {
  readonly key: Buffer;
  /** Hex of the first 4 bytes of sha256(key): written into every sealed value, so a wrong key is named, not guessed. */
  readonly id: string;
  /** Where it came from (a path or an environment variable; never the key), for error messages. */
  readonly source: string;
}

export interface MasterKeyInput {
  dataDir: string;
  /** A file holding the key (base64, base64url or hex of 32 bytes, or the 32 raw bytes). */
  file?: string;
  /** The key itself (base64, base64url or hex of 32 bytes). */
  value?: string;
}

export class MasterKeyError extends Error {}

export const DEFAULT_MASTER_KEY_FILE = join('keys', 'master.key');

function masterKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest().subarray(0, 4).toString('hex');
}

/** Parses a key given as text (base64/base64url/hex) or raw bytes; throws MasterKeyError unless it is 32 bytes. */
export function parseMasterKey(raw: Buffer, source: string): Buffer {
  if (raw.length === 32) return raw;
  const text = raw.toString('utf8').trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text))
    key = Buffer.from(text.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url');
  if (key?.length !== 32)
    throw new MasterKeyError(
      `the master key from ${source} is not 32 bytes (give 32 random bytes as base64 or hex, e.g. \`openssl rand -base64 32\`)`,
    );
  return key;
}

/** The master key as configured: the value, else the file, else `<data-dir>/keys/master.key` (created if missing). */
export function loadMasterKey(input: MasterKeyInput): MasterKey {
  if (input.value) {
    const key = parseMasterKey(Buffer.from(input.value, 'utf8'), 'KRATER_MASTER_KEY');
    return { key, id: masterKeyId(key), source: 'KRATER_MASTER_KEY' };
  }
  if (input.file) {
    let raw: Buffer;
    try {
      raw = readFileSync(input.file);
    } catch (err) {
      throw new MasterKeyError(`cannot read the master key file ${input.file}: ${(err as Error).message}`);
    }
    const key = parseMasterKey(raw, input.file);
    return { key, id: masterKeyId(key), source: input.file };
  }
  const file = join(input.dataDir, DEFAULT_MASTER_KEY_FILE);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // an earlier start (or another process on this data dir) made it
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  chmodSync(file, 0o600);
  const key = parseMasterKey(readFileSync(file), file);
  return { key, id: masterKeyId(key), source: file };
}

const FORMAT = 'k1';

/** AES-256-GCM under the master key; the name is authenticated too, so a sealed value cannot be moved to another. */
export function seal(master: MasterKey, name: string, plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv);
  cipher.setAAD(Buffer.from(`${FORMAT}.${master.id}.${name}`));
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return [
    FORMAT,
    master.id,
    iv.toString('base64url'),
    cipher.getAuthTag().toString('base64url'),
    ct.toString('base64url'),
  ].join('.');
}

/** Opens a sealed value; a value sealed under another master key is a MasterKeyError that says so. */
export function unseal(master: MasterKey, name: string, sealed: string): string {
  const [format, id, iv, tag, ct] = sealed.split('.');
  if (format !== FORMAT || !id || iv === undefined || tag === undefined || ct === undefined)
    throw new MasterKeyError(`the stored secret ${name} is not in a format this Krater reads`);
  if (id !== master.id)
    throw new MasterKeyError(
      `the secrets in the store are sealed under master key ${id}, but this process has master key ${master.id} (from ${master.source}): start every replica with the same master key (KRATER_MASTER_KEY_FILE or KRATER_MASTER_KEY)`,
    );
  try {
    const decipher = createDecipheriv('aes-256-gcm', master.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(`${FORMAT}.${id}.${name}`));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    throw new MasterKeyError(
      `the stored secret ${name} failed authentication under master key ${master.id}: it was altered`,
    );
  }
}
