import assert from 'node:assert/strict';
import { test } from 'node:test';
import semver from 'semver';
import { selectTags, tagVersion } from './select.js';

const range = (text: string) => ({ text, range: new semver.Range(text) });

test('tagVersion: strict semver with an optional leading v; anything else names no version', () => {
  assert.equal(tagVersion('1.2.3')?.version, '1.2.3');
  assert.equal(tagVersion('v1.2.3-rc.1')?.version, '1.2.3-rc.1');
  for (const t of ['1.2', 'latest', '1.2.3.4', 'sha256-ab.sig']) assert.equal(tagVersion(t), null, t);
});

test("tagVersion: a Helm chart's tag reads `_` as the `+` a tag cannot hold (0.2.0_build.7 is 0.2.0+build.7)", () => {
  const v = tagVersion('0.2.0_build.7');
  assert.equal(v?.version, '0.2.0');
  assert.deepEqual(v?.build, ['build', '7']);
  assert.equal(tagVersion('1.0.0_a_b'), null); // two `+`: not semver
});

test('a semver range selects Helm chart tags by their version, build metadata aside', () => {
  const tags = ['0.1.0', '0.2.0_build.7', '1.0.0', '1.0.0-rc.1'];
  assert.deepEqual(selectTags({ tags: [], semver: range('<1.0.0') }, tags).map((s) => s.tag), ['0.2.0_build.7', '0.1.0']);
  assert.deepEqual(selectTags({ tags: [], latest: 2 }, tags).map((s) => s.tag), ['1.0.0', '0.2.0_build.7']);
});
