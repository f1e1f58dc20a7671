// trust.tuf: the trusted root of a TUF repository (one the tests sign themselves, served on
// 127.0.0.1) is fetched and verified through @sigstore/tuf, kept fresh on a schedule, cached on
// disk, and never used when TUF verification fails: what was in use stays, down to the floor.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, chown, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, describe, mock, test } from 'node:test';
import { Registry } from 'prom-client';
import { TufMetrics } from '../audit/tuf-metrics.js';
import type { TufConfig } from '../config/types.js';
import { mergeTrust, PUBLIC_GOOD, readTrustedRoots } from '../verify/index.js';
import { LAST_VERIFIED_FILE } from './last-verified.js';
import { TrustSource, tufSource } from './trust-source.js';
import { MAX_TIMER_MS, TUF_RETRY_MS, TUF_START_WAIT_MS, TufRefresher } from './tuf-refresher.js';
import { fakeClock } from '../../test/helpers/clock.js';
import { capturingLogger, manualTimer } from '../../test/helpers/fake-registry.js';
import { freePort } from '../../test/helpers/net.js';
import { tempDir } from '../../test/helpers/temp.js';
import { LONG_AGO, serveTufRepo, TufRepo, type TufServer } from '../../test/helpers/tuf-repo.js';
import { PGI_ROOT, PUBLIC_GOOD_ROOT, writePkiRoot } from '../../test/helpers/verify-fixtures.js';

const REFRESH_MS = 3_600_000;
const PUBLIC_GOOD_TEXT = await readFile(PUBLIC_GOOD_ROOT, 'utf8');
/** Another valid trusted root (it lacks public-good's Rekor v2 log): what a repository rotates to. */
const OTHER_TEXT = await readFile(PGI_ROOT, 'utf8');

const servers: TufServer[] = [];
const refreshers: TufRefresher[] = [];
afterEach(() => {
  for (const r of refreshers.splice(0)) r.close();
});
after(async () => {
  for (const s of servers) await s.close();
});

async function repository(target = PUBLIC_GOOD_TEXT): Promise<{ repo: TufRepo; server: TufServer }> {
  const repo = await TufRepo.create({ 'trusted_root.json': target });
  const server = await serveTufRepo(repo.dir);
  servers.push(server);
  return { repo, server };
}

async function refresher(url: string, rootPath: string, opts: { offline?: boolean; cacheDir?: string } = {}) {
  const config: TufConfig = { url, rootPath, cacheDir: opts.cacheDir ?? (await tempDir('sigil-tuf-cache')), refreshMs: REFRESH_MS };
  const clock = fakeClock();
  const timer = manualTimer();
  const { logger, records } = capturingLogger();
  const registry = new Registry();
  const metrics = new TufMetrics(registry);
  const r = new TufRefresher({ config, logger, metrics, offline: opts.offline ?? false, now: clock.now, timer: timer.timer });
  refreshers.push(r);
  const floor = readTrustedRoots([PUBLIC_GOOD], { publicGoodPath: PUBLIC_GOOD_ROOT });
  const trust = new TrustSource(floor, [PUBLIC_GOOD], r);
  const counted = async (result: string): Promise<number> => (await metrics.refreshes.get()).values.find((v) => v.labels.result === result)?.value ?? -1;
  const gauges = async (): Promise<string> => registry.metrics();
  /** Fires the scheduled refresh and waits for it. */
  const fire = async (): Promise<void> => {
    timer.fire();
    await r.settled();
  };
  return { r, config, clock, timer, records, trust, counted, gauges, fire };
}

