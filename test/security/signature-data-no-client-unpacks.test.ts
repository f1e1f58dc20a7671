// Signature data passes enforce unverified only when no client could unpack or run it. The
// clients decode with Go: archive/tar accepts a header whose checksum is the *signed* byte sum
// (old Sun tar's), not only the unsigned one, and GNU tar does too. A JSON signature payload can
// be written so that its first 512 bytes are such a header: podman would unpack it as a layer.
// And encoding/json decodes a repeated key into the same field in turn: `"config":{"Cmd":…},
// "config":{}` keeps the Cmd (decoding {} or null into a struct leaves it), while JSON.parse sees
// only the last, empty one.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { repeatedKey } from '../../src/oci/json.js';
import { isSignatureArtifact } from '../../src/signatures/artifact.js';
import { hasTarHeader, signatureConfigProblem, signatureLayerProblem } from '../../src/signatures/artifact-content.js';
import { startPodman, type PodmanHandle } from '../helpers/podman.js';
import { pushBlob, pushManifest } from '../helpers/push.js';
import { cosignPayload } from '../helpers/signer.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { sha256 } from '../helpers/digest.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const TAR_BLOCK = 512;
const TEST_TIMEOUT_MS = 90_000;

/**
 * A cosign simple signing payload (valid JSON, every key where it belongs) whose first block is a
 * V7 tar header of one regular file holding `content`, checksummed the way `checksum` says. The
 * header sits inside a string of "optional"; the file name cleans to `sigil-polyglot`.
 */
function tarShapedPayload(content: Buffer, checksum: 'signed' | 'unsigned'): Buffer {
  const head = '{"optional":{"n":"/';
  const target = '../sigil-polyglot';
  const name = head + './'.repeat(Math.floor((100 - head.length - target.length) / 2)) + target;
  const hdr = Buffer.alloc(TAR_BLOCK, 'a');
  hdr.write(name.padEnd(100, '/'), 0, 'latin1');
  hdr.write('0000755 ', 100, 'latin1'); // mode
  hdr.write('0000000 ', 108, 'latin1'); // uid
  hdr.write('0000000 ', 116, 'latin1'); // gid
  hdr.write(`${content.length.toString(8).padStart(11, '0')} `, 124, 'latin1'); // size
  hdr.write('00000000000 ', 136, 'latin1'); // mtime
  hdr.write('        ', 148, 'latin1'); // checksum, counted as spaces
  hdr.write('0', 156, 'latin1'); // typeflag: regular file
  Buffer.from('éééé', 'utf8').copy(hdr, 200); // bytes >= 0x80: the signed and unsigned sums differ
  let unsigned = 0;
  let signed = 0;
  for (const b of hdr) {
    unsigned += b;
    signed += b >= 0x80 ? b - 256 : b;
  }
  hdr.write(`${(checksum === 'signed' ? signed : unsigned).toString(8).padStart(7, '0')} `, 148, 'latin1');
  const tail = Buffer.from(
    `"},"critical":{"identity":{"docker-reference":"reg.test/app"},"image":{"docker-manifest-digest":"sha256:${'c'.repeat(64)}"},"type":"cosign container image signature"}}`,
  );
  const body = Buffer.concat([hdr, content, tail]);
  // Padded with JSON whitespace to whole blocks: the archive ends cleanly where the bytes end.
  return Buffer.concat([body, Buffer.alloc((TAR_BLOCK - (body.length % TAR_BLOCK)) % TAR_BLOCK, ' ')]);
}

describe('a signature payload that is also a tar archive is not signature data', () => {
  test('it parses as a simple signing payload', () => {
    const bytes = tarShapedPayload(Buffer.from('#!/bin/sh echo pwned'), 'signed');
    assert.equal(typeof JSON.parse(bytes.toString('utf8')), 'object');
  });

  for (const checksum of ['unsigned', 'signed'] as const) {
    test(`a first block whose tar checksum is the ${checksum} byte sum is a tar header`, () => {
      const bytes = tarShapedPayload(Buffer.from('#!/bin/sh echo pwned'), checksum);
      assert.ok(hasTarHeader(bytes));
      assert.match(signatureLayerProblem(SIMPLE_SIGNING, bytes)!, /tar header/);
    });
  }
});

