// config/kubernetes-shared: config/kubernetes with three replicas acting as one cache on a
// shared bucket and Redis. Its parts are checked against each other and against the base: the
// ConfigMap's sigil.yaml is the base's plus cache.shared and loads with the Secret's variables
// and the pod IP; every variable it names is given to the container; the peer port is the
// container's and admitted from sigil's pods only. With kubectl on the PATH, the kustomization
// is built for real (`kubectl kustomize`, offline).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfigFromText, type LoadResult } from '../../src/config/load.js';
import { MIN_PEER_TOKEN_CHARS } from '../../src/config/shared-schema.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const DIR = join(ROOT, 'config/kubernetes-shared');
const PEER_PORT = 5443;
const POD_IP = '10.244.1.7';

type Obj = Record<string, any>; // manifests are untyped YAML: property chains are checked by the asserts

const docs = async (path: string): Promise<Obj[]> => parseAllDocuments(await readFile(path, 'utf8')).map((d) => {
  assert.deepEqual(d.errors, [], path);
  return d.toJS() as Obj;
});
const kustomization = parse(await readFile(join(DIR, 'kustomization.yaml'), 'utf8')) as Obj;
const [configMapPatch] = await docs(join(DIR, 'configmap.yaml'));
const [deploymentPatch] = await docs(join(DIR, 'deployment.yaml'));
const [secret] = await docs(join(DIR, 'secret-shared.yaml'));
const [peerPolicy] = await docs(join(DIR, 'networkpolicy-shared.yaml'));
const [baseConfigMap] = await docs(join(ROOT, 'config/kubernetes/10-configmap.yaml'));
const [baseDeployment] = await docs(join(ROOT, 'config/kubernetes/30-deployment.yaml'));
const podLabels = baseDeployment.spec.template.metadata.labels as Record<string, string>;
const sharedYaml = configMapPatch.data['sigil.yaml'] as string;
const patchContainer = (deploymentPatch.spec.template.spec.containers as Obj[])[0];
const baseContainer = (baseDeployment.spec.template.spec.containers as Obj[])[0];

/** The container's environment as the patch gives it: a Secret key, a downward-API field or a value. */
const patchEnv = new Map((patchContainer.env as Obj[]).map((e) => [e.name as string, e]));

