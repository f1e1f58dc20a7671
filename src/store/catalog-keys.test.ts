import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Digest } from '../oci/digest.js';
import { keyOf, parseKey, recordId, type RecordRef } from './catalog-keys.js';
import { sha256 } from '../../test/helpers/digest.js';

// The catalog's record keys: the format stores on disk already hold, built from typed parts and
// parsed back to the same parts.

const d = sha256('x');

describe('catalog record keys', () => {
  test('each kind of record has the key stores on disk already hold', () => {
    assert.equal(keyOf({ kind: 'tag', upstream: 'reg.test:5000', repository: 'team/app', tag: 'v1.0' }), 'reg.test:5000/team/app:v1.0');
    for (const kind of ['manifest', 'blob', 'referrers'] as const) {
      assert.equal(keyOf({ kind, upstream: 'reg.test', repository: 'team/app', digest: d }), `reg.test/team/app@${d}`);
    }
    assert.equal(keyOf({ kind: 'verdict', upstream: 'reg.test', repository: 'team/app', digest: d, policyFingerprint: 'f1' }), `reg.test/team/app@${d}|f1`);
  });

  test('a key parses back to the parts it was built from', () => {
    const refs: RecordRef[] = [
      { kind: 'tag', upstream: 'reg.test:5000', repository: 'a/b/c', tag: 'sha256-abc.sig' },
      { kind: 'manifest', upstream: 'reg.test', repository: 'app', digest: d },
      { kind: 'blob', upstream: 'localhost:5000', repository: 'team/app', digest: d },
      { kind: 'referrers', upstream: 'reg.test', repository: 'team/app', digest: d },
      // a fingerprint may hold any character, an '@' and a '|' included
      { kind: 'verdict', upstream: 'reg.test', repository: 'team/app', digest: d, policyFingerprint: `p@${d}|x` },
    ];
    for (const ref of refs) assert.deepEqual(parseKey(ref.kind, keyOf(ref)), ref);
  });

  test('a key that does not parse gives no parts', () => {
    assert.equal(parseKey('tag', 'no-slash:1.0'), undefined);
    assert.equal(parseKey('tag', 'reg.test/app'), undefined); // no tag
    assert.equal(parseKey('tag', 'reg.test/app:'), undefined);
    assert.equal(parseKey('manifest', `reg.test/app@${d}x`), undefined);
    assert.equal(parseKey('blob', d), undefined);
    assert.equal(parseKey('verdict', `reg.test/app@${d}`), undefined); // no '|'
  });

  test('parts that would parse back as something else are refused', () => {
    const bad: RecordRef[] = [
      { kind: 'tag', upstream: 'reg/test', repository: 'app', tag: '1' },
      { kind: 'tag', upstream: 'reg.test', repository: 'app:1', tag: '1' },
      { kind: 'tag', upstream: 'reg.test', repository: 'app', tag: 'a:b' },
      { kind: 'tag', upstream: 'reg.test', repository: 'app', tag: '' },
      { kind: 'blob', upstream: 'reg.test', repository: 'app@x', digest: d },
      { kind: 'blob', upstream: 'reg.test', repository: 'app', digest: 'sha256:short' as Digest },
    ];
    for (const ref of bad) assert.throws(() => keyOf(ref), /catalog: not a/, JSON.stringify(ref));
  });

  test('record ids tell records of different kinds apart', () => {
    const parts = { upstream: 'reg.test', repository: 'app', digest: d };
    const ids = new Set((['manifest', 'blob', 'referrers'] as const).map((kind) => recordId({ kind, ...parts })));
    assert.equal(ids.size, 3);
  });
});