/** A cosign config (go-containerregistry's empty image) whose `config` key comes twice: a process, then `last`. */
function configRepeating(last: string, diffIds: string[]): Buffer {
  const rest = `"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":${JSON.stringify(diffIds)}}`;
  return Buffer.from(`{${rest},"config":{"Entrypoint":["/sigil-polyglot"],"Cmd":["pwned"]},"config":${last}}`);
}

describe('a signature artifact is judged as Go clients decode it: no key may come twice', () => {
  test('repeated keys are found as encoding/json folds them, and only in the same object', () => {
    assert.equal(repeatedKey('{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}'), undefined);
    assert.equal(repeatedKey(JSON.stringify({ a: '{\\"a\\":1,"a":[', b: '\\' })), undefined); // braces, quotes and escapes inside strings
    assert.equal(repeatedKey('{"a":"unterminated'), undefined);
    assert.equal(repeatedKey('{"config":{},"config":null}'), 'config');
    assert.equal(repeatedKey('{"config":{},"Config":{}}'), 'Config');
    assert.equal(repeatedKey('{"x":{"cmd":1,"\\u0043md":2}}'), 'Cmd');
    assert.equal(repeatedKey('{"os":"","\\u017fizes":1,"sizes":2}'), 'sizes'); // ſ folds to s
  });

  for (const last of ['{}', 'null']) {
    test(`a config that sets a process and then "config":${last} configures a process to run`, () => {
      assert.match(signatureConfigProblem(OCI_CONFIG, configRepeating(last, []))!, /repeats the key "config"/);
    });
  }

  test('a manifest that repeats a key is not shaped like a signature artifact', () => {
    const d = { mediaType: SIMPLE_SIGNING, digest: `sha256:${'d'.repeat(64)}`, size: 10 };
    const config = JSON.stringify({ mediaType: OCI_CONFIG, digest: `sha256:${'e'.repeat(64)}`, size: 2 });
    const good = `{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":${config},"layers":${JSON.stringify([d])}}`;
    assert.ok(isSignatureArtifact(OCI_MANIFEST, Buffer.from(good)));
    assert.ok(!isSignatureArtifact(OCI_MANIFEST, Buffer.from(good.replace('"layers"', `"config":${config},"layers"`))));
  });
});

describe('podman 4.3 pulling through sigil under enforce', () => {
  let env: VerifyEnv;
  let sigil: SigilHandle;
  let podman: PodmanHandle;

  before(async () => {
    env = await startVerifyEnv();
    sigil = await env.sigil(`
  - name: enforced
    match: ["${UPSTREAM}/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
`);
    podman = await startPodman();
  });
  after(async () => {
    await podman?.stop();
    await env?.stop();
  });

  test('cannot pull an artifact whose signature payload is a tar with the signed checksum', { timeout: TEST_TIMEOUT_MS }, async () => {
    const repo = 'polyglot/signed-sum';
    const layer = tarShapedPayload(Buffer.from('#!/bin/sh echo pwned'), 'signed');
    const config = Buffer.from(
      JSON.stringify({ architecture: '', created: '0001-01-01T00:00:00Z', history: [{ created: '0001-01-01T00:00:00Z' }], os: '', rootfs: { type: 'layers', diff_ids: [sha256(layer)] }, config: {} }),
    );
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: await pushBlob(env.target, repo, config), size: config.length },
      layers: [{ mediaType: SIMPLE_SIGNING, digest: await pushBlob(env.target, repo, layer), size: layer.length }],
    };
    await pushManifest(env.target, repo, 'v1', Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST);
    assert.equal((await pull(sigil, repo, 'v1')).status, 403);
    const res = await podman.pull(`${sigil.host}/${repo}:v1`);
    assert.notEqual(res.code, 0, `podman unpacked the payload as a layer through sigil under enforce:\n${res.stdout}${res.stderr}`);
  });

  test('an artifact whose config hides a process under a repeated key is verified like an image (denied)', async () => {
    const repo = 'polyglot/repeated-config';
    const layer = cosignPayload(`sha256:${'f'.repeat(64)}`, 'reg.test/app');
    const config = configRepeating('{}', [sha256(layer)]);
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: await pushBlob(env.target, repo, config), size: config.length },
      layers: [{ mediaType: SIMPLE_SIGNING, digest: await pushBlob(env.target, repo, layer), size: layer.length }],
    };
    await pushManifest(env.target, repo, 'v1', Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST);
    const r = await pull(sigil, repo, 'v1');
    assert.equal(r.status, 403, `served with Sigil-Verification: ${String(r.headers['sigil-verification'])}`);
  });
});
