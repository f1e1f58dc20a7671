// The example containerd hosts.toml files in config/containerd/** are what operators copy:
// they must parse, name sigil as the only host, and really work with containerd 1.6 (each
// is installed into a private containerd's hosts dir, with the placeholder URL replaced by a
// running sigil's, and a pull goes through it). They must also fail closed: an image sigil
// denies is not fetched from anywhere else.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { startContainerd } from '../helpers/containerd.js';
import type { ContainerdHandle } from '../helpers/containerd.js';
import { makeLayer, pushImage } from '../helpers/push.js';
import { startRegistry } from '../helpers/registry.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { startSigil } from '../helpers/sigil.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { parseToml, stripComment, type TomlTable } from '../helpers/toml.js';

const TEST_TIMEOUT_MS = 60_000; // a pull of a few KiB takes well under a second; anything near this is a hang
const PULL_TIMEOUT_MS = 30_000;
const EXAMPLES_DIR = fileURLToPath(new URL('../../../config/containerd/', import.meta.url)); // from dist/test/e2e
const PLACEHOLDER = 'https://sigil.example:5000';
const EXAMPLE_DIRS = ['_default', 'docker.io', 'ghcr.io'];
// a reserved, never-resolving name: should the example fail to keep containerd on sigil, the
// fallback would be this name, not a real registry on the Internet
const NOWHERE_REGISTRY = 'enforced.test';

const parseHostsToml = parseToml;

/** What every example must say: sigil is `server` and the one [host], for pull and resolve only. */
function checkExample(text: string, sigilUrl: string): void {
  const toml = parseHostsToml(text);
  assert.equal(toml.server, sigilUrl, '`server` is sigil (never the upstream)');
  const hosts = toml.host;
  assert.ok(hosts && typeof hosts === 'object' && !Array.isArray(hosts), 'a [host] table: containerd 1.6 ignores the file without one');
  assert.deepEqual(Object.keys(hosts), [sigilUrl], 'sigil is the only [host]: nothing to fall back to');
  assert.deepEqual((hosts as TomlTable)[sigilUrl], { capabilities: ['pull', 'resolve'] });
  assert.deepEqual(Object.keys(toml).sort(), ['host', 'server']);
}

const readExample = (dir: string): Promise<string> => readFile(join(EXAMPLES_DIR, dir, 'hosts.toml'), 'utf8');

