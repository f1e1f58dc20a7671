import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import semver from 'semver';
import { UsageError } from '../../src/cli/args.js';
import type { CliIo } from '../../src/cli/io.js';
import { mirrorCommand } from '../../src/cli/mirror.js';
import { parseRefName, refName } from '../../src/mirror/oci-layout.js';
import { selectTags } from '../../src/mirror/select.js';
import { parseMirrorSpec } from '../../src/mirror/spec.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';
import type { Digest } from '../../src/oci/digest.js';
import { pushImage, pushIndex } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { compileConfig } from '../helpers/sigil.js';

// Which tags `sigil mirror` selects, against a real registry's tag list, and how a bad FILE is reported.
const TAGS = ['1.0.0', '1.2.0', '1.2.5', 'v1.3.0', '2.0.0', 'latest', 'foo'];
let registry: RegistryHandle;
let dir: string;
let cfg: string;
let storeDir: string;

function capture(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { env: {}, cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) }, out: () => out, err: () => err };
}

interface JsonResult {
  tag: string;
  status: string;
  digest?: string;
  reason?: string;
}

async function mirror(fileText: string, extra: string[] = []): Promise<{ code: number; results: JsonResult[]; err: string; out: string }> {
  const file = join(dir, `mirror-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, fileText);
  const c = capture();
  const code = await mirrorCommand(c.io, [file, '--config', cfg, '--json', ...extra]);
  const out = c.out();
  return { code, results: out ? (JSON.parse(out) as { results: JsonResult[] }).results : [], err: c.err(), out };
}

before(async () => {
  registry = await startRegistry();
  dir = await tempDir('sigil-mirror-select-');
  storeDir = join(dir, 'store');
  for (const t of TAGS) await pushImage({ url: registry.url }, 'lab/app', t);
  await pushIndex({ url: registry.url }, 'lab/multi', '1.0', [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  cfg = join(dir, 'sigil.yaml');
  await writeFile(
    cfg,
    [
      'upstreams:',
      '  - name: reg.test',
      `    url: ${registry.url}`,
      'defaultUpstream: reg.test',
      'policies:',
      '  - name: lab',
      '    match: ["reg.test/lab/**"]',
      '    mode: "off"',
      'cache:',
      '  store:',
      `    dir: ${storeDir}`,
      '    maxBytes: 1073741824',
      '',
    ].join('\n'),
  );
});
after(async () => {
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('tag selection', () => {
  test('semver ">=1.2 <2" picks 1.2.0, 1.2.5 and v1.3.0 (leading v allowed, non-semver tags ignored)', () => {
    const picked = selectTags({ tags: [], semver: { text: '>=1.2 <2', range: new semver.Range('>=1.2 <2') } }, TAGS);
    assert.deepEqual(picked.map((p) => p.tag), ['v1.3.0', '1.2.5', '1.2.0']);
  });

  test('latest: 2 picks the two highest releases; explicit tags come first, even when not listed', () => {
    assert.deepEqual(selectTags({ tags: [], latest: 2 }, TAGS).map((p) => p.tag), ['2.0.0', 'v1.3.0']);
    const both = selectTags({ tags: ['foo', '9.9.9'], latest: 1 }, [...TAGS, '3.0.0-rc.1']);
    // a prerelease is not a "latest" release
    assert.deepEqual(both.map((p) => [p.tag, p.by.join('+')]), [['foo', 'tags'], ['9.9.9', 'tags'], ['2.0.0', 'latest']]);
  });

  test('mirror against the registry copies exactly the tags the range and latest name', async () => {
    const r = await mirror('images:\n  - image: reg.test/lab/app\n    semver: ">=1.2 <2"\n');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.results.map((x) => x.tag).sort(), ['1.2.0', '1.2.5', 'v1.3.0']);
    assert.ok(r.results.every((x) => x.status === 'unverified' && /mode off/.test(x.reason ?? '')), JSON.stringify(r.results));
    assert.match(r.err, /reg\.test\/lab\/app: 3 tag\(s\) selected: v1\.3\.0 1\.2\.5 1\.2\.0/);

    const l = await mirror('images:\n  - image: lab/app\n    latest: 2\n    tags: [foo]\n');
    assert.equal(l.code, 0, l.err);
    assert.deepEqual(l.results.map((x) => x.tag), ['foo', '2.0.0', 'v1.3.0']);

    const store = await ContentStore.open({ dir: storeDir, maxBytes: 1 << 30 });
    try {
      const tags = (await new Catalog(store).listTags('reg.test', 'lab/app')).sort();
      assert.deepEqual(tags, ['1.2.0', '1.2.5', '2.0.0', 'foo', 'v1.3.0']);
    } finally {
      await store.close();
    }
  });

  test('a tag that does not exist is reported as failed, the others are mirrored (exit 1)', async () => {
    const r = await mirror('images:\n  - image: reg.test/lab/app\n    tags: ["1.0.0", nope]\n');
    assert.equal(r.code, 1);
    assert.deepEqual(r.results.map((x) => [x.tag, x.status]), [['1.0.0', 'unverified'], ['nope', 'failed']]);
    assert.match(r.results[1].reason ?? '', /MANIFEST_UNKNOWN/);
    const text = capture();
    const file = join(dir, 'plain.yaml');
    await writeFile(file, 'images:\n  - image: reg.test/lab/app\n    tags: ["1.0.0", nope]\n');
    assert.equal(await mirrorCommand(text.io, [file, '--config', cfg]), 1);
    assert.match(text.out(), /^IMAGE\s+TAG\s+DIGEST\s+STATUS\s+SIGNER\s+BYTES\s+NOTE$/m);
    assert.match(text.out(), /reg\.test\/lab\/app\s+nope\s+-\s+failed/);
    assert.match(text.out(), /2 image\(s\): 0 verified, 1 unverified, 0 signature, 0 denied, 1 failed/);
    // stderr is not a terminal here: plain lines, no cursor control
    assert.doesNotMatch(text.err(), /\x1b\[/);
    assert.match(text.err(), /^\[1\/2\] reg\.test\/lab\/app:1\.0\.0 unverified sha256:[a-f0-9]{64} \(\d+ objects/m);
  });
});

describe('progress and limits', () => {
  test('without a terminal, progress lines while an image downloads, with totals and rates, and the totals at the end', async () => {
    // images not mirrored before, so that their blobs are downloaded
    for (const t of ['a', 'b']) await pushImage({ url: registry.url }, 'lab/fresh', t);
    const file = join(dir, 'lines.yaml');
    await writeFile(file, 'images:\n  - image: reg.test/lab/fresh\n    tags: [a, b]\n');
    const c = capture();
    // every blob chunk past the interval makes a line: an interval of 0 shows them all
    assert.equal(await mirrorCommand(c.io, [file, '--config', cfg], { progress: { now: Date.now, intervalMs: 0 } }), 0, c.err());
    assert.match(c.err(), /^\[1\/2\] reg\.test\/lab\/fresh:a … \d[\d.]* (B|KiB) at \S+ (B|KiB|MiB)\/s; total \d[\d.]* (B|KiB) in \d[\d.]* s \(\S+ \S+\/s\)$/m);
    assert.match(c.err(), /^\[2\/2\] reg\.test\/lab\/fresh:b … .*; total /m);
    assert.match(c.err(), /^2 image\(s\) in \d[\d.]* s: \d[\d.]* (B|KiB) downloaded \(.*\/s\)$/m);
    assert.doesNotMatch(c.err(), /\x1b/);
  });

  test('a platforms filter that selects nothing of an index says so, naming the platforms there are (exit 1)', async () => {
    const r = await mirror('images:\n  - image: reg.test/lab/multi\n    tags: ["1.0"]\n    platforms: [linux/s390x]\n');
    assert.equal(r.code, 1, r.err);
    assert.equal(r.results[0].status, 'failed');
    assert.equal(r.results[0].reason, 'platforms [linux/s390x] match none of the 2 manifest(s) of this index (linux/amd64, linux/arm64): nothing to mirror');
    const store = await ContentStore.open({ dir: storeDir, maxBytes: 1 << 30 });
    try {
      assert.equal(await new Catalog(store).getTag('reg.test', 'lab/multi', '1.0'), null);
      assert.equal(await store.has(r.results[0].digest as Digest), false);
    } finally {
      await store.close();
    }
  });

  test('on a terminal the progress line is redrawn in place; the summary stays plain', async () => {
    const file = join(dir, 'tty.yaml');
    await writeFile(file, 'images:\n  - image: reg.test/lab/app\n    tags: ["1.0.0"]\n');
    const c = capture();
    assert.equal(await mirrorCommand(c.io, [file, '--config', cfg], { stderrIsTTY: true }), 0);
    assert.match(c.err(), /\r\x1b\[K\[1\/1\] reg\.test\/lab\/app:1\.0\.0 …/);
    assert.match(c.err(), /\r\x1b\[K\[1\/1\] reg\.test\/lab\/app:1\.0\.0 unverified sha256:/);
    assert.doesNotMatch(c.out(), /\x1b/);
  });

  test('a store too small for the mirror: the evicted image is failed and gets no tag record', async () => {
    const small = join(dir, 'small.yaml');
    const tinyStore = join(dir, 'tiny-store');
    await writeFile(small, `upstreams:\n  - name: reg.test\n    url: ${registry.url}\ncache:\n  store:\n    dir: ${tinyStore}\n    maxBytes: 1500\n`);
    const file = join(dir, 'big.yaml');
    await writeFile(file, 'images:\n  - image: reg.test/lab/app\n    tags: ["2.0.0"]\n');
    const c = capture();
    assert.equal(await mirrorCommand(c.io, [file, '--config', small, '--json']), 1);
    const [r] = (JSON.parse(c.out()) as { results: JsonResult[] }).results;
    assert.equal(r.status, 'failed');
    assert.match(r.reason ?? '', /evicted while mirroring: cache\.store\.maxBytes is too small/);
    const store = await ContentStore.open({ dir: tinyStore, maxBytes: 1 << 30 });
    try {
      assert.equal(await new Catalog(store).getTag('reg.test', 'lab/app', '2.0.0'), null);
    } finally {
      await store.close();
    }
  });

  test('--help prints the FILE format', async () => {
    const c = capture();
    assert.equal(await mirrorCommand(c.io, ['--help']), 0);
    assert.match(c.out(), /semver: ">=1\.2 <2"/);
  });
});

describe('OCI layout ref names', () => {
  test('<upstream>/<repository>:<tag> and …@<digest> round-trip; anything else is refused', () => {
    const d = `sha256:${'a'.repeat(64)}` as const;
    for (const e of [
      { upstream: 'reg.test', repository: 'prod/app', tag: 'v1.3.0', digest: d },
      { upstream: 'registry.internal:5000', repository: 'a/b/c', tag: `sha256-${'a'.repeat(64)}.sig`, digest: d },
      { upstream: 'ghcr.io', repository: 'acme/app', digest: d },
    ]) {
      const ref = refName(e);
      const back = parseRefName(ref);
      assert.deepEqual(back, e.tag !== undefined ? { upstream: e.upstream, repository: e.repository, tag: e.tag } : { upstream: e.upstream, repository: e.repository, digest: d }, ref);
    }
    assert.equal(refName({ upstream: 'registry.internal:5000', repository: 'app', tag: '1.0', digest: d }), 'registry.internal:5000/app:1.0');
    for (const bad of ['1.0', 'app:1.0', 'reg.test/app', 'reg.test/App:1', 'Reg.test/app:1', 'reg.test/app@sha256:12', 'reg.test/app:bad tag']) {
      assert.equal(parseRefName(bad), undefined, bad);
    }
  });
});

describe('mirror FILE validation', () => {
  test('every problem is reported with its YAML path, and nothing is contacted (exit 2)', async () => {
    const r = await mirror(
      [
        'images:',
        '  - image: reg.test/lab/app:1.0',
        '    semver: "not a range"',
        '  - image: evil.example.com/x/y',
        '    latest: 0',
        '    platforms: [linux]',
        '  - image: reg.test/lab/app',
        '    tags: [1.10, "bad tag"]',
        '    extra: true',
        '  - image: reg.test/lab/app',
        '',
      ].join('\n'),
    );
    assert.equal(r.code, 2);
    assert.equal(r.out, '');
    const lines = r.err.trim().split('\n');
    const expect = [
      /images\[0\]\.image: must name a repository without a tag/,
      /images\[0\]\.semver: 'not a range' is not a valid semver range/,
      /images\[1\]\.image: registry 'evil\.example\.com' is not a configured upstream/,
      /images\[1\]\.latest: must be a positive integer/,
      /images\[1\]\.platforms\[0\]: must be os\/arch/,
      /images\[2\]\.extra: unknown key/,
      /images\[2\]\.tags\[0\]: must be a string, got the number 1\.1 \(quote it\)/,
      /images\[2\]\.tags\[1\]: 'bad tag' is not a valid tag/,
      /images\[3\]: selects no tags/,
    ];
    for (const re of expect) assert.ok(lines.some((l) => re.test(l)), `${re} not in:\n${r.err}`);
    assert.ok(lines.every((l) => l.startsWith(join(dir, 'mirror-'))), r.err);
  });

  test('spec parsing: YAML errors, a missing images list, unknown top-level keys', async () => {
    const config = await compileConfig(`upstreams:\n  - name: reg.test\n    url: ${registry.url}\n`);
    const bad = parseMirrorSpec('images: [', config);
    assert.equal(bad.ok, false);
    assert.match(!bad.ok ? bad.problems[0].path : '', /^line \d+, column \d+$/);
    const none = parseMirrorSpec('imgs: []\n', config);
    assert.deepEqual(!none.ok ? none.problems.map((p) => p.path) : [], ['imgs', 'images']);
    const noDefault = parseMirrorSpec('images:\n  - image: lab/app\n    tags: [a]\n', config);
    assert.match(!noDefault.ok ? noDefault.problems[0].message : '', /no defaultUpstream/);
    const ok = parseMirrorSpec('images:\n  - image: reg.test/lab/app\n    tags: [a]\n    platforms: [linux/arm64/v8]\n', config);
    assert.ok(ok.ok);
    assert.deepEqual(ok.ok ? ok.images[0].platforms : [], [{ os: 'linux', architecture: 'arm64', variant: 'v8' }]);
  });

  test('usage errors throw UsageError; a config without cache.store exits 2', async () => {
    const c = capture();
    await assert.rejects(mirrorCommand(c.io, ['--config', cfg]), UsageError);
    await assert.rejects(mirrorCommand(c.io, ['a.yaml', 'b.yaml']), UsageError);
    await assert.rejects(mirrorCommand(c.io, ['--import', dir, '--export', dir]), UsageError);
    const noStore = join(dir, 'nostore.yaml');
    await writeFile(noStore, `upstreams:\n  - name: reg.test\n    url: ${registry.url}\n`);
    const file = join(dir, 'one.yaml');
    await writeFile(file, 'images:\n  - image: reg.test/lab/app\n    tags: [foo]\n');
    const n = capture();
    assert.equal(await mirrorCommand(n.io, [file, '--config', noStore]), 2);
    assert.match(n.err(), /cache\.store is not set/);
  });
});
