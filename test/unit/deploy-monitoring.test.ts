// config/kubernetes/monitoring: the ServiceMonitor scrapes what the Service and the TLS Secret
// offer; the alert rules and the Grafana dashboard query only metrics a running sigil (with a
// content store) exports — read from its /metrics, not from a list kept by hand; the rules
// pass `promtool check rules` when promtool is on the PATH.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { exportedNames, findPromtool, metricNamesIn, promtool } from '../helpers/prometheus-text.js';
import { simpleConfig, startSigil, type SigilHandle } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const DIR = join(ROOT, 'config/kubernetes/monitoring');
/** Series Prometheus makes itself for every target; the only names not from sigil's /metrics. */
const PROMETHEUS_OWN = new Set(['up']);

type Obj = Record<string, any>; // manifests are untyped YAML: property chains are checked by the asserts

const kustomization = parse(await readFile(join(DIR, 'kustomization.yaml'), 'utf8')) as Obj;
const load = async (file: string): Promise<Obj> => parse(await readFile(join(DIR, file), 'utf8')) as Obj;
const serviceMonitor = await load('servicemonitor.yaml');
const rule = await load('prometheusrule.yaml');
const dashboard = JSON.parse(await readFile(join(DIR, 'grafana-dashboard.json'), 'utf8')) as Obj;
const base = async (file: string): Promise<Obj[]> => parseAllDocuments(await readFile(join(ROOT, 'config/kubernetes', file), 'utf8')).map((d) => d.toJS() as Obj);
const service = (await base('40-service.yaml'))[0];
const baseKustomization = (await base('kustomization.yaml'))[0];

/** Every PromQL expression of the dashboard: panel targets and query variables. */
function dashboardExprs(): string[] {
  const panels = (dashboard.panels as Obj[]).flatMap((p) => [p, ...((p.panels as Obj[] | undefined) ?? [])]);
  const targets = panels.flatMap((p) => (p.targets as Obj[] | undefined) ?? []).map((t) => t.expr as string);
  const vars = (dashboard.templating.list as Obj[]).filter((v) => v.type === 'query').map((v) => (typeof v.query === 'string' ? v.query : v.query.query) as string);
  return [...targets, ...vars.map((q) => q.replace(/^label_values\((.*?)(?:,\s*\w+)?\)$/, '$1'))];
}
const ruleList = (): Obj[] => (rule.spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]);

