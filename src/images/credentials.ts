/**
 * Registry passwords at rest: AES-256-GCM with a key kept in `<data-dir>/keys/registry.key` (32 random bytes,
 * mode 0600, created on first use). The API encrypts what users send to `/v1/registries`; the agent decrypts when
 * it pulls for a container that names a registry. Stored form: `v1:<iv>:<tag>:<ciphertext>`, base64 parts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export class SecretBox {
  private key: Buffer | undefined;

  constructor(readonly keyFile: string) {}

  static forDataDir(dataDir: string): SecretBox {
    return new SecretBox(join(dataDir, 'keys', 'registry.key'));
  }

  private loadKey(): Buffer {
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
