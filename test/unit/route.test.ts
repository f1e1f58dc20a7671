import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config, UpstreamConfig } from '../../src/config/types.js';
import { route } from '../../src/http/route.js';
import { thrownCode as code } from '../helpers/errors.js';

function upstream(name: string, url: string): UpstreamConfig {
  return { name, aliases: [], url: new URL(url), staleIfError: true, verifyBlobDigests: true };
}

function config(defaultUpstream?: string): Config {
  return {
    server: { listen: { host: '127.0.0.1', port: 0 }, logLevel: 'silent' },
    upstreams: [
      upstream('docker.io', 'https://registry-1.docker.io'),
      upstream('ghcr.io', 'https://ghcr.io'),
      upstream('registry.test:5000', 'http://127.0.0.1:5001'),
    ],
    defaultUpstream,
    trust: { trustedRoot: ['public-good'] },
    policies: [],
    cache: { verifications: { maxEntries: 10, ttlMs: 1000 }, tags: { ttlMs: 1000 }, manifests: { maxBytes: 1024 } },
    source: 'test',
  };
}


// How names map to upstreams (ns=, path prefix, defaultUpstream, Docker Hub's library/) is
// specified beside its owner, src/oci/image-name.test.ts; here, that route applies it.
test('ns= selects the upstream and the whole path is the repository', () => {
  const r = route(config('docker.io'), 'acme/app/manifests/v1', 'ghcr.io');
  assert.equal(r.upstream.name, 'ghcr.io');
  assert.equal(r.repository, 'acme/app');
  assert.deepEqual(r.endpoint, { kind: 'manifest', reference: 'v1' });
});

test('bad references, digests and names are refused before anything is contacted', () => {
  assert.equal(code(() => route(config('docker.io'), 'a/manifests/../../x', undefined)), 'NAME_UNKNOWN');
  assert.equal(code(() => route(config('docker.io'), 'a/manifests/-bad', undefined)), 'TAG_INVALID');
  assert.equal(code(() => route(config('docker.io'), 'a/blobs/sha256:zz', undefined)), 'DIGEST_INVALID');
  assert.equal(code(() => route(config('docker.io'), 'a/referrers/latest', undefined)), 'DIGEST_INVALID');
  assert.equal(code(() => route(config('docker.io'), 'UPPER/manifests/v1', undefined)), 'NAME_INVALID');
  assert.equal(code(() => route(config('docker.io'), 'a/../b/manifests/v1', undefined)), 'NAME_INVALID');
  assert.equal(code(() => route(config('docker.io'), 'a/%zz/manifests/v1', undefined)), 'NAME_INVALID');
  assert.equal(code(() => route(config('docker.io'), 'a/nothing/here', undefined)), 'NAME_UNKNOWN');
});

test('upload paths are recognised so they can be refused as push', () => {
  assert.equal(route(config('docker.io'), 'a/b/blobs/uploads/', undefined).endpoint.kind, 'upload');
  assert.equal(route(config('docker.io'), 'a/b/blobs/uploads/1234-5678', undefined).endpoint.kind, 'upload');
});

test('the path is not decoded again: a % left by the router is refused, never another spelling of a name', () => {
  assert.equal(route(config('ghcr.io'), 'sec/app/manifests/v1', undefined).repository, 'sec/app');
  // `/v2/sec%252fapp/manifests/v1` after the router's one decoding
  assert.equal(code(() => route(config('ghcr.io'), 'sec%2fapp/manifests/v1', undefined)), 'NAME_INVALID');
  assert.equal(code(() => route(config('ghcr.io'), 'sec%2fapp%2fmanifests%2fv1', undefined)), 'NAME_UNKNOWN');
  assert.equal(code(() => route(config('ghcr.io'), 'sec/app/manifests/v%31', undefined)), 'TAG_INVALID');
  assert.equal(code(() => route(config('ghcr.io'), `sec/app/blobs/sha256%3A${'a'.repeat(64)}`, undefined)), 'DIGEST_INVALID');
  assert.equal(code(() => route(config(), 'registry.test%3A5000/a/b/manifests/latest', undefined)), 'NAME_UNKNOWN');
});