/** A Kubernetes memory quantity in MiB. */
function mebibytes(q: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  assert.ok(m, `memory quantity ${q}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      /* not here */
    }
  }
  return undefined;
}

describe('config/kubernetes-shared', () => {
  let dir: string;
  const load = (env: Record<string, string>): Promise<LoadResult> => {
    const text = sharedYaml
      .replaceAll('/etc/sigil/keys/', `${dir}/keys/`)
      .replaceAll('/etc/sigil/tls/tls.crt', join(dir, 'tls/server.crt'))
      .replaceAll('/etc/sigil/tls/tls.key', join(dir, 'tls/server.key'))
      .replaceAll('/var/lib/sigil/', `${dir}/store/`);
    return loadConfigFromText(text, { source: 'configmap', env, baseDir: dir });
  };
  /** What the pod's environment holds once the Secret is filled in. */
  const filledIn = (): Record<string, string> => ({
    ...Object.fromEntries(Object.keys(secret.stringData as Obj).map((k) => [k, `${k.toLowerCase()}-${'x'.repeat(MIN_PEER_TOKEN_CHARS)}`])),
    POD_IP,
  });

  before(async () => {
    dir = await tempDir('sigil-deploy-k8s-shared-');
    const keys = (await docs(join(ROOT, 'config/kubernetes/20-secret-keys.yaml')))[0];
    await mkdir(join(dir, 'keys'));
    for (const [file, pem] of Object.entries(keys.stringData as Record<string, string>)) await writeFile(join(dir, 'keys', file), pem);
    await mkdir(join(dir, 'tls'));
    await selfSignedCert(join(dir, 'tls'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('everything of config/kubernetes, with the Secret and the NetworkPolicy added, the ConfigMap and the Deployment patched', async () => {
    assert.deepEqual(kustomization.resources, ['../kubernetes', 'secret-shared.yaml', 'networkpolicy-shared.yaml']);
    assert.deepEqual((kustomization.patches as Obj[]).map((p) => p.path), ['configmap.yaml', 'deployment.yaml']);
    const files = (await readdir(DIR)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    assert.deepEqual(files, ['configmap.yaml', 'deployment.yaml', 'networkpolicy-shared.yaml', 'secret-shared.yaml']);
    for (const [patch, base] of [[configMapPatch, baseConfigMap], [deploymentPatch, baseDeployment]]) {
      assert.deepEqual([patch.kind, patch.metadata.name, patch.metadata.namespace], [base.kind, base.metadata.name, base.metadata.namespace], 'patches the base\'s object');
    }
    for (const d of [secret, peerPolicy]) assert.equal(d.metadata.namespace, 'sigil');
    assert.notEqual(peerPolicy.metadata.name, 'sigil', 'added beside the base\'s NetworkPolicy, not in its place');
  });

  test('the ConfigMap\'s sigil.yaml is the base\'s plus cache.shared', () => {
    const mine = parse(sharedYaml) as Obj;
    assert.ok(mine.cache.shared);
    delete mine.cache.shared;
    assert.deepEqual(mine, parse(baseConfigMap.data['sigil.yaml'] as string));
  });

  test('with the Secret filled in and the pod IP it loads: a bucket, Redis, the peer listener on its port advertising the pod IP', async () => {
    const env = filledIn();
    const res = await load(env);
    assert.ok(res.ok, res.ok ? '' : res.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
    assert.deepEqual(res.warnings, []);
    const shared = res.config.cache.shared;
    assert.deepEqual(shared?.s3?.credentials, { accessKeyId: env.SIGIL_S3_ACCESS_KEY_ID, secretAccessKey: env.SIGIL_S3_SECRET_ACCESS_KEY });
    assert.equal(shared?.s3?.prefix, 'sigil/');
    assert.match(shared?.redis?.url ?? '', new RegExp(`^rediss?://:${env.SIGIL_REDIS_PASSWORD}@`));
    assert.deepEqual(shared?.peer, { listen: { host: '0.0.0.0', port: PEER_PORT }, advertise: `http://${POD_IP}:${PEER_PORT}`, token: env.SIGIL_PEER_TOKEN });
    assert.ok(res.config.cache.store, 'each pod keeps its own store as the first level');
  });

  test('as shipped, the Secret\'s placeholder token is refused: no pod starts with a token everyone can read here', async () => {
    const env = { ...filledIn(), ...(secret.stringData as Record<string, string>) };
    const res = await load(env);
    assert.equal(res.ok, false);
    assert.deepEqual((res.ok ? [] : res.problems).filter((p) => p.severity === 'error').map((p) => p.path), ['cache.shared.peer.token']);
  });

  test('every variable the config names is in the container\'s environment: the Secret\'s keys by reference, POD_IP from the downward API', () => {
    const named = new Set([...sharedYaml.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]));
    assert.deepEqual([...named].sort(), [...patchEnv.keys()].sort());
    assert.deepEqual(patchEnv.get('POD_IP')?.valueFrom, { fieldRef: { fieldPath: 'status.podIP' } });
    for (const key of Object.keys(secret.stringData as Obj)) {
      assert.deepEqual(patchEnv.get(key)?.valueFrom, { secretKeyRef: { name: secret.metadata.name, key } }, key);
      assert.equal(patchEnv.get(key)?.value, undefined, `${key}: never inline`);
    }
    assert.ok(!/accessKeyId: [^$\s]|secretAccessKey: [^$\s]|token: [^$\s]/.test(sharedYaml), 'no secret in the ConfigMap');
  });

  test('three replicas; the peer port is a container port, named, not the Service\'s', async () => {
    assert.equal(deploymentPatch.spec.replicas, 3);
    assert.equal(patchContainer.name, baseContainer.name, 'patches the sigil container');
    assert.deepEqual(patchContainer.ports, [{ name: 'peer', containerPort: PEER_PORT, protocol: 'TCP' }]);
    const [service] = await docs(join(ROOT, 'config/kubernetes/40-service.yaml'));
    assert.ok(!(service.spec.ports as Obj[]).some((p) => p.port === PEER_PORT || p.targetPort === 'peer'), 'peers reach each other by pod IP; clients never');
  });

  test('memory: at least the base\'s, and a request above the peak the shared-mode benchmark measured (236 MiB), citing it', async () => {
    for (const kind of ['requests', 'limits'] as const) {
      assert.ok(mebibytes(patchContainer.resources[kind].memory) >= mebibytes(baseContainer.resources[kind].memory), kind);
    }
    assert.ok(mebibytes(patchContainer.resources.requests.memory) > 236, 'the request covers the measured holder peak');
    const text = await readFile(join(DIR, 'deployment.yaml'), 'utf8');
    assert.match(text, /bench\/results\/\s*#?\s*2026-12-03-shared-replicas\.md/);
    assert.ok(existsSync(join(ROOT, 'bench/results/2026-12-03-shared-replicas.md')), 'the results page it cites exists');
  });

  test('NetworkPolicy: the peer port from sigil\'s pods only; egress to the peers and to Redis', () => {
    const np = peerPolicy.spec;
    for (const [k, v] of Object.entries(np.podSelector.matchLabels as Record<string, string>)) assert.equal(podLabels[k], v, k);
    assert.deepEqual([...np.policyTypes].sort(), ['Egress', 'Ingress']);
    assert.equal(np.ingress.length, 1);
    const [ingress] = np.ingress as Obj[];
    assert.deepEqual(ingress.ports, [{ protocol: 'TCP', port: PEER_PORT }]);
    assert.deepEqual(ingress.from, [{ podSelector: { matchLabels: np.podSelector.matchLabels } }], 'sigil pods of this namespace, no ipBlock, no other namespace');
    const egress = np.egress as Obj[];
    const toPeers = egress.find((r) => r.ports.some((p: Obj) => p.port === PEER_PORT));
    assert.deepEqual(toPeers?.to, [{ podSelector: { matchLabels: np.podSelector.matchLabels } }]);
    const redisPort = Number(/:(\d+)\/\d+$/.exec(parse(sharedYaml).cache.shared.redis.url as string)?.[1]);
    assert.ok(egress.some((r) => r.ports.some((p: Obj) => p.port === redisPort)), 'Redis\'s port');
    assert.ok(!egress.some((r) => r.to.some((t: Obj) => t.ipBlock)), 'no address ranges opened');
  });

  test('kubectl kustomize (when kubectl is on the PATH): the Deployment has both ports, the base\'s environment and the shared one; two NetworkPolicies', async (t) => {
    const kubectl = onPath('kubectl');
    if (!kubectl) return t.skip('kubectl is not on the PATH');
    const copy = join(dir, 'config');
    for (const d of ['kubernetes', 'kubernetes-shared']) await cp(join(ROOT, 'config', d), join(copy, d), { recursive: true });
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) await writeFile(join(copy, 'kubernetes/tls', f), 'placeholder\n'); // what tls/generate.sh writes
    const built = parseAllDocuments((await run(kubectl, ['kustomize', join(copy, 'kubernetes-shared')], { maxBuffer: 8 << 20 })).stdout).map((x) => x.toJS() as Obj);
    const deployments = built.filter((d) => d.kind === 'Deployment');
    assert.equal(deployments.length, 1);
    const [deployment] = deployments;
    assert.equal(deployment.spec.replicas, 3);
    const container = (deployment.spec.template.spec.containers as Obj[])[0];
    assert.deepEqual((container.ports as Obj[]).map((p) => p.containerPort).sort(), [5000, PEER_PORT]);
    const env = new Map((container.env as Obj[]).map((e) => [e.name as string, e]));
    for (const e of baseContainer.env as Obj[]) assert.deepEqual(env.get(e.name), e, `the base's ${e.name}`);
    for (const [name, e] of patchEnv) assert.deepEqual(env.get(name), e, name);
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) assert.deepEqual(container[probe], baseContainer[probe], probe);
    assert.deepEqual(container.resources, patchContainer.resources);
    assert.deepEqual(container.securityContext, baseContainer.securityContext);
    assert.deepEqual(deployment.spec.template.spec.volumes, baseDeployment.spec.template.spec.volumes);
    const configMap = built.find((d) => d.kind === 'ConfigMap' && d.metadata.name === baseConfigMap.metadata.name);
    assert.equal(configMap?.data['sigil.yaml'], sharedYaml);
    assert.deepEqual(built.filter((d) => d.kind === 'NetworkPolicy').map((d) => d.metadata.name).sort(), ['sigil', peerPolicy.metadata.name].sort());
    assert.ok(built.some((d) => d.kind === 'Secret' && d.metadata.name === secret.metadata.name));
  });
});
