import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Config, UpstreamConfig } from '../config/types.js';
import { hubRepository, isDockerHub, resolveImageName, resolvePathName, splitReference } from './image-name.js';
import { thrownCode as code } from '../../test/helpers/errors.js';

const D = `sha256:${'a'.repeat(64)}`;

function upstream(name: string, url: string): UpstreamConfig {
  return { name, aliases: [], url: new URL(url), staleIfError: true, verifyBlobDigests: true };
}

function config(defaultUpstream?: string, extra: UpstreamConfig[] = []): Config {
  return {
    server: { listen: { host: '127.0.0.1', port: 0 }, logLevel: 'silent' },
    upstreams: [
      upstream('docker.io', 'https://registry-1.docker.io'),
      upstream('ghcr.io', 'https://ghcr.io'),
      upstream('registry.test:5000', 'http://127.0.0.1:5001'),
      ...extra,
    ],
    defaultUpstream,
    trust: { trustedRoot: ['public-good'] },
    policies: [],
    cache: { verifications: { maxEntries: 10, ttlMs: 1000 }, tags: { ttlMs: 1000 }, manifests: { maxBytes: 1024 } },
    source: 'test',
  };
}


function path(c: Config, name: string, ns?: string): string {
  const r = resolvePathName(c, name, ns);
  return `${r.upstream.name} ${r.repository}`;
}

function ref(c: Config, name: string): string {
  const r = resolveImageName(c, name);
  return 'problem' in r ? r.problem : `${r.upstream.name} ${r.repository}`;
}

describe('Docker Hub: a one-segment repository is an official image under library/', () => {
  test('Docker Hub is the upstream named docker.io, or one reached at registry-1.docker.io or index.docker.io', () => {
    assert.equal(isDockerHub(upstream('docker.io', 'http://127.0.0.1:5000')), true);
    assert.equal(isDockerHub(upstream('hub', 'https://registry-1.docker.io')), true);
    assert.equal(isDockerHub(upstream('hub', 'https://index.docker.io')), true);
    assert.equal(isDockerHub(upstream('ghcr.io', 'https://ghcr.io')), false);
  });
  test('only one-segment names get the prefix, and only on Docker Hub', () => {
    const hub = upstream('docker.io', 'https://registry-1.docker.io');
    assert.equal(hubRepository(hub, 'alpine'), 'library/alpine');
    assert.equal(hubRepository(hub, 'bitnami/redis'), 'bitnami/redis');
    assert.equal(hubRepository(upstream('ghcr.io', 'https://ghcr.io'), 'solo'), 'solo');
  });
  test('a /v2/ path, sigil verify and a mirror FILE agree: an upstream at Docker Hub under another name gets library/ too', () => {
    const c = config('hub', [upstream('hub', 'https://index.docker.io')]);
    assert.equal(path(c, 'alpine'), 'hub library/alpine');
    assert.equal(path(c, 'hub/alpine'), 'hub library/alpine');
    assert.equal(ref(c, 'alpine'), 'hub library/alpine');
    assert.equal(ref(c, 'hub/alpine'), 'hub library/alpine');
  });
});

describe('resolvePathName: the /v2/<name> of a request, with containerd\'s ns=', () => {
  test('ns= selects the upstream and the whole name is the repository', () => {
    assert.equal(path(config('docker.io'), 'acme/app', 'ghcr.io'), 'ghcr.io acme/app');
  });
  test('ns= with host:port works (containerd sends registry.test%3A5000, the query parser decodes it)', () => {
    assert.equal(path(config(), 'team/app', 'registry.test:5000'), 'registry.test:5000 team/app');
  });
  test('an ns= naming an unconfigured host is refused, never sent to the default upstream', () => {
    assert.equal(code(() => resolvePathName(config('docker.io'), 'prometheus/node-exporter', 'quay.io')), 'NAME_UNKNOWN');
    assert.equal(code(() => resolvePathName(config('docker.io'), 'x', 'evil.example:443')), 'NAME_UNKNOWN');
  });
  test('a first path segment equal to an upstream name selects it and is stripped', () => {
    assert.equal(path(config('docker.io'), 'ghcr.io/acme/app'), 'ghcr.io acme/app');
    // the router hands over the path decoded (`registry.test%3A5000/…` arrives as `registry.test:5000/…`)
    assert.equal(path(config(), 'registry.test:5000/a/b'), 'registry.test:5000 a/b');
  });
  test('otherwise the default upstream; docker.io one-segment names get library/', () => {
    assert.equal(path(config('docker.io'), 'nginx'), 'docker.io library/nginx');
    assert.equal(path(config('docker.io'), 'docker.io/alpine'), 'docker.io library/alpine');
    assert.equal(path(config('docker.io'), 'bitnami/redis'), 'docker.io bitnami/redis');
    assert.equal(path(config('ghcr.io'), 'solo'), 'ghcr.io solo');
  });
  test('no default upstream and no prefix: NAME_UNKNOWN', () => {
    assert.equal(code(() => resolvePathName(config(), 'acme/app', undefined)), 'NAME_UNKNOWN');
  });
  test('a host-looking first segment that is not configured is just a repository name, never a host', () => {
    // evil.example is not configured: with a default upstream the name stays a (here invalid) repository there.
    assert.equal(code(() => resolvePathName(config('docker.io'), 'evil.example:443/x', undefined)), 'NAME_INVALID');
    assert.equal(path(config('docker.io'), 'evil.example/x'), 'docker.io evil.example/x');
  });
  test('names outside the distribution-spec grammar are NAME_INVALID', () => {
    for (const name of ['UPPER', 'a/../b', 'a/%zz', 'a//b']) assert.equal(code(() => resolvePathName(config('docker.io'), name, undefined)), 'NAME_INVALID', name);
  });
});

