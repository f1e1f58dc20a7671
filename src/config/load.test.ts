import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { stringify } from 'yaml';
import { formatProblems, loadConfig, loadConfigFromText } from './load.js';
import { DEFAULT_CONFIG_YAML } from './defaults.js';
import { compressedPublicPem, generateKey } from '../../test/helpers/signer.js';
import type { Config } from './types.js';
import { tempDir } from '../../test/helpers/temp.js';
import { BASE_DOC, configLoader, problemsOf, type Doc } from '../../test/helpers/config-load.js';
import { implementedExample, writeExampleTufRoot } from '../../test/helpers/example-config.js';

const FIXTURES = new URL('../../../test/fixtures/config/', import.meta.url);
const REPO_ROOT = new URL('../../../', import.meta.url).pathname;
const spki = (k: { publicKey: { export(o: object): string | Buffer } }): string => k.publicKey.export({ type: 'spki', format: 'pem' }).toString();

let tmp: string;
let p256Pem: string;
before(async () => {
  tmp = await tempDir('sigil-config-');
  p256Pem = spki(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  await mkdir(join(tmp, 'etc/sigil'), { recursive: true });
  await mkdir(join(tmp, 'config/keys'), { recursive: true });
  await mkdir(join(tmp, 'config/private-sigstore'), { recursive: true });
  // node:crypto cannot issue certificates; openssl makes the self-signed pair.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-keyout', join(tmp, 'etc/sigil/tls.key'), '-out', join(tmp, 'etc/sigil/tls.crt')], { stdio: 'ignore' });
  await writeFile(join(tmp, 'etc/sigil/internal-ca.pem'), await readFile(join(tmp, 'etc/sigil/tls.crt')));
  const hash = bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$'); // as `htpasswd -B` writes it
  await writeFile(join(tmp, 'etc/sigil/htpasswd'), `# users\nalice:${hash}\n`);
  await writeFile(join(tmp, 'config/keys/acme.pub'), p256Pem);
  await writeFile(join(tmp, 'config/private-sigstore/trusted_root.json'), '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}');
  await writeExampleTufRoot(tmp);
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

const BASE = BASE_DOC;
const { load, patched, okConfig, rejects } = configLoader(() => tmp);
/** The variables the example's cache.shared names. */
const SHARED_ENV = { S3_ACCESS_KEY_ID: 'AKIAEXAMPLE', S3_SECRET_ACCESS_KEY: 's3-secret', SIGIL_PEER_TOKEN: '0123456789abcdef0123456789abcdef' };

describe('the example config (docs/sigil.example.yaml: every key served now)', () => {
  test('loads with its env vars set and its files present, without a warning', async () => {
    const text = (await implementedExample())
      .replaceAll('/etc/sigil/', `${tmp}/etc/sigil/`).replaceAll('/var/lib/sigil/', `${tmp}/var/lib/sigil/`);
    const r = await load(text, { GHCR_USER: 'bot', GHCR_TOKEN: 'tok', ...SHARED_ENV });
    const c = okConfig(r);
    assert.ok(r.ok);
    // the project's own example passes `sigil config check` clean: its patterns are anchored
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(c.server.listen, { host: '0.0.0.0', port: 5000 });
    assert.match(c.server.tls?.cert ?? '', /BEGIN CERTIFICATE/);
    assert.equal(c.server.tls?.keyPath, `${tmp}/etc/sigil/tls.key`);
    assert.ok(bcrypt.compareSync('s3cret', c.server.auth?.users.get('alice') ?? ''));
    assert.equal(c.server.logLevel, 'info');
    assert.deepEqual(c.upstreams.map((u) => [u.name, u.url.href]), [['docker.io', 'https://registry-1.docker.io/'], ['ghcr.io', 'https://ghcr.io/'], ['registry.internal:5000', 'http://127.0.0.1:5001/']]);
    assert.deepEqual(c.upstreams[1].credentials, { username: 'bot', password: 'tok' });
    assert.deepEqual(c.upstreams.map((u) => u.aliases), [[], ['ghcr'], []]);
    assert.match(c.upstreams[2].tls?.ca ?? '', /BEGIN CERTIFICATE/);
    assert.equal(c.upstreams[2].tls?.insecureSkipVerify, false);
    assert.ok(c.upstreams.every((u) => u.staleIfError));
    assert.equal(c.defaultUpstream, 'docker.io');
    assert.deepEqual(c.trust.trustedRoot, ['public-good', `${tmp}/config/private-sigstore/trusted_root.json`]);
    const [acme, rest] = c.policies;
    assert.equal(acme.mode, 'enforce');
    assert.ok(acme.matchers.some((m) => m.test('ghcr.io/acme/app')) && !acme.matchers.some((m) => m.test('ghcr.io/acme/x/y')));
    assert.ok(acme.matchers.some((m) => m.test('registry.internal:5000/a/b')));
    assert.equal(acme.signatureRepository, 'ghcr.io/acme/signatures');
    assert.deepEqual(acme.authorities[0], { kind: 'key', pem: p256Pem, source: `${tmp}/config/keys/acme.pub`, tlog: 'ignore' });
    const keyless = acme.authorities[1];
    assert.ok(keyless.kind === 'keyless');
    assert.ok(keyless.issuer.test('https://token.actions.githubusercontent.com') && !keyless.issuer.test('https://token.actions.githubusercontent.com.evil'));
    assert.ok(keyless.subject.test('https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main'));
    assert.deepEqual(acme.annotations, { env: 'prod' });
    assert.deepEqual(acme.predicateTypes, ['https://sigstore.dev/cosign/sign/v1']);
    assert.equal(acme.threshold, 1);
    assert.equal(rest.mode, 'warn');
    assert.match(acme.fingerprint, /^[0-9a-f]{64}$/);
    assert.notEqual(acme.fingerprint, rest.fingerprint);
    assert.deepEqual(c.cache, {
      verifications: { maxEntries: 10000, ttlMs: 600_000 }, store: { dir: `${tmp}/var/lib/sigil/store`, maxBytes: 53687091200 }, tags: { ttlMs: 30_000 }, manifests: { maxBytes: 64 * 1024 * 1024 },
      shared: {
        s3: { endpoint: 'https://s3.eu-west-1.amazonaws.com', region: 'eu-west-1', bucket: 'sigil-store', prefix: 'prod/', forcePathStyle: false, credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 's3-secret' }, redirect: false },
        redis: { url: 'redis://sigil-redis:6379/0' },
        peer: { listen: { host: '0.0.0.0', port: 5443 }, advertise: 'https://10.0.0.12:5443', token: SHARED_ENV.SIGIL_PEER_TOKEN },
      },
    });
  });

  test('without its env vars, each unset variable is an error at its path', async () => {
    const r = await load(await implementedExample(), {});
    assert.equal(r.ok, false);
    const env = problemsOf(r).filter((p) => /environment variable/.test(p.message));
    assert.deepEqual(env.map((p) => [p.path, p.message]), [
      ['upstreams[1].credentials.username', 'environment variable GHCR_USER is not set'],
      ['upstreams[1].credentials.password', 'environment variable GHCR_TOKEN is not set'],
      ['cache.shared.s3.credentials.accessKeyId', 'environment variable S3_ACCESS_KEY_ID is not set'],
      ['cache.shared.s3.credentials.secretAccessKey', 'environment variable S3_SECRET_ACCESS_KEY is not set'],
      ['cache.shared.peer.token', 'environment variable SIGIL_PEER_TOKEN is not set'],
    ]);
  });
});

describe('lookup order and defaults', () => {
  test('built-in default when nothing is named and config/sigil.yaml is absent', async () => {
    const r = await loadConfig({ env: {}, cwd: join(tmp, 'etc') });
    const c = okConfig(r);
    assert.ok(r.ok);
    assert.deepEqual(r.warnings, []);
    assert.equal(c.source, 'built-in default');
    assert.deepEqual(c.server.listen, { host: '0.0.0.0', port: 5000 });
    assert.deepEqual(c.upstreams.map((u) => [u.name, u.url.origin]), [
      ['docker.io', 'https://registry-1.docker.io'], ['ghcr.io', 'https://ghcr.io'], ['quay.io', 'https://quay.io'],
      ['registry.k8s.io', 'https://registry.k8s.io'], ['gcr.io', 'https://gcr.io'], ['public.ecr.aws', 'https://public.ecr.aws']]);
    assert.equal(c.defaultUpstream, 'docker.io');
    assert.deepEqual(c.trust.trustedRoot, ['public-good']);
    assert.deepEqual(c.policies.map((p) => [p.name, p.mode, p.match]), [['default-warn', 'warn', ['**']]]);
    assert.ok(c.policies[0].matchers[0].test('quay.io/any/thing/deep'));
  });

  test('config/sigil.yaml loads without warnings and means the same as the built-in default', async () => {
    const file = await loadConfig({ env: {}, cwd: REPO_ROOT });
    const dflt = await loadConfigFromText(DEFAULT_CONFIG_YAML, { source: 'd', env: {}, baseDir: REPO_ROOT });
    const [f, d] = [okConfig(file), okConfig(dflt)];
    assert.ok(file.ok && file.warnings.length === 0, 'no warnings');
    assert.equal(f.source, join(REPO_ROOT, 'config/sigil.yaml'));
    assert.deepEqual(f.policies.map((p) => p.fingerprint), d.policies.map((p) => p.fingerprint));
    assert.deepEqual(f.upstreams.map((u) => [u.name, u.url.href]), d.upstreams.map((u) => [u.name, u.url.href]));
    assert.deepEqual([f.server, f.cache, f.trust, f.defaultUpstream], [d.server, d.cache, d.trust, d.defaultUpstream]);
  });

  test('--config beats $SIGIL_CONFIG, which beats <cwd>/config/sigil.yaml', async () => {
    const write = async (name: string, port: number): Promise<string> => {
      const f = join(tmp, name);
      await writeFile(f, stringify({ ...BASE, server: { listen: `127.0.0.1:${port}` } }));
      return f;
    };
    const [flag, envFile] = [await write('flag.yaml', 1001), await write('env.yaml', 1002)];
    const cwd = join(tmp, 'cwd');
    await mkdir(join(cwd, 'config'), { recursive: true });
    await writeFile(join(cwd, 'config/sigil.yaml'), stringify({ ...BASE, server: { listen: '127.0.0.1:1003' } }));
    const port = async (path: string | undefined, env: Record<string, string>): Promise<number> => okConfig(await loadConfig({ path, env, cwd })).server.listen.port;
    assert.equal(await port(flag, { SIGIL_CONFIG: envFile }), 1001);
    assert.equal(await port(undefined, { SIGIL_CONFIG: envFile }), 1002);
    assert.equal(await port(undefined, {}), 1003);
    assert.equal(await port('../flag.yaml', {}), 1001, '--config is relative to cwd');
  });

  test('a missing named file is an error naming it', async () => {
    for (const [path, env, how] of [['nope.yaml', {}, '--config'], [undefined, { SIGIL_CONFIG: 'nope.yaml' }, '$SIGIL_CONFIG']] as const) {
      const r = await loadConfig({ path, env, cwd: tmp });
      assert.equal(r.ok, false);
      assert.equal(r.source, join(tmp, 'nope.yaml'));
      assert.match(formatProblems(problemsOf(r), r.source), new RegExp(`cannot read the config file ${join(tmp, 'nope.yaml')} \\(named by \\${how}\\): ENOENT`));
    }
  });
});

describe('problems', () => {
  test('a file with five mistakes reports all five, each at its path', async () => {
    const r = await load(await readFile(new URL('five-errors.yaml', FIXTURES), 'utf8'));
    assert.equal(r.ok, false);
    assert.deepEqual(problemsOf(r).map((p) => [p.path, p.severity]), [
      ['server.listen', 'error'], ['upstreams[0].url', 'error'], ['defaultUpstream', 'error'],
      ['policies[0].mdoe', 'error'], ['policies[0].authorities[0].keyless.subjectRegExp', 'error']]);
    const text = formatProblems(problemsOf(r), 'five-errors.yaml');
    assert.match(text, /^five-errors\.yaml: server\.listen: port 99999 is out of range/m);
    assert.match(text, /^five-errors\.yaml: upstreams\[0\]\.url: must have no path/m);
    assert.match(text, /^five-errors\.yaml: defaultUpstream: names no upstream: "docker\.io"/m);
    assert.match(text, /^five-errors\.yaml: policies\[0\]\.mdoe: unknown key \(did you mean 'mode'\?\)$/m);
    assert.match(text, /^five-errors\.yaml: policies\[0\]\.authorities\[0\]\.keyless\.subjectRegExp: invalid regular expression/m);
    assert.equal(text.split('\n').length, 5);
  });

  test('unknown keys are refused at every level', async () => {
    await rejects({ ...BASE, sever: {} }, 'sever', /unknown key \(did you mean 'server'\?\)/);
    await rejects({ ...BASE, server: { listen: '0.0.0.0:1', loglevel: 'info' } }, 'server.loglevel', /did you mean 'logLevel'/);
    await rejects(patched((d) => { d.upstreams[0].tsl = {}; }), 'upstreams[0].tsl', /did you mean 'tls'/);
    await rejects(patched((d) => { d.policies[0].authorities[0].keyless.isuer = 'x'; }), 'policies[0].authorities[0].keyless.isuer', /did you mean 'issuer'/);
    await rejects({ ...BASE, cache: { verifications: { maxEntries: 1, tll: '1m' } } }, 'cache.verifications.tll', /did you mean 'ttl'/);
    await rejects({ ...BASE, cache: { store: { dir: 'x', maxBytes: 1, zzz: 1 } } }, 'cache.store.zzz', /^unknown key$/);
  });

  test('YAML syntax errors carry their line and column', async () => {
    const r = await load('server:\n  listen: [0.0.0.0\nupstreams: []\n');
    assert.equal(r.ok, false);
    assert.match(problemsOf(r)[0].path, /^line \d+, column \d+$/);
    await rejects('upstreams: []\nupstreams: []\n', 'line 2, column 1', /unique/);
    await rejects('', '', /^the config is empty$/);
    await rejects('- a\n', '', /must be a mapping, got a list/);
    await rejects('a: 1\n---\nb: 2\n', 'line 2, column 1', /one YAML document/);
    await rejects(`__proto__: {}\n${stringify(BASE)}`, '__proto__', /unknown key/);
  });

  test('a YAML alias inside the node it names (a loop) is a problem at its path, not a crash', async () => {
    const base = stringify(BASE);
    await rejects(`${base}server: &s\n  listen: 127.0.0.1:5000\n  logLevel: *s\n`, 'server.logLevel', /^a YAML alias inside the node it names \(a loop\)$/);
    const listed = await load(`${base}cache: &c\n  verifications: [*c]\n`);
    assert.equal(listed.ok, false);
    assert.ok(problemsOf(listed).some((p) => p.path === 'cache.verifications[0]' && /a loop/.test(p.message)), formatProblems(problemsOf(listed), 'test.yaml'));
    const shared = await load(`${base}cache:\n  verifications: &v { ttl: 1m }\n  tags: { ttl: 1m }\nx-unused: *v\n`);
    assert.ok(problemsOf(shared).every((p) => !/a loop/.test(p.message)), 'an alias used again elsewhere is no loop');
  });

  test('formatProblems writes one line per problem, warnings marked', () => {
    const text = formatProblems([
      { path: 'a.b', message: 'bad', severity: 'error' }, { path: 'c[0]', message: 'hmm', severity: 'warning' }, { path: '', message: 'whole', severity: 'error' }], 'f.yaml');
    assert.equal(text, 'f.yaml: a.b: bad\nf.yaml: c[0]: warning: hmm\nf.yaml: whole');
  });
});

describe('${NAME} expansion', () => {
  test('expands in any string value, not in keys', async () => {
    const c = okConfig(await load({ ...BASE, server: { listen: '${HOST}:${PORT}', logLevel: '${LEVEL}' } }, { HOST: '127.0.0.1', PORT: '8443', LEVEL: 'debug' }));
    assert.deepEqual([c.server.listen, c.server.logLevel], [{ host: '127.0.0.1', port: 8443 }, 'debug']);
    const p = okConfig(await load(patched((d) => { d.policies[0].annotations = { '${K}': 'team-${TEAM}' }; }), { TEAM: 'a', K: 'x' })).policies[0];
    assert.deepEqual(p.annotations, { '${K}': 'team-a' });
  });
  test('an unset variable is an error naming it, reported once', async () => {
    await rejects({ ...BASE, server: { tls: { cert: '${CERT_DIR}/tls.crt', key: `${tmp}/etc/sigil/tls.key` } } }, 'server.tls.cert', /^environment variable CERT_DIR is not set$/);
    await rejects(patched((d) => { d.upstreams[0].url = '${UP}'; }), 'upstreams[0].url', /UP is not set/);
  });
  test('malformed references are errors', async () => {
    await rejects({ ...BASE, server: { logLevel: '${not-a-name}' } }, 'server.logLevel', /malformed environment reference/, {});
    await rejects({ ...BASE, server: { logLevel: '${LEVEL' } }, 'server.logLevel', /unclosed/, { LEVEL: 'x' });
  });
});

describe('schema rules', () => {
  test('listen: host:port, IPv6 in brackets', async () => {
    assert.deepEqual(okConfig(await load({ ...BASE, server: { listen: '[::]:5000' } })).server.listen, { host: '::', port: 5000 });
    assert.deepEqual(okConfig(await load({ ...BASE, server: { listen: 'localhost:0' } })).server.listen, { host: 'localhost', port: 0 });
    for (const bad of ['5000', ':::5000', '[nope]:1', '0.0.0.0', 'a b:1']) await rejects({ ...BASE, server: { listen: bad } }, 'server.listen', /./);
  });
  test('enums and scalar types', async () => {
    await rejects({ ...BASE, server: { logLevel: 'verbose' } }, 'server.logLevel', /must be one of fatal, error, warn, info, debug, trace, silent/);
    await rejects(patched((d) => { d.policies[0].mode = 'enfroce'; }), 'policies[0].mode', /did you mean 'enforce'/);
    await rejects(patched((d) => { d.policies[0].authorities = [{ key: p256Pem, tlog: 'maybe' }]; }), 'policies[0].authorities[0].tlog', /require, ignore/);
    await rejects(patched((d) => { d.upstreams[0].staleIfError = 'yes'; }), 'upstreams[0].staleIfError', /true or false/);
    await rejects(patched((d) => { d.policies[0].annotations = { version: 1.1 }; }), 'policies[0].annotations.version', /must be a string.*quote it/);
  });
  test('upstreams: http(s) URL without path, query or credentials; unique names', async () => {
    for (const url of ['ftp://ghcr.io', 'https://ghcr.io/v2', 'https://ghcr.io?x=1', 'https://u:p@ghcr.io', 'not a url']) {
      await rejects(patched((d) => { d.upstreams[0].url = url; }), 'upstreams[0].url', /./);
    }
    assert.equal(okConfig(await load(patched((d) => { d.upstreams[0].url = 'http://127.0.0.1:5001/'; }))).upstreams[0].url.origin, 'http://127.0.0.1:5001');
    await rejects(patched((d) => { d.upstreams.push({ name: 'ghcr.io', url: 'https://x.io' }); }), 'upstreams[1].name', /duplicate upstream name/);
    await rejects(patched((d) => { d.upstreams[0].name = 'GHCR.io/x'; }), 'upstreams[0].name', /registry host/);
    await rejects({ ...BASE, upstreams: [] }, 'upstreams', /at least one/);
    await rejects({ ...BASE, defaultUpstream: 'ghcr.oi' }, 'defaultUpstream', /did you mean 'ghcr.io'/);
    const r = await load(patched((d) => { d.upstreams[0].tls = { insecureSkipVerify: true }; d.upstreams[0].staleIfError = false; }));
    assert.deepEqual(problemsOf(r).map((p) => [p.path, p.severity]), [['upstreams[0].tls.insecureSkipVerify', 'warning']]);
    assert.equal(okConfig(r).upstreams[0].staleIfError, false);
  });
  test('aliases: more routing names of one upstream, each routing to one upstream only', async () => {
    const two = (d: Doc): void => { d.upstreams.push({ name: 'registry.internal:5000', url: 'http://127.0.0.1:5001' }); };
    const c = okConfig(await load(patched((d) => { two(d); d.upstreams[0].aliases = ['ghcr']; d.upstreams[1].aliases = ['registry.internal']; })));
    assert.deepEqual(c.upstreams.map((u) => [u.name, u.aliases]), [['ghcr.io', ['ghcr']], ['registry.internal:5000', ['registry.internal']]]);
    await rejects(patched((d) => { two(d); d.upstreams[1].aliases = ['ghcr.io']; }), 'upstreams[1].aliases[0]', /"ghcr.io" is already a name of upstream "ghcr.io"/);
    await rejects(patched((d) => { two(d); d.upstreams[0].aliases = ['ghcr']; d.upstreams[1].aliases = ['ghcr']; }), 'upstreams[1].aliases[0]', /"ghcr" is already a name of upstream "ghcr.io"/);
    // an alias clashing with a later upstream's name is reported at the alias
    await rejects(patched((d) => { two(d); d.upstreams[0].aliases = ['registry.internal:5000']; }), 'upstreams[0].aliases[0]', /already a name of upstream "registry.internal:5000"/);
    await rejects(patched((d) => { d.upstreams[0].aliases = ['ghcr.io']; }), 'upstreams[0].aliases[0]', /this upstream's own name/);
    await rejects(patched((d) => { d.upstreams[0].aliases = ['ghcr', 'ghcr']; }), 'upstreams[0].aliases[1]', /listed twice/);
    await rejects(patched((d) => { d.upstreams[0].aliases = ['GHCR/x']; }), 'upstreams[0].aliases[0]', /lowercase name/);
    await rejects(patched((d) => { d.upstreams[0].aliases = 'ghcr'; }), 'upstreams[0].aliases', /must be a list/);
  });
  test('an alias stands for its upstream: defaultUpstream and signatureRepository say the name; a pattern on an alias is a warning', async () => {
    const r = await load(patched((d) => {
      d.upstreams[0].aliases = ['ghcr'];
      d.defaultUpstream = 'ghcr';
      d.policies[0].signatureRepository = 'ghcr/acme/signatures';
      d.policies[0].match = ['ghcr.io/**', 'ghcr/acme/*'];
    }));
    const c = okConfig(r);
    assert.equal(c.defaultUpstream, 'ghcr.io');
    assert.equal(c.policies[0].signatureRepository, 'ghcr.io/acme/signatures');
    assert.deepEqual(problemsOf(r).map((p) => [p.path, p.severity]), [['policies[0].match[1]', 'warning']]);
    assert.match(problemsOf(r)[0].message, /"ghcr" is an alias of upstream "ghcr.io": patterns match the upstream's name/);
  });
  test('policies: name (unique), match, authorities per mode', async () => {
    await rejects(patched((d) => { delete d.policies[0].name; }), 'policies[0].name', /is required/);
    await rejects(patched((d) => { d.policies.push({ ...d.policies[0] }); }), 'policies[1].name', /duplicate policy name "p"/);
    await rejects(patched((d) => { delete d.policies[0].match; }), 'policies[0].match', /is required/);
    await rejects(patched((d) => { d.policies[0].match = ['ghcr.io/a**']; }), 'policies[0].match[0]', /whole path segment/);
    await rejects(patched((d) => { d.policies[0].authorities = []; }), 'policies[0].authorities', /mode enforce needs at least one authority/);
    await rejects(patched((d) => { delete d.policies[0].authorities; d.policies[0].mode = 'warn'; }), 'policies[0].authorities', /mode warn needs/);
    const off = okConfig(await load(patched((d) => { delete d.policies[0].authorities; d.policies[0].mode = 'off'; }))).policies[0];
    assert.deepEqual([off.mode, off.authorities], ['off', []]);
    const r = await load(patched((d) => { d.policies[0].match = ['quay.io/x/*']; }));
    assert.deepEqual(problemsOf(r).map((p) => [p.path, p.severity]), [['policies[0].match[0]', 'warning']]);
    assert.match(problemsOf(r)[0].message, /no upstream is named "quay.io"/);
  });
  test('authorities: exactly one of key/keyless; issuer xor issuerRegExp; subject xor subjectRegExp', async () => {
    const auth = (a: unknown): Doc => patched((d) => { d.policies[0].authorities = [a]; });
    await rejects(auth({ key: p256Pem, keyless: { issuer: 'i', subject: 's' } }), 'policies[0].authorities[0]', /exactly one of key or keyless/);
    await rejects(auth({ tlog: 'ignore' }), 'policies[0].authorities[0]', /exactly one of key or keyless/);
    await rejects(auth({ keyless: { issuer: 'i', issuerRegExp: '^i$', subject: 's' } }), 'policies[0].authorities[0].keyless', /exactly one of issuer or issuerRegExp/);
    await rejects(auth({ keyless: { issuer: 'i' } }), 'policies[0].authorities[0].keyless', /exactly one of subject or subjectRegExp/);
    await rejects(auth({ keyless: { issuer: 'i', subject: 's' }, tlog: 'ignore' }), 'policies[0].authorities[0].tlog', /only to key authorities/);
    await rejects(auth({ keyless: { issuer: 5, subject: 's' } }), 'policies[0].authorities[0].keyless.issuer', /must be a string/);
    await rejects(auth({ keyless: { issuerRegExp: '^(x$', subject: 's' } }), 'policies[0].authorities[0].keyless.issuerRegExp', /invalid regular expression/);
  });
  test('threshold: a positive integer, at most the number of distinct authorities (default 1)', async () => {
    const two = [{ keyless: { issuer: 'https://issuer.example', subject: 'alice@example.com' } }, { key: 'config/keys/acme.pub' }];
    await rejects(patched((d) => { d.policies[0].threshold = 0; }), 'policies[0].threshold', /must be a positive integer, got the number 0/);
    await rejects(patched((d) => { d.policies[0].threshold = 1.5; }), 'policies[0].threshold', /must be a positive integer/);
    await rejects(patched((d) => { d.policies[0].threshold = '2'; }), 'policies[0].threshold', /must be a positive integer, got the string "2"/);
    await rejects(patched((d) => { d.policies[0].threshold = 2; }), 'policies[0].threshold', /^2 distinct authorities must verify, but the policy lists 1$/);
    await rejects(patched((d) => { d.policies[0].threshold = 2; d.policies[0].authorities = [{ key: p256Pem }, { key: 'config/keys/acme.pub' }]; }), 'policies[0].threshold',
      /^2 distinct authorities must verify, but authorities\[0\] and \[1\] are the same \(1 distinct\)$/);
    await rejects(patched((d) => { d.policies[0].threshold = 2; d.policies[0].authorities = [two[0], { keyless: { issuerRegExp: '^https://issuer\\.example$', subject: 'alice@example.com' } }]; }),
      'policies[0].threshold', /are the same \(1 distinct\)/);
    const ec = generateKey('p384');
    await rejects(patched((d) => { d.policies[0].threshold = 2; d.policies[0].authorities = [{ key: ec.publicPem }, { key: compressedPublicPem(ec) }]; }), 'policies[0].threshold',
      /^2 distinct authorities must verify, but authorities\[0\] and \[1\] are the same \(1 distinct\)$/);
    const c = okConfig(await load(patched((d) => { d.policies[0].threshold = 2; d.policies[0].authorities = two; })));
    assert.equal(c.policies[0].threshold, 2);
    assert.equal(okConfig(await load(BASE)).policies[0].threshold, 1);
  });
  test('an unanchored regexp is a warning that names the risk', async () => {
    const r = await load(patched((d) => { d.policies[0].authorities = [{ keyless: { issuer: 'i', subjectRegExp: 'https://github\\.com/acme/.+' } }]; }));
    const c = okConfig(r);
    assert.ok(r.ok);
    assert.deepEqual(r.warnings.map((w) => [w.path, w.severity]), [['policies[0].authorities[0].keyless.subjectRegExp', 'warning']]);
    assert.match(r.warnings[0].message, /not anchored.*https:\/\/github\.com\/acme-evil\//);
    const a = c.policies[0].authorities[0];
    assert.ok(a.kind === 'keyless' && a.subject.source === 'https:\\/\\/github\\.com\\/acme\\/.+', 'used as written');
    const top = await load(patched((d) => { d.policies[0].authorities = [{ keyless: { issuer: 'i', subjectRegExp: '^a$|b' } }]; }));
    assert.equal(problemsOf(top).length, 1, 'a top-level | defeats the anchors');
  });
  test('a duration under 1 ms is refused, not rounded to 0 (a verdict or tag TTL of 0 is no TTL: kept for ever)', async () => {
    for (const tiny of ['0.4ms', 0.0004]) {
      await rejects({ ...BASE, cache: { verifications: { ttl: tiny } } }, 'cache.verifications.ttl', /must be at least 1ms/);
      await rejects({ ...BASE, cache: { tags: { ttl: tiny } } }, 'cache.tags.ttl', /must be at least 1ms/);
    }
    const ttl = okConfig(await load({ ...BASE, cache: { verifications: { ttl: '1ms' } } })).cache.verifications.ttlMs;
    assert.equal(ttl, 1);
  });
  test('cache: ttl durations, positive integer sizes', async () => {
    const ttl = async (v: unknown): Promise<number> => okConfig(await load({ ...BASE, cache: { verifications: { ttl: v } } })).cache.verifications.ttlMs;
    assert.deepEqual([await ttl('10m'), await ttl('30s'), await ttl('1h'), await ttl('500ms'), await ttl('1h30m'), await ttl(90), await ttl(0.5)],
      [600_000, 30_000, 3_600_000, 500, 5_400_000, 90_000, 500]);
    for (const bad of ['10 minutes', '10', '0s', -1, true]) await rejects({ ...BASE, cache: { verifications: { ttl: bad } } }, 'cache.verifications.ttl', /./);
    await rejects({ ...BASE, cache: { verifications: { maxEntries: 1.5 } } }, 'cache.verifications.maxEntries', /positive integer/);
    await rejects({ ...BASE, cache: { store: { dir: 's', maxBytes: 0 } } }, 'cache.store.maxBytes', /positive integer/);
    await rejects({ ...BASE, cache: { store: { dir: 's' } } }, 'cache.store.maxBytes', /is required/);
    const c = okConfig(await load({ ...BASE, cache: { store: { dir: 'store', maxBytes: 1024 } } }));
    assert.deepEqual(c.cache, { verifications: { maxEntries: 10000, ttlMs: 600_000 }, store: { dir: join(tmp, 'store'), maxBytes: 1024 }, tags: { ttlMs: 30_000 }, manifests: { maxBytes: 64 * 1024 * 1024 } });
  });
  test('defaults: tlog require, predicateTypes cosign sign v1, trustedRoot [public-good], listen, logLevel', async () => {
    const c = okConfig(await load(patched((d) => { d.policies[0].authorities = [{ key: p256Pem }]; })));
    assert.deepEqual(c.policies[0].authorities[0], { kind: 'key', pem: p256Pem, source: 'inline', tlog: 'require' });
    assert.deepEqual(c.policies[0].predicateTypes, ['https://sigstore.dev/cosign/sign/v1']);
    assert.deepEqual([c.trust.trustedRoot, c.server.listen, c.server.logLevel], [['public-good'], { host: '0.0.0.0', port: 5000 }, 'info']);
    assert.deepEqual(okConfig(await load({ ...BASE, trust: { trustedRoot: 'public-good' } })).trust.trustedRoot, ['public-good']);
  });
});

describe('files read at load time', () => {
  const withKey = (key: string): Doc => patched((d) => { d.policies[0].authorities = [{ key }]; });
  test('public keys: ECDSA P-256/P-384, RSA, Ed25519, from a file (relative to cwd) or inline', async () => {
    const keys = [spki(generateKeyPairSync('ec', { namedCurve: 'P-384' })), spki(generateKeyPairSync('ed25519')), spki(generateKeyPairSync('rsa', { modulusLength: 2048 }))];
    for (const pem of keys) assert.equal((okConfig(await load(withKey(pem))).policies[0].authorities[0] as { pem: string }).pem, pem);
    const ec = generateKey('p256');
    assert.equal((okConfig(await load(withKey(compressedPublicPem(ec)))).policies[0].authorities[0] as { pem: string }).pem, ec.publicPem, 'an EC point given compressed is uncompressed');
    const fromFile = okConfig(await load(withKey('config/keys/acme.pub'))).policies[0].authorities[0];
    assert.deepEqual(fromFile, { kind: 'key', pem: p256Pem, source: join(tmp, 'config/keys/acme.pub'), tlog: 'require' });
  });
  test('other keys are refused with the path', async () => {
    const at = 'policies[0].authorities[0].key';
    await rejects(withKey(spki(generateKeyPairSync('rsa', { modulusLength: 1024 }))), at, /RSA key of 1024 bits is too small/);
    const n = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }).n;
    await rejects(withKey(spki({ publicKey: createPublicKey({ key: { kty: 'RSA', n, e: 'AQ' }, format: 'jwk' }) })), at, /RSA public exponent 1 is not an odd number of at least 3 \(RFC 8017 3\.1\)/);
    await rejects(withKey(spki(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }))), at, /unsupported EC curve secp256k1/);
    await rejects(withKey(spki(generateKeyPairSync('x25519'))), at, /unsupported key type x25519/);
    const priv = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await rejects(withKey(priv), at, /is a private key/);
    await rejects(withKey(await readFile(join(tmp, 'etc/sigil/tls.crt'), 'utf8')), at, /PEM "CERTIFICATE", expected "PUBLIC KEY"/);
    await rejects(withKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'), at, /not a valid public key/);
    await rejects(withKey(p256Pem + p256Pem), at, /holds 2 PEM blocks/);
    await rejects(withKey('config/keys/missing.pub'), at, new RegExp(`cannot read ${join(tmp, 'config/keys/missing.pub')}: ENOENT`));
  });
  test('htpasswd: bcrypt only; other hash types are errors with file:line', async () => {
    const file = join(tmp, 'htpasswd-mixed');
    await writeFile(file, `ok:${bcrypt.hashSync('x', 4)}\n\nbob:$apr1$abc$def\ncarol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n`);
    const r = await load({ ...BASE, server: { auth: { htpasswd: file } } });
    assert.equal(r.ok, false);
    assert.deepEqual(problemsOf(r).map((p) => [p.path, p.message.slice(0, file.length + 3)]), [['server.auth.htpasswd', `${file}:3:`], ['server.auth.htpasswd', `${file}:4:`]]);
    assert.match(problemsOf(r)[0].message, /user "bob" uses Apache MD5 \(\$apr1\$\); only bcrypt/);
    await rejects({ ...BASE, server: { auth: { htpasswd: 'etc/sigil/none' } } }, 'server.auth.htpasswd', /cannot read .*etc\/sigil\/none: ENOENT/);
  });
  test('TLS: the key must match the certificate; an upstream CA must hold certificates', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await writeFile(join(tmp, 'other.key'), other);
    await rejects({ ...BASE, server: { tls: { cert: 'etc/sigil/tls.crt', key: 'other.key' } } }, 'server.tls.key', /does not match the certificate/);
    await rejects(patched((d) => { d.upstreams[0].tls = { ca: 'config/keys/acme.pub' }; }), 'upstreams[0].tls.ca', /no PEM certificate/);
    await rejects({ ...BASE, trust: { trustedRoot: ['public-good', 'config/keys/acme.pub'] } }, 'trust.trustedRoot[1]', /is not JSON/);
  });
});

describe('compiled config', () => {
  test('policy fingerprints follow semantic content, not the name', async () => {
    const fp = async (fn: (d: Doc) => void): Promise<string> => okConfig(await load(patched(fn))).policies[0].fingerprint;
    const base = await fp(() => {});
    assert.equal(await fp((d) => { d.policies[0].name = 'renamed'; }), base);
    assert.equal(await fp((d) => { d.policies[0].predicateTypes = ['https://sigstore.dev/cosign/sign/v1']; }), base, 'the default written out');
    assert.equal(await fp((d) => { d.policies[0].authorities[0].keyless = { issuerRegExp: '^https://issuer\\.example$', subject: 'me@example.com' }; }), base, 'an exact issuer is its escaped, anchored regexp');
    for (const change of [
      (d: Doc) => { d.policies[0].mode = 'warn'; }, (d: Doc) => { d.policies[0].match = ['ghcr.io/*']; },
      (d: Doc) => { d.policies[0].annotations = { env: 'prod' }; }, (d: Doc) => { d.policies[0].signatureRepository = 'ghcr.io/sigs'; },
      (d: Doc) => { d.policies[0].authorities[0].keyless = { issuerRegExp: '^https://issuer\\.example/.*$', subject: 'me@example.com' }; },
      (d: Doc) => { d.policies[0].authorities = [{ key: p256Pem }]; }]) {
      assert.notEqual(await fp(change), base);
    }
    assert.equal(await fp((d) => { d.policies[0].threshold = 1; }), base, 'the default threshold written out');
    const two = (d: Doc): void => { d.policies[0].authorities.push({ key: p256Pem }); };
    assert.notEqual(await fp((d) => { two(d); d.policies[0].threshold = 2; }), await fp(two), 'a threshold changes the verdicts');
  });
  test('is deep-frozen, URLs and maps included, and its RegExps still work', async () => {
    const text = (await implementedExample()).replaceAll('/etc/sigil/', `${tmp}/etc/sigil/`);
    const c = okConfig(await load(text, { GHCR_USER: 'u', GHCR_TOKEN: 't', ...SHARED_ENV }));
    const unfrozen: string[] = [];
    const walk = (v: unknown, path: string): void => {
      if (v === null || typeof v !== 'object') return;
      if (!Object.isFrozen(v)) unfrozen.push(path);
      if (v instanceof Map) for (const [k, x] of v) walk(x, `${path}.get(${k})`);
      else for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
    };
    walk(c, 'config');
    assert.deepEqual(unfrozen, []);
    assert.throws(() => { (c.policies as Config['policies'][number][]).push(c.policies[0]); }, TypeError);
    assert.throws(() => { (c.server as { logLevel: string }).logLevel = 'debug'; }, TypeError);
    const url = c.upstreams[0].url;
    assert.throws(() => { url.pathname = '/evil'; }, TypeError);
    assert.throws(() => { url.host = 'evil.example'; }, TypeError);
    url.searchParams.append('a', 'b');
    assert.equal(url.href, 'https://registry-1.docker.io/');
    const users = c.server.auth?.users as Map<string, string>;
    assert.throws(() => users.set('mallory', 'x'), TypeError);
    assert.throws(() => users.delete('alice'), TypeError);
    assert.equal(users.size, 1);
    const m = c.policies[0].matchers[0];
    assert.ok(m.test('ghcr.io/acme/app') && m.test('ghcr.io/acme/app') && 'ghcr.io/acme/x'.replace(m, 'y') === 'y');
  });
});
