// A manifest passes enforce unverified as a signature artifact only when its bytes prove it is
// one: every layer parses as the signature data its media type names (not a tar, not compressed)
// and its config configures nothing to run. The label alone proves nothing: containers/image
// (podman, CRI-O, skopeo) ignores unknown layer media types and sniffs compression from the bytes,
// so an image whose tar+gzip layers are labelled as cosign signatures is unpacked and run.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { hasTarHeader, signatureConfigProblem, signatureLayerProblem } from '../../src/signatures/artifact-content.js';
import { startPodman, type PodmanHandle } from '../helpers/podman.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { pushBlob, pushManifest, tarFile } from '../helpers/push.js';
import { cosignPayload, legacyLayer, sigTag } from '../helpers/signer.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { sha256 } from '../helpers/digest.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const DSSE = 'application/vnd.dsse.envelope.v1+json';
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const TEST_TIMEOUT_MS = 90_000;

const shell = Buffer.from('#!/bin/sh\necho pwned\n');
const runnableConfig = (diffIds: string[]) =>
  Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } }));

let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  sigil = await env.sigil(`
  - name: enforced
    match: ["${UPSTREAM}/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
`);
});
after(async () => {
  await env?.stop();
});

/** Pushes a manifest whose layers carry `layerType` over `layerBlobs`, with `config` (OCI config type). */
async function pushLabelled(repo: string, tag: string, layerBlobs: Buffer[], layerType: string, config: Buffer, configType = OCI_CONFIG): Promise<string> {
  const layers = [];
  for (const b of layerBlobs) layers.push({ mediaType: layerType, digest: await pushBlob(env.target, repo, b), size: b.length });
  const cfg = { mediaType: configType, digest: await pushBlob(env.target, repo, config), size: config.length };
  return pushManifest(env.target, repo, tag, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: cfg, layers })), OCI_MANIFEST);
}

/** An unsigned runnable image: a gzip tar with a shell script, labelled as a cosign signature layer. */
async function pushDisguised(repo: string, tag: string, layerType = SIMPLE_SIGNING): Promise<string> {
  const tar = tarFile('bin/sh', shell);
  return pushLabelled(repo, tag, [gzipSync(tar)], layerType, runnableConfig([sha256(tar)]));
}

describe('signature data is judged on its bytes', () => {
  test('a tar or gzip layer is not signature data, whatever its label', () => {
    const tar = tarFile('bin/sh', shell);
    assert.ok(hasTarHeader(tar));
    assert.match(signatureLayerProblem(SIMPLE_SIGNING, tar)!, /tar header/);
    assert.match(signatureLayerProblem(SIMPLE_SIGNING, gzipSync(tar))!, /not a JSON object/);
    assert.match(signatureLayerProblem(DSSE, gzipSync(tar))!, /not a JSON object/);
  });

  test('each kind of signature data must parse as its own kind', () => {
    const payload = cosignPayload(`sha256:${'a'.repeat(64)}`, 'reg.test/app');
    assert.equal(signatureLayerProblem(SIMPLE_SIGNING, payload), undefined);
    assert.match(signatureLayerProblem(DSSE, payload)!, /not a DSSE envelope/);
    assert.match(signatureLayerProblem(BUNDLE, payload)!, /not a Sigstore bundle/);
    assert.equal(signatureLayerProblem(DSSE, Buffer.from('{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}')), undefined);
    assert.match(signatureLayerProblem(SIMPLE_SIGNING, Buffer.from('{"critical":{},"x":1}'))!, /not a simple signing payload/);
  });

  test('a config that runs something is not a signature artifact config', () => {
    assert.match(signatureConfigProblem(OCI_CONFIG, runnableConfig([]))!, /configures a process to run/);
    assert.equal(signatureConfigProblem(OCI_EMPTY, Buffer.from('{}')), undefined);
    assert.match(signatureConfigProblem(OCI_EMPTY, Buffer.from('{"config":{}}'))!, /not \{\}/);
    assert.equal(signatureConfigProblem(OCI_CONFIG, Buffer.from('{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}')), undefined);
  });
});

describe('under enforce, a runnable image labelled as signature data is verified like any image', () => {
  for (const [what, type] of [['simple signing', SIMPLE_SIGNING], ['DSSE envelope', DSSE], ['Sigstore bundle', BUNDLE]] as const) {
    test(`tar+gzip layers labelled ${what} are denied`, async () => {
      await pushDisguised('disguised/label', what.replace(/ /g, '-'), type);
      const r = await pull(sigil, 'disguised/label', what.replace(/ /g, '-'));
      assert.equal(r.status, 403, `served with Sigil-Verification: ${String(r.headers['sigil-verification'])}`);
    });
  }

  test('signature-shaped JSON layers under a config that runs a process are denied', async () => {
    const payload = cosignPayload(`sha256:${'b'.repeat(64)}`, 'reg.test/app');
    await pushLabelled('disguised/config', 'v1', [payload], SIMPLE_SIGNING, runnableConfig([sha256(payload)]));
    const r = await pull(sigil, 'disguised/config', 'v1');
    assert.equal(r.status, 403);
  });

  test('a real .sig artifact still passes unverified, and its blobs are served as the checked bytes', async () => {
    const img = await env.push('sig/real', 'v1');
    const layer = legacyLayer(env.keys.p256, img.digest);
    await pushLegacySignature(env.target, 'sig/real', img.digest, [layer]);
    const r = await pull(sigil, 'sig/real', sigTag(img.digest));
    assert.equal(r.status, 200);
    assert.equal(r.headers['sigil-verification'], 'skipped');
    const doc = r.json<{ layers: Array<{ digest: string }> }>();
    const blob = await request(`${sigil.url}/v2/sig/real/blobs/${doc.layers[0].digest}`);
    assert.equal(blob.statusCode, 200);
    assert.deepEqual(Buffer.from(await blob.body.arrayBuffer()), layer.payload);
    // and the image it signs verifies
    assert.equal((await pull(sigil, 'sig/real', 'v1')).headers['sigil-verification'], 'verified');
  });

  describe('podman 4.3 pulling through sigil', () => {
    let podman: PodmanHandle;
    before(async () => {
      podman = await startPodman();
    });
    after(async () => {
      await podman?.stop();
    });

    test('pulls a validly signed image (the client works here)', { timeout: TEST_TIMEOUT_MS }, async () => {
      const img = await env.push('podman/signed', 'v1');
      await pushLegacySignature(env.target, 'podman/signed', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
      const res = await podman.pull(`${sigil.host}/podman/signed:v1`);
      assert.equal(res.code, 0, res.stderr);
    });

    test('cannot pull an unsigned runnable image whose layers are labelled as cosign signatures', { timeout: TEST_TIMEOUT_MS }, async () => {
      await pushDisguised('podman/disguised', 'v1');
      const res = await podman.pull(`${sigil.host}/podman/disguised:v1`);
      assert.notEqual(res.code, 0, `podman pulled the disguised image through sigil under enforce:\n${res.stdout}${res.stderr}`);
      assert.match(res.stderr, /403|denied|DENIED/i);
    });
  });
});
