// config/kubernetes-persistent-store: config/kubernetes with the Deployment replaced by a
// StatefulSet whose pods keep their content store on a PersistentVolumeClaim each. The pod is
// the Deployment's — the same hardening, probes, resources and volumes (checked by
// deploy-kubernetes.test.ts) — but for the store volume.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const DIR = join(ROOT, 'config/kubernetes-persistent-store');
const STORE_VOLUME = 'store';

type Obj = Record<string, any>; // manifests are untyped YAML: property chains are checked by the asserts

const docs = async (path: string): Promise<Obj[]> => parseAllDocuments(await readFile(path, 'utf8')).map((d) => d.toJS() as Obj);
const kustomization = parse(await readFile(join(DIR, 'kustomization.yaml'), 'utf8')) as Obj;
const variant = await docs(join(DIR, 'statefulset.yaml'));
const statefulSet = variant.find((d) => d.kind === 'StatefulSet')!;
const headless = variant.find((d) => d.kind === 'Service')!;
const deployment = (await docs(join(ROOT, 'config/kubernetes/30-deployment.yaml')))[0];
const configMap = (await docs(join(ROOT, 'config/kubernetes/10-configmap.yaml')))[0];
const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');

/** A Kubernetes storage quantity (`10Gi`) in bytes. */
function bytes(q: string): number {
  const m = /^(\d+)(Mi|Gi|Ti)$/.exec(q);
  assert.ok(m, `storage quantity ${q}`);
  return Number(m[1]) * 1024 ** { Mi: 2, Gi: 3, Ti: 4 }[m[2] as 'Mi' | 'Gi' | 'Ti'];
}

describe('config/kubernetes-persistent-store', () => {
  test('everything of config/kubernetes, the Deployment deleted, the StatefulSet added', () => {
    assert.deepEqual(kustomization.resources, ['../kubernetes', 'statefulset.yaml']);
    const [patch] = kustomization.patches as Obj[];
    const deleted = parse(patch.patch as string) as Obj;
    assert.equal(deleted.$patch, 'delete');
    assert.deepEqual([deleted.kind, deleted.metadata.name, deleted.metadata.namespace], ['Deployment', deployment.metadata.name, deployment.metadata.namespace]);
    assert.deepEqual(variant.map((d) => d.kind).sort(), ['Service', 'StatefulSet']);
    for (const d of variant) assert.equal(d.metadata.namespace, 'sigil');
  });

  test('the pod is the Deployment\'s, but for the store volume, which comes from a claim per pod', () => {
    const mine = structuredClone(statefulSet.spec.template) as Obj;
    const theirs = structuredClone(deployment.spec.template) as Obj;
    theirs.spec.volumes = (theirs.spec.volumes as Obj[]).filter((v) => v.name !== STORE_VOLUME);
    assert.deepEqual(mine, theirs);
    assert.equal(statefulSet.metadata.name, deployment.metadata.name);
    assert.deepEqual(statefulSet.spec.selector, deployment.spec.selector);
    assert.equal(statefulSet.spec.replicas, deployment.spec.replicas);
  });

  test('the claim: mounted at the image\'s VOLUME, ReadWriteOnce, larger than cache.store.maxBytes', () => {
    const [claim] = statefulSet.spec.volumeClaimTemplates as Obj[];
    assert.equal(claim.metadata.name, STORE_VOLUME);
    assert.deepEqual(claim.spec.accessModes, ['ReadWriteOnce']);
    const volumeDecl = /^VOLUME \["([^"]+)"\]$/m.exec(dockerfile);
    const mount = (statefulSet.spec.template.spec.containers[0].volumeMounts as Obj[]).find((m) => m.name === STORE_VOLUME);
    assert.equal(mount?.mountPath, volumeDecl?.[1]);
    assert.notEqual(mount?.readOnly, true);
    const maxBytes = Number(/maxBytes:\s*(\d+)/.exec(configMap.data['sigil.yaml'] as string)?.[1]);
    assert.ok(maxBytes > 0 && maxBytes < bytes(claim.spec.resources.requests.storage), 'the store stays within its volume');
  });

  test('a headless Service named by serviceName selects the pods; updates go one pod at a time', () => {
    assert.equal(statefulSet.spec.serviceName, headless.metadata.name);
    assert.equal(headless.spec.clusterIP, 'None');
    const labels = statefulSet.spec.template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(headless.spec.selector as Record<string, string>)) assert.equal(labels[k], v, k);
    assert.equal(statefulSet.spec.updateStrategy.type, 'RollingUpdate');
    assert.equal(statefulSet.spec.podManagementPolicy, 'Parallel');
  });
});
