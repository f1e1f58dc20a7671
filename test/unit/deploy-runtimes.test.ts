// The client-side configurations: config/crio/** and config/podman/** (registries.conf v2,
// policy.json), config/docker/daemon.json and config/kind/certs.d/_default/hosts.toml. Read
// with a small TOML reader (the subset these files use) and checked for the one property
// that matters, that sigil is the only place an image comes from; then used for real:
// skopeo (containers/image, as CRI-O and podman) with the shipped registries.conf and
// policy.json pulls through a running sigil, is refused when sigil refuses, and cannot reach
// a registry that is not remapped; containerd 1.6 with kind's hosts.toml pulls through sigil
// and fails closed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigFromText } from '../../src/config/load.js';
import { runCommand, startContainerd, type CmdResult, type ContainerdHandle } from '../helpers/containerd.js';
import { tempDir } from '../helpers/temp.js';
import { makeLayer, pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { SKOPEO_BIN } from '../helpers/skopeo.js';
import { selfSignedCert } from '../helpers/tls.js';
import { isTable, isTableArray, parseToml, type TomlTable, type TomlValue } from '../helpers/toml.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const PLACEHOLDER_HOST = 'sigil.example:5000';
const KIND_SIGIL_URL = 'http://sigil:5000';
const SKOPEO_TIMEOUT_MS = 60_000; // images of a few KiB; a hang must fail the test, not the suite
const PULL_TIMEOUT_MS = 30_000;
const REGISTRIES_CONF = {
  crio: 'config/crio/registries.conf.d/50-sigil.conf',
  podman: 'config/podman/registries.conf',
} as const;


// --- the files -----------------------------------------------------------------------------

const readText = (rel: string): Promise<string> => readFile(join(ROOT, rel), 'utf8');
const defaultConfig = await loadConfigFromText(await readText('config/sigil.yaml'), { source: 'config/sigil.yaml', env: {}, baseDir: ROOT });
assert.ok(defaultConfig.ok);
const UPSTREAM_NAMES = defaultConfig.config.upstreams.map((u) => u.name);

/** What a registries.conf must say: each [[registry]] remapped to sigil, no mirror, TLS. */
function checkRegistriesConf(text: string, sigilHost: string): string[] {
  const toml = parseToml(text);
  for (const k of Object.keys(toml)) assert.ok(['registry', 'unqualified-search-registries', 'short-name-mode'].includes(k), `unexpected top-level key ${k}`);
  const registries = toml.registry;
  assert.ok(isTableArray(registries) && registries.length > 0, '[[registry]] entries');
  for (const r of registries) {
    assert.deepEqual(Object.keys(r).sort(), ['insecure', 'location', 'prefix'], `${String(r.prefix)}: no mirror, no other setting`);
    assert.equal(r.location, `${sigilHost}/${String(r.prefix)}`, 'location remapped to the path under sigil named after the registry');
    assert.equal(r.insecure, false);
  }
  return registries.map((r) => r.prefix as string);
}

describe('the TOML reader', () => {
  test('reads tables, arrays of tables, strings, booleans, integers and string arrays; refuses the rest', () => {
    assert.deepEqual(parseToml('a = "x" # c\n[[r]]\np = "1"\n[[r.m]]\nl = "2"\n[[r]]\np = "3"\nb = true\nn = 5\n[t."q.z"]\ns = ["a", "b"]\n'), {
      a: 'x',
      r: [{ p: '1', m: [{ l: '2' }] }, { p: '3', b: true, n: 5 }],
      t: { 'q.z': { s: ['a', 'b'] } },
    });
    for (const bad of ['a = b', 'a = "x"\na = "y"', '[t\n', 'a = "open', 'a = [1, 2]', 'a = 1.5', 'x.y = "z"', '[[a]]\n[a.b]\nc = 1\n[a]\n']) {
      assert.throws(() => parseToml(bad), Error, bad);
    }
  });
});

describe('client configuration files', () => {
  for (const [who, file] of Object.entries(REGISTRIES_CONF)) {
    test(`${who}: ${file} remaps every upstream of the default config to sigil, with no mirror and so no fallback`, async () => {
      const text = await readText(file);
      const prefixes = checkRegistriesConf(text, PLACEHOLDER_HOST);
      assert.deepEqual([...prefixes].sort(), [...UPSTREAM_NAMES].sort(), 'one [[registry]] per upstream sigil is configured with');
      assert.match(text, /\bfalls? back\b|\bfallback\b/, 'the comment says why not a mirror');
      assert.match(text, /403/);
      const toml = parseToml(text);
      if (toml['unqualified-search-registries'] !== undefined) {
        for (const r of toml['unqualified-search-registries'] as string[]) assert.ok(prefixes.includes(r), `short names resolve to ${r}, which must go through sigil`);
      }
    });
  }

  test('policy.json (both copies): reject every registry that is not remapped; accept the remapped ones and sigil', async () => {
    const crio = await readText('config/crio/policy.json');
    assert.equal(await readText('config/podman/policy.json'), crio);
    const policy = JSON.parse(crio) as { default: unknown; transports: { docker: Record<string, unknown> } };
    assert.deepEqual(policy.default, [{ type: 'insecureAcceptAnything' }], 'other transports (containers-storage, archives) untouched');
    const docker = policy.transports.docker;
    assert.deepEqual(docker[''], [{ type: 'reject' }]);
    const prefixes = checkRegistriesConf(await readText(REGISTRIES_CONF.crio), PLACEHOLDER_HOST);
    assert.deepEqual(Object.keys(docker).filter((k) => k !== '').sort(), [...prefixes, PLACEHOLDER_HOST].sort());
    for (const k of Object.keys(docker).filter((x) => x !== '')) assert.deepEqual(docker[k], [{ type: 'insecureAcceptAnything' }], k);
  });

  test('Docker daemon.json: a registry mirror for Docker Hub, with the note that Docker falls back and cannot enforce', async () => {
    const daemon = JSON.parse(await readText('config/docker/daemon.json')) as Record<string, unknown>;
    assert.deepEqual(daemon, { 'registry-mirrors': [`https://${PLACEHOLDER_HOST}`] });
    assert.equal(defaultConfig.ok && defaultConfig.config.defaultUpstream, 'docker.io', 'Docker sends mirror pulls without a registry name');
    const note = await readText('config/docker/README.md');
    assert.match(note, /cannot enforce/i);
    assert.match(note, /Docker Hub itself/);
  });

  test('kind: certs.d/_default/hosts.toml names sigil as server and only host', async () => {
    assert.deepEqual(await readdir(join(ROOT, 'config/kind/certs.d')), ['_default']);
    const toml = parseToml(await readText('config/kind/certs.d/_default/hosts.toml'));
    assert.deepEqual(Object.keys(toml).sort(), ['host', 'server']);
    assert.equal(toml.server, KIND_SIGIL_URL);
    assert.ok(isTable(toml.host));
    assert.deepEqual(Object.keys(toml.host), [KIND_SIGIL_URL]);
    assert.deepEqual(toml.host[KIND_SIGIL_URL], { capabilities: ['pull', 'resolve'] });
  });
});

describe('with real clients and a running sigil', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let tlsSigil: SigilHandle;
  let plainSigil: SigilHandle;
  let ctd: ContainerdHandle;
  let dir: string;
  let caDir: string;

  before(async () => {
    dir = await tempDir('sigil-deploy-clients-');
    [registry, ctd] = await Promise.all([startRegistry(), startContainerd()]);
    const { certPath, keyPath } = await selfSignedCert(dir);
    caDir = join(dir, 'ca');
    await mkdir(caDir);
    await copyFile(certPath, join(caDir, 'ca.crt')); // containers/image reads *.crt in a cert dir as CAs
    // every upstream of the default config, all served by the one local registry
    const yaml = (tls: string): string => `server:
  listen: 127.0.0.1:0
  logLevel: info
${tls}upstreams:
${UPSTREAM_NAMES.map((n) => `  - name: "${n}"\n    url: ${registry.url}\n`).join('')}defaultUpstream: docker.io
policies:
  - name: secure
    match: ["docker.io/library/secure"]
    mode: enforce
    authorities:
      - keyless: { issuerRegExp: '^https://issuer\\.example$', subjectRegExp: '^https://github\\.com/acme/.+$' }
  - name: everything-else
    match: ["**"]
    mode: warn
    authorities:
      - keyless: { issuerRegExp: '^https://issuer\\.example$', subjectRegExp: '^https://github\\.com/acme/.+$' }
`;
    tlsSigil = await startSigil(yaml(`  tls: { cert: ${certPath}, key: ${keyPath} }\n`));
    plainSigil = await startSigil(yaml(''));
    await pushImage(registry, 'library/allowed', '1', { layers: [makeLayer(Buffer.from('allowed\n'), 'etc/example').blob] });
    await pushImage(registry, 'library/secure', '1');
    await pushImage(registry, 'acme/tool', 'v1', { layers: [makeLayer(Buffer.from('tool\n'), 'etc/example').blob] });
  });

  after(async () => {
    await tlsSigil?.stop();
    await plainSigil?.stop();
    await Promise.all([ctd?.stop(), registry?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  const requests = (s: SigilHandle, from: number): string[] =>
    s.logs.slice(from).flatMap((l) => {
      const req = (l as { req?: { method?: string; url?: string } }).req;
      return req?.url ? [`${req.method} ${req.url}`] : [];
    });

  /** `skopeo copy SRC dir:...` with the given registries.conf and policy.json, nothing else from the machine. */
  async function skopeoCopy(src: string, files: { registriesConf: string; policy: string }, extra: string[] = []): Promise<CmdResult> {
    const cfg = await mkdtemp(join(dir, 'skopeo-'));
    try {
      await Promise.all([
        writeFile(join(cfg, 'registries.conf'), files.registriesConf),
        writeFile(join(cfg, 'policy.json'), files.policy),
        writeFile(join(cfg, 'auth.json'), '{}'),
        mkdir(join(cfg, 'registries.d')),
        mkdir(join(cfg, 'tmp')),
        mkdir(join(cfg, 'home')),
      ]);
      const args = [
        '--registries-conf', join(cfg, 'registries.conf'), // hidden flag of skopeo 1.9
        '--policy', join(cfg, 'policy.json'),
        '--registries.d', join(cfg, 'registries.d'),
        '--tmpdir', join(cfg, 'tmp'),
        'copy', '--src-authfile', join(cfg, 'auth.json'), ...extra, src, `dir:${join(cfg, 'out')}`,
      ];
      const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: join(cfg, 'home'), TMPDIR: join(cfg, 'tmp') };
      return await runCommand(SKOPEO_BIN, args, SKOPEO_TIMEOUT_MS, env);
    } finally {
      await rm(cfg, { recursive: true, force: true });
    }
  }

  const shipped = async (): Promise<{ registriesConf: string; policy: string }> => ({
    registriesConf: (await readText(REGISTRIES_CONF.crio)).replaceAll(PLACEHOLDER_HOST, tlsSigil.host),
    policy: (await readText('config/crio/policy.json')).replaceAll(PLACEHOLDER_HOST, tlsSigil.host),
  });

  test('skopeo with the shipped registries.conf: docker.io/library/allowed:1 comes through sigil, under sigil\'s path for docker.io', async () => {
    const files = await shipped();
    checkRegistriesConf(files.registriesConf, tlsSigil.host);
    const from = tlsSigil.logs.length;
    const res = await skopeoCopy('docker://docker.io/library/allowed:1', files, ['--src-cert-dir', caDir]);
    assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
    const seen = requests(tlsSigil, from);
    assert.ok(seen.includes('GET /v2/docker.io/library/allowed/manifests/1'), seen.join('\n'));
  });

  test('skopeo with the shipped registries.conf fails closed: sigil\'s 403 is final, nothing else is tried', async () => {
    const from = tlsSigil.logs.length;
    const res = await skopeoCopy('docker://docker.io/library/secure:1', await shipped(), ['--src-cert-dir', caDir]);
    assert.notEqual(res.code, 0, res.stdout);
    assert.match(res.stderr, /denied/i);
    assert.match(res.stderr, new RegExp(tlsSigil.host.replace(/\./g, '\\.')));
    assert.doesNotMatch(res.stderr, /Mirrors also failed|registry-1\.docker\.io/, 'no second source');
    assert.ok(requests(tlsSigil, from).some((r) => r.startsWith('GET /v2/docker.io/library/secure/manifests/1')));
  });

  test('skopeo with the shipped policy.json: a registry that is not remapped is rejected, though it serves the image', async () => {
    const direct = `docker://${registry.host}/library/allowed:1`;
    const open = await skopeoCopy(direct, { ...(await shipped()), policy: JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }) }, ['--src-tls-verify=false']);
    assert.equal(open.code, 0, `the image is there: ${open.stderr}`);
    const res = await skopeoCopy(direct, await shipped(), ['--src-tls-verify=false']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /rejected by policy/i);
  });

  /** Installs kind's _default/hosts.toml, pointed at the plain-HTTP sigil, as containerd's only hosts file. */
  const installKindHosts = async (): Promise<void> => {
    for (const d of await readdir(ctd.hostsDir)) await rm(join(ctd.hostsDir, d), { recursive: true, force: true });
    const text = (await readText('config/kind/certs.d/_default/hosts.toml')).replaceAll(KIND_SIGIL_URL, plainSigil.url);
    await mkdir(join(ctd.hostsDir, '_default'));
    await writeFile(join(ctd.hostsDir, '_default', 'hosts.toml'), text);
  };

  test('containerd with kind\'s _default/hosts.toml pulls quay.io/acme/tool:v1 through sigil (ns=quay.io)', async () => {
    await installKindHosts();
    const from = plainSigil.logs.length;
    const res = await ctd.pull('quay.io/acme/tool:v1', { timeoutMs: PULL_TIMEOUT_MS });
    assert.doesNotMatch(res.stderr, /failed to decode hosts\.toml/);
    assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
    assert.equal((await ctd.readUnpackedFile('quay.io/acme/tool:v1', 'etc/example')).toString(), 'tool\n');
    assert.equal(requests(plainSigil, from)[0], 'HEAD /v2/acme/tool/manifests/v1?ns=quay.io');
  });

  test('containerd with kind\'s _default/hosts.toml fails closed: a denied image is not pulled from anywhere else', async () => {
    await installKindHosts();
    const from = plainSigil.logs.length;
    const res = await ctd.pull('docker.io/library/secure:1', { timeoutMs: PULL_TIMEOUT_MS });
    assert.notEqual(res.code, 0, res.stdout);
    assert.match(res.stderr, /403 sigil: no signature found \(policy secure\)/);
    assert.ok(!(await ctd.images()).includes('docker.io/library/secure:1'));
    const seen = requests(plainSigil, from);
    assert.ok(seen.length > 0 && seen.every((r) => r === 'HEAD /v2/library/secure/manifests/1?ns=docker.io'), seen.join('\n'));
  });
});
