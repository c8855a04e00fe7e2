/**
 * The oslo.policy rule language: `@`, `!`, `role:x`, `rule:x`, `<cred>:<match>` generic checks with `%(target)s`
 * substitution or quoted literals, combined with `and`, `or`, `not` and parentheses.
 */
export type Check =
  | { kind: 'true' }
  | { kind: 'false' }
  | { kind: 'and'; items: Check[] }
  | { kind: 'or'; items: Check[] }
  | { kind: 'not'; item: Check }
  | { kind: 'rule'; name: string }
  | { kind: 'role'; match: string }
  | { kind: 'generic'; left: string; match: string };

export class PolicySyntaxError extends Error {}

/**
 * As oslo.policy does: split on whitespace (quotes kept together), then peel grouping parentheses off the start and
 * end of each word, so `%(project_id)s` stays one word while `(role:a` yields `(` and `role:a`.
 */
function tokenize(rule: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < rule.length) {
    if (/\s/.test(rule[i])) {
      i++;
      continue;
    }
    let word = '';
    while (i < rule.length && !/\s/.test(rule[i])) {
      const c = rule[i];
      if (c === "'" || c === '"') {
        const end = rule.indexOf(c, i + 1);
        if (end < 0) throw new PolicySyntaxError(`unterminated quote in rule: ${rule}`);
        word += rule.slice(i, end + 1);
        i = end + 1;
      } else {
        word += c;
        i++;
      }
    }
    words.push(word);
  }
  const tokens: string[] = [];
  for (const word of words) {
    let start = 0;
    while (start < word.length && word[start] === '(') {
      tokens.push('(');
      start++;
    }
    let end = word.length;
    let closing = 0;
    while (end > start && word[end - 1] === ')' && !/%\([^)]*\)$/.test(word.slice(start, end))) {
      closing++;
      end--;
    }
    if (end > start) tokens.push(word.slice(start, end));
    for (let k = 0; k < closing; k++) tokens.push(')');
  }
  return tokens;
}

export function parseRule(rule: string): Check {
  const tokens = tokenize(rule);
  if (tokens.length === 0) return { kind: 'true' };
  let pos = 0;
  const peek = () => tokens[pos];
  const isWord = (t: string | undefined, w: string) => t !== undefined && t.toLowerCase() === w;

  const parseOr = (): Check => {
    const items = [parseAnd()];
    while (isWord(peek(), 'or')) {
      pos++;
      items.push(parseAnd());
    }
    return items.length === 1 ? items[0] : { kind: 'or', items };
  };
  const parseAnd = (): Check => {
    const items = [parseNot()];
    while (isWord(peek(), 'and')) {
      pos++;
      items.push(parseNot());
    }
    return items.length === 1 ? items[0] : { kind: 'and', items };
  };
  const parseNot = (): Check => {
    if (isWord(peek(), 'not')) {
      pos++;
      return { kind: 'not', item: parseNot() };
    }
    return parseAtom();
  };
  const parseAtom = (): Check => {
    const t = tokens[pos++];
    if (t === undefined) throw new PolicySyntaxError(`unexpected end of rule: ${rule}`);
    if (t === '(') {
      const inner = parseOr();
      if (tokens[pos++] !== ')') throw new PolicySyntaxError(`missing ')' in rule: ${rule}`);
      return inner;
    }
    if (t === ')') throw new PolicySyntaxError(`unexpected ')' in rule: ${rule}`);
    return parseCheck(t, rule);
  };
  const result = parseOr();
  if (pos !== tokens.length) throw new PolicySyntaxError(`unexpected '${tokens[pos]}' in rule: ${rule}`);
  return result;
}

function parseCheck(token: string, rule: string): Check {
  if (token === '@') return { kind: 'true' };
  if (token === '!') return { kind: 'false' };
  const colon = findColon(token);
  if (colon < 0) throw new PolicySyntaxError(`invalid check '${token}' in rule: ${rule}`);
  const kind = token.slice(0, colon);
  const match = token.slice(colon + 1);
  if (kind === 'rule') return { kind: 'rule', name: match };
  if (kind === 'role') return { kind: 'role', match };
  return { kind: 'generic', left: kind, match };
}

/** The first colon outside quotes separates the kind from the match. */
function findColon(token: string): number {
  let quote: string | null = null;
  for (let i = 0; i < token.length; i++) {
    const c = token[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === ':') {
      return i;
    }
  }
  return -1;
}
