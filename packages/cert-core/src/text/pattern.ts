/**
 * OpenSSH's wildcard patterns (match.c): `*` matches any run of characters, `?` exactly one.
 * Used for known_hosts host patterns and for host-certificate principals (OpenSSH >= 10.3).
 */
export function matchPattern(s: string, pattern: string): boolean {
  // Iterative glob match with backtracking to the last `*`: linear in practice, no recursion.
  let si = 0;
  let pi = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    const pc = pattern[pi];
    if (pc === '*') {
      star = pi++;
      mark = si;
    } else if (pc !== undefined && (pc === '?' || pc === s[si])) {
      si++;
      pi++;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pattern[pi] === '*') pi++;
  return pi === pattern.length;
}

/**
 * A comma-separated pattern list with `!` negation (match_pattern_list): 'negated' when a
 * negated pattern matches (that wins), 'match' when a plain one does, else 'none'.
 * `caseless` lowercases ASCII letters of the pattern, as OpenSSH does for host names (whose
 * subject it lowercases itself beforehand).
 */
export function matchPatternList(s: string, list: string, caseless = false): 'match' | 'negated' | 'none' {
  const subject = caseless ? asciiLower(s) : s;
  let got: 'match' | 'none' = 'none';
  for (const raw of list.split(',')) {
    const negated = raw.startsWith('!');
    const body = negated ? raw.slice(1) : raw;
    const p = caseless ? asciiLower(body) : body;
    if (matchPattern(subject, p)) {
      if (negated) return 'negated';
      got = 'match';
    }
  }
  return got;
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}
