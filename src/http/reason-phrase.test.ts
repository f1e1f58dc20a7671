import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_REASON_PHRASE_CHARS, reasonPhrase } from './reason-phrase.js';

/** RFC 9112 reason-phrase, narrowed to what sigil sends: printable ASCII, no leading or trailing space. */
const STATUS_LINE_SAFE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

describe('a reason phrase for the status line', () => {
  test('a denial\'s few words pass unchanged', () => {
    assert.equal(reasonPhrase('sigil: no valid signature (policy prod)'), 'sigil: no valid signature (policy prod)');
  });

  test('line breaks and control characters cannot end the status line or start a header', () => {
    const p = reasonPhrase('sigil: denied (policy a\r\nSet-Cookie: x=1\u0000\u007f)');
    assert.match(p, STATUS_LINE_SAFE);
    assert.equal(p, 'sigil: denied (policy a Set-Cookie: x=1??)');
  });

  test('characters outside printable ASCII (a policy named in another script) become ?', () => {
    const p = reasonPhrase('sigil: no signature found (policy prod-é-名)');
    assert.equal(p, 'sigil: no signature found (policy prod-?-?)');
    assert.equal(reasonPhrase('sigil: 😀'), 'sigil: ?', 'one ? per character, not per UTF-16 unit');
  });

  test(`at most MAX_REASON_PHRASE_CHARS (${MAX_REASON_PHRASE_CHARS}) characters, a cut phrase marked with ...`, () => {
    const long = `sigil: no signature found (policy ${'p'.repeat(500)})`;
    const p = reasonPhrase(long);
    assert.equal(p.length, MAX_REASON_PHRASE_CHARS);
    assert.ok(p.startsWith('sigil: no signature found (policy ppp') && p.endsWith('p...'), p);
    assert.match(p, STATUS_LINE_SAFE);
    const exact = 'x'.repeat(MAX_REASON_PHRASE_CHARS);
    assert.equal(reasonPhrase(exact), exact);
  });

  test('runs of white space collapse; nothing but white space gives an empty phrase', () => {
    assert.equal(reasonPhrase('  sigil:\t\tdenied  \n'), 'sigil: denied');
    assert.equal(reasonPhrase(' \r\n '), '');
  });
});