describe('TufRefresher', () => {
  test('a normal fetch: every metadata role and the target verified, the root in use, cached on disk, the next refresh scheduled', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const t = await refresher(server.url, repo.initialRootPath);
    const floorFingerprint = t.trust.current().fingerprint;
    await t.r.start();
    assert.equal(t.r.latest?.rootVersion, 1);
    assert.equal(t.r.latest?.root.canonical, readTrustedRoots([PGI_ROOT], { publicGoodPath: PUBLIC_GOOD_ROOT })[0].canonical);
    assert.deepEqual(server.requests, ['/2.root.json', '/timestamp.json', '/1.snapshot.json', '/1.targets.json', `/targets/${createHash('sha256').update(OTHER_TEXT).digest('hex')}.trusted_root.json`]);
    // The floor and the TUF root together; a new fingerprint.
    const bundle = t.trust.current();
    assert.deepEqual(bundle.sources, [PUBLIC_GOOD, tufSource(server.url)]);
    assert.notEqual(bundle.fingerprint, floorFingerprint);
    assert.equal(await t.counted('success'), 1);
    assert.equal(await t.counted('failure'), 0);
    assert.deepEqual(t.timer.armed, [REFRESH_MS]);
    const record = JSON.parse(await readFile(join(t.config.cacheDir, LAST_VERIFIED_FILE), 'utf8')) as { url: string; rootVersion: number; trustedRoot: string };
    assert.deepEqual([record.url, record.rootVersion, record.trustedRoot], [server.url, 1, OTHER_TEXT]);
    assert.deepEqual(t.r.status(), {
      url: server.url,
      offline: false,
      rootVersion: 1,
      verifiedAt: new Date(t.clock.now()).toISOString(),
      ageSeconds: 0,
      lastAttempt: { at: new Date(t.clock.now()).toISOString(), ok: true },
    });
    t.clock.advance(90_000);
    assert.equal(t.r.status().ageSeconds, 90);
    assert.match(await t.gauges(), /^sigil_tuf_root_version 1$/m);
    assert.match(await t.gauges(), /^sigil_tuf_root_age_seconds 90$/m);
    assert.equal(t.r.degraded(), null);
  });

  test('on the interval: an unchanged repository keeps the same trust (same fingerprint); a new target replaces it', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const t = await refresher(server.url, repo.initialRootPath);
    await t.r.start();
    const first = t.trust.current();
    t.clock.advance(REFRESH_MS);
    await t.fire();
    assert.equal(await t.counted('success'), 2);
    assert.equal(t.trust.current(), first, 'the same content: the same bundle, no verdict is lost');
    assert.equal(t.r.status().ageSeconds, 0, 'the age counts from the last verification');
    await repo.setTarget('trusted_root.json', PUBLIC_GOOD_TEXT);
    await t.fire();
    const second = t.trust.current();
    assert.notEqual(second.fingerprint, first.fingerprint);
    // public-good is the floor already: the union is the floor's content with one source more.
    assert.equal(t.r.latest?.root.canonical, readTrustedRoots([PUBLIC_GOOD], { publicGoodPath: PUBLIC_GOOD_ROOT })[0].canonical);
    assert.deepEqual(t.timer.armed, [REFRESH_MS]);
  });

  test('a rotated root (v2 signed by v1\'s root key and its own), with new keys for every role, is followed', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const t = await refresher(server.url, repo.initialRootPath);
    await t.r.start();
    await repo.rotateRoot({ alsoRotate: ['timestamp', 'snapshot', 'targets'] });
    await t.fire();
    assert.equal(t.r.latest?.rootVersion, 2);
    assert.ok(server.requests.filter((p) => p === '/2.root.json').length === 2 && server.requests.includes('/3.root.json'), server.requests.join(' '));
    assert.match(await t.gauges(), /^sigil_tuf_root_version 2$/m);
    assert.equal(t.r.degraded(), null);
  });

  test('a root v2 not signed by v1\'s keys is refused: v1 and the root it verified stay in use, the failure is counted and reported', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const t = await refresher(server.url, repo.initialRootPath);
    await t.r.start();
    const before = t.trust.current();
    await repo.rotateRoot({ signedByOld: false, alsoRotate: ['timestamp', 'snapshot', 'targets'] });
    await repo.setTarget('trusted_root.json', PUBLIC_GOOD_TEXT);
    t.clock.advance(REFRESH_MS);
    await t.fire();
    assert.equal(t.r.latest?.rootVersion, 1);
    assert.equal(t.trust.current(), before);
    assert.equal(await t.counted('failure'), 1);
    assert.match(t.r.degraded() ?? '', /^refresh from http:\/\/127\.0\.0\.1:\d+ failed at .*: .*; using the trusted root verified at .* \(TUF root version 1\) and trust\.trustedRoot$/);
    assert.match(t.r.status().lastAttempt?.error ?? '', /root was signed by 0\/1 keys/);
    assert.deepEqual(t.timer.armed, [TUF_RETRY_MS], 'a failure is retried sooner than the interval');
    const warn = t.records.find((l) => l.msg === 'trust: TUF refresh failed; the trust in use stays');
    assert.ok(warn, 'logged');
  });

  test('expired metadata is refused: the root verified before stays in use', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const t = await refresher(server.url, repo.initialRootPath);
    await t.r.start();
    const before = t.trust.current();
    repo.expires.timestamp = LONG_AGO;
    await repo.setTarget('trusted_root.json', PUBLIC_GOOD_TEXT);
    await t.fire();
    assert.equal(t.trust.current(), before);
    assert.match(t.r.status().lastAttempt?.error ?? '', /expired/i);
    assert.equal(await t.counted('failure'), 1);
  });

  test('a repository rolled back to older, validly signed metadata (and the older root it names) is refused: the newer root stays', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const older = await readFile(join(repo.dir, 'timestamp.json')); // version 1: snapshot 1, targets 1, OTHER_TEXT
    const t = await refresher(server.url, repo.initialRootPath);
    await t.r.start();
    const first = t.trust.current();
    await repo.setTarget('trusted_root.json', PUBLIC_GOOD_TEXT);
    await t.fire();
    const newer = t.trust.current();
    assert.notEqual(newer.fingerprint, first.fingerprint, 'the update was taken');
    await writeFile(join(repo.dir, 'timestamp.json'), older); // a mirror (or an attacker on the path) serving the old state
    await t.fire();
    assert.equal(t.trust.current(), newer, 'the rolled-back root is not used');
    assert.match(t.r.status().lastAttempt?.error ?? '', /version/i);
    assert.equal(await t.counted('failure'), 1);
  });

  test('expired metadata at the first start: nothing from the repository is used, the floor alone', async () => {
    const repo = await TufRepo.create();
    repo.expires.snapshot = LONG_AGO;
    await repo.setTarget('trusted_root.json', OTHER_TEXT);
    const server = await serveTufRepo(repo.dir);
    servers.push(server);
    const t = await refresher(server.url, repo.initialRootPath);
    const floor = t.trust.current();
    await t.r.start();
    assert.equal(t.r.latest, null);
    assert.equal(t.trust.current(), floor);
    assert.match(t.r.status().lastAttempt?.error ?? '', /expired/i);
    assert.match(t.r.degraded() ?? '', /using trust\.trustedRoot only$/);
  });

  test('a tampered target (bytes that do not match the signed hashes) is never used', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    await repo.tamperTarget('trusted_root.json', PUBLIC_GOOD_TEXT);
    const t = await refresher(server.url, repo.initialRootPath);
    const floor = t.trust.current();
    await t.r.start();
    assert.equal(t.r.latest, null);
    assert.equal(t.trust.current(), floor);
    assert.equal(await t.counted('failure'), 1);
    // Published properly afterwards, it is taken at the next refresh.
    await repo.setTarget('trusted_root.json', OTHER_TEXT);
    await t.fire();
    assert.equal(t.r.status().rootVersion, 1);
    assert.notEqual(t.trust.current().fingerprint, floor.fingerprint);
  });

  test('a verified target that is not a trusted root sigil can use is refused too', async () => {
    const { repo, server } = await repository('{"mediaType":"application/json"}');
    const t = await refresher(server.url, repo.initialRootPath);
    await t.r.start();
    assert.equal(t.r.latest, null);
    assert.match(t.r.status().lastAttempt?.error ?? '', /is not a Sigstore trusted root/);
  });

  test('unreachable at start: the floor serves, the failure says so, the retry comes sooner; the cached root survives a restart', async () => {
    const port = await freePort();
    const { repo, server } = await repository(OTHER_TEXT);
    const cacheDir = await tempDir('sigil-tuf-cache');
    const down = await refresher(`http://127.0.0.1:${port}`, repo.initialRootPath, { cacheDir });
    const floor = down.trust.current();
    await down.r.start();
    assert.equal(down.trust.current(), floor);
    assert.equal(down.r.status().rootVersion, null);
    assert.match(down.r.degraded() ?? '', /using trust\.trustedRoot only$/);
    assert.match(await down.gauges(), /^sigil_tuf_root_age_seconds \+Inf$/m);
    assert.deepEqual(down.timer.armed, [TUF_RETRY_MS]);
    // A sigil that verified a root once starts from it when the repository is down.
    const up = await refresher(server.url, repo.initialRootPath, { cacheDir: join(cacheDir, 'other') });
    await up.r.start();
    const again = await refresher(`http://127.0.0.1:${port}`, repo.initialRootPath, { cacheDir: join(cacheDir, 'other') });
    // The record is of another URL: not used.
    await again.r.start();
    assert.equal(again.r.latest, null);
    const restarted = await refresher(server.url, repo.initialRootPath, { cacheDir: join(cacheDir, 'other') });
    server.failWith = 503;
    try {
      await restarted.r.start();
    } finally {
      server.failWith = null;
    }
    assert.equal(restarted.r.latest?.rootVersion, 1);
    assert.equal(restarted.trust.current().fingerprint, up.trust.current().fingerprint);
    assert.match(restarted.r.degraded() ?? '', /using the trusted root verified at .* \(TUF root version 1\) and trust\.trustedRoot$/);
  });

  test('offline: the repository is never contacted; the root cached by an earlier run is used', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const cacheDir = await tempDir('sigil-tuf-cache');
    const fresh = await refresher(server.url, repo.initialRootPath, { offline: true });
    await fresh.r.start();
    assert.equal(fresh.r.latest, null);
    assert.deepEqual(server.requests, []);
    assert.deepEqual(fresh.timer.armed, [], 'nothing scheduled');
    const online = await refresher(server.url, repo.initialRootPath, { cacheDir });
    await online.r.start();
    const asked = server.requests.length;
    const offline = await refresher(server.url, repo.initialRootPath, { cacheDir, offline: true });
    await offline.r.start();
    assert.equal(server.requests.length, asked);
    assert.equal(offline.r.latest?.rootVersion, 1);
    assert.equal(offline.trust.current().fingerprint, online.trust.current().fingerprint);
    assert.equal(offline.r.status().lastAttempt, null);
    assert.equal(offline.r.degraded(), null);
  });

  test('a cached record another user wrote, or could have changed, is not used: offline, the floor alone; sigil\'s own is', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const cacheDir = await tempDir('sigil-tuf-cache');
    const online = await refresher(server.url, repo.initialRootPath, { cacheDir });
    await online.r.start();
    const record = join(cacheDir, LAST_VERIFIED_FILE);
    // What another user would put there: a root of their own (a bare CA) in a well-formed record.
    const planted = JSON.parse(await readFile(record, 'utf8')) as { trustedRoot: string };
    planted.trustedRoot = await readFile(await writePkiRoot(cacheDir), 'utf8');
    await writeFile(record, JSON.stringify(planted));
    const [uid, gid] = [process.geteuid?.() ?? 0, process.getegid?.() ?? 0];
    const floorFingerprint = mergeTrust(readTrustedRoots([PUBLIC_GOOD], { publicGoodPath: PUBLIC_GOOD_ROOT }), [PUBLIC_GOOD]).fingerprint;
    for (const [mode, owner, group, why] of [
      [0o602, uid, gid, /not used: writable by other users \(mode 602\)$/],
      [0o620, uid, gid + 4242, new RegExp(`not used: writable by group ${gid + 4242}, not sigil's \\(gid ${gid}\\) \\(mode 620\\)$`)],
      [0o600, uid + 4242, gid, new RegExp(`not used: owned by uid ${uid + 4242}, not by sigil's user \\(uid ${uid}\\)$`)],
    ] as const) {
      await chmod(record, mode);
      await chown(record, owner, group);
      const offline = await refresher(server.url, repo.initialRootPath, { cacheDir, offline: true });
      await offline.r.start();
      assert.equal(offline.r.latest, null, `mode ${mode.toString(8)}, uid ${owner}, gid ${group}`);
      assert.equal(offline.trust.current().fingerprint, floorFingerprint, 'the floor alone');
      const warned = offline.records.find((l) => l.msg === 'trust: the cached TUF trusted root is not used');
      assert.match(String(warned?.err), why);
    }
    // Owned by sigil's user, writable by its own group (a Kubernetes fsGroup volume): trusted as written.
    await chown(record, uid, gid);
    await chmod(record, 0o660);
    const own = await refresher(server.url, repo.initialRootPath, { cacheDir, offline: true });
    await own.r.start();
    assert.equal(own.r.latest?.rootVersion, 1, 'a record of sigil\'s user is used as it is (not verified again)');
    assert.notEqual(own.trust.current().fingerprint, floorFingerprint);
  });

  test('a cached record that is damaged is ignored (logged), and the repository asked', async () => {
    const { repo, server } = await repository(OTHER_TEXT);
    const cacheDir = await tempDir('sigil-tuf-cache');
    await writeFile(join(cacheDir, LAST_VERIFIED_FILE), '{"url":');
    const t = await refresher(server.url, repo.initialRootPath, { cacheDir });
    await t.r.start();
    assert.ok(t.records.some((l) => l.msg === 'trust: the cached TUF trusted root is not used'));
    assert.equal(t.r.latest?.rootVersion, 1);
  });

  test('start-up waits at most TUF_START_WAIT_MS for the first refresh', async () => {
    const config: TufConfig = { url: 'http://127.0.0.1:1', cacheDir: await tempDir('sigil-tuf-cache'), refreshMs: REFRESH_MS };
    const timer = manualTimer();
    let release: () => void = () => {};
    const r = new TufRefresher({
      config,
      logger: capturingLogger().logger,
      offline: false,
      timer: timer.timer,
      fetch: () => new Promise((_resolve, reject) => (release = () => reject(new Error('gave up')))),
    });
    refreshers.push(r);
    const started = r.start();
    while (timer.armed.length === 0) await new Promise((resolve) => setImmediate(resolve)); // past the cache read
    assert.deepEqual(timer.armed, [TUF_START_WAIT_MS]);
    timer.fire();
    await started;
    assert.equal(r.latest, null);
    release();
    await r.settled();
    assert.deepEqual(timer.armed, [TUF_RETRY_MS]);
  });
  test('a refresh interval longer than a timer can wait (2^31-1 ms, ~24.8 days) is waited out, not fired at once', async () => {
    // Node fires a longer setTimeout after 1 ms: refresh: 720h asked the repository without pause.
    const refreshMs = 720 * 3_600_000;
    const config: TufConfig = { url: 'https://tuf.test', cacheDir: await tempDir('sigil-tuf-cache'), refreshMs };
    let fetches = 0;
    mock.timers.enable({ apis: ['setTimeout'] }); // sigil's own timers, as they run; moved by hand
    try {
      const r = new TufRefresher({
        config,
        logger: capturingLogger().logger,
        offline: false,
        fetch: async () => {
          fetches++;
          return { trustedRoot: OTHER_TEXT, rootVersion: 1 };
        },
      });
      refreshers.push(r);
      await r.start();
      assert.equal(fetches, 1);
      // To the longest single wait, then to a millisecond before the interval is over.
      for (const ms of [1, 60_000, MAX_TIMER_MS - 60_001, refreshMs - MAX_TIMER_MS - 1]) {
        mock.timers.tick(ms);
        await r.settled();
        assert.equal(fetches, 1, `asked again after ${ms} ms more`);
      }
      mock.timers.tick(1);
      await new Promise((resolve) => setImmediate(resolve));
      await r.settled();
      assert.equal(fetches, 2, 'asked again once the interval is over');
    } finally {
      mock.timers.reset();
    }
  });
});
