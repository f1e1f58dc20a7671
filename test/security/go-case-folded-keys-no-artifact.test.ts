// Signature-artifact detection (src/signatures/artifact.ts) reads the
// manifest with JSON.parse, which is case-sensitive, while every Go client (containerd, Docker,
// CRI-O, skopeo, and distribution itself) decodes it with encoding/json, which matches object
// keys to struct fields CASE-INSENSITIVELY (also folding U+017F "ſ" to "s" and U+212A "K" to
// "k") and lets the later key win. A manifest with `"layers": [<cosign simple-signing layer>]`
// followed by `"Layers": [<real tar+gzip layer>]` is a "signature artifact" to sigil (served as
// `skipped` even in enforce mode) and a runnable image to containerd. The same works inside one
// descriptor: `"mediaType": <signature type>, "MediaType": <tar+gzip>`.
//
// These tests push such manifests to a real docker-registry (which accepts them: it is Go, too)
// and pull them through sigil in enforce mode; the containerd test proves the unsigned layer is
// unpacked. Expected: 403 POLICY_DENIED / the pull fails.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startContainerd, type ContainerdHandle } from '../helpers/containerd.js';
import { makeLayer, pushBlob, pushManifest } from '../helpers/push.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const TEST_TIMEOUT_MS = 60_000;
const PULL_TIMEOUT_MS = 30_000;

let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  sigil = await env.sigil(`
  - name: enforced
    match: ["${UPSTREAM}/cf/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
`);
});
after(async () => {
  await env?.stop();
});

/** An unsigned runnable image whose manifest also carries a decoy, lower-case `layers` list of one signature layer. */
async function pushShadowedLayers(repo: string, tag: string): Promise<{ digest: string; layerDigest: string }> {
  const img = await env.push(repo, `${tag}-base`, { layers: [makeLayer(Buffer.from('unsigned code\n'), 'etc/evil').blob] });
  const decoy = Buffer.from('{}');
  const decoyDigest = await pushBlob(env.target, repo, decoy);
  // JSON.parse keeps both keys apart and sigil reads `layers`; Go's encoding/json assigns both to
  // the Layers field, the later one winning.
  const text = `{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}",` +
    `"config":{"mediaType":"${OCI_CONFIG}","digest":"${img.config.digest}","size":${img.config.size}},` +
    `"layers":[{"mediaType":"${SIMPLE_SIGNING}","digest":"${decoyDigest}","size":${decoy.length}}],` +
    `"Layers":${JSON.stringify(img.layers)}}`;
  const digest = await pushManifest(env.target, repo, tag, Buffer.from(text), OCI_MANIFEST);
  return { digest, layerDigest: img.layers[0].digest };
}

/** The same, inside one descriptor: `mediaType` says signature, `MediaType` (later) says tar+gzip. */
async function pushShadowedMediaType(repo: string, tag: string): Promise<string> {
  const img = await env.push(repo, `${tag}-base`, { layers: [makeLayer(Buffer.from('unsigned code\n'), 'etc/evil').blob] });
  const l = img.layers[0];
  const text = `{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}",` +
    `"config":{"mediaType":"${OCI_CONFIG}","digest":"${img.config.digest}","size":${img.config.size}},` +
    `"layers":[{"mediaType":"${SIMPLE_SIGNING}","digest":"${l.digest}","size":${l.size},"MediaType":"${l.mediaType}"}]}`;
  return pushManifest(env.target, repo, tag, Buffer.from(text), OCI_MANIFEST);
}

describe('case-insensitive JSON keys (Go) vs JSON.parse (sigil) in signature-artifact detection', () => {
  test('a shadowing "Layers" list makes an unsigned image pass enforce as a signature artifact', async () => {
    await pushShadowedLayers('cf/layers', 'v1');
    const r = await pull(sigil, 'cf/layers', 'v1');
    assert.equal(r.status, 403, `served with Sigil-Verification: ${String(r.headers['sigil-verification'])}`);
  });

  test('a shadowing "MediaType" in a layer descriptor makes an unsigned image pass enforce', async () => {
    await pushShadowedMediaType('cf/mediatype', 'v1');
    const r = await pull(sigil, 'cf/mediatype', 'v1');
    assert.equal(r.status, 403, `served with Sigil-Verification: ${String(r.headers['sigil-verification'])}`);
  });

  describe('with containerd 1.6 behind sigil (sigil the only host)', () => {
    let ctd: ContainerdHandle;
    before(async () => {
      ctd = await startContainerd();
    });
    after(async () => {
      await ctd?.stop();
    });

    test('containerd pulls and UNPACKS the unsigned layer of a "Layers"-shadowed manifest under an enforce policy', { timeout: TEST_TIMEOUT_MS }, async () => {
      await pushShadowedLayers('cf/ctd', 'v1');
      await ctd.writeHosts(UPSTREAM, `server = "${sigil.url}"\n\n[host."${sigil.url}"]\n  capabilities = ["pull", "resolve"]\n`);
      const ref = `${UPSTREAM}/cf/ctd:v1`;
      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      const unpacked = res.code === 0 ? (await ctd.readUnpackedFile(ref, 'etc/evil')).toString() : '';
      assert.notEqual(res.code, 0, `enforce let containerd pull and unpack an unsigned image; /etc/evil = ${JSON.stringify(unpacked)}\n${res.stdout}`);
    });
  });
});
