// The trust in use: the configured roots (the floor), plus the TUF repository's latest root
// merged in when there is one; the bundle (and the fingerprint that keys verdicts) changes
// exactly when that root does.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PUBLIC_GOOD, readTrustedRoots } from '../verify/index.js';
import { TrustSource, tufSource, type TufRoot } from './trust-source.js';
import { PGI_ROOT, PUBLIC_GOOD_ROOT } from '../../test/helpers/verify-fixtures.js';

const opts = { publicGoodPath: PUBLIC_GOOD_ROOT };
const URL = 'https://tuf.example';

describe('TrustSource', () => {
  test('without trust.tuf: the configured roots, as loadTrust merges them', () => {
    const s = new TrustSource(readTrustedRoots([PUBLIC_GOOD], opts), [PUBLIC_GOOD]);
    assert.deepEqual(s.current().sources, [PUBLIC_GOOD]);
    assert.equal(s.current(), s.current());
  });

  test('the latest TUF root is merged in when it appears and replaced when it changes; the same root keeps the same bundle', () => {
    const holder: { latest: TufRoot | null } = { latest: null };
    const s = new TrustSource(readTrustedRoots([PUBLIC_GOOD], opts), [PUBLIC_GOOD], holder);
    const floor = s.current();
    const [pgi] = readTrustedRoots([PGI_ROOT], opts);
    holder.latest = { url: URL, rootVersion: 1, verifiedAt: 0, root: pgi };
    const withTuf = s.current();
    assert.notEqual(withTuf.fingerprint, floor.fingerprint);
    assert.deepEqual(withTuf.sources, [PUBLIC_GOOD, tufSource(URL)]);
    assert.equal(withTuf.material.tlogs.length, floor.material.tlogs.length + pgi.root.tlogs.length);
    // Verified again later (a new record, the same root): nothing changes.
    holder.latest = { ...holder.latest, rootVersion: 2, verifiedAt: 1 };
    assert.equal(s.current(), withTuf);
    // The repository now serves public-good's root, which the floor holds already.
    const [again] = readTrustedRoots([PUBLIC_GOOD], opts);
    holder.latest = { url: URL, rootVersion: 2, verifiedAt: 2, root: again };
    assert.equal(s.current().fingerprint, floor.fingerprint, 'the fingerprint is over distinct content');
  });
});
