/**
 * Secrets at rest in the store (issue 12, item 1): the token keys sealed under the master key, shared by replicas,
 * rotated by compare-and-swap, imported once from an older install's data dir; a wrong master key stops the start
 * with an error that says so.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useSharedRegistryKey } from '../../src/app/shared-secrets.js';
import { KeyRepository } from '../../src/core/auth/keys.js';
import { StoredTokenKeys } from '../../src/core/auth/stored-keys.js';
import { decodeToken, encodeToken, primaryKey, type TokenPayload } from '../../src/core/auth/token-format.js';
import { loadMasterKey, MasterKeyError, seal, unseal } from '../../src/core/secrets/master-key.js';
import { SealedSecrets } from '../../src/core/secrets/sealed-store.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { SecretBox } from '../../src/images/credentials.js';

const dirs: string[] = [];
const stores: Store[] = [];
afterAll(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'krater-secrets-'));
  dirs.push(d);
  return d;
}

async function store(dir: string): Promise<Store> {
  const s = await openStore(`sqlite:${join(dir, 'krater.db')}`);
  stores.push(s);
  return s;
}

const payload: TokenPayload = {
  userId: 'u'.repeat(32),
  methods: ['password'],
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_003_600_000,
  auditIds: ['abc'],
};

describe('master key', () => {
  it('is generated 0600 into the data dir when none is given, and the same on the next start', () => {
    const dir = tempDir();
    const a = loadMasterKey({ dataDir: dir });
    expect(a.source).toBe(join(dir, 'keys', 'master.key'));
    expect(statSync(a.source).mode & 0o777).toBe(0o600);
    expect(loadMasterKey({ dataDir: dir }).key.equals(a.key)).toBe(true);
  });

  it('comes from KRATER_MASTER_KEY (base64 or hex) or a file, and refuses anything but 32 bytes', () => {
    const dir = tempDir();
    const raw = Buffer.alloc(32, 7);
    expect(loadMasterKey({ dataDir: dir, value: raw.toString('base64') }).key.equals(raw)).toBe(true);
    expect(loadMasterKey({ dataDir: dir, value: raw.toString('hex') }).key.equals(raw)).toBe(true);
    const file = join(dir, 'mk');
    writeFileSync(file, `${raw.toString('base64')}\n`);
    expect(loadMasterKey({ dataDir: dir, file }).key.equals(raw)).toBe(true);
    expect(() => loadMasterKey({ dataDir: dir, value: 'c2hvcnQ=' })).toThrow(MasterKeyError);
    expect(() => loadMasterKey({ dataDir: dir, file: join(dir, 'missing') })).toThrow(/cannot read the master key/);
  });

  it('seals with AES-256-GCM bound to the name; another key or another name does not open it', () => {
    const dir = tempDir();
    const a = loadMasterKey({ dataDir: dir, value: Buffer.alloc(32, 1).toString('base64') });
    const b = loadMasterKey({ dataDir: dir, value: Buffer.alloc(32, 2).toString('base64') });
    const sealed = seal(a, 'n', 'secret value');
    expect(sealed).not.toContain('secret');
    expect(unseal(a, 'n', sealed)).toBe('secret value');
    expect(() => unseal(b, 'n', sealed)).toThrow(/sealed under master key .* same master key/);
    expect(() => unseal(a, 'other', sealed)).toThrow(/failed authentication/);
    const parts = sealed.split('.');
    parts[4] = Buffer.from('tampered').toString('base64url');
    expect(() => unseal(a, 'n', parts.join('.'))).toThrow(/failed authentication/);
  });
});

describe('token keys in the store', () => {
  it('are shared by two processes with the same master key; rotation on one is seen by the other', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const master = loadMasterKey({ dataDir: dir });
    const one = new StoredTokenKeys(new SealedSecrets(s.db, master));
    const two = new StoredTokenKeys(new SealedSecrets(s.db, master));
    await one.setup();
    await two.setup();
    const token = encodeToken(payload, primaryKey(one.current()));
    expect(decodeToken(token, two.current()).userId).toBe(payload.userId);
    // Nothing of the keys is readable in the store.
    const row = await s.db.selectFrom('sealed_secrets').selectAll().where('name', '=', 'token_keys').executeTakeFirst();
    for (const k of one.current()) expect(row!.sealed).not.toContain(k.key.toString('base64url'));

    // One rotation promotes the staged key, which the other already has (Fernet's staging)…
    await one.rotate();
    const first = encodeToken(payload, primaryKey(one.current()));
    expect(decodeToken(first, two.current()).userId).toBe(payload.userId);
    // …a second one promotes a key the other has not seen until it re-reads the store.
    await one.rotate();
    const second = encodeToken(payload, primaryKey(one.current()));
    expect(() => decodeToken(second, two.current())).toThrow(/unknown key/);
    expect(await two.refresh()).toBe(true);
    expect(await two.refresh()).toBe(false);
    expect(decodeToken(second, two.current()).userId).toBe(payload.userId);
    expect(decodeToken(first, two.current()).userId).toBe(payload.userId);
    expect(() => decodeToken(token, two.current())).toThrow(/unknown key/); // pruned: 3 active keys at most
  });

  it('two rotations at once both land (compare-and-swap), and the oldest keys are pruned', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const master = loadMasterKey({ dataDir: dir });
    const one = new StoredTokenKeys(new SealedSecrets(s.db, master));
    const two = new StoredTokenKeys(new SealedSecrets(s.db, master));
    await one.setup();
    await two.setup();
    await Promise.all([one.rotate(), two.rotate()]);
    await one.refresh();
    expect(
      one
        .current()
        .map((k) => k.index)
        .sort((a, b) => a - b),
    ).toEqual([0, 2, 3]);
  });

  it('imports the keys an older install left in the data dir, once', async () => {
    const dir = tempDir();
    const legacy = new KeyRepository(join(dir, 'keys', 'token'));
    legacy.setup();
    const old = encodeToken(payload, primaryKey(legacy.load()));
    const s = await store(dir);
    const keys = new StoredTokenKeys(new SealedSecrets(s.db, loadMasterKey({ dataDir: dir })));
    await keys.setup(legacy);
    expect(decodeToken(old, keys.current()).userId).toBe(payload.userId);
    legacy.rotate(); // a later change of the files is no longer read
    const again = new StoredTokenKeys(new SealedSecrets(s.db, loadMasterKey({ dataDir: dir })));
    await again.setup(legacy);
    expect(again.current().map((k) => k.id.toString('hex'))).toEqual(keys.current().map((k) => k.id.toString('hex')));
  });

  it('a process with another master key fails at start with a clear error', async () => {
    const dir = tempDir();
    const s = await store(dir);
    await new StoredTokenKeys(new SealedSecrets(s.db, loadMasterKey({ dataDir: dir }))).setup();
    const wrong = loadMasterKey({ dataDir: dir, value: Buffer.alloc(32, 9).toString('base64') });
    const keys = new StoredTokenKeys(new SealedSecrets(s.db, wrong));
    await expect(keys.setup()).rejects.toThrow(MasterKeyError);
    await expect(keys.setup()).rejects.toThrow(/start every replica with the same master key/);
    expect(readFileSync(join(dir, 'keys', 'master.key'), 'utf8')).not.toBe('');
  });
});

describe('registry-password key in the store', () => {
  it('is imported once from an older install, so the passwords it encrypted still open on any replica', async () => {
    const dir = tempDir();
    const old = SecretBox.forDataDir(dir).encrypt('registry-password');
    const s = await store(dir);
    const secrets = new SealedSecrets(s.db, loadMasterKey({ dataDir: dir }));
    await useSharedRegistryKey(secrets, dir);
    // Another replica's data dir has no key file: the shared key opens the password all the same.
    const elsewhere = SecretBox.forDataDir(tempDir());
    expect(elsewhere.decrypt(old)).toBe('registry-password');
    expect(SecretBox.forDataDir(dir).decrypt(elsewhere.encrypt('again'))).toBe('again');
    const row = await s.db
      .selectFrom('sealed_secrets')
      .select('sealed')
      .where('name', '=', 'registry_key')
      .executeTakeFirst();
    expect(row!.sealed).not.toContain(readFileSync(join(dir, 'keys', 'registry.key')).toString('base64'));
  });
});
