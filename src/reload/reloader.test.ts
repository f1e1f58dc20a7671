import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { BUILT_IN_SOURCE, DEFAULT_CONFIG_YAML } from '../config/defaults.js';
import { loadConfigFromText, type LoadResult } from '../config/load.js';
import type { Config } from '../config/types.js';
import { capturingLogger } from '../../test/helpers/fake-registry.js';
import { Reloader } from './reloader.js';

const T0 = Date.UTC(2030, 0, 1);

function yaml(listen: string, mode = 'warn'): string {
  return `server:\n  listen: ${listen}\nupstreams:\n  - name: reg.test\n    url: http://127.0.0.1:1\npolicies:\n  - name: p\n    match: ["**"]\n    mode: ${mode}\n    authorities:\n      - keyless: { issuerRegExp: "^.*$", subjectRegExp: "^.*$" }\n`;
}

const load = (text: string): Promise<LoadResult> => loadConfigFromText(text, { source: '/etc/sigil/sigil.yaml', env: {}, baseDir: '/' });

async function rig(first: string) {
  const initial = await load(first);
  if (!initial.ok) throw new Error('bad initial config');
  let running: Config = initial.config;
  let text = first;
  let clock = T0;
  const installed: Config[] = [];
  let installFails: string | null = null;
  let loads = 0;
  let gate: Promise<void> | null = null;
  const metrics = new Metrics({ defaultMetrics: false });
  const { logger, records } = capturingLogger();
  const reloader = new Reloader({
    load: async () => {
      loads++;
      if (gate) await gate;
      return load(text);
    },
    running: () => running,
    install: async (c) => {
      if (installFails !== null) throw new Error(installFails);
      installed.push(c);
      running = c;
      return installed.length + 1;
    },
    logger,
    metrics,
    now: () => clock,
  });
  return {
    reloader,
    metrics,
    records,
    installed,
    setText: (t: string) => (text = t),
    failInstall: (why: string | null) => (installFails = why),
    advance: (ms: number) => (clock += ms),
    hold: () => {
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      return () => {
        gate = null;
        open();
      };
    },
    get loads() {
      return loads;
    },
  };
}

async function metric(m: Metrics, name: string, labels = ''): Promise<number | undefined> {
  const line = (await m.registry.metrics()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

test('a valid config is installed, counted as a success, and its load time is the gauge', async () => {
  const r = await rig(yaml('127.0.0.1:5000'));
  r.setText(yaml('127.0.0.1:5000', 'enforce'));
  r.advance(60_000);
  const outcome = await r.reloader.reload('SIGHUP');
  assert.deepEqual(outcome, { ok: true, generation: 2, restartNeeded: [] });
  assert.equal(r.installed[0].policies[0].mode, 'enforce');
  assert.equal(await metric(r.metrics, 'sigil_config_reloads_total', '{result="success"}'), 1);
  assert.equal(await metric(r.metrics, 'sigil_config_reloads_total', '{result="failure"}'), 0);
  assert.equal(await metric(r.metrics, 'sigil_config_last_reload_success_timestamp_seconds'), (T0 + 60_000) / 1000);
  assert.equal(await metric(r.metrics, 'sigil_config_last_reload_successful'), 1);
  const done = r.records.find((x) => x.msg === 'config reloaded');
  assert.equal(done?.trigger, 'SIGHUP');
  assert.equal(done?.generation, 2);
  assert.deepEqual(r.reloader.degraded(), {});
});

test('a config that does not validate is refused: every problem logged, counted, shown as degraded; nothing installed', async () => {
  const r = await rig(yaml('127.0.0.1:5000'));
  r.setText(yaml('127.0.0.1:5000', 'enforse').replace('upstreams:', 'bogus: 1\nupstreams:'));
  const outcome = await r.reloader.reload('file change');
  assert.equal(outcome.ok, false);
  assert.equal(r.installed.length, 0);
  const problems = outcome.ok ? [] : outcome.problems;
  assert.equal(problems.length, 2, problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('bogus: ')), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('policies[0].mode: ')), problems.join('\n'));
  const logged = r.records.filter((x) => x.level === 50 && String(x.msg).startsWith('config reload: ')).map((x) => x.msg);
  assert.deepEqual(logged, problems.map((p) => `config reload: ${p}`), 'one error line per problem');
  assert.ok(r.records.some((x) => x.msg === 'config reload refused; the running config keeps serving' && x.generation === 1));
  assert.equal(await metric(r.metrics, 'sigil_config_reloads_total', '{result="failure"}'), 1);
  assert.equal(await metric(r.metrics, 'sigil_config_last_reload_successful'), 0);
  assert.equal(await metric(r.metrics, 'sigil_config_last_reload_success_timestamp_seconds'), T0 / 1000, 'the serving config is still the first one');
  const degraded = r.reloader.degraded().config ?? '';
  assert.match(degraded, /\(file change\) refused, 2 problem\(s\): /);
  assert.match(degraded, /policies\[0\]\.mode: /);
  assert.match(degraded, /still serving the config loaded at 2030-01-01T00:00:00\.000Z/);

  r.setText(yaml('127.0.0.1:5000', 'enforce'));
  assert.equal((await r.reloader.reload('SIGHUP')).ok, true);
  assert.deepEqual(r.reloader.degraded(), {}, 'a successful reload clears it');
  assert.equal(await metric(r.metrics, 'sigil_config_last_reload_successful'), 1);
});

