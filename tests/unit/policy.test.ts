import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Credentials, PolicyEngine, PolicyNotRegistered } from '../../src/core/policy/engine.js';
import { PolicySyntaxError, parseRule } from '../../src/core/policy/language.js';

const admin: Credentials = { user_id: 'u1', project_id: 'p1', roles: ['admin', 'member'], is_admin: true };
const member: Credentials = { user_id: 'u2', project_id: 'p2', roles: ['Member'], is_admin: false };

function engine(rules: Record<string, string>, file?: string) {
  const e = new PolicyEngine(file);
  e.registerDefaults(rules);
  return e;
}

describe('policy language', () => {
  it('parses precedence: not > and > or, and parentheses', () => {
    expect(parseRule('role:a or role:b and not role:c')).toEqual({
      kind: 'or',
      items: [
        { kind: 'role', match: 'a' },
        {
          kind: 'and',
          items: [
            { kind: 'role', match: 'b' },
            { kind: 'not', item: { kind: 'role', match: 'c' } },
          ],
        },
      ],
    });
    expect(parseRule('(role:a or role:b) and role:c').kind).toBe('and');
  });
  it('keeps %(...)s substitutions inside one check, even next to grouping parentheses', () => {
    expect(parseRule('(project_id:%(project_id)s)')).toEqual({
      kind: 'generic',
      left: 'project_id',
      match: '%(project_id)s',
    });
  });
  it('rejects malformed rules', () => {
    expect(() => parseRule('role:a or')).toThrow(PolicySyntaxError);
    expect(() => parseRule('(role:a')).toThrow(PolicySyntaxError);
    expect(() => parseRule('role:a)')).toThrow(PolicySyntaxError);
    expect(() => parseRule('justaword')).toThrow(PolicySyntaxError);
  });
});

describe('policy engine', () => {
  const e = engine({
    admin_required: 'role:admin or is_admin:1',
    owner: 'project_id:%(project_id)s',
    admin_or_owner: 'rule:admin_required or rule:owner',
    always: '@',
    never: '!',
    empty: '',
    not_member: 'not role:member',
    literal: "'p2':%(project_id)s",
    nested: 'user_id:%(target.user.id)s',
    unknown_rule: 'rule:does_not_exist',
  });
  it('evaluates role checks case-insensitively', () => {
    expect(e.enforce('admin_required', {}, admin)).toBe(true);
    expect(e.enforce('not_member', {}, member)).toBe(false);
  });
  it('substitutes target values and compares credentials', () => {
    expect(e.enforce('admin_or_owner', { project_id: 'p2' }, member)).toBe(true);
    expect(e.enforce('admin_or_owner', { project_id: 'p3' }, member)).toBe(false);
    expect(e.enforce('admin_or_owner', {}, member)).toBe(false);
    expect(e.enforce('nested', { target: { user: { id: 'u2' } } }, member)).toBe(true);
  });
  it('handles @, !, the empty rule, literals and unknown rules', () => {
    expect(e.enforce('always', {}, member)).toBe(true);
    expect(e.enforce('never', {}, admin)).toBe(false);
    expect(e.enforce('empty', {}, member)).toBe(true);
    expect(e.enforce('literal', { project_id: 'p2' }, member)).toBe(true);
    expect(e.enforce('literal', { project_id: 'p1' }, member)).toBe(false);
    expect(e.enforce('unknown_rule', {}, admin)).toBe(false);
  });
  it('matches is_admin against True and 1', () => {
    const t = engine({ a: 'is_admin:True', b: 'is_admin:1', c: 'is_admin:False' });
    expect(t.enforce('a', {}, admin)).toBe(true);
    expect(t.enforce('b', {}, admin)).toBe(true);
    expect(t.enforce('b', {}, member)).toBe(false);
    expect(t.enforce('c', {}, member)).toBe(true);
  });
  it('refuses unregistered actions', () => {
    expect(() => e.enforce('nope', {}, admin)).toThrow(PolicyNotRegistered);
  });
  it('lets a YAML file override defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'krater-policy-'));
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, '"identity:list_projects": "role:reader"\n');
    const t = engine({ 'identity:list_projects': 'role:admin' }, file);
    expect(t.enforce('identity:list_projects', {}, { roles: ['reader'] })).toBe(true);
    expect(t.enforce('identity:list_projects', {}, { roles: ['admin'] })).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});
