// docker-compose.yml and config/compose/**: the demo cannot run here (no Docker engine, no
// route to Docker Hub, ghcr.io or gcr.io), so its parts are checked one by one: the compose
// file's services, volumes and mounts; sigil's config loads with sigil's own loader and
// passes `sigil config check` once the key exists (and fails naming the key before, which is
// why sigil waits for the job); the job's script runs, twice, with stand-ins for crane and
// cosign that record what they were asked.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadConfigFromText } from '../../src/config/load.js';
import { runSigil } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const COMPOSE_DIR = join(ROOT, 'config/compose');
const SCRIPT_TIMEOUT_MS = 30_000; // the stand-ins answer at once; the registry wait loop sleeps 1 s once

type Obj = Record<string, unknown>;
const obj = (v: unknown, what: string): Obj => {
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `${what} is a mapping`);
  return v as Obj;
};
const strings = (v: unknown, what: string): string[] => {
  assert.ok(Array.isArray(v) && v.every((s) => typeof s === 'string'), `${what} is a list of strings`);
  return v as string[];
};

const compose = obj(parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')), 'docker-compose.yml');
const services = obj(compose.services, 'services');
const service = (name: string): Obj => obj(services[name], `services.${name}`);
const sigilYaml = await readFile(join(COMPOSE_DIR, 'sigil.yaml'), 'utf8');
const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');

/** "source:target[:ro]" → parts; named volumes have no slash in the source. */
function mounts(svc: Obj, name: string): Array<{ source: string; target: string; ro: boolean; named: boolean }> {
  return strings(svc.volumes ?? [], `services.${name}.volumes`).map((v) => {
    const [source, target, mode] = v.split(':');
    return { source, target, ro: mode === 'ro', named: !source.startsWith('.') && !source.startsWith('/') };
  });
}

const spki = (): string => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

describe('docker-compose.yml', () => {
  test('three services: registry:2 (not published), the demo job, sigil built from the Dockerfile', () => {
    assert.deepEqual(Object.keys(services).sort(), ['demo-setup', 'registry', 'sigil']);
    const registry = service('registry');
    assert.equal(registry.image, 'registry:2');
    assert.equal(registry.ports, undefined, 'the registry is reachable only through sigil');
    const sigil = service('sigil');
    assert.equal(sigil.build, '.');
    assert.ok(existsSync(join(ROOT, 'Dockerfile')));
    assert.deepEqual(strings(sigil.ports, 'sigil.ports').map((p) => p.split(':').at(-1)), ['5000']);
    assert.match(strings(sigil.ports, 'sigil.ports')[0], /^127\.0\.0\.1:/, 'published on loopback only');
  });

  test('sigil runs hardened: read-only root, tmpfs /tmp, no capabilities, no new privileges', () => {
    const sigil = service('sigil');
    assert.equal(sigil.read_only, true);
    assert.deepEqual(sigil.tmpfs, ['/tmp']);
    assert.deepEqual(sigil.cap_drop, ['ALL']);
    assert.deepEqual(sigil.security_opt, ['no-new-privileges:true']);
    assert.equal(sigil.user, undefined, 'the image\'s non-root USER applies');
  });

  test('sigil gets its config, the public key read-only, and the store volume; it starts after the job succeeded', () => {
    const sigil = service('sigil');
    const m = mounts(sigil, 'sigil');
    const env = obj(sigil.environment, 'sigil.environment');
    assert.match(dockerfile, new RegExp(`SIGIL_CONFIG=${String(env.SIGIL_CONFIG)}\\b`), 'the same SIGIL_CONFIG as the image');
    assert.deepEqual(m.find((x) => x.target === env.SIGIL_CONFIG), { source: './config/compose/sigil.yaml', target: '/etc/sigil/sigil.yaml', ro: true, named: false });
    assert.deepEqual(m.find((x) => x.target === '/etc/sigil/keys'), { source: 'trust', target: '/etc/sigil/keys', ro: true, named: true });
    assert.deepEqual(m.find((x) => x.target === '/var/lib/sigil'), { source: 'sigil-store', target: '/var/lib/sigil', ro: false, named: true });
    assert.match(dockerfile, /^VOLUME \["\/var\/lib\/sigil"\]$/m);
    assert.ok(!m.some((x) => x.source === 'signing-key'), 'the private key never reaches sigil');
    const deps = obj(sigil.depends_on, 'sigil.depends_on');
    assert.deepEqual(deps['demo-setup'], { condition: 'service_completed_successfully' }, 'sigil reads the key at start');
  });

  test('the job: cosign and crane image, its script mounted, private key and public key in separate volumes', async () => {
    const job = service('demo-setup');
    const build = obj(job.build, 'demo-setup.build');
    assert.equal(build.context, 'config/compose');
    const toolsDockerfile = await readFile(join(ROOT, String(build.context), String(build.dockerfile)), 'utf8');
    assert.match(toolsDockerfile, /^ARG COSIGN_IMAGE=ghcr\.io\/sigstore\/cosign\/cosign:v2\.\d+\.\d+$/m, 'cosign v2, pinned');
    assert.match(toolsDockerfile, /^ARG CRANE_IMAGE=gcr\.io\/go-containerregistry\/crane:debug$/m);
    assert.match(toolsDockerfile, /^COPY --from=cosign \/ko-app\/cosign \/ko-app\/cosign$/m);
    assert.equal(job.restart, 'no');
    const entry = strings(job.entrypoint, 'demo-setup.entrypoint');
    assert.equal(entry[0], '/busybox/sh');
    const m = mounts(job, 'demo-setup');
    const script = m.find((x) => x.target === entry[1]);
    assert.ok(script && script.ro && !script.named, 'the script is bind-mounted read-only');
    assert.equal(script.source, './config/compose/demo-setup.sh');
    assert.deepEqual(m.filter((x) => x.named).map((x) => `${x.source}:${x.target}`).sort(), ['signing-key:/keys', 'trust:/trust']);
    const env = obj(job.environment, 'demo-setup.environment');
    assert.equal(typeof env.COSIGN_PASSWORD, 'string');
    assert.equal(env.REGISTRY, 'registry:5000');
    assert.deepEqual(obj(job.depends_on, 'demo-setup.depends_on').registry, { condition: 'service_started' });
  });

  test('every named volume is declared and used; every bind-mounted file exists', () => {
    const declared = Object.keys(obj(compose.volumes, 'volumes')).sort();
    const used = new Set<string>();
    for (const name of Object.keys(services)) {
      for (const m of mounts(service(name), name)) {
        if (m.named) used.add(m.source);
        else assert.ok(existsSync(join(ROOT, m.source)), `${name}: ${m.source} does not exist`);
      }
    }
    assert.deepEqual([...used].sort(), declared);
  });
});

describe('config/compose/sigil.yaml', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('sigil-deploy-compose-');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The config with the volume paths moved under `dir`. */
  const relocated = (): string => sigilYaml.replaceAll('/etc/sigil/keys/', `${dir}/keys/`).replaceAll('/var/lib/sigil/', `${dir}/store/`);

  test('without the public key (before the job ran) it is refused, naming the key', async () => {
    const res = await loadConfigFromText(relocated(), { source: 'compose', env: {}, baseDir: dir });
    assert.equal(res.ok, false);
    if (res.ok) return;
    assert.deepEqual(res.problems.filter((p) => p.severity === 'error').map((p) => p.path), ['policies[0].authorities[0].key']);
  });

  test('with the key it loads: demo registry as default upstream, enforce on demo/** by key without Rekor, warn otherwise', async () => {
    await mkdir(join(dir, 'keys'), { recursive: true });
    await writeFile(join(dir, 'keys/cosign.pub'), spki());
    const res = await loadConfigFromText(relocated(), { source: 'compose', env: {}, baseDir: dir });
    assert.ok(res.ok, res.ok ? '' : res.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
    const c = res.config;
    assert.deepEqual(res.warnings, []);
    assert.deepEqual(c.server.listen, { host: '0.0.0.0', port: 5000 });
    assert.equal(c.defaultUpstream, 'registry:5000');
    const demo = c.upstreams.find((u) => u.name === 'registry:5000');
    assert.equal(demo?.url.href, 'http://registry:5000/', 'the compose service `registry`');
    assert.deepEqual(c.policies.map((p) => [p.name, p.mode]), [['demo', 'enforce'], ['everything-else', 'warn']]);
    const [policy] = c.policies;
    assert.ok(policy.matchers.some((m) => m.test('registry:5000/demo/app')));
    assert.ok(!policy.matchers.some((m) => m.test('docker.io/library/alpine')));
    assert.deepEqual(policy.authorities.map((a) => (a.kind === 'key' ? [a.kind, a.tlog, a.source] : [a.kind])), [['key', 'ignore', join(dir, 'keys/cosign.pub')]]);
    assert.equal(c.cache.store?.dir, join(dir, 'store/store'));
    assert.match(sigilYaml, /key: \/etc\/sigil\/keys\/cosign\.pub\b/, 'the path where compose mounts the `trust` volume');
  });

  test('`sigil config check` accepts it once the key exists', async () => {
    await mkdir(join(dir, 'keys'), { recursive: true });
    await writeFile(join(dir, 'keys/cosign.pub'), spki());
    await writeFile(join(dir, 'sigil.yaml'), relocated());
    const r = await runSigil(['config', 'check', '--config', join(dir, 'sigil.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /valid — 2 upstream\(s\), 2 policies/);
  });
});

describe('config/compose/demo-setup.sh with stand-ins for crane and cosign', { timeout: 120_000 }, () => {
  let dir: string;
  const calls = (): Promise<string[]> => readFile(join(dir, 'calls.log'), 'utf8').then((t) => t.split('\n').filter(Boolean), () => []);

  before(async () => {
    dir = await tempDir('sigil-deploy-demo-');
    await Promise.all(['bin', 'keys', 'trust'].map((d) => mkdir(join(dir, d))));
    // crane: `catalog` fails once (the registry "starting"), `digest` is a hash of the ref,
    // `append` records the files of the layer tarball it is given
    await writeFile(join(dir, 'bin/crane'), `#!/bin/sh
log=${JSON.stringify(join(dir, 'calls.log'))}
echo "crane $*" >>"$log"
case "$1" in
  catalog) [ -f ${JSON.stringify(join(dir, 'ready'))} ] && exit 0; : >${JSON.stringify(join(dir, 'ready'))}; exit 1 ;;
  append) shift; while [ $# -gt 0 ]; do [ "$1" = -f ] && echo "layer $(tar -tf "$2") $(tar -xOf "$2")" >>"$log"; shift; done ;;
  digest) for a; do ref=$a; done; printf 'sha256:%s\\n' "$(printf %s "$ref" | sha256sum | cut -d' ' -f1)" ;;
esac
`);
    await writeFile(join(dir, 'bin/cosign'), `#!/bin/sh
echo "cosign $* [cwd=$(pwd) password=$COSIGN_PASSWORD]" >>${JSON.stringify(join(dir, 'calls.log'))}
if [ "$1" = generate-key-pair ]; then echo "private" >cosign.key; echo "public $(pwd)" >cosign.pub; fi
`);
    await chmod(join(dir, 'bin/crane'), 0o755);
    await chmod(join(dir, 'bin/cosign'), 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const runScript = (env: Record<string, string>) =>
    run('/bin/sh', [join(COMPOSE_DIR, 'demo-setup.sh')], {
      timeout: SCRIPT_TIMEOUT_MS,
      cwd: dir,
      env: {
        PATH: '/usr/bin:/bin',
        CRANE: join(dir, 'bin/crane'),
        COSIGN: join(dir, 'bin/cosign'),
        KEYS: join(dir, 'keys'),
        TRUST: join(dir, 'trust'),
        REGISTRY: 'registry:5000',
        ...env,
      },
    });
  const digestOf = async (ref: string): Promise<string> => (await run(join(dir, 'bin/crane'), ['digest', ref])).stdout.trim();

  test('first run: waits for the registry, makes the key pair, pushes three images, signs two of them by digest', async () => {
    const { stderr } = await runScript({ COSIGN_PASSWORD: 'demo-pw' });
    const log = await calls();
    assert.equal(log.filter((l) => l.startsWith('crane catalog')).length, 2, 'retried once the catalog failed');
    const repo = 'registry:5000/demo/app';
    const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch as 'x64' | 'arm64'] ?? process.arch;
    for (const tag of ['signed', 'unsigned', 'other-key']) {
      assert.ok(log.includes(`crane mutate --insecure ${repo}:${tag} --set-platform linux/${arch} -t ${repo}:${tag}`), `${tag}: platform set\n${log.join('\n')}`);
    }
    const layers = log.filter((l) => l.startsWith('layer '));
    assert.equal(layers.length, 3);
    assert.ok(layers.every((l) => l.startsWith('layer hello.txt ')), layers.join('\n'));
    assert.equal(new Set(layers).size, 3, 'three different images, so three different digests');
    const signs = log.filter((l) => l.startsWith('cosign sign'));
    const signed = await digestOf(`${repo}:signed`);
    const other = await digestOf(`${repo}:other-key`);
    assert.deepEqual(signs, [
      `cosign sign --yes --key ${dir}/keys/cosign.key --tlog-upload=false --allow-http-registry ${repo}@${signed} [cwd=${dir} password=demo-pw]`,
      `cosign sign --yes --key ${signs[1]?.match(/--key (\S+)/)?.[1]} --tlog-upload=false --allow-http-registry ${repo}@${other} [cwd=${dir} password=throwaway]`,
    ]);
    assert.doesNotMatch(signs.join('\n'), new RegExp(await digestOf(`${repo}:unsigned`)), 'the unsigned image is not signed');
    assert.ok(!signs[1].includes(`${dir}/keys/`), 'the stranger key is not the trusted one');
    const keygens = log.filter((l) => l.startsWith('cosign generate-key-pair'));
    assert.equal(keygens.length, 2);
    assert.match(keygens[0], new RegExp(`cwd=${dir}/keys password=demo-pw`));
    // sigil's volume gets the public key, world-readable, and nothing else
    assert.equal(await readFile(join(dir, 'trust/cosign.pub'), 'utf8'), `public ${dir}/keys\n`);
    assert.equal((await stat(join(dir, 'trust/cosign.pub'))).mode & 0o777, 0o644);
    assert.ok(!existsSync(join(dir, 'trust/cosign.key')));
    assert.match(stderr, /demo-setup: pushed registry:5000\/demo\/app:unsigned/);
  });

  test('a second run keeps the key pair (sigil would stop trusting a new one) and signs the new digests', async () => {
    await writeFile(join(dir, 'calls.log'), '');
    await runScript({ COSIGN_PASSWORD: 'demo-pw' });
    const log = await calls();
    const keygens = log.filter((l) => l.startsWith('cosign generate-key-pair'));
    assert.equal(keygens.length, 1, 'only the throwaway key');
    assert.doesNotMatch(keygens[0], new RegExp(`cwd=${dir}/keys `));
    assert.equal(log.filter((l) => l.startsWith('cosign sign')).length, 2);
  });

  test('without COSIGN_PASSWORD it stops before doing anything', async () => {
    await writeFile(join(dir, 'calls.log'), '');
    await assert.rejects(runScript({}), (err: Error & { stderr?: string }) => /COSIGN_PASSWORD/.test(err.stderr ?? ''));
    assert.deepEqual(await calls(), []);
  });

  test('docs/DEPLOY.md walks through the tags the job pushes', async () => {
    const doc = await readFile(join(ROOT, 'docs/DEPLOY.md'), 'utf8');
    for (const tag of ['signed', 'unsigned', 'other-key']) assert.ok(doc.includes(`localhost:5000/demo/app:${tag}`), tag);
    assert.match(doc, /docker compose up -d --build/);
  });
});