test('a config that validates but cannot be installed (e.g. an unreadable trust root) is refused with the reason', async () => {
  const r = await rig(yaml('127.0.0.1:5000'));
  r.failInstall('trust.trustedRoot: /etc/sigil/root.json: not a trusted root');
  const outcome = await r.reloader.reload('SIGHUP');
  assert.deepEqual(outcome, { ok: false, problems: ['trust.trustedRoot: /etc/sigil/root.json: not a trusted root'] });
  assert.equal(await metric(r.metrics, 'sigil_config_reloads_total', '{result="failure"}'), 1);
  assert.match(r.reloader.degraded().config ?? '', /not a trusted root/);
});

test('a changed listen address is not applied: the rest is, with a warning and a readiness note that a restart is needed', async () => {
  const r = await rig(yaml('127.0.0.1:5000'));
  r.setText(yaml('0.0.0.0:6000', 'enforce'));
  const outcome = await r.reloader.reload('SIGHUP');
  assert.equal(outcome.ok, true);
  assert.deepEqual(r.installed[0].server.listen, { host: '127.0.0.1', port: 5000 });
  assert.equal(r.installed[0].policies[0].mode, 'enforce');
  assert.ok(r.records.some((x) => x.level === 40 && /server\.listen: 0\.0\.0\.0:6000 needs a restart/.test(String(x.msg))));
  assert.match(r.reloader.degraded().config ?? '', /^restart needed: server\.listen/);
});

test('reloads asked for during a reload run once more after it, together, and read the latest file', async () => {
  const r = await rig(yaml('127.0.0.1:5000'));
  const open = r.hold();
  const first = r.reloader.reload('SIGHUP');
  const second = r.reloader.reload('file change');
  const third = r.reloader.reload('SIGHUP');
  assert.equal(second, third, 'one queued reload for both');
  r.setText(yaml('127.0.0.1:5000', 'enforce'));
  open();
  const [a, b] = await Promise.all([first, second]);
  assert.equal(r.loads, 2);
  assert.deepEqual([a.ok && a.generation, b.ok && b.generation], [2, 3]);
  assert.equal(r.installed[1].policies[0].mode, 'enforce');
  assert.equal((await r.reloader.reload('SIGHUP')).ok, true, 'and reloading goes on afterwards');
  assert.equal(r.loads, 3);
});

test('a config file gone missing is refused, not replaced by the built-in default (every image in warn mode); with the built-in default running, a file found is loaded', async () => {
  const file = await load(yaml('127.0.0.1:5000', 'enforce'));
  const builtIn = await loadConfigFromText(DEFAULT_CONFIG_YAML, { source: BUILT_IN_SOURCE, env: {}, baseDir: '/' });
  if (!file.ok || !builtIn.ok) throw new Error('bad test config');
  let running: Config = file.config;
  let lookup: LoadResult = builtIn; // the lookup finds no config file any more
  const installed: Config[] = [];
  const reloader = new Reloader({
    load: async () => lookup,
    running: () => running,
    install: async (c) => {
      installed.push(c);
      running = c;
      return installed.length + 1;
    },
    logger: capturingLogger().logger,
    metrics: new Metrics({ defaultMetrics: false }),
  });
  const outcome = await reloader.reload('file change');
  assert.deepEqual(outcome, { ok: false, problems: ['/etc/sigil/sigil.yaml is gone: a reload does not fall back to the built-in default; the config loaded from it keeps serving'] });
  assert.equal(installed.length, 0, 'the enforce policy keeps serving');

  running = builtIn.config; // started with no config file
  lookup = file; // then one was created
  assert.equal((await reloader.reload('SIGHUP')).ok, true);
  assert.equal(installed[0].policies[0].mode, 'enforce');
});
