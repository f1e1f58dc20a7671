// config/kubernetes/** and config/kind/kind-config.yaml, parsed with the `yaml` package and
// checked for what makes them work and safe: selectors that match the pod's labels, probes on
// /healthz and /readyz at the container's port 5000 with the scheme sigil's config serves,
// non-root and read-only, the volumes sigil needs, a ConfigMap whose sigil.yaml passes sigil's
// own loader with the Secret's keys, and a kind cluster whose containerd reads hosts.toml.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';
import { loadConfigFromText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { SHUTDOWN_GRACE_MS } from '../../src/cli/serve.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const K8S_DIR = join(ROOT, 'config/kubernetes');
const NAMESPACE = 'sigil';
const SIGIL_PORT = 5000;
/** bench/results/latest.md: RSS max while serving (a 1 GiB blob from the content store: 239.7 MiB). */
const MEASURED_SERVING_RSS_MIB = 240;
/** bench/results/latest.md: peak RSS (VmHWM) over the whole benchmark run (413.8 MiB). */
const MEASURED_PEAK_RSS_MIB = 414;

type Obj = Record<string, any>; // manifests are untyped YAML: property chains are checked by the asserts

const kustomization = parse(await readFile(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as Obj;
const resources: Obj[] = [];
for (const file of kustomization.resources as string[]) {
  for (const doc of parseAllDocuments(await readFile(join(K8S_DIR, file), 'utf8'))) {
    assert.deepEqual(doc.errors, [], file);
    resources.push({ ...(doc.toJS() as Obj), __file: file });
  }
}
const one = (kind: string, name?: string): Obj => {
  const found = resources.filter((r) => r.kind === kind && (name === undefined || r.metadata?.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0];
};
const deployment = one('Deployment');
const pod = deployment.spec.template.spec as Obj;
const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
const container = (pod.containers as Obj[])[0];
const configMap = one('ConfigMap');
const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
const kind = parse(await readFile(join(ROOT, 'config/kind/kind-config.yaml'), 'utf8')) as Obj;

/** A label selector's matchLabels select the pod: each of its labels is on the pod. */
function selects(selector: Record<string, string>, what: string): void {
  assert.ok(Object.keys(selector).length > 0, `${what}: an empty selector selects everything`);
  for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, `${what}: ${k}=${v} is not on the pod template`);
}

/** A Kubernetes memory quantity (`256Mi`, `1Gi`) in MiB. */
function mebibytes(q: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  assert.ok(m, `memory quantity ${q}: use Mi or Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

/** The container port a probe or Service targets, by number or by name. */
function portNumber(port: number | string): number {
  if (typeof port === 'number') return port;
  const p = (container.ports as Obj[]).find((x) => x.name === port);
  assert.ok(p, `no container port named ${port}`);
  return p.containerPort as number;
}

describe('config/kubernetes', () => {
  let dir: string;
  let config: Config;

  before(async () => {
    // the ConfigMap's sigil.yaml with the mounted paths moved under a temp dir holding the
    // Secret's keys, a TLS pair (the sigil-tls Secret operators create) and the store
    dir = await tempDir('sigil-deploy-k8s-');
    const secret = one('Secret', 'sigil-keys');
    await mkdir(join(dir, 'keys'));
    for (const [file, pem] of Object.entries(secret.stringData as Record<string, string>)) await writeFile(join(dir, 'keys', file), pem);
    await mkdir(join(dir, 'tls'));
    const { certPath, keyPath } = await selfSignedCert(join(dir, 'tls'));
    const text = (configMap.data['sigil.yaml'] as string)
      .replaceAll('/etc/sigil/keys/', `${dir}/keys/`)
      .replaceAll('/etc/sigil/tls/tls.crt', certPath)
      .replaceAll('/etc/sigil/tls/tls.key', keyPath)
      .replaceAll('/var/lib/sigil/', `${dir}/store/`);
    const res = await loadConfigFromText(text, { source: 'configmap', env: {}, baseDir: dir });
    assert.ok(res.ok, res.ok ? '' : res.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
    assert.deepEqual(res.warnings, []);
    config = res.config;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('kustomization lists every manifest; all of them are in the sigil namespace', async () => {
    const files = (await readdir(K8S_DIR)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    assert.deepEqual([...(kustomization.resources as string[])].sort(), files);
    assert.deepEqual(resources.map((r) => r.kind).sort(), ['ConfigMap', 'Deployment', 'Namespace', 'NetworkPolicy', 'PodDisruptionBudget', 'Secret', 'Service']);
    const ns = one('Namespace');
    assert.equal(ns.metadata.name, NAMESPACE);
    assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
    for (const r of resources.filter((x) => x.kind !== 'Namespace')) assert.equal(r.metadata.namespace, NAMESPACE, `${r.__file}`);
  });

  test('the ConfigMap\'s sigil.yaml passes sigil\'s loader with the Secret\'s keys; every key it names is in the Secret', () => {
    assert.deepEqual(config.server.listen, { host: '0.0.0.0', port: SIGIL_PORT });
    assert.ok(config.server.tls, 'HTTPS: the nodes act on what sigil answers');
    const named = [...(configMap.data['sigil.yaml'] as string).matchAll(/\/etc\/sigil\/keys\/([\w.-]+)/g)].map((m) => m[1]);
    assert.ok(named.length > 0);
    for (const f of named) assert.ok(f in one('Secret', 'sigil-keys').stringData, `${f} is not in the Secret`);
    assert.ok(config.policies.some((p) => p.mode === 'enforce'));
    assert.equal(config.cache.store?.dir, join(dir, 'store/store'));
  });

  test('Deployment, Service, PodDisruptionBudget, NetworkPolicy and the spread constraint all select the pod', () => {
    selects(deployment.spec.selector.matchLabels, 'Deployment.spec.selector');
    selects(one('Service').spec.selector, 'Service.spec.selector');
    selects(one('PodDisruptionBudget').spec.selector.matchLabels, 'PodDisruptionBudget');
    selects(one('NetworkPolicy').spec.podSelector.matchLabels, 'NetworkPolicy.podSelector');
    for (const c of pod.topologySpreadConstraints as Obj[]) selects(c.labelSelector.matchLabels, 'topologySpreadConstraints');
    assert.ok(deployment.spec.replicas >= 2, 'every pull in the cluster depends on sigil');
    assert.ok(one('PodDisruptionBudget').spec.minAvailable >= 1 && one('PodDisruptionBudget').spec.minAvailable < deployment.spec.replicas);
    assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
  });

  test('non-root (the image\'s user), read-only root filesystem, no capabilities, no privilege escalation, no API token', () => {
    const user = /^USER (\d+):(\d+)$/m.exec(dockerfile.split('\n').filter((l) => l.startsWith('USER ')).at(-1) ?? '');
    assert.ok(user);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, Number(user[1]));
    assert.equal(pod.securityContext.runAsGroup, Number(user[2]));
    assert.equal(pod.securityContext.fsGroup, Number(user[2]), 'volumes writable by that group');
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(pod.automountServiceAccountToken, false);
    const sc = container.securityContext;
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.runAsNonRoot, true);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(sc.capabilities.add, undefined);
    assert.equal(sc.privileged, undefined);
  });

  test('probes: liveness and startup on /healthz, readiness on /readyz, at port 5000, HTTPS as the config serves', () => {
    const scheme = config.server.tls ? 'HTTPS' : 'HTTP';
    const expect = { livenessProbe: '/healthz', startupProbe: '/healthz', readinessProbe: '/readyz' };
    for (const [probe, path] of Object.entries(expect)) {
      const get = container[probe]?.httpGet;
      assert.ok(get, `${probe}.httpGet`);
      assert.equal(get.path, path, probe);
      assert.equal(portNumber(get.port), config.server.listen.port, `${probe} port`);
      assert.equal(get.scheme, scheme, `${probe} scheme`);
    }
    assert.equal(portNumber('https'), SIGIL_PORT);
    const svcPort = (one('Service').spec.ports as Obj[])[0];
    assert.equal(svcPort.port, SIGIL_PORT);
    assert.equal(portNumber(svcPort.targetPort), SIGIL_PORT);
  });

  test('resources, a grace period longer than sigil\'s drain, and the args the image expects', () => {
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
    assert.ok(container.resources.limits.memory);
    // from the measured RSS: the request covers serving, the limit the peak (no OOM kill at the peak)
    assert.ok(mebibytes(container.resources.requests.memory) >= MEASURED_SERVING_RSS_MIB, 'memory request below the RSS measured while serving');
    assert.ok(mebibytes(container.resources.limits.memory) >= MEASURED_PEAK_RSS_MIB, 'memory limit below the peak RSS measured');
    const preStop = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
    assert.ok(pod.terminationGracePeriodSeconds > SHUTDOWN_GRACE_MS / 1000 + preStop, 'SIGKILL must not cut the drain short');
    assert.deepEqual(container.args, ['serve']);
    assert.equal(container.command, undefined, 'the image\'s ENTRYPOINT (node dist/src/main.js)');
    assert.doesNotMatch(container.image, /:latest$|^[^/:]+$/, 'a versioned image reference');
  });

  test('volumes: config at $SIGIL_CONFIG from the ConfigMap, keys and TLS from Secrets, the store at the image\'s VOLUME, a /tmp', () => {
    const volumes = new Map((pod.volumes as Obj[]).map((v) => [v.name as string, v]));
    const mountsAt = new Map((container.volumeMounts as Obj[]).map((m) => [m.mountPath as string, m]));
    for (const m of container.volumeMounts as Obj[]) assert.ok(volumes.has(m.name), `volume ${m.name} is defined`);
    const env = new Map((container.env as Obj[]).map((e) => [e.name as string, e.value as string]));
    const cfgPath = env.get('SIGIL_CONFIG')!;
    assert.equal(basename(cfgPath), 'sigil.yaml');
    const cfgMount = mountsAt.get(dirname(cfgPath));
    assert.ok(cfgMount, 'the directory of $SIGIL_CONFIG is a mount');
    // a subPath mount is never updated by the kubelet: a changed ConfigMap would never reach sigil's reload
    assert.equal(cfgMount.subPath, undefined, 'the ConfigMap is mounted as a directory, not a subPath file');
    assert.equal(cfgMount.readOnly, true);
    assert.equal(volumes.get(cfgMount.name)?.configMap?.name, configMap.metadata.name);
    assert.ok('sigil.yaml' in configMap.data);
    assert.equal(volumes.get(mountsAt.get('/etc/sigil/keys')?.name)?.secret?.secretName, 'sigil-keys');
    assert.equal(volumes.get(mountsAt.get('/etc/sigil/tls')?.name)?.secret?.secretName, 'sigil-tls');
    const volumeDecl = /^VOLUME \["([^"]+)"\]$/m.exec(dockerfile);
    assert.ok(volumeDecl);
    const store = mountsAt.get(volumeDecl[1]);
    assert.ok(store && store.readOnly !== true, 'the store volume is mounted writable');
    assert.ok(volumes.get(store.name)?.emptyDir?.sizeLimit, 'a bounded store');
    assert.ok(mountsAt.has('/tmp') && volumes.get(mountsAt.get('/tmp')!.name)?.emptyDir);
    assert.ok(config.cache.store && config.cache.store.maxBytes < 10 * 1024 ** 3, 'maxBytes below the 10Gi sizeLimit');
  });

  test('NetworkPolicy: ingress only to 5000; egress only DNS and 443 to public addresses (no metadata, no private ranges)', () => {
    const np = one('NetworkPolicy').spec;
    assert.deepEqual([...np.policyTypes].sort(), ['Egress', 'Ingress']);
    for (const rule of np.ingress as Obj[]) assert.deepEqual(rule.ports, [{ protocol: 'TCP', port: SIGIL_PORT }]);
    const egress = np.egress as Obj[];
    const dns = egress.find((r) => (r.ports as Obj[]).some((p) => p.port === 53));
    assert.ok(dns);
    assert.deepEqual((dns.ports as Obj[]).map((p) => p.protocol).sort(), ['TCP', 'UDP']);
    assert.equal(dns.to[0].podSelector.matchLabels['k8s-app'], 'kube-dns');
    const https = egress.find((r) => (r.ports as Obj[]).some((p) => p.port === 443));
    assert.ok(https);
    assert.deepEqual(https.ports, [{ protocol: 'TCP', port: 443 }]);
    const v4 = (https.to as Obj[]).find((t) => t.ipBlock?.cidr === '0.0.0.0/0');
    for (const cidr of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']) assert.ok(v4?.ipBlock.except.includes(cidr), cidr);
    assert.equal(egress.length, 2, 'nothing else goes out');
  });
});

describe('config/kind/kind-config.yaml', () => {

  test('a kind Cluster whose containerd reads hosts.toml from config_path, mounted from config/kind/certs.d on every node', () => {
    assert.equal(kind.kind, 'Cluster');
    assert.equal(kind.apiVersion, 'kind.x-k8s.io/v1alpha4');
    const patch = (kind.containerdConfigPatches as string[]).join('\n');
    const m = /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]\s*\n\s*config_path = "([^"]+)"/.exec(patch);
    assert.ok(m, patch);
    const nodes = kind.nodes as Obj[];
    assert.deepEqual(nodes.map((n) => n.role), ['control-plane', 'worker']);
    for (const n of nodes) {
      const mount: Obj | undefined = (n.extraMounts as Obj[]).find((x) => x.containerPath === m[1]);
      assert.ok(mount, `${n.role}: ${m[1]} is mounted`);
      assert.equal(mount.readOnly, true);
      assert.ok(existsSync(join(ROOT, mount.hostPath, '_default/hosts.toml')), `${mount.hostPath} (relative to the repository root, where kind is run)`);
    }
  });
});
