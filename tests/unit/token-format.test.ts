import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyRepository } from '../../src/core/auth/keys.js';
import {
  decodeToken,
  encodeToken,
  primaryKey,
  TokenError,
  type TokenPayload,
} from '../../src/core/auth/token-format.js';

const payload: TokenPayload = {
  userId: 'u'.repeat(32),
  methods: ['password'],
  projectId: 'p'.repeat(32),
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_003_600_000,
  auditIds: ['abc'],
};

const keyDirs: string[] = [];
afterAll(() => {
  for (const d of keyDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function repo() {
  const dir = mkdtempSync(join(tmpdir(), 'krater-keys-'));
  keyDirs.push(dir);
  const r = new KeyRepository(join(dir, 'token'));
  r.setup();
  return r;
}

describe('token format', () => {
  it('round-trips a payload and keeps it opaque', () => {
    const keys = repo().load();
    const token = encodeToken(payload, primaryKey(keys));
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(token, 'base64url').toString('latin1')).not.toContain('uuuu');
    expect(decodeToken(token, keys)).toMatchObject(payload);
  });
  it('rejects any tampered byte', () => {
    const keys = repo().load();
    const raw = Buffer.from(encodeToken(payload, primaryKey(keys)), 'base64url');
    for (const pos of [0, 3, 10, 20, raw.length - 1]) {
      const t = Buffer.from(raw);
      t[pos] ^= 0x01;
      expect(() => decodeToken(t.toString('base64url'), keys)).toThrow(TokenError);
    }
  });
  it('rejects tokens from another key repository and garbage', () => {
    const a = repo().load();
    const b = repo().load();
    expect(() => decodeToken(encodeToken(payload, primaryKey(a)), b)).toThrow(TokenError);
    expect(() => decodeToken('not a token', a)).toThrow(TokenError);
    expect(() => decodeToken('A'.repeat(100), a)).toThrow(TokenError);
  });
  it('keeps validating across rotations until the key is pruned', () => {
    const r = repo();
    const before = r.load();
    const token = encodeToken(payload, primaryKey(before));
    const staged = before.find((k) => k.index === 0)!;
    r.rotate();
    const after = r.load();
    // The staged key became the primary: every replica already knew it.
    expect(primaryKey(after).key.equals(staged.key)).toBe(true);
    expect(decodeToken(token, after)).toMatchObject(payload);
    r.rotate(); // 3 active keys max: staged + 2 → the key that signed `token` is pruned
    expect(readdirSync(r.dir).filter((n) => /^\d+$/.test(n))).toHaveLength(3);
    expect(existsSync(join(r.dir, '1'))).toBe(false);
    expect(() => decodeToken(token, r.load())).toThrow(TokenError);
  });
  it('never encrypts with the staged key', () => {
    const keys = repo().load();
    expect(primaryKey(keys).index).not.toBe(0);
  });
});
