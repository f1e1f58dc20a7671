import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileGlob, exactRegExp, globLiteralHost, globProblem, isFullyAnchored } from './glob.js';

describe('compileGlob', () => {
  // [glob, subject, matches]
  const table: [string, string, boolean][] = [
    ['ghcr.io/acme/*', 'ghcr.io/acme/app', true],
    ['ghcr.io/acme/*', 'ghcr.io/acme/x/y', false],
    ['ghcr.io/acme/*', 'ghcr.io/acme', false],
    ['ghcr.io/acme/*', 'ghcr.io/acme-evil/app', false],
    ['ghcr.io/acme/*', 'xghcr.io/acme/app', false],
    ['ghcr.io/acme/*', 'ghcr.io/acme/app/', false],
    ['registry.internal:5000/**', 'registry.internal:5000/a', true],
    ['registry.internal:5000/**', 'registry.internal:5000/a/b', true],
    ['registry.internal:5000/**', 'registry.internal:5000/a/b/c/d', true],
    ['registry.internal:5000/**', 'registry.internal:5000', true], // ** includes zero segments
    ['registry.internal:5000/**', 'registry.internal:50000/a', false],
    ['registry.internal:5000/**', 'registryXinternal:5000/a', false], // "." is literal
    ['**', 'docker.io/library/nginx', true],
    ['**', 'a', true],
    ['**/nginx', 'docker.io/library/nginx', true],
    ['**/nginx', 'nginx', true],
    ['**/nginx', 'docker.io/library/nginx-evil', false],
    ['docker.io/**/nginx', 'docker.io/nginx', true],
    ['docker.io/**/nginx', 'docker.io/library/nginx', true],
    ['docker.io/**/nginx', 'docker.io/a/b/nginx', true],
    ['docker.io/**/nginx', 'docker.io/a/b/nginxx', false],
    ['docker.io/**/**/nginx', 'docker.io/a/nginx', true],
    ['*/library/*', 'docker.io/library/redis', true],
    ['*/library/*', 'docker.io/x/library/redis', false],
    ['ghcr.io/acme/app-*', 'ghcr.io/acme/app-web', true],
    ['ghcr.io/acme/app-*', 'ghcr.io/acme/app-', true],
    ['ghcr.io/acme/app-*', 'ghcr.io/acme/other', false],
    ['ghcr.io/a+b/(x)', 'ghcr.io/a+b/(x)', true], // regex metacharacters are literal
    ['ghcr.io/a+b/(x)', 'ghcr.io/aab/x', false],
    ['ghcr.io/a?c/x', 'ghcr.io/abc/x', false], // "?" is literal too
    ['ghcr.io/a?c/x', 'ghcr.io/a?c/x', true],
    ['ghcr.io/[ab]/x', 'ghcr.io/a/x', false],
  ];
  for (const [glob, subject, expected] of table) {
    test(`${glob} ${expected ? 'matches' : 'does not match'} ${subject}`, () => {
      assert.equal(compileGlob(glob).test(subject), expected);
    });
  }

  test('compiled patterns are anchored', () => {
    for (const [glob] of table) {
      const re = compileGlob(glob);
      assert.ok(re.source.startsWith('^') && re.source.endsWith('$'), glob);
    }
  });
});

describe('globProblem', () => {
  test('accepts well-formed globs', () => {
    for (const g of ['**', 'ghcr.io/acme/*', 'a/**/b', 'registry.internal:5000/**']) assert.equal(globProblem(g), undefined, g);
  });
  test('refuses malformed globs with a reason', () => {
    assert.match(globProblem('') ?? '', /empty/);
    assert.match(globProblem('ghcr.io//x') ?? '', /empty path segment/);
    assert.match(globProblem('/ghcr.io/x') ?? '', /empty path segment/);
    assert.match(globProblem('ghcr.io/acme**') ?? '', /whole path segment/);
    assert.match(globProblem('ghcr.io/a b') ?? '', /whitespace/);
  });
  test('globLiteralHost gives the literal first segment', () => {
    assert.equal(globLiteralHost('ghcr.io/acme/*'), 'ghcr.io');
    assert.equal(globLiteralHost('registry.internal:5000/**'), 'registry.internal:5000');
    assert.equal(globLiteralHost('**'), undefined);
    assert.equal(globLiteralHost('*.io/x'), undefined);
  });
});

describe('exactRegExp', () => {
  test('matches only the exact text', () => {
    const re = exactRegExp('https://token.actions.githubusercontent.com');
    assert.ok(re.test('https://token.actions.githubusercontent.com'));
    assert.ok(!re.test('https://token.actions.githubusercontent.com.evil.example'));
    assert.ok(!re.test('https://tokenXactions.githubusercontent.com'));
    assert.ok(!re.test('xhttps://token.actions.githubusercontent.com'));
    assert.equal(re.source, new RegExp('^https://token\\.actions\\.githubusercontent\\.com$').source);
  });
  test('escapes every metacharacter', () => {
    const text = String.raw`a.b*c+d?e^f$g{h}i(j)k|l[m]n\o`;
    assert.ok(exactRegExp(text).test(text));
    assert.ok(!exactRegExp(text).test(text.replace('.', 'X')));
  });
});

describe('isFullyAnchored', () => {
  const table: [string, boolean][] = [
    ['^https://github\\.com/acme/.+$', true],
    ['^.*$', true],
    ['^(a|b)$', true],
    ['^[|]$', true],
    ['.*', false],
    ['https://github\\.com/acme/.+', false],
    ['^https://github\\.com/acme', false],
    ['https://github\\.com/acme$', false],
    ['^a|b$', false], // top-level alternation: "^a" or "b$"
    ['^a\\$', false], // an escaped dollar is a literal
    ['^a\\\\$', true], // an escaped backslash, then the anchor
  ];
  for (const [source, expected] of table) {
    test(`${source} is ${expected ? '' : 'not '}fully anchored`, () => assert.equal(isFullyAnchored(source), expected));
  }
});
