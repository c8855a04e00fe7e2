import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ApiError } from '../../src/core/http/errors.js';
import { checkRequestStrings, jsonTooDeep, MAX_JSON_DEPTH, parseJsonBody } from '../../src/core/http/input-guard.js';
import { tarEntries, unsafeArchiveReason } from '../../src/services/container/archive-check.js';

const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    return (err as ApiError).message;
  }
  throw new Error('not refused');
};

describe('JSON bodies', () => {
  test('keeps what can be stored as sent, unicode included', () => {
    const body = { project: { name: 'café 💥 名前', description: 'line 1\nline 2\ttab', tags: ['a'] } };
    expect(parseJsonBody(Buffer.from(JSON.stringify(body)))).toEqual(body);
    expect(parseJsonBody(Buffer.from(''))).toBeUndefined();
  });
  test('depth: at the limit accepted, one deeper refused, 5,000 deep refused without recursion', () => {
    const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(jsonTooDeep(nest(MAX_JSON_DEPTH))).toBe(false);
    expect(jsonTooDeep(nest(MAX_JSON_DEPTH + 1))).toBe(true);
    expect(jsonTooDeep(`{"a":"${'['.repeat(100)}"}`)).toBe(false); // brackets inside strings do not count
    expect(jsonTooDeep(`{"a":"\\"${'{'.repeat(100)}"}`)).toBe(false);
    expect(refused(() => parseJsonBody(`${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`))).toMatch(/nested deeper/);
  });
  test('refuses invalid UTF-8, lone surrogates, NUL, control characters in names, __proto__', () => {
    expect(refused(() => parseJsonBody(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])))).toMatch(
      /UTF-8/,
    );
    expect(refused(() => parseJsonBody('{"network":{"name":"a\\ud800b"}}'))).toMatch(/network\.name.*surrogate/);
    expect(refused(() => parseJsonBody('{"x":["ok","\\udc00"]}'))).toMatch(/surrogate/);
    expect(refused(() => parseJsonBody('{"description":"a\\u0000b"}'))).toMatch(/NUL/);
    expect(refused(() => parseJsonBody('{"a\\u0000":1}'))).toMatch(/NUL/);
    expect(refused(() => parseJsonBody('{"user":{"name":"a\\u0007b"}}'))).toMatch(/control characters/);
    expect(refused(() => parseJsonBody('[{"op":"replace","path":"/name","value":"a\\u001bb"}]'))).toMatch(/control/);
    expect(refused(() => parseJsonBody('{"__proto__":{"polluted":1}}'))).toMatch(/__proto__/);
    expect(refused(() => parseJsonBody('{'))).toMatch(/not valid JSON/);
    // A paired surrogate (an emoji written as escapes) is a valid character.
    expect(parseJsonBody('{"name":"\\ud83d\\udca5"}')).toEqual({ name: '💥' });
  });
  test('path parameters without control characters, queries without NUL', () => {
    expect(() => checkRequestStrings({ id: 'abc' }, { name: 'a b' })).not.toThrow();
    expect(refused(() => checkRequestStrings({ tag: 'a\u0000' }, {}))).toMatch(/path parameter 'tag'/);
    expect(refused(() => checkRequestStrings({ id: 'a\nb' }, {}))).toMatch(/control/);
    expect(refused(() => checkRequestStrings({}, { name: ['a', 'b\u0000'] }))).toMatch(/query parameter 'name'/);
  });
});

describe('put_archive entries', () => {
  const tarOf = (build: (dir: string) => void, args: string[]): Buffer => {
    const dir = mkdtempSync(join(tmpdir(), 'krater-tar-'));
    try {
      build(dir);
      return execFileSync('tar', ['-C', dir, '-cf', '-', ...args]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  test('accepts plain files, directories, long names and links that stay inside', () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(120)}`;
    const tar = tarOf(
      (d) => {
        mkdirSync(join(d, 'd'.repeat(120)));
        writeFileSync(join(d, long), 'x');
        writeFileSync(join(d, 'a.txt'), 'x');
        symlinkSync('a.txt', join(d, 'link'));
      },
      ['a.txt', 'link', long],
    );
    expect(tarEntries(tar).map((e) => e.name)).toEqual(['a.txt', 'link', long]);
    expect(unsafeArchiveReason(tar)).toBeUndefined();
  });
  test('refuses ../ and absolute names and links pointing outside, with the entry named', () => {
    const dotdot = tarOf((d) => writeFileSync(join(d, 'x'), 'x'), ['--transform', 's,^,../,', 'x']);
    expect(unsafeArchiveReason(dotdot)).toMatch(/'\.\.\/x'/);
    const abs = tarOf((d) => writeFileSync(join(d, 'x'), 'x'), ['-P', '--transform', 's,^,/etc/,', 'x']);
    expect(unsafeArchiveReason(abs)).toMatch(/'\/etc\/x' is absolute/);
    const sym = tarOf((d) => symlinkSync('/etc/passwd', join(d, 'pw')), ['pw']);
    expect(unsafeArchiveReason(sym)).toMatch(/symbolic link 'pw' points to '\/etc\/passwd'/);
    const up = tarOf((d) => symlinkSync('../../root', join(d, 'r')), ['r']);
    expect(unsafeArchiveReason(up)).toMatch(/symbolic link 'r'/);
    expect(unsafeArchiveReason(Buffer.from('not a tar'.padEnd(1024, ' ')))).toMatch(/not an uncompressed tar/);
  });
});
