import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isSigilError } from '../errors.js';
import { JsonRefused, MAX_JSON_DEPTH } from './json.js';
import {
  configMediaType,
  descriptor,
  imageBlobs,
  indexChildDigests,
  indexEntries,
  manifestObject,
  parseManifest,
  referrerDescriptor,
  stringRecord,
  tryDescriptor,
  tryIndexEntries,
} from './manifest.js';
import { MT } from './media-types.js';
import { parsePlatform, platformText, platformWanted } from './platform.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'c'.repeat(64)}`;

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const deep = (levels: number): Buffer => Buffer.from(`${'['.repeat(levels)}${']'.repeat(levels)}`);

function invalid(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => isSigilError(e) && e.code === 'MANIFEST_INVALID' && message.test(e.message));
}

const image = {
  schemaVersion: 2,
  mediaType: MT.OCI_MANIFEST,
  config: { mediaType: MT.OCI_CONFIG, digest: A, size: 2 },
  layers: [{ mediaType: MT.OCI_LAYER_TGZ, digest: B, size: 10, annotations: { k: 'v' } }],
};

describe('parseManifest: an image manifest, every descriptor checked', () => {
  test('the config first, then the layers; its subject, artifactType and annotations', () => {
    const m = parseManifest(json({ ...image, subject: { mediaType: MT.OCI_MANIFEST, digest: C, size: 5 }, artifactType: 'x/y', annotations: { a: 'b' } }), MT.OCI_MANIFEST, 'm');
    assert.deepEqual(m, {
      kind: 'image',
      blobs: [
        { mediaType: MT.OCI_CONFIG, digest: A, size: 2 },
        { mediaType: MT.OCI_LAYER_TGZ, digest: B, size: 10, annotations: { k: 'v' } },
      ],
      configMediaType: MT.OCI_CONFIG,
      subject: { mediaType: MT.OCI_MANIFEST, digest: C, size: 5 },
      artifactType: 'x/y',
      annotations: { a: 'b' },
    });
  });
  test('a bad descriptor is named by where it is', () => {
    invalid(() => parseManifest(json({ ...image, layers: [{ mediaType: MT.OCI_LAYER_TGZ, digest: 'sha256:short', size: 1 }] }), MT.OCI_MANIFEST, 'repo@x'), /^repo@x: layers\[0\]: invalid digest "sha256:short"$/);
    invalid(() => parseManifest(json({ ...image, config: { mediaType: MT.OCI_CONFIG, digest: A, size: -1 } }), MT.OCI_MANIFEST, 'm'), /^m: config: invalid size -1$/);
    invalid(() => parseManifest(json({ ...image, config: { digest: A, size: 1 } }), MT.OCI_MANIFEST, 'm'), /^m: config: no media type$/);
    invalid(() => parseManifest(json({ ...image, subject: 'x' }), MT.OCI_MANIFEST, 'm'), /^m: subject: not a descriptor$/);
  });
  test('schema 1, or not an object, is refused', () => {
    invalid(() => parseManifest(json({ schemaVersion: 1, fsLayers: [] }), 'application/vnd.docker.distribution.manifest.v1+json', 'm'), /not a schema 2 manifest/);
    invalid(() => parseManifest(json([image]), MT.OCI_MANIFEST, 'm'), /not a schema 2 manifest/);
  });
  test('bytes that are not JSON, or nest deeper than MAX_JSON_DEPTH, are MANIFEST_INVALID naming what', () => {
    invalid(() => parseManifest(Buffer.from('{"schemaVersion":'), MT.OCI_MANIFEST, 'm'), /^m is not JSON/);
    invalid(() => parseManifest(deep(MAX_JSON_DEPTH + 1), MT.OCI_MANIFEST, 'm'), new RegExp(`^m is nested deeper than ${MAX_JSON_DEPTH} levels`));
  });
});

describe('parseManifest: an index', () => {
  const index = { schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests: [{ mediaType: MT.OCI_MANIFEST, digest: A, size: 3, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }] };
  test('its children, with their platforms', () => {
    assert.deepEqual(parseManifest(json(index), MT.OCI_INDEX, 'i'), {
      kind: 'index',
      children: [{ mediaType: MT.OCI_MANIFEST, digest: A, size: 3, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }],
    });
  });
  test('known by the type it was served as when the body names none, or by a manifests list without a config', () => {
    const { mediaType: _m, ...untyped } = index;
    assert.equal(parseManifest(json(untyped), MT.DOCKER_MANIFEST_LIST, 'i').kind, 'index');
    assert.equal(parseManifest(json(untyped), '', 'i').kind, 'index');
  });
  test('an index without manifests, or with a bad child, is refused', () => {
    invalid(() => parseManifest(json({ schemaVersion: 2, mediaType: MT.OCI_INDEX }), MT.OCI_INDEX, 'i'), /^i: an index without manifests$/);
    invalid(() => parseManifest(json({ ...index, manifests: [{ mediaType: MT.OCI_MANIFEST, digest: A }] }), MT.OCI_INDEX, 'i'), /^i: manifests\[0\]: invalid size undefined$/);
  });
});

