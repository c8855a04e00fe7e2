/**
 * Registry passwords at rest: AES-256-GCM with one 32-byte key. The API encrypts what users send to
 * `/v1/registries`; the agent decrypts when it pulls for a container that names a registry. The key is the one the
 * replicas share through the store (sealed under the master key; installed at start with `SecretBox.useSharedKey`),
 * or, in a process without it (a `krater agent` not given the master key), `<data-dir>/keys/registry.key` (32 random
 * bytes, mode 0600, created on first use). Stored form: `v1:<iv>:<tag>:<ciphertext>`, base64 parts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Where a process without the shared key keeps its own (and where an older install kept the shared one). */
export function registryKeyFile(dataDir: string): string {
  return join(dataDir, 'keys', 'registry.key');
}

export class SecretBox {
  private key: Buffer | undefined;

  constructor(readonly keyFile: string) {}

  private static shared: Buffer | undefined;

  /** The key every box of this process uses from now on (the store's, shared by all replicas and agents). */
  static useSharedKey(key: Buffer): void {
    if (key.length !== 32) throw new Error(`the shared registry key is ${key.length} bytes, not 32`);
    SecretBox.shared = key;
  }

  static forDataDir(dataDir: string): SecretBox {
    return new SecretBox(registryKeyFile(dataDir));
  }

  private loadKey(): Buffer {
    if (SecretBox.shared) return SecretBox.shared;
    if (this.key) return this.key;
    let key: Buffer;
    try {
      key = readFileSync(this.keyFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(dirname(this.keyFile), { recursive: true, mode: 0o700 });
      try {
        writeFileSync(this.keyFile, randomBytes(32), { mode: 0o600, flag: 'wx' });
      } catch (e) {
        // another process (API worker, agent) created it first
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      key = readFileSync(this.keyFile);
    }
    if (key.length !== 32) throw new Error(`${this.keyFile}: expected a 32-byte key, found ${key.length} bytes`);
    this.key = key;
    return key;
  }

  encrypt(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.loadKey(), iv);
    const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return `v1:${iv.toString('base64')}:${cipher.getAuthTag().toString('base64')}:${ct.toString('base64')}`;
  }

  decrypt(stored: string): string {
    const [v, iv, tag, ct] = stored.split(':');
    if (v !== 'v1' || iv === undefined || tag === undefined || ct === undefined)
      throw new Error('unrecognised encrypted secret');
    const decipher = createDecipheriv('aes-256-gcm', this.loadKey(), Buffer.from(iv, 'base64'));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(ct, 'base64')), decipher.final()]).toString('utf8');
  }
}
