import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WARNING_TEXT_MAX_CHARS, warningHeader } from './v2-routes.js';

test('a Warning header quotes its text with what a header may not carry replaced', () => {
  assert.equal(warningHeader('sigil: no signature found (policy "p")\n'), '299 - "sigil: no signature found (policy ?p?)?"');
});

test('a Warning text longer than WARNING_TEXT_MAX_CHARS is cut, so a reverse proxy with small header buffers still passes the answer', () => {
  const long = `sigil: no valid signature: ${'candidate 7: certificate not trusted; '.repeat(1000)}`;
  const h = warningHeader(long);
  assert.equal(h, `299 - "${long.slice(0, WARNING_TEXT_MAX_CHARS - 3)}..."`);
  assert.equal(warningHeader('x'.repeat(WARNING_TEXT_MAX_CHARS)), `299 - "${'x'.repeat(WARNING_TEXT_MAX_CHARS)}"`, 'a text of exactly the limit is whole');
});
