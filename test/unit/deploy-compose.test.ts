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

// merge: compose reads `<<: *anchor` as YAML's merge key (the shared profile's replicas use it)
const compose = obj(parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }), 'docker-compose.yml');
const services = obj(compose.services, 'services');
const service = (name: string): Obj => obj(services[name], `services.${name}`);
const sigilYaml = await readFile(join(COMPOSE_DIR, 'sigil.yaml'), 'utf8');
const sharedYaml = await readFile(join(COMPOSE_DIR, 'sigil-shared.yaml'), 'utf8');
/** The services every `docker compose up` starts (no profile). */
const demoServices = Object.keys(services).filter((name) => service(name).profiles === undefined);
/** The services `--profile shared` adds. */
const sharedServices = Object.keys(services).filter((name) => strings(service(name).profiles ?? [], `${name}.profiles`).includes('shared'));
const REPLICAS = ['sigil-shared-1', 'sigil-shared-2', 'sigil-shared-3'];

/** What compose makes of `${NAME:-default}` with NAME unset: the default (the profile runs as is). */
function interpolated(v: unknown, what: string): string {
  assert.equal(typeof v, 'string', what);
  return (v as string).replace(/\$\{([A-Z0-9_]+):-([^}]*)\}/g, (_, _name: string, dflt: string) => dflt);
}
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
    assert.deepEqual(demoServices.sort(), ['demo-setup', 'registry', 'sigil']);
    assert.deepEqual([...demoServices, ...sharedServices].sort(), Object.keys(services).sort(), 'every other service is in the shared profile');
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