describe('config/containerd/** example hosts.toml files', () => {
  test('the reader understands hosts.toml and refuses what it does not', () => {
    assert.deepEqual(parseHostsToml('server = "https://a:1" # c\n\n[host."https://b:2"]\n  capabilities = ["pull", "resolve"] # x\n  skip_verify = false\n'), {
      server: 'https://a:1',
      host: { 'https://b:2': { capabilities: ['pull', 'resolve'], skip_verify: false } },
    });
    assert.deepEqual(parseHostsToml('[host]\n'), { host: {} });
    for (const bad of ['server = https://a', 'server = "x"\nserver = "y"', '[host."x"\n', 'server = "unterminated', 'a.b = "x"']) {
      assert.throws(() => parseHostsToml(bad), Error, bad);
    }
  });

  test('there are examples for docker.io, ghcr.io and _default; each names only sigil and says why', async () => {
    assert.deepEqual((await readdir(EXAMPLES_DIR)).sort(), EXAMPLE_DIRS);
    for (const dir of EXAMPLE_DIRS) {
      const text = await readExample(dir);
      try {
        checkExample(text, PLACEHOLDER);
      } catch (err) {
        throw new Error(`config/containerd/${dir}/hosts.toml: ${(err as Error).message}`);
      }
      assert.match(text, /fallback/i, `${dir}: the comment explains why the upstream must not be a fallback`);
      assert.match(text, /403/, `${dir}: and that sigil's 403 must be final`);
      const code = text.split('\n').map(stripComment).join('\n');
      const urls = code.match(/https?:\/\/[^"\s]+/g) ?? [];
      assert.deepEqual([...new Set(urls)], [PLACEHOLDER], `${dir}: no URL but sigil's outside comments`);
    }
  });

  describe('with a real containerd and sigil', { timeout: 6 * TEST_TIMEOUT_MS }, () => {
    let registry: RegistryHandle;
    let ctd: ContainerdHandle;
    let sigil: SigilHandle;

    before(async () => {
      [registry, ctd] = await Promise.all([startRegistry(), startContainerd()]);
      const upstream = (name: string): string => `  - name: "${name}"\n    url: ${registry.url}\n`;
      sigil = await startSigil(`server:
  listen: 127.0.0.1:0
  logLevel: info
upstreams:
${['docker.io', 'ghcr.io', 'quay.io', NOWHERE_REGISTRY].map(upstream).join('')}policies:
  - name: denied
    match: ["${NOWHERE_REGISTRY}/team/secure", "docker.io/library/secure"]
    mode: enforce
    authorities:
      - keyless: { issuerRegExp: '^https://issuer\\.example$', subjectRegExp: '^https://github\\.com/acme/.+$' }
  - name: everything-else
    match: ["**"]
    mode: warn
    authorities:
      - keyless: { issuerRegExp: '^https://issuer\\.example$', subjectRegExp: '^https://github\\.com/acme/.+$' }
`);
    });

    after(async () => {
      await sigil?.stop();
      await Promise.all([ctd?.stop(), registry?.stop()]);
    });

    /** Installs example `dir` as <hostsDir>/<dir>/hosts.toml with sigil's URL in place of the placeholder, alone. */
    const install = async (dir: string): Promise<void> => {
      for (const d of await readdir(ctd.hostsDir)) await rm(join(ctd.hostsDir, d), { recursive: true, force: true });
      const text = (await readExample(dir)).replaceAll(PLACEHOLDER, sigil.url);
      // checked before containerd sees it: a file containerd rejected would send it to the real registry
      checkExample(text, sigil.url);
      await mkdir(join(ctd.hostsDir, dir));
      await writeFile(join(ctd.hostsDir, dir, 'hosts.toml'), text);
    };

    const requests = (from: number): string[] =>
      sigil.logs.slice(from).flatMap((l) => {
        const req = (l as { req?: { method?: string; url?: string } }).req;
        return req?.url ? [`${req.method} ${req.url}`] : [];
      });

    const cases = [
      { dir: 'docker.io', ref: 'docker.io/library/alpine:3', repo: 'library/alpine', ns: 'docker.io' },
      { dir: 'ghcr.io', ref: 'ghcr.io/acme/app:v1', repo: 'acme/app', ns: 'ghcr.io' },
      { dir: '_default', ref: 'quay.io/acme/tool:v1', repo: 'acme/tool', ns: 'quay.io' },
    ];
    for (const c of cases) {
      test(`${c.dir}/hosts.toml: containerd accepts it and pulls ${c.ref} through sigil`, { timeout: TEST_TIMEOUT_MS }, async () => {
        const repoPath = c.repo;
        const tag = c.ref.slice(c.ref.lastIndexOf(':') + 1);
        const text = `${c.ref} via the ${c.dir} example\n`;
        const pushed = await pushImage(registry, repoPath, tag, { layers: [makeLayer(Buffer.from(text), 'etc/example').blob] });
        await install(c.dir);
        const from = sigil.logs.length;

        const res = await ctd.pull(c.ref, { timeoutMs: PULL_TIMEOUT_MS });
        assert.doesNotMatch(res.stderr, /failed to decode hosts\.toml/);
        assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}\nsigil saw:\n${requests(from).join('\n')}`);
        assert.equal((await ctd.readUnpackedFile(c.ref, 'etc/example')).toString(), text);
        const seen = requests(from);
        assert.equal(seen[0], `HEAD /v2/${repoPath}/manifests/${tag}?ns=${c.ns}`, seen.join('\n'));
        assert.ok(seen.includes(`GET /v2/${repoPath}/blobs/${pushed.layers[0].digest}?ns=${c.ns}`), seen.join('\n'));
      });
    }

    for (const c of [
      { dir: '_default', ref: `${NOWHERE_REGISTRY}/team/secure:v1`, path: '/v2/team/secure/manifests/v1', ns: NOWHERE_REGISTRY },
      { dir: 'docker.io', ref: 'docker.io/library/secure:v1', path: '/v2/library/secure/manifests/v1', ns: 'docker.io' },
    ]) {
      test(`${c.dir}/hosts.toml fails closed: an image sigil denies (403) is not pulled from anywhere else`, { timeout: TEST_TIMEOUT_MS }, async () => {
        await pushImage(registry, c.path.split('/manifests/')[0].slice('/v2/'.length), 'v1');
        await install(c.dir);
        const from = sigil.logs.length;
        const res = await ctd.pull(c.ref, { timeoutMs: PULL_TIMEOUT_MS });
        assert.notEqual(res.code, 0, res.stdout);
        assert.match(res.stderr, new RegExp(`pulling from host ${sigil.host.replace(/\./g, '\\.')} failed with status code \\[manifests v1\\]: 403 sigil: no signature found \\(policy denied\\)`));
        assert.ok(!(await ctd.images()).includes(c.ref));
        // sigil is listed twice (the [host] entry and `server`): asked twice, denied twice, nothing else tried
        assert.deepEqual(requests(from), [`HEAD ${c.path}?ns=${c.ns}`, `HEAD ${c.path}?ns=${c.ns}`]);
        assert.doesNotMatch(res.stderr, /trying next host.*host="(?!127\.0\.0\.1)/, 'no host but sigil was tried');
      });
    }
  });
});