describe('resolveImageName: the name of an image reference (sigil verify, a mirror FILE)', () => {
  test('host/repo on a configured upstream, host:port included', () => {
    assert.equal(ref(config(), 'ghcr.io/acme/app'), 'ghcr.io acme/app');
    assert.equal(ref(config(), 'registry.test:5000/a/b'), 'registry.test:5000 a/b');
  });
  test('a registry host that is not configured is refused, never resolved on the default upstream', () => {
    assert.deepEqual(resolveImageName(config('docker.io'), 'evil.example.com/x/y'), { problem: 'unknown-registry', registry: 'evil.example.com' });
    assert.equal(ref(config('docker.io'), 'evil.example:443/x'), 'unknown-registry');
    assert.equal(ref(config('docker.io'), 'localhost/x'), 'unknown-registry');
  });
  test('without a host: the default upstream, library/ on Docker Hub', () => {
    assert.equal(ref(config('docker.io'), 'alpine'), 'docker.io library/alpine');
    assert.equal(ref(config('docker.io'), 'docker.io/alpine'), 'docker.io library/alpine');
    assert.equal(ref(config('docker.io'), 'acme/app'), 'docker.io acme/app');
    assert.equal(ref(config('ghcr.io'), 'solo'), 'ghcr.io solo');
  });
  test('without a host and without a default upstream: no-registry', () => {
    assert.equal(ref(config(), 'acme/app'), 'no-registry');
  });
  test('a repository outside the grammar: invalid-repository, naming it', () => {
    const r = resolveImageName(config('ghcr.io'), 'ghcr.io/Acme/App');
    assert.ok('problem' in r && r.problem === 'invalid-repository' && r.repository === 'Acme/App');
  });
});

describe('aliases: further routing names of one upstream', () => {
  // podman/CRI-O cannot remap to `sigil:5000/registry.test:5000`: a port-less alias reaches it.
  const aliased = (): Config => {
    const c = config('docker.io');
    return { ...c, upstreams: c.upstreams.map((u) => (u.name === 'registry.test:5000' ? { ...u, aliases: ['registry.test', 'internal'] } : u)) };
  };
  test('an alias as first path segment or ns= resolves to the upstream itself, whose name is what the rest sees', () => {
    assert.equal(path(aliased(), 'registry.test/team/app'), 'registry.test:5000 team/app');
    assert.equal(path(aliased(), 'internal/team/app'), 'registry.test:5000 team/app');
    assert.equal(path(aliased(), 'team/app', 'registry.test'), 'registry.test:5000 team/app');
    const c = aliased();
    assert.equal(resolvePathName(c, 'internal/x', undefined).upstream, c.upstreams[2]);
  });
  test('an image reference may name the registry by an alias too', () => {
    assert.equal(ref(aliased(), 'registry.test/team/app'), 'registry.test:5000 team/app');
    assert.equal(ref(aliased(), 'internal/team/app'), 'registry.test:5000 team/app');
  });
  test('without the alias the same names are what they were: a repository on the default upstream, an unknown registry', () => {
    assert.equal(path(config('docker.io'), 'internal/team/app'), 'docker.io internal/team/app');
    assert.equal(ref(config('docker.io'), 'registry.test/team/app'), 'unknown-registry');
    assert.equal(code(() => resolvePathName(config('docker.io'), 'team/app', 'registry.test')), 'NAME_UNKNOWN');
  });
});

describe('splitReference: name[:tag] or name@digest', () => {
  test('a tag after the last /, a port is not a tag', () => {
    assert.deepEqual(splitReference('ghcr.io/acme/app:v1'), { name: 'ghcr.io/acme/app', tag: 'v1' });
    assert.deepEqual(splitReference('registry.test:5000/a/b'), { name: 'registry.test:5000/a/b' });
    assert.deepEqual(splitReference('registry.test:5000/a/b:2'), { name: 'registry.test:5000/a/b', tag: '2' });
  });
  test('a digest after @; anything else after @ is refused', () => {
    assert.deepEqual(splitReference(`acme/app@${D}`), { name: 'acme/app', digest: D });
    assert.deepEqual(splitReference('acme/app@sha256:xyz'), { problem: 'not-a-digest', reference: 'sha256:xyz' });
  });
  test('a tag before @ stays in the name (refused there as an invalid repository)', () => {
    assert.deepEqual(splitReference(`acme/app:v1@${D}`), { name: 'acme/app:v1', digest: D });
    assert.equal(ref(config('ghcr.io'), 'acme/app:v1'), 'invalid-repository');
  });
});