describe('docker-compose.yml, profile shared', () => {
  const env = (name: string): Obj => obj(service(name).environment, `${name}.environment`);

  test('Valkey, MinIO, its bucket job and three sigil replicas; only the replicas are published, on loopback', () => {
    assert.deepEqual(sharedServices.sort(), ['minio', 'minio-setup', ...REPLICAS, 'valkey'].sort());
    assert.match(String(service('valkey').image), /^valkey\/valkey:\d+$/);
    assert.match(String(service('minio').image), /^minio\/minio:RELEASE\./, 'MinIO pinned to a release');
    assert.match(String(service('minio-setup').image), /^minio\/mc:RELEASE\./);
    for (const name of ['valkey', 'minio', 'minio-setup']) assert.equal(service(name).ports, undefined, `${name} is reachable on the compose network only`);
    const published = REPLICAS.map((name) => strings(service(name).ports, `${name}.ports`));
    for (const ports of published) {
      assert.equal(ports.length, 1);
      assert.match(ports[0], /^127\.0\.0\.1:\d+:5000$/, 'sigil\'s port, on loopback only (the peer port is not published)');
    }
    assert.equal(new Set(published.flat().map((p) => p.split(':')[1])).size, REPLICAS.length, 'a host port each');
    assert.ok(!published.flat().some((p) => p.split(':')[1] === '5000'), 'not the demo sigil\'s port');
  });

  test('the replicas: the demo sigil\'s image and hardening, the shared config and the public key read-only, a store volume each', () => {
    const demo = service('sigil');
    const stores = new Set<string>();
    for (const name of REPLICAS) {
      const r = service(name);
      assert.equal(r.image, demo.image);
      assert.equal(r.build, demo.build);
      for (const key of ['read_only', 'tmpfs', 'cap_drop', 'security_opt']) assert.deepEqual(r[key], demo[key], `${name}.${key}`);
      assert.equal(r.user, undefined);
      const m = mounts(r, name);
      assert.deepEqual(m.find((x) => x.target === env(name).SIGIL_CONFIG), { source: './config/compose/sigil-shared.yaml', target: '/etc/sigil/sigil.yaml', ro: true, named: false });
      assert.deepEqual(m.find((x) => x.target === '/etc/sigil/keys'), { source: 'trust', target: '/etc/sigil/keys', ro: true, named: true });
      const store = m.find((x) => x.target === '/var/lib/sigil');
      assert.ok(store?.named && !store.ro, `${name}: a named, writable store volume`);
      stores.add(store.source);
      assert.ok(!m.some((x) => x.source === 'signing-key' || x.source === 'minio-data'), `${name}: neither the private key nor MinIO's data`);
      const deps = obj(r.depends_on, `${name}.depends_on`);
      assert.deepEqual(deps['demo-setup'], { condition: 'service_completed_successfully' }, 'the public key is there');
      assert.deepEqual(deps['minio-setup'], { condition: 'service_completed_successfully' }, 'the bucket and the access key are there');
      assert.deepEqual(deps.valkey, { condition: 'service_healthy' });
      assert.equal(env(name).SIGIL_PEER_HOST, name, 'peers reach it by its service name');
    }
    assert.equal(stores.size, REPLICAS.length, 'no two replicas share a store volume');
  });

  test('the secrets agree: the replicas\' Redis password is Valkey\'s, their S3 key the one the job creates; MinIO\'s root stays with MinIO and the job', () => {
    const valkey = service('valkey');
    const requirepass = strings(valkey.command, 'valkey.command');
    const password = interpolated(requirepass[requirepass.indexOf('--requirepass') + 1], '--requirepass');
    assert.ok(password.length > 0);
    assert.equal(interpolated(env('valkey').SIGIL_REDIS_PASSWORD, 'valkey env'), password, 'the healthcheck authenticates');
    assert.deepEqual(requirepass.slice(requirepass.indexOf('--save'), requirepass.indexOf('--save') + 4), ['--save', '', '--appendonly', 'no'], 'nothing persisted');
    const job = env('minio-setup');
    for (const name of REPLICAS) {
      const e = env(name);
      assert.equal(interpolated(e.SIGIL_REDIS_PASSWORD, name), password, name);
      assert.equal(interpolated(e.SIGIL_S3_ACCESS_KEY_ID, name), interpolated(job.SIGIL_S3_ACCESS_KEY_ID, 'job'), name);
      assert.equal(interpolated(e.SIGIL_S3_SECRET_ACCESS_KEY, name), interpolated(job.SIGIL_S3_SECRET_ACCESS_KEY, 'job'), name);
      assert.equal(e.SIGIL_PEER_TOKEN, env(REPLICAS[0]).SIGIL_PEER_TOKEN, 'one token for all');
      assert.equal(e.MINIO_ROOT_PASSWORD, undefined, `${name} never gets MinIO's root password`);
    }
    assert.notEqual(interpolated(job.SIGIL_S3_ACCESS_KEY_ID, 'job'), interpolated(env('minio').MINIO_ROOT_USER, 'minio'), 'the replicas\' key is not the root user');
    assert.equal(job.MINIO_ROOT_PASSWORD, env('minio').MINIO_ROOT_PASSWORD);
    assert.deepEqual(strings(service('minio-setup').entrypoint, 'minio-setup.entrypoint'), ['/bin/sh', '/setup/minio-setup.sh']);
    assert.deepEqual(mounts(service('minio-setup'), 'minio-setup'), [{ source: './config/compose/minio-setup.sh', target: '/setup/minio-setup.sh', ro: true, named: false }]);
    assert.equal(service('minio-setup').restart, 'no');
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

describe('config/compose/sigil-shared.yaml', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('sigil-deploy-compose-shared-');
    await mkdir(join(dir, 'keys'), { recursive: true });
    await writeFile(join(dir, 'keys/cosign.pub'), spki());
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const relocated = (text: string): string => text.replaceAll('/etc/sigil/keys/', `${dir}/keys/`).replaceAll('/var/lib/sigil/', `${dir}/store/`);
  /** The environment compose gives `replica`, its defaults applied. */
  const envOf = (replica: string): Record<string, string> =>
    Object.fromEntries(Object.entries(obj(service(replica).environment, replica)).map(([k, v]) => [k, interpolated(v, `${replica}.${k}`)]));

  test('each replica loads it with the environment compose gives it: the bucket the job made, Valkey with its password, its own peer address', async () => {
    const job = obj(service('minio-setup').environment, 'minio-setup.environment');
    for (const replica of REPLICAS) {
      const env = envOf(replica);
      const res = await loadConfigFromText(relocated(sharedYaml), { source: 'compose-shared', env, baseDir: dir });
      assert.ok(res.ok, res.ok ? '' : res.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
      assert.deepEqual(res.warnings, []);
      const shared = res.config.cache.shared;
      assert.deepEqual(shared?.s3, {
        endpoint: 'http://minio:9000', region: 'us-east-1', bucket: job.BUCKET, prefix: '', forcePathStyle: true,
        credentials: { accessKeyId: env.SIGIL_S3_ACCESS_KEY_ID, secretAccessKey: env.SIGIL_S3_SECRET_ACCESS_KEY }, redirect: false,
      });
      assert.equal(shared?.redis?.url, `redis://:${env.SIGIL_REDIS_PASSWORD}@valkey:6379/0`, 'the compose service valkey');
      assert.deepEqual(shared?.peer, { listen: { host: '0.0.0.0', port: 5443 }, advertise: `http://${replica}:5443`, token: env.SIGIL_PEER_TOKEN });
      assert.deepEqual(res.config.cache.store, { dir: join(dir, 'store/store'), maxBytes: 1073741824 });
    }
  });

  test('it is the demo\'s config but for cache.shared: the replicas decide as the demo sigil does', () => {
    const demo = parse(sigilYaml) as Obj;
    const shared = parse(sharedYaml) as Obj;
    const sharedCache = obj(shared.cache, 'cache');
    delete sharedCache.shared;
    assert.deepEqual(shared, demo);
  });

  test('without its secrets it is refused, naming each variable', async () => {
    const res = await loadConfigFromText(relocated(sharedYaml), { source: 'compose-shared', env: {}, baseDir: dir });
    assert.equal(res.ok, false);
    const unset = (res.ok ? [] : res.problems).map((p) => /environment variable (\w+) is not set/.exec(p.message)?.[1]).filter(Boolean).sort();
    assert.deepEqual(unset, ['SIGIL_PEER_HOST', 'SIGIL_PEER_TOKEN', 'SIGIL_REDIS_PASSWORD', 'SIGIL_S3_ACCESS_KEY_ID', 'SIGIL_S3_SECRET_ACCESS_KEY']);
  });

  test('`sigil config check` accepts it with a replica\'s environment', async () => {
    await writeFile(join(dir, 'sigil.yaml'), relocated(sharedYaml));
    const r = await runSigil(['config', 'check', '--config', join(dir, 'sigil.yaml')], { env: envOf(REPLICAS[1]) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /valid — 2 upstream\(s\), 2 policies/);
  });
});

describe('config/compose/minio-setup.sh with a stand-in for mc', { timeout: 120_000 }, () => {
  let dir: string;
  const calls = (): Promise<string[]> => readFile(join(dir, 'calls.log'), 'utf8').then((t) => t.split('\n').filter(Boolean), () => []);
  const ROOT_ENV = { MINIO_ROOT_USER: 'root', MINIO_ROOT_PASSWORD: 'root-password', SIGIL_S3_ACCESS_KEY_ID: 'sigil', SIGIL_S3_SECRET_ACCESS_KEY: 's3-secret', BUCKET: 'sigil-store' };

  before(async () => {
    dir = await tempDir('sigil-deploy-minio-');
    // mc: `alias set` fails once (MinIO "starting"); `policy create` keeps the policy it is
    // given; `user info` names the attached policy once `policy attach` ran
    await writeFile(join(dir, 'mc'), `#!/bin/sh
log=${JSON.stringify(join(dir, 'calls.log'))}
echo "mc $*" >>"$log"
case "$1 $2" in
  "alias set") [ -f ${JSON.stringify(join(dir, 'up'))} ] && exit 0; : >${JSON.stringify(join(dir, 'up'))}; exit 1 ;;
  "admin policy") if [ "$3" = create ]; then cp "$6" ${JSON.stringify(join(dir, 'policy.json'))}; fi
    if [ "$3" = attach ]; then : >${JSON.stringify(join(dir, 'attached'))}; fi ;;
  "admin user") if [ "$3" = info ]; then
      if [ -f ${JSON.stringify(join(dir, 'attached'))} ]; then printf '{\\n "status": "success",\\n "policyName": "sigil-store-readwrite"\\n}\\n'; else printf '{\\n "status": "success"\\n}\\n'; fi
    fi ;;
esac
`);
    await chmod(join(dir, 'mc'), 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const runScript = (env: Record<string, string>) =>
    run('/bin/sh', [join(COMPOSE_DIR, 'minio-setup.sh')], { timeout: SCRIPT_TIMEOUT_MS, cwd: dir, env: { PATH: '/usr/bin:/bin', MC: join(dir, 'mc'), MINIO_URL: 'http://minio:9000', ...env } });

  test('first run: waits for MinIO, makes the bucket, a policy for that bucket only, and the replicas\' key with it', async () => {
    await runScript(ROOT_ENV);
    const log = await calls();
    assert.deepEqual(log, [
      'mc alias set local http://minio:9000 root root-password',
      'mc alias set local http://minio:9000 root root-password',
      'mc mb --ignore-existing local/sigil-store',
      `mc admin policy create local sigil-store-readwrite ${log[3]?.split(' ').at(-1)}`,
      'mc admin user add local sigil s3-secret',
      'mc admin user info local sigil --json',
      'mc admin policy attach local sigil-store-readwrite --user sigil',
    ]);
    const policy = JSON.parse(await readFile(join(dir, 'policy.json'), 'utf8')) as { Statement: Array<{ Effect: string; Action: string[]; Resource: string[] }> };
    const resources = policy.Statement.flatMap((st) => st.Resource);
    assert.deepEqual(resources.sort(), ['arn:aws:s3:::sigil-store', 'arn:aws:s3:::sigil-store/*'], 'that bucket and nothing else');
    assert.ok(policy.Statement.every((st) => st.Effect === 'Allow' && st.Action.every((a) => a.startsWith('s3:') && !a.includes('*'))), 'named S3 actions only');
    assert.ok(!policy.Statement.some((st) => st.Action.some((a) => /Bucket(Policy)?$/.test(a) && a !== 's3:ListBucket')), 'no bucket administration');
    assert.ok(!existsSync(log[3].split(' ').at(-1) ?? ''), 'the policy file is removed');
  });

  test('a second run changes nothing it need not: the policy stays attached once', async () => {
    await writeFile(join(dir, 'calls.log'), '');
    await runScript(ROOT_ENV);
    const log = await calls();
    assert.ok(log.includes('mc mb --ignore-existing local/sigil-store'));
    assert.ok(!log.some((l) => l.startsWith('mc admin policy attach')), log.join('\n'));
  });

  test('without the replicas\' key it stops before doing anything', async () => {
    await writeFile(join(dir, 'calls.log'), '');
    const { SIGIL_S3_SECRET_ACCESS_KEY: _, ...rest } = ROOT_ENV;
    await assert.rejects(runScript(rest), (err: Error & { stderr?: string }) => /SIGIL_S3_SECRET_ACCESS_KEY/.test(err.stderr ?? ''));
    assert.deepEqual(await calls(), []);
  });
});
