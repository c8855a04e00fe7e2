import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A Fernet-style key repository: files named by integers in one directory. `0` is the staged key (known to every
 * replica before it becomes primary), the highest number is the primary (encrypts new tokens), the rest are
 * secondary (still decrypt). Rotation promotes the staged key, stages a new one and prunes the oldest.
 */
export interface TokenKey {
  index: number;
  key: Buffer;
  /** First 4 bytes of sha256(key): written into each token so validation picks the key without trial decryption. */
  id: Buffer;
}

export class KeyRepository {
  constructor(
    readonly dir: string,
    readonly maxActiveKeys = 3,
  ) {}

  /** Creates the staged and the first primary key if the repository is empty. */
  setup(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (this.indexes().length === 0) {
      this.writeKey(0);
      this.writeKey(1);
    } else if (!this.indexes().includes(0)) {
      this.writeKey(0);
    }
  }

  load(): TokenKey[] {
    return this.indexes().map((index) => {
      const key = Buffer.from(readFileSync(join(this.dir, String(index)), 'utf8').trim(), 'base64url');
      if (key.length !== 32) throw new Error(`token key ${index} in ${this.dir} is not 32 bytes`);
      return { index, key, id: keyId(key) };
    });
  }

  /** Staged → primary, new staged key, drop the oldest secondaries beyond maxActiveKeys. */
  rotate(): void {
    this.setup();
    const indexes = this.indexes();
    const next = Math.max(...indexes) + 1;
    renameSync(join(this.dir, '0'), join(this.dir, String(next)));
    this.writeKey(0);
    const active = this.indexes().sort((a, b) => a - b);
    const removable = active.filter((i) => i !== 0);
    while (removable.length + 1 > this.maxActiveKeys) {
      const oldest = removable.shift()!;
      unlinkSync(join(this.dir, String(oldest)));
    }
  }

  private indexes(): number[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.filter((n) => /^\d+$/.test(n)).map(Number);
  }

  private writeKey(index: number): void {
    const tmp = join(this.dir, `.${index}.tmp`);
    writeFileSync(tmp, randomBytes(32).toString('base64url'), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, join(this.dir, String(index)));
  }
}

export function keyId(key: Buffer): Buffer {
  return createHash('sha256').update(key).digest().subarray(0, 4);
}
