import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/postgres.js';

/** The layering check (`npm run check:layers`) run on small made-up trees: it must refuse an upward import. */
describe('layering check', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function cruise(files: Record<string, string>): { ok: boolean; out: string } {
    const dir = mkdtempSync(join(tmpdir(), 'krater-layers-'));
    dirs.push(dir);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    const bin = join(REPO_ROOT, 'node_modules/.bin/depcruise');
    try {
      const out = execFileSync(bin, ['dist', '--config', join(REPO_ROOT, '.dependency-cruiser.cjs'), '-T', 'err'], {
        cwd: dir,
        encoding: 'utf8',
      });
      return { ok: true, out };
    } catch (err) {
      return { ok: false, out: String((err as { stdout?: string }).stdout) };
    }
  }

  it('accepts imports that go down', () => {
    const r = cruise({
      'dist/core/a.js': 'export const a = 1;\n',
      'dist/engine/e.js': "import { a } from '../core/a.js';\nexport const e = a;\n",
      'dist/compute/c.js': "import { e } from '../engine/e.js';\nexport const c = e;\n",
      'dist/services/container/r.js': "import { c } from '../../compute/c.js';\nexport const r = c;\n",
    });
    expect(r.out).toContain('no dependency violations');
  });

  it('refuses an upward import, a facade importing another facade and a cycle', () => {
    const r = cruise({
      'dist/core/a.js': "import { r } from '../services/container/r.js';\nexport const a = r;\n",
      'dist/services/container/r.js': "import { i } from '../image/i.js';\nexport const r = i;\n",
      'dist/services/image/i.js': "import { a } from '../../core/a.js';\nexport const i = a;\n",
    });
    expect(r.ok).toBe(false);
    expect(r.out).toContain('core-is-the-floor');
    expect(r.out).toContain('facade-not-facade');
    expect(r.out).toContain('no-circular');
  });
});