describe('config/kubernetes/monitoring', () => {
  let sigil: SigilHandle;
  let storeDir: string;
  let exported: Set<string>;

  before(async () => {
    storeDir = await tempDir('sigil-monitoring-');
    // a sigil with a content store: it exports every metric (the store's gauges only exist with one)
    sigil = await startSigil(simpleConfig([{ name: 'reg.test', url: 'http://127.0.0.1:9' }], `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1048576\n`));
    exported = exportedNames(await (await fetch(`${sigil.url}/metrics`)).text());
  });
  after(async () => {
    await sigil?.stop();
    await rm(storeDir, { recursive: true, force: true });
  });

  test('the kustomization lists the ServiceMonitor and the rules, and makes the dashboard a ConfigMap the Grafana sidecar loads', () => {
    assert.deepEqual(kustomization.resources, ['servicemonitor.yaml', 'prometheusrule.yaml']);
    const gen = (kustomization.configMapGenerator as Obj[])[0];
    assert.deepEqual(gen.files, ['grafana-dashboard.json']);
    assert.equal(gen.namespace, 'sigil');
    assert.equal(gen.options.labels.grafana_dashboard, '1');
    for (const r of [serviceMonitor, rule]) assert.equal(r.metadata.namespace, 'sigil');
  });

  test('the ServiceMonitor scrapes /metrics on the Service\'s port over HTTPS, checked with the CA and name the TLS Secret provides', () => {
    for (const [k, v] of Object.entries(serviceMonitor.spec.selector.matchLabels as Record<string, string>)) assert.equal(service.metadata.labels[k], v, k);
    assert.deepEqual(serviceMonitor.spec.namespaceSelector.matchNames, [service.metadata.namespace]);
    const [ep] = serviceMonitor.spec.endpoints as Obj[];
    assert.ok((service.spec.ports as Obj[]).some((p) => p.name === ep.port), `the Service has a port named ${ep.port}`);
    assert.equal(ep.path, '/metrics');
    assert.equal(ep.scheme, 'https');
    assert.equal(ep.tlsConfig.insecureSkipVerify, undefined, 'the certificate is checked');
    const tls = (baseKustomization.secretGenerator as Obj[]).find((g) => g.name === ep.tlsConfig.ca.secret.name);
    assert.ok(tls, 'the CA comes from the Secret the kustomization makes');
    assert.ok((tls.files as string[]).some((f) => f.startsWith(`${ep.tlsConfig.ca.secret.key}=`)));
    assert.equal(ep.tlsConfig.serverName, `${service.metadata.name}.${service.metadata.namespace}.svc`, 'the name tls/generate.sh always certifies');
  });

  test('the rules: the five alerts operators asked for (and sigil down), each with a severity and a summary', () => {
    const alerts = ruleList().map((r) => r.alert as string);
    for (const a of ['SigilDown', 'SigilDenialsSpike', 'SigilUpstreamErrors', 'SigilServingStale', 'SigilStoreFull', 'SigilVerificationSlow']) assert.ok(alerts.includes(a), a);
    for (const r of ruleList()) {
      assert.match(r.labels.severity, /^(critical|warning|info)$/, r.alert);
      assert.ok(r.annotations.summary, r.alert);
      assert.equal(typeof r.expr, 'string');
    }
    assert.match(ruleList().find((r) => r.alert === 'SigilDenialsSpike')!.expr, /verification="denied"/);
  });

  test('the alert rules query only metrics sigil exports', () => {
    for (const r of ruleList()) {
      const names = metricNamesIn(r.expr);
      assert.ok(names.length > 0, r.alert);
      for (const n of names) assert.ok(exported.has(n) || PROMETHEUS_OWN.has(n), `${r.alert}: ${n} is not in sigil's /metrics`);
    }
  });

  test('every dashboard query reads only metrics sigil exports, and the dashboard shows each sigil_ family', () => {
    const used = new Set<string>();
    for (const expr of dashboardExprs()) {
      const names = metricNamesIn(expr);
      assert.ok(names.length > 0, expr);
      for (const n of names) {
        assert.ok(exported.has(n), `${n} (in ${expr}) is not in sigil's /metrics`);
        used.add(n.replace(/_(bucket|sum|count)$/, ''));
      }
    }
    const shown = (family: string) => used.has(family) || [...used].some((u) => u.startsWith(family));
    const missing = [...exported].filter((n) => n.startsWith('sigil_') && !/_(bucket|sum|count)$/.test(n) && !shown(n));
    assert.deepEqual(missing, [], 'a sigil metric no panel shows');
  });

  test('the dashboard picks its data source and instances by variable (imports and sidecar provisioning alike)', () => {
    assert.equal(dashboard.uid, 'sigil-overview');
    const vars = new Map((dashboard.templating.list as Obj[]).map((v) => [v.name as string, v]));
    assert.equal(vars.get('datasource')?.type, 'datasource');
    assert.equal(vars.get('datasource')?.query, 'prometheus');
    for (const p of (dashboard.panels as Obj[]).filter((x) => x.type !== 'row')) {
      assert.equal(p.datasource.uid, '${datasource}', p.title);
      for (const t of p.targets as Obj[]) assert.match(t.expr, /instance=~"\$instance"/, p.title);
    }
  });

  test('promtool check rules accepts the rules (when promtool is on the PATH)', async (t) => {
    const path = findPromtool();
    if (!path) return t.skip('promtool is not on the PATH');
    const file = join(storeDir, 'sigil.rules.yml');
    await writeFile(file, stringify(rule.spec)); // the plain rule file: the PrometheusRule's spec
    const r = await promtool(path, ['check', 'rules', file]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, new RegExp(`SUCCESS: ${ruleList().length} rules found`));
  });
});
