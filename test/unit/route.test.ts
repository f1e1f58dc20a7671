import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config, UpstreamConfig } from '../../src/config/types.js';
import { isSigilError } from '../../src/errors.js';
import { route } from '../../src/http/route.js';

function upstream(name: string, url: string): UpstreamConfig {
  return { name, url: new URL(url), staleIfError: true, verifyBlobDigests: true };
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

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSigilError(e)) return e.code;
    throw e;
  }
  return 'no error';
}

test('ns= selects the upstream and the whole path is the repository', () => {
  const r = route(config('docker.io'), 'acme/app/manifests/v1', 'ghcr.io');
  assert.equal(r.upstream.name, 'ghcr.io');
  assert.equal(r.repository, 'acme/app');
  assert.deepEqual(r.endpoint, { kind: 'manifest', reference: 'v1' });
});

test('ns= with host:port works (containerd sends registry.test%3A5000, the query parser decodes it)', () => {
  const r = route(config(), 'team/app/blobs/sha256:' + 'a'.repeat(64), 'registry.test:5000');
  assert.equal(r.upstream.name, 'registry.test:5000');
  assert.equal(r.repository, 'team/app');
  assert.equal(r.endpoint.kind, 'blob');
});

test('an ns= naming an unconfigured host is refused, never sent to the default upstream', () => {
  assert.equal(code(() => route(config('docker.io'), 'prometheus/node-exporter/manifests/latest', 'quay.io')), 'NAME_UNKNOWN');
  assert.equal(code(() => route(config('docker.io'), 'x/manifests/latest', 'evil.example:443')), 'NAME_UNKNOWN');
});

test('a first path segment equal to an upstream name selects it and is stripped', () => {
  const r = route(config('docker.io'), 'ghcr.io/acme/app/tags/list', undefined);
  assert.equal(r.upstream.name, 'ghcr.io');
  assert.equal(r.repository, 'acme/app');
  assert.equal(r.clientName, 'ghcr.io/acme/app');
  // the router hands over the path decoded (`registry.test%3A5000/…` arrives as `registry.test:5000/…`)
  const p = route(config(), 'registry.test:5000/a/b/manifests/latest', undefined);
  assert.equal(p.upstream.name, 'registry.test:5000');
  assert.equal(p.repository, 'a/b');
});

test('otherwise the default upstream; docker.io one-segment names get library/', () => {
  const r = route(config('docker.io'), 'nginx/manifests/latest', undefined);
  assert.equal(r.upstream.name, 'docker.io');
  assert.equal(r.repository, 'library/nginx');
  assert.equal(route(config('docker.io'), 'docker.io/alpine/manifests/3', undefined).repository, 'library/alpine');
  assert.equal(route(config('docker.io'), 'bitnami/redis/manifests/7', undefined).repository, 'bitnami/redis');
  assert.equal(route(config('ghcr.io'), 'solo/manifests/1', undefined).repository, 'solo');
});

test('no default upstream and no prefix: 404 NAME_UNKNOWN', () => {
  assert.equal(code(() => route(config(), 'acme/app/manifests/v1', undefined)), 'NAME_UNKNOWN');
});

test('a host-looking first segment that is not configured is just a repository name, never a host', () => {
  // evil.example is not configured: with a default upstream the name stays a (invalid) repository there.
  assert.equal(code(() => route(config('docker.io'), 'evil.example:443/x/manifests/v1', undefined)), 'NAME_INVALID');
  const r = route(config('docker.io'), 'evil.example/x/manifests/v1', undefined);
  assert.equal(r.upstream.name, 'docker.io');
  assert.equal(r.repository, 'evil.example/x');
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
