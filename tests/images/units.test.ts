/** Image machinery without daemons: references, challenges, insecure hosts, tar writing, secret box, repo:tag. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { humanSize } from '../../src/cli/images.js';
import { insecureRegistries } from '../../src/core/config/images.js';
import { TarArchive } from '../../src/engine/tar-archive.js';
import { SecretBox } from '../../src/images/credentials.js';
import { familiarName, hasExplicitDomain, parseReference, registryApiHost } from '../../src/images/reference.js';
import { isInsecureRegistry, parseChallenge } from '../../src/images/registry.js';
import { tarBuffer } from '../../src/images/tar-writer.js';
import { splitRepoTag } from '../../src/services/container/routes/images.js';

const dir = mkdtempSync(join(tmpdir(), 'krater-img-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('image references', () => {
  it('normalises the way Docker does', () => {
    expect(parseReference('busybox')).toEqual({
      name: 'docker.io/library/busybox:latest',
      domain: 'docker.io',
      path: 'library/busybox',
      tag: 'latest',
      digest: undefined,
    });
    expect(parseReference('kr/busybox:1.0').name).toBe('docker.io/kr/busybox:1.0');
    expect(parseReference('127.0.0.1:5000/kr/busybox:1.0')).toMatchObject({
      domain: '127.0.0.1:5000',
      path: 'kr/busybox',
      tag: '1.0',
    });
    expect(parseReference('localhost/x')).toMatchObject({ domain: 'localhost', path: 'x', tag: 'latest' });
    const d = `sha256:${'a'.repeat(64)}`;
    expect(parseReference(`quay.io/a/b@${d}`)).toMatchObject({ name: `quay.io/a/b@${d}`, digest: d, tag: undefined });
    expect(parseReference(`a/b:1@${d}`)).toMatchObject({ tag: '1', digest: d });
  });
  it('refuses what Docker refuses', () => {
    for (const bad of ['Busybox', 'busybox:', 'a//b', `x@sha256:${'a'.repeat(10)}`, 'x:bad tag', '', 'foo:-x'])
      expect(() => parseReference(bad), bad).toThrow(/invalid reference format/);
  });
  it('knows registry hosts and short names', () => {
    expect(registryApiHost('docker.io')).toBe('registry-1.docker.io');
    expect(registryApiHost('127.0.0.1:5000')).toBe('127.0.0.1:5000');
    expect(familiarName('docker.io/library/busybox:latest')).toBe('busybox:latest');
    expect(familiarName('docker.io/kr/x:1')).toBe('kr/x:1');
    expect(familiarName('quay.io/a/b:1')).toBe('quay.io/a/b:1');
    expect(hasExplicitDomain('team/tools:2')).toBe(false);
    expect(hasExplicitDomain('reg.example:5000/team/tools')).toBe(true);
  });
  it("splits Zun's repo[:tag] like parse_image_name", () => {
    expect(splitRepoTag('busybox')).toEqual({ repo: 'busybox', tag: 'latest' });
    expect(splitRepoTag('127.0.0.1:5000/kr/busybox:1.0')).toEqual({ repo: '127.0.0.1:5000/kr/busybox', tag: '1.0' });
    expect(splitRepoTag('127.0.0.1:5000/kr/busybox')).toEqual({ repo: '127.0.0.1:5000/kr/busybox', tag: 'latest' });
    expect(splitRepoTag('a@sha256:abc')).toEqual({ repo: 'a', tag: 'sha256:abc' });
  });
});

describe('registry protocol details', () => {
  it('parses WWW-Authenticate challenges', () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/busybox:pull',
      },
    });
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({
      scheme: 'basic',
      params: { realm: 'Registry Realm' },
    });
    expect(parseChallenge(undefined)).toBeUndefined();
  });
  it('speaks plain HTTP only to loopback and listed registries', () => {
    expect(isInsecureRegistry('127.0.0.1:5000', [])).toBe(true);
    expect(isInsecureRegistry('localhost:5000', [])).toBe(true);
    expect(isInsecureRegistry('[::1]:5000', [])).toBe(true);
    expect(isInsecureRegistry('registry.example:5000', [])).toBe(false);
    expect(isInsecureRegistry('registry.example:5000', ['registry.example'])).toBe(true);
    expect(isInsecureRegistry('registry.example:5000', ['registry.example:5001'])).toBe(false);
    expect(insecureRegistries({ KRATER_INSECURE_REGISTRIES: 'a.example:5000, http://b.example/' })).toEqual([
      'a.example:5000',
      'b.example',
    ]);
  });
});

describe('tar writer', () => {
  it('writes archives GNU tar and the engine reader read (long names through PAX)', async () => {
    const long = `${'d'.repeat(80)}/${'f'.repeat(60)}.txt`;
    const file = join(dir, 't.tar');
    writeFileSync(
      file,
      tarBuffer([
        { name: 'a.txt', data: 'hello\n', size: 0 },
        { name: long, data: 'long\n', size: 0 },
        { name: 'empty', data: '', size: 0 },
      ]),
    );
    expect(statSync(file).size % 512).toBe(0);
    expect(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n')).toEqual([
      'a.txt',
      long,
      'empty',
    ]);
    expect(execFileSync('tar', ['-xOf', file, long], { encoding: 'utf8' })).toBe('long\n');
    const t = await TarArchive.open(file);
    try {
      expect((await t.read('a.txt')).toString()).toBe('hello\n');
      expect((await t.read(long)).toString()).toBe('long\n');
    } finally {
      await t.close();
    }
  });
});

describe('registry password encryption', () => {
  it('round-trips with a key file created 0600 on first use, and never stores the clear text', () => {
    const box = SecretBox.forDataDir(dir);
    const enc = box.encrypt('s3cret-pw');
    expect(enc).toMatch(/^v1:/);
    expect(enc).not.toContain('s3cret');
    expect(box.encrypt('s3cret-pw')).not.toBe(enc);
    expect(SecretBox.forDataDir(dir).decrypt(enc)).toBe('s3cret-pw');
    expect(statSync(join(dir, 'keys', 'registry.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'keys', 'registry.key')).length).toBe(32);
    const tampered = enc.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect(() => box.decrypt(tampered)).toThrow();
  });
  it('formats sizes like docker', () => {
    expect(humanSize(512)).toBe('512B');
    expect(humanSize(1_234_567)).toBe('1.23MB');
    expect(humanSize(45_600_000)).toBe('45.6MB');
  });
});
