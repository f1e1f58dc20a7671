import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileGlob } from '../config/glob.js';
import type { Policy } from '../config/types.js';
import { findPolicy } from './match.js';

function policy(name: string, ...match: string[]): Policy {
  return { name, match, matchers: match.map(compileGlob), mode: 'enforce', authorities: [], annotations: {}, predicateTypes: [], fingerprint: name };
}

test('the first policy whose match fits <upstream>/<repository> applies', () => {
  const policies = [policy('app', 'ghcr.io/acme/app'), policy('acme', 'ghcr.io/acme/**'), policy('all', '**')];
  assert.equal(findPolicy(policies, 'ghcr.io', 'acme/app')?.name, 'app');
  assert.equal(findPolicy(policies, 'ghcr.io', 'acme/tools/cli')?.name, 'acme');
  assert.equal(findPolicy(policies, 'docker.io', 'library/alpine')?.name, 'all');
});

test('any of a policy\'s globs fits', () => {
  const policies = [policy('two', 'ghcr.io/a/*', 'quay.io/b/*')];
  assert.equal(findPolicy(policies, 'quay.io', 'b/x')?.name, 'two');
});

test('the upstream is part of the subject: the same repository on another upstream does not match', () => {
  const policies = [policy('ghcr', 'ghcr.io/acme/app')];
  assert.equal(findPolicy(policies, 'quay.io', 'acme/app'), undefined);
});

test('globs are anchored: acme/app does not match acme/app-evil or acme/application', () => {
  const policies = [policy('app', 'ghcr.io/acme/app')];
  assert.equal(findPolicy(policies, 'ghcr.io', 'acme/app-evil'), undefined);
  assert.equal(findPolicy(policies, 'ghcr.io', 'acme/application'), undefined);
});

test('no policy matches: undefined', () => {
  assert.equal(findPolicy([], 'ghcr.io', 'acme/app'), undefined);
});
