import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogIndexer, logTimestamp, readTimedLines } from '../../src/agent/log-index.js';

const dirs: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function files() {
  const dir = mkdtempSync(join(tmpdir(), 'krater-logidx-'));
  dirs.push(dir);
  const f = { stdout: join(dir, 'stdout.log'), stderr: join(dir, 'stderr.log') };
  writeFileSync(f.stdout, '');
  writeFileSync(f.stderr, '');
  return f;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('log index', () => {
  it('dates lines as they are written and interleaves the streams in that order', async () => {
    const f = files();
    const ix = new LogIndexer({ warn: () => undefined });
    ix.track('c', f);
    appendFileSync(f.stdout, 'one\n');
    await sleep(120);
    appendFileSync(f.stderr, 'two\n');
    await sleep(30);
    appendFileSync(f.stdout, 'three\npartial');
    await sleep(30);
    await ix.scan();
    const lines = await readTimedLines(f, { stdout: true, stderr: true });
    expect(lines.map((l) => l.text)).toEqual(['one\n', 'two\n', 'three\n', 'partial']);
    expect(lines[1]!.time - lines[0]!.time).toBeGreaterThanOrEqual(100);
    expect((await readTimedLines(f, { stdout: false, stderr: true })).map((l) => l.text)).toEqual(['two\n']);
    await ix.untrack('c');
    ix.stop();
  });

  it('starts over when the file is replaced, and dates output it did not see by the file time', async () => {
    const f = files();
    writeFileSync(f.stdout, 'before\n');
    const ix = new LogIndexer({ warn: () => undefined });
    ix.track('c', f);
    await ix.scan();
    writeFileSync(f.stdout, 'x\n');
    await ix.scan();
    const lines = await readTimedLines(f, { stdout: true, stderr: false });
    expect(lines.map((l) => l.text)).toEqual(['x\n']);
    ix.stop();
  });

  it("formats Docker's timestamps with nanoseconds", () => {
    expect(logTimestamp(Date.UTC(2026, 11, 4, 7, 3, 30, 761) + 0.25)).toBe('2026-12-04T07:03:30.761250000Z');
  });
});
