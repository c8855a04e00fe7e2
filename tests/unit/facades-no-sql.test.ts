/**
 * House rule: facades (route files) hold no raw SQL; their queries live in the service's repository modules. Checked
 * on the sources of the facades' route files (Keystone, Glance, Zun).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/postgres.js';

/** Route files, or folders of them. */
const FACADES = [
  'src/services/identity/index.ts',
  'src/services/identity/routes',
  'src/services/image/routes',
  'src/services/container/routes',
];
/** Kysely's query builders, the `sql` template and a reach into the store's handle. */
const SQL = /\b(selectFrom|insertInto|updateTable|deleteFrom|replaceInto|mergeInto)\s*\(|\bsql\s*`|\.db\s*\./;

function tsFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const dir = path;
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `file:line: text` of every line that issues SQL. */
function sqlLines(files: string[]): string[] {
  return files.flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .flatMap((line, i) => (SQL.test(line) ? [`${relative(REPO_ROOT, f)}:${i + 1}: ${line.trim()}`] : [])),
  );
}

describe('facades hold no SQL', () => {
  it('the pattern finds the query shapes it is meant to find', () => {
    const probe = [
      "repo.db.selectFrom('users').selectAll()",
      "await trx.deleteFrom('assignments').where('a', '=', 1)",
      'await sql`select 1`.execute(db)',
    ];
    for (const line of probe) expect(SQL.test(line), line).toBe(true);
    expect(SQL.test("await ix.users.list({ name: 'x' })")).toBe(false);
  });

  for (const path of FACADES)
    it(`${path}: no query builder, no sql\`\`, no store handle`, () => {
      expect(sqlLines(tsFiles(join(REPO_ROOT, path)))).toEqual([]);
    });
});
