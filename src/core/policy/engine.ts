import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { type Check, parseRule } from './language.js';

/** What a request is allowed to claim: the keystonemiddleware-derived request context, flattened. */
export interface Credentials {
  user_id?: string | null;
  project_id?: string | null;
  domain_id?: string | null;
  roles: string[];
  is_admin?: boolean;
  system_scope?: string | null;
  [key: string]: unknown;
}

export type Target = Record<string, unknown>;

export class PolicyNotRegistered extends Error {}

/**
 * One engine answers "may these credentials do action X on target Y" for every service. Each service registers
 * its defaults in code; a YAML (or JSON) policy file overrides any of them.
 */
export class PolicyEngine {
  private rules = new Map<string, Check>();
  private sources = new Map<string, string>();
  private defaults = new Map<string, string>();

  constructor(private overridesFile?: string) {}

  /** Services share one rule namespace: a name registered twice with different rules is a programming error. */
  registerDefaults(defaults: Record<string, string>): void {
    for (const [name, rule] of Object.entries(defaults)) {
      const existing = this.defaults.get(name);
      if (existing !== undefined && existing !== rule)
        throw new Error(`policy ${name} is registered twice with different rules ("${existing}" and "${rule}")`);
      this.defaults.set(name, rule);
      this.sources.set(name, rule);
      this.rules.set(name, parseRule(rule));
    }
    this.applyOverrides();
  }

  /** Re-reads the overrides file; rules it names replace the defaults. */
  applyOverrides(): void {
    if (!this.overridesFile) return;
    const doc = parseYaml(readFileSync(this.overridesFile, 'utf8')) as Record<string, string> | null;
    for (const [name, rule] of Object.entries(doc ?? {})) {
      if (typeof rule !== 'string') throw new Error(`policy ${name} in ${this.overridesFile} is not a string`);
      this.sources.set(name, rule);
      this.rules.set(name, parseRule(rule));
    }
  }

  ruleText(name: string): string | undefined {
    return this.sources.get(name);
  }

  /** True when the action is allowed. Unknown actions are a programming error, never silently allowed. */
  enforce(action: string, target: Target, creds: Credentials): boolean {
    const check = this.rules.get(action);
    if (!check) throw new PolicyNotRegistered(`policy ${action} is not registered`);
    return this.evaluate(check, target, creds, 0);
  }

  private evaluate(check: Check, target: Target, creds: Credentials, depth: number): boolean {
    if (depth > 50) throw new Error('policy rules recurse too deeply');
    switch (check.kind) {
      case 'true':
        return true;
      case 'false':
        return false;
      case 'and':
        return check.items.every((c) => this.evaluate(c, target, creds, depth + 1));
      case 'or':
        return check.items.some((c) => this.evaluate(c, target, creds, depth + 1));
      case 'not':
        return !this.evaluate(check.item, target, creds, depth + 1);
      case 'rule': {
        const rule = this.rules.get(check.name);
        return rule ? this.evaluate(rule, target, creds, depth + 1) : false;
      }
      case 'role': {
        const wanted = substitute(check.match, target);
        if (wanted === undefined) return false;
        const lower = wanted.toLowerCase();
        return creds.roles.some((r) => r.toLowerCase() === lower);
      }
      case 'generic':
        return genericCheck(check.left, check.match, target, creds);
    }
  }
}

function lookup(obj: Record<string, unknown>, path: string): unknown {
  if (path in obj) return obj[path];
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** `%(a.b)s` → the target's value; anything else is a literal. Undefined when the target lacks the field. */
function substitute(match: string, target: Target): string | undefined {
  const m = /^%\((.+)\)s$/.exec(match);
  if (!m) return unquote(match);
  const value = lookup(target, m[1]);
  return value === undefined || value === null ? undefined : String(value);
}

function unquote(s: string): string {
  if (s.length >= 2 && (s[0] === "'" || s[0] === '"') && s[s.length - 1] === s[0]) return s.slice(1, -1);
  return s;
}

function genericCheck(left: string, match: string, target: Target, creds: Credentials): boolean {
  const expected = substitute(match, target);
  if (expected === undefined) return false;
  // A quoted left side is a literal compared with the (substituted) match, as in `'member':%(role.name)s`.
  if (left.startsWith("'") || left.startsWith('"')) return unquote(left) === expected;
  const actual = lookup(creds, left);
  if (actual === undefined || actual === null) return false;
  if (typeof actual === 'boolean') return actual === ['true', '1', 'yes'].includes(expected.toLowerCase());
  if (Array.isArray(actual)) return actual.map(String).includes(expected);
  return String(actual) === expected;
}