describe('descriptor and tryDescriptor', () => {
  test('keep only string annotations and a whole platform', () => {
    assert.deepEqual(tryDescriptor({ mediaType: 'm', digest: A, size: 0, annotations: { a: 1 }, platform: { os: 'linux' }, artifactType: 't' }), { mediaType: 'm', digest: A, size: 0, artifactType: 't' });
  });
  test('sizes are non-negative safe integers', () => {
    for (const size of [1.5, -1, 2 ** 53, '1', null]) assert.equal(tryDescriptor({ mediaType: 'm', digest: A, size }), undefined, String(size));
  });
  test('descriptor throws MANIFEST_INVALID naming what; tryDescriptor answers undefined', () => {
    invalid(() => descriptor(null, 'referrer'), /^referrer: not a descriptor$/);
    assert.equal(tryDescriptor([]), undefined);
  });
  test('stringRecord: every value a string, else undefined', () => {
    assert.deepEqual(stringRecord({ a: 'b' }), { a: 'b' });
    assert.equal(stringRecord({ a: 'b', c: 1 }), undefined);
    assert.equal(stringRecord(['a']), undefined);
  });
});

describe('lenient readers: fields as written, for readers that judge each entry', () => {
  test('manifestObject: the JSON object, or undefined (not JSON, not an object, too deep)', () => {
    assert.deepEqual(manifestObject(json(image)), image);
    assert.equal(manifestObject(Buffer.from('nope')), undefined);
    assert.equal(manifestObject(json([1])), undefined);
    assert.equal(manifestObject(deep(MAX_JSON_DEPTH + 1)), undefined);
  });
  test('indexEntries: the manifests list as written; undefined without one; JsonRefused naming what when not JSON', () => {
    assert.deepEqual(indexEntries(json({ manifests: [1, { digest: A }] }), 'r'), [1, { digest: A }]);
    assert.equal(indexEntries(json({ manifests: {} }), 'r'), undefined);
    assert.equal(indexEntries('[]', 'r'), undefined);
    assert.throws(() => indexEntries('{', 'the referrers answer'), (e: unknown) => e instanceof JsonRefused && /^the referrers answer is not JSON/.test(e.message));
    assert.throws(() => indexEntries(deep(MAX_JSON_DEPTH + 1), 'r'), JsonRefused);
    assert.equal(tryIndexEntries('{'), undefined);
  });
  test('indexChildDigests: the valid digests an index lists', () => {
    assert.deepEqual(indexChildDigests(json({ manifests: [{ digest: A }, { digest: 'bad' }, null, 'x', { digest: B }] })), [A, B]);
    assert.deepEqual(indexChildDigests(json(image)), []);
    assert.deepEqual(indexChildDigests(Buffer.from('nope')), []);
  });
  test('imageBlobs: config and layers with a valid digest and size, media type or not', () => {
    const m = { config: { digest: A, size: 2 }, layers: [{ digest: B, size: 3 }, { digest: C, size: -1 }, { digest: 'x', size: 1 }, null] };
    assert.deepEqual(imageBlobs(json(m)), [{ digest: A, size: 2 }, { digest: B, size: 3 }]);
    assert.deepEqual(imageBlobs(json({ manifests: [{ digest: A, size: 1 }] })), []);
    assert.deepEqual(imageBlobs(Buffer.from('nope')), []);
  });
  test("configMediaType: the config's media type as written (an image's, a Flux artifact's); none for an index or bad bytes", () => {
    assert.equal(configMediaType(json(image)), MT.OCI_CONFIG);
    assert.equal(configMediaType(json({ ...image, config: { ...image.config, mediaType: 'application/vnd.cncf.flux.config.v1+json' } })), 'application/vnd.cncf.flux.config.v1+json');
    assert.equal(configMediaType(json({ manifests: [] })), undefined);
    assert.equal(configMediaType(json({ ...image, config: { digest: A, size: 2 } })), undefined);
    assert.equal(configMediaType(Buffer.from('nope')), undefined);
  });
});

test('referrerDescriptor: artifactType, else the config media type; the manifest annotations', () => {
  const m = parseManifest(json({ ...image, annotations: { a: 'b' } }), MT.OCI_MANIFEST, 'm');
  assert.equal(m.kind, 'image');
  if (m.kind !== 'image') return;
  assert.deepEqual(referrerDescriptor(C as `sha256:${string}`, MT.OCI_MANIFEST, 99, m), { mediaType: MT.OCI_MANIFEST, digest: C, size: 99, artifactType: MT.OCI_CONFIG, annotations: { a: 'b' } });
});

describe('platforms', () => {
  test('parsePlatform: os/architecture[/variant]', () => {
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    for (const bad of ['linux', 'linux/amd64/v8/x', 'linux//amd64', 'linux/am d64']) assert.equal(parsePlatform(bad), undefined, bad);
  });
  test('platformWanted: no list wants every child; a variant asked for must match', () => {
    const child = { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } };
    assert.equal(platformWanted(child, undefined), true);
    assert.equal(platformWanted({}, [{ os: 'linux', architecture: 'arm64' }]), false);
    assert.equal(platformWanted(child, [{ os: 'linux', architecture: 'arm64' }]), true);
    assert.equal(platformWanted(child, [{ os: 'linux', architecture: 'arm64', variant: 'v7' }]), false);
    assert.equal(platformText(child.platform), 'linux/arm64/v8');
  });
});
