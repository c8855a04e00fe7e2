import { randomBytes } from 'node:crypto';
import type { SealedSecrets } from '../secrets/sealed-store.js';
import { type KeyRepository, keyId, type TokenKey } from './keys.js';

/** What the token service needs of its keys: the set in memory, and a way to catch up with other replicas. */
export interface TokenKeySource {
  current(): TokenKey[];
  /** Re-reads the keys from where they live; true when they changed. */
  refresh(): Promise<boolean>;
}

const SECRET = 'token_keys';

type Serialized = Record<string, string>;

function parse(value: string): TokenKey[] {
  const keys = JSON.parse(value) as Serialized;
  return Object.entries(keys).map(([index, b64]) => {
    const key = Buffer.from(b64, 'base64url');
    if (key.length !== 32) throw new Error(`stored token key ${index} is not 32 bytes`);
    return { index: Number(index), key, id: keyId(key) };
  });
}

function serialize(keys: Array<{ index: number; key: Buffer }>): string {
  const out: Serialized = {};
  for (const k of [...keys].sort((a, b) => a.index - b.index)) out[String(k.index)] = k.key.toString('base64url');
  return JSON.stringify(out);
}

/**
 * The token keys in the store (Fernet's layout as one sealed secret: `0` staged, highest primary, the rest
 * secondary), so every replica with the master key validates every token. Rotation is a compare-and-swap on the
 * sealed value; the other replicas see it at their next `refresh`.
 */
export class StoredTokenKeys implements TokenKeySource {
  private keys: TokenKey[] = [];
  private sealed = '';

  constructor(
    private readonly secrets: SealedSecrets,
    readonly maxActiveKeys = 3,
  ) {}

  /**
   * Loads the keys, creating them on a fresh store: imported from the data dir's Fernet-style repository when an
   * older install left keys there (tokens it issued stay valid), new ones otherwise. A store sealed under another
   * master key fails here, at start, with a MasterKeyError.
   */
  async setup(importFrom?: KeyRepository): Promise<void> {
    let entry = await this.secrets.read(SECRET);
    if (!entry) {
      const existing = importFrom ? importFrom.load() : [];
      const initial: Array<{ index: number; key: Buffer }> = existing.some((k) => k.index !== 0)
        ? existing
        : [
            { index: 0, key: randomBytes(32) },
            { index: 1, key: randomBytes(32) },
          ];
      if (!initial.some((k) => k.index === 0)) initial.push({ index: 0, key: randomBytes(32) });
      entry = await this.secrets.insertIfMissing(SECRET, serialize(initial));
    }
    this.keys = parse(entry.value);
    this.sealed = entry.sealed;
  }

  current(): TokenKey[] {
    return this.keys;
  }

  async refresh(): Promise<boolean> {
    const entry = await this.secrets.read(SECRET);
    if (!entry || entry.sealed === this.sealed) return false;
    this.keys = parse(entry.value);
    this.sealed = entry.sealed;
    return true;
  }

  /** Staged → primary, a new staged key, the oldest secondaries beyond maxActiveKeys dropped; returns the new set. */
  async rotate(): Promise<TokenKey[]> {
    for (let attempt = 0; attempt < 10; attempt++) {
      await this.refresh();
      const indexes = this.keys.map((k) => k.index);
      const next = Math.max(...indexes) + 1;
      const rotated = this.keys.map((k) =>
        k.index === 0 ? { index: next, key: k.key } : { index: k.index, key: k.key },
      );
      rotated.push({ index: 0, key: randomBytes(32) });
      const nonStaged = rotated.filter((k) => k.index !== 0).sort((a, b) => a.index - b.index);
      while (nonStaged.length + 1 > this.maxActiveKeys) nonStaged.shift();
      const kept = [rotated.find((k) => k.index === 0)!, ...nonStaged];
      const done = await this.secrets.replace(SECRET, this.sealed, serialize(kept));
      if (done) {
        this.keys = parse(done.value);
        this.sealed = done.sealed;
        return this.keys;
      }
    }
    throw new Error('token key rotation kept racing with another rotation; try again');
  }
}
