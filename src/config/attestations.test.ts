import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BASE_DOC as BASE, configLoader, type Doc } from '../../test/helpers/config-load.js';

// Attestations read no file: paths would resolve from /.
const { load, patched, okConfig, rejects } = configLoader(() => '/');

describe('attestations (policies[].attestations)', () => {
  const SLSA = 'https://slsa.dev/provenance/v1';
  const withAttestations = (attestations: unknown): Doc => patched((d) => { d.policies[0].attestations = attestations; });
  const at = 'policies[0].attestations';

  test('compile with their name, predicate type(s) and condition (default true)', async () => {
    const c = okConfig(await load(withAttestations([
      { name: 'built-by-our-ci', predicateType: SLSA, condition: 'predicate.runDetails.builder.id.startsWith("https://github.com/acme/")\n' },
      { name: 'sbom', predicateType: ['https://spdx.dev/Document', 'https://cyclonedx.org/bom'] },
    ])));
    const [slsa, sbom] = c.policies[0].attestations ?? [];
    assert.deepEqual([slsa.name, slsa.predicateTypes, slsa.condition.text], ['built-by-our-ci', [SLSA], 'predicate.runDetails.builder.id.startsWith("https://github.com/acme/")']);
    assert.deepEqual([sbom.name, sbom.predicateTypes, sbom.condition.text], ['sbom', ['https://spdx.dev/Document', 'https://cyclonedx.org/bom'], 'true']);
  });

  test('a policy without them has none', async () => {
    assert.equal(okConfig(await load(BASE)).policies[0].attestations?.length ?? 0, 0);
  });

  test('each problem is an error at its YAML path', async () => {
    await rejects(withAttestations([{ name: 'a', predicateType: SLSA, condition: 'predicate.( ==' }]), `${at}[0].condition`, /^is not a valid CEL expression: at 1:/);
    await rejects(withAttestations([{ name: 'a', predicateType: SLSA, condition: 'predicat.x == 1' }]), `${at}[0].condition`, /^unknown name "predicat"/);
    await rejects(withAttestations([{ name: 'a', predicateType: SLSA, condition: 'size(predicate.materials)' }]), `${at}[0].condition`, /^gives an int, not a bool/);
    await rejects(withAttestations([{ name: 'a', predicateType: SLSA, condition: 1 }]), `${at}[0].condition`, /must be a string/);
    await rejects(withAttestations([{ predicateType: SLSA }]), `${at}[0].name`, /is required/);
    await rejects(withAttestations([{ name: 'a' }]), `${at}[0].predicateType`, /is required/);
    await rejects(withAttestations([{ name: 'a', predicateType: [] }]), `${at}[0].predicateType`, /at least one predicate type/);
    await rejects(withAttestations([{ name: 'a', predicateType: [SLSA, 2] }]), `${at}[0].predicateType[1]`, /must be a string/);
    await rejects(withAttestations([{ name: 'a', predicateType: SLSA, conditions: 'true' }]), `${at}[0].conditions`, /unknown key/);
    await rejects(withAttestations([{ name: 'a', predicateType: SLSA }, { name: 'a', predicateType: SLSA }]), `${at}[1].name`, /duplicate attestation name "a" \(also policies\[0\]\.attestations\[0\]\)/);
    await rejects(withAttestations([]), at, /at least one attestation/);
    await rejects(withAttestations({ name: 'a' }), at, /must be a list/);
  });

  test('a predicate type that is not a URI (cosign\'s short names) is a warning at its path: it matches no statement', async () => {
    const r = await load(withAttestations([{ name: 'a', predicateType: 'slsaprovenance' }, { name: 'b', predicateType: [SLSA, 'spdxjson'] }]));
    assert.ok(r.ok);
    assert.deepEqual(r.warnings.map((w) => w.path), [`${at}[0].predicateType`, `${at}[1].predicateType[1]`]);
    assert.match(r.warnings[0].message, /^"slsaprovenance" is not a URI, .* matches no attestation$/);
    const uri = await load(withAttestations([{ name: 'a', predicateType: SLSA }]));
    assert.ok(uri.ok);
    assert.deepEqual(uri.warnings, []);
  });

  test('the policy fingerprint covers them: no verdict is reused across a change of requirement or condition', async () => {
    const fp = async (attestations?: unknown): Promise<string> => okConfig(await load(attestations === undefined ? BASE : withAttestations(attestations))).policies[0].fingerprint;
    const none = await fp();
    const one = await fp([{ name: 'a', predicateType: SLSA }]);
    assert.notEqual(one, none);
    assert.equal(await fp([{ name: 'a', predicateType: SLSA, condition: 'true' }]), one, 'the default written out');
    const others = [
      await fp([{ name: 'a', predicateType: SLSA, condition: 'predicate.x == "1"' }]),
      await fp([{ name: 'a', predicateType: SLSA, condition: 'predicate.x == "2"' }]),
      await fp([{ name: 'a', predicateType: [SLSA, 'https://slsa.dev/provenance/v0.2'] }]),
      await fp([{ name: 'a', predicateType: SLSA }, { name: 'b', predicateType: 'https://spdx.dev/Document' }]),
    ];
    assert.equal(new Set([none, one, ...others]).size, 6);
  });
});
