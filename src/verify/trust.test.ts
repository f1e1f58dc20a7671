// Trust material: the shipped public-good root, unions of trusted_root.json
// files, the fingerprint that keys verdict caches, and load errors that name the file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultPublicGoodPath, loadTrust, PUBLIC_GOOD } from './trust.js';
import { tempDir } from '../../test/helpers/temp.js';
import { PGI_ROOT, PUBLIC_GOOD_ROOT, REAL, writePkiRoot } from '../../test/helpers/verify-fixtures.js';

const PROJECT = join(REAL, '..', '..', '..');
const opts = { publicGoodPath: PUBLIC_GOOD_ROOT };

describe('loadTrust', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('sigil-verify-trust');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('public-good: Fulcio CAs, Rekor v1 and v2 logs, CT logs, the TSA; SCT and log required', () => {
    const t = loadTrust([PUBLIC_GOOD], opts);
    assert.deepEqual(t.sources, [PUBLIC_GOOD]);
    assert.equal(t.material.certificateAuthorities.length, 2);
    assert.deepEqual(t.material.tlogs.map((l) => l.baseURL), ['https://rekor.sigstore.dev', 'https://log2025-1.rekor.sigstore.dev']);
    assert.equal(t.material.ctlogs.length, 2);
    assert.equal(t.material.timestampAuthorities.length, 1);
    assert.deepEqual(t.caProfiles.map((p) => [p.requireSct, p.requireTlog]), [[true, true]]);
    assert.match(t.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(defaultPublicGoodPath(), PUBLIC_GOOD_ROOT);
  });

  test('a union keeps every root; a bare-CA root forms its own profile with nothing required', async () => {
    const pki = await writePkiRoot(dir);
    const t = loadTrust([PUBLIC_GOOD, pki], opts);
    assert.equal(t.material.certificateAuthorities.length, 3);
    assert.equal(t.material.tlogs.length, 2);
    assert.deepEqual(t.caProfiles.map((p) => [p.requireSct, p.requireTlog, p.material.certificateAuthorities.length]), [[true, true, 2], [false, false, 1]]);
    // The bare-CA profile still verifies any log entry a signature brings, with the union's logs.
    assert.equal(t.caProfiles[1].material.tlogs.length, 2);
  });

  test('the fingerprint depends on content only: not on order, paths or duplicates, and changes with a root', async () => {
    const pki = await writePkiRoot(dir);
    const copy = join(dir, 'copy-of-public-good.json');
    await writeFile(copy, await readFile(PUBLIC_GOOD_ROOT));
    const a = loadTrust([PUBLIC_GOOD, pki], opts).fingerprint;
    assert.equal(loadTrust([pki, copy], opts).fingerprint, a);
    assert.equal(loadTrust([PUBLIC_GOOD, pki, copy], opts).fingerprint, a);
    assert.notEqual(loadTrust([PUBLIC_GOOD], opts).fingerprint, a);
    // trusted_root_pgi.json lacks the Rekor v2 log: a different root, a different fingerprint.
    assert.notEqual(loadTrust([PGI_ROOT], opts).fingerprint, loadTrust([PUBLIC_GOOD], opts).fingerprint);
  });

  test('errors name the file: missing, not JSON, not a trusted root, bad certificate, empty', async () => {
    const missing = join(dir, 'nope.json');
    assert.throws(() => loadTrust([missing], opts), (e: Error) => e.message.startsWith(`trusted root ${missing}: cannot read: `));
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{"mediaType": ');
    assert.throws(() => loadTrust([PUBLIC_GOOD, bad], opts), (e: Error) => e.message.startsWith(`trusted root ${bad} is not JSON: `));
    const other = join(dir, 'other.json');
    await writeFile(other, JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json' }));
    assert.throws(() => loadTrust([other], opts), { message: `trusted root ${other}: mediaType "application/vnd.oci.image.manifest.v1+json" is not a Sigstore trusted root` });
    const brokenCert = join(dir, 'broken-cert.json');
    const mediaType = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';
    await writeFile(brokenCert, JSON.stringify({ mediaType, tlogs: [], ctlogs: [], timestampAuthorities: [], certificateAuthorities: [{ certChain: { certificates: [{ rawBytes: 'AAAA' }] } }] }));
    assert.throws(() => loadTrust([brokenCert], opts), (e: Error) => e.message.startsWith(`trusted root ${brokenCert}: invalid trusted root: `));
    const empty = join(dir, 'empty.json');
    await writeFile(empty, JSON.stringify({ mediaType, tlogs: [], ctlogs: [], timestampAuthorities: [], certificateAuthorities: [] }));
    assert.throws(() => loadTrust([empty], opts), { message: `trusted root ${empty}: lists no certificate authority, transparency log, CT log or timestamp authority` });
    assert.throws(() => loadTrust([PUBLIC_GOOD], { publicGoodPath: missing }), (e: Error) => e.message.startsWith(`trusted root public-good (${missing}): cannot read`));
    assert.throws(() => loadTrust([], opts), { message: 'no trusted root configured' });
  });
});

describe('assets/public-good/trusted_root.json', () => {
  test('is the trusted_root.json target of @sigstore/tuf\'s seeds (scripts/build-trust.mjs --check)', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [join(PROJECT, 'scripts', 'build-trust.mjs'), '--check'], { cwd: PROJECT });
    assert.match(stdout, /is up to date \(sha256 [0-9a-f]{64}\)/);
  });

  test('build-trust.mjs writes the same bytes to --out, and --check reports a stale copy', async () => {
    const dir = await tempDir('sigil-build-trust');
    try {
      const run = promisify(execFile);
      const out = join(dir, 'root.json');
      await run(process.execPath, [join(PROJECT, 'scripts', 'build-trust.mjs'), '--out', out]);
      assert.deepEqual(await readFile(out), await readFile(PUBLIC_GOOD_ROOT));
      await writeFile(out, '{}');
      await assert.rejects(run(process.execPath, [join(PROJECT, 'scripts', 'build-trust.mjs'), '--out', out, '--check']), (e: { code?: number; stderr?: string }) =>
        e.code === 1 && /differs from trusted_root\.json/.test(e.stderr ?? ''));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
