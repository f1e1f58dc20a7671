import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CommandError, UsageError } from '../../src/cli/args.js';
import type { CliIo } from '../../src/cli/io.js';
import { verifyCli } from '../../src/cli/verify.js';
import { runSigil } from '../helpers/cli.js';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { freePort } from '../helpers/net.js';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { pushIndex, type PushedImage, type PushedIndex } from '../helpers/push.js';
import { bundleFor, legacyLayer } from '../helpers/signer.js';
import { tempDir } from '../helpers/temp.js';
import { ISSUER, SUBJECT, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// `sigil verify` as cosign users run it: the flags are the authority, no config needed, the
// image's registry contacted directly (plain HTTP only with --allow-http-registry); exit 0
// verified, 1 not verified, 2 usage or config error, 3 could not check.
let env: VerifyEnv;
let dir: string;
let reg: string;
let keySigned: PushedImage;
let tlogSigned: PushedImage;
let keyless: PushedImage;
let unsigned: PushedImage;
let multi: PushedIndex;
let loose: PushedImage;
let failing: FaultServer;

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** `sigil verify ARGS` in-process, in a directory without config/sigil.yaml and without $SIGIL_CONFIG: no config. */
async function verify(args: string[]): Promise<Ran> {
  let out = '';
  let err = '';
  const io: CliIo = { env: {}, cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) };
  const code = await verifyCli(io, args);
  return { code, out, err };
}

const http = '--allow-http-registry';

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-verify-flags-');
  reg = env.registry.host;
  keySigned = await env.push('prod/key', '1.0');
  await pushLegacySignature(env.target, 'prod/key', keySigned.digest, [legacyLayer(env.keys.p256, keySigned.digest)]);
  tlogSigned = await env.push('prod/tlog', '1.0');
  await pushLegacySignature(env.target, 'prod/tlog', tlogSigned.digest, [legacyLayer(env.keys.p256, tlogSigned.digest, { rekor: env.sigstore })]);
  keyless = await env.push('prod/keyless', '1.0');
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
  await pushBundleReferrer(env.target, 'prod/keyless', { digest: keyless.digest, size: keyless.manifest.length, mediaType: keyless.mediaType }, bundleFor(id, keyless.digest, { rekor: env.sigstore }));
  unsigned = await env.push('prod/unsigned', '1.0');
  // a signed index whose platform manifests carry no signature of their own
  multi = await pushIndex(env.target, 'prod/multi', '2.0', [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  await pushLegacySignature(env.target, 'prod/multi', multi.digest, [legacyLayer(env.keys.p256, multi.digest)]);
  loose = await env.push('prod/multi', 'loose');
  // the registry, except that every signature lookup fails (503)
  failing = await startFaultServer((req, res) => {
    if (/sha256-|\/referrers\//.test(req.url ?? '')) {
      res.writeHead(503).end();
      return;
    }
    const fwd = httpRequest(new URL(req.url ?? '/', env.registry.url), { method: req.method, headers: { ...req.headers, host: reg } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
});
after(async () => {
  await failing?.stop();
  await env?.stop();
});

describe('without a config, the flags are the authority and the image names the registry', () => {
  test('--key: verified (exit 0), the policy is the command line, the signer the key', async () => {
    const r = await verify([`${reg}/prod/key:1.0`, '--key', env.keys.p256.path, '--insecure-ignore-tlog', http]);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, new RegExp(`^verified: ${reg}/prod/key@${keySigned.digest} \\(1\\.0\\)`));
    assert.match(r.out, /policy: command-line/);
    assert.match(r.out, new RegExp(`signer: ${env.keys.p256.keyId}`));
  });

  test('--key requires a transparency log entry unless --insecure-ignore-tlog, verified against --trusted-root', async () => {
    const noTlog = await verify([`${reg}/prod/key:1.0`, '--key', env.keys.p256.path, http]);
    assert.equal(noTlog.code, 1, noTlog.out);
    assert.match(noTlog.out, /NOT verified/);
    const logged = await verify([`${reg}/prod/tlog:1.0`, '--key', env.keys.p256.path, '--trusted-root', env.sigstore.trustedRootPath, http, '--json']);
    assert.equal(logged.code, 0, logged.err + logged.out);
    const j = JSON.parse(logged.out) as { verified: boolean; digest: string; policy: string; signer: string };
    assert.deepEqual([j.verified, j.digest, j.policy, j.signer], [true, tlogSigned.digest, 'command-line', env.keys.p256.keyId]);
    // the public root knows nothing of the private Rekor
    assert.equal((await verify([`${reg}/prod/tlog:1.0`, '--key', env.keys.p256.path, http])).code, 1);
  });

  test('a key that did not sign it: not verified (exit 1), with the reason', async () => {
    const stranger = join(dir, 'stranger.pub');
    await writeFile(stranger, env.stranger.publicPem);
    const r = await verify([`${reg}/prod/key:1.0`, '--key', stranger, '--insecure-ignore-tlog', http]);
    assert.equal(r.code, 1);
    assert.match(r.out, /NOT verified/);
    assert.match(r.out, /outcome: invalid/);
  });

  test('keyless: --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp], whole-value matches', async () => {
    const image = `${reg}/prod/keyless:1.0`;
    const root = ['--trusted-root', env.sigstore.trustedRootPath, http];
    const exact = await verify([image, '--certificate-identity', SUBJECT, '--certificate-oidc-issuer', ISSUER, ...root]);
    assert.equal(exact.code, 0, exact.err + exact.out);
    assert.match(exact.out, new RegExp(`signer: ${SUBJECT.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(issuer ${ISSUER.replace(/[.]/g, '\\.')}\\)`));
    const re = await verify([image, '--certificate-identity-regexp', 'https://github\\.com/acme/.*', '--certificate-oidc-issuer-regexp', 'https://issuer\\..*', ...root]);
    assert.equal(re.code, 0, re.err + re.out);
    // a part of the value is not a match (cosign would accept it; sigil matches whole values)
    const part = await verify([image, '--certificate-identity-regexp', 'github\\.com/acme', '--certificate-oidc-issuer', ISSUER, ...root]);
    assert.equal(part.code, 1, part.out);
    const other = await verify([image, '--certificate-identity', 'someone@example.com', '--certificate-oidc-issuer', ISSUER, ...root]);
    assert.equal(other.code, 1);
    assert.match(other.out, /does not match/);
  });

  test('an unsigned image: exit 1, "no signature found"', async () => {
    const r = await verify([`${reg}/prod/unsigned:1.0`, '--key', env.keys.p256.path, '--insecure-ignore-tlog', http]);
    assert.equal(r.code, 1);
    assert.match(r.out, /no signature found/);
  });
});

describe('exit 3: could not check, distinct from not verified', () => {
  const key = (): string[] => ['--key', env.keys.p256.path, '--insecure-ignore-tlog'];

  test('plain HTTP is used only with --allow-http-registry: without it, the HTTP registry cannot be checked', async () => {
    const r = await verify([`${reg}/prod/key:1.0`, ...key()]);
    assert.equal(r.code, 3, r.err + r.out);
    assert.match(r.err, /could not check: UPSTREAM_UNREACHABLE/);
  });

  test('nothing listening: exit 3', async () => {
    const r = await verify([`127.0.0.1:${await freePort()}/prod/key:1.0`, ...key(), http]);
    assert.equal(r.code, 3, r.err + r.out);
    assert.match(r.err, /could not check/);
    const j = await verify([`127.0.0.1:${await freePort()}/prod/key:1.0`, ...key(), http, '--json']);
    assert.equal(j.code, 3);
    assert.deepEqual((JSON.parse(j.out) as { verified: boolean; checked: boolean }).checked, false);
  });

  test('the signatures cannot be read (the registry answers 503 to their lookups): indeterminate, exit 3', async () => {
    const r = await verify([`${failing.host}/prod/key:1.0`, ...key(), http, '--json']);
    assert.equal(r.code, 3, r.err + r.out);
    const j = JSON.parse(r.out) as { verified: boolean; outcome: string; cause: string };
    assert.equal(j.verified, false);
    assert.equal(j.outcome, 'indeterminate');
  });

  test('a tag the registry does not have is an answer: not verified, exit 1', async () => {
    const r = await verify([`${reg}/prod/key:nope`, ...key(), http]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /MANIFEST_UNKNOWN/);
  });
});

describe('a platform manifest of a signed index', () => {
  const key = (): string[] => ['--key', env.keys.p256.path, '--insecure-ignore-tlog', http];

  test('by its digest alone: not verified, and the report says how it passes through its index', async () => {
    const child = multi.children[0].digest;
    const r = await verify([`${reg}/prod/multi@${child}`, ...key()]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /no signature found/);
    assert.match(r.out, new RegExp(`check it through the index's tag, as ${reg}/prod/multi:TAG@${child}`));
  });

  test('as TAG@DIGEST: verified through the signed index, which the report names, saying the manifest is unsigned', async () => {
    const child = multi.children[1].digest;
    const r = await verify([`${reg}/prod/multi:2.0@${child}`, ...key()]);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, new RegExp(`^verified: ${reg}/prod/multi@${child} \\(2\\.0@${child}\\)`));
    assert.match(r.out, new RegExp(`via index: ${multi.digest} \\(2\\.0\\)`));
    assert.match(r.out, /this platform manifest has no valid signature of its own \(unsigned\): it passes as a child of the verified index/);
    const j = await verify([`${reg}/prod/multi:2.0@${child}`, ...key(), '--json']);
    const report = JSON.parse(j.out) as { verified: boolean; viaIndex: string; ownOutcome: string; digest: string };
    assert.deepEqual([report.verified, report.viaIndex, report.ownOutcome, report.digest], [true, multi.digest, 'unsigned', child]);
  });

  test('a TAG whose index does not list the digest vouches for nothing', async () => {
    const r = await verify([`${reg}/prod/multi:2.0@${loose.digest}`, ...key()]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /does not list this manifest/);
  });
});

describe('flags with a config; usage', () => {
  let cfg: string;
  before(async () => {
    cfg = join(dir, 'sigil.yaml');
    await writeFile(
      cfg,
      [
        'upstreams:',
        '  - name: reg.test',
        `    url: ${env.registry.url}`,
        '    aliases: [reg]',
        'policies:',
        '  - name: prod',
        '    match: ["reg.test/**"]',
        '    mode: enforce',
        '    authorities:',
        `      - { key: ${env.keys.rsa.path}, tlog: ignore }`,
        '',
      ].join('\n'),
    );
  });

  test('with a config, IMAGE goes through its upstreams (an alias too) and the flags replace its policies', async () => {
    const byConfig = await verify(['reg.test/prod/key:1.0', '--config', cfg]);
    assert.equal(byConfig.code, 1, byConfig.out);
    const byFlags = await verify(['reg/prod/key:1.0', '--config', cfg, '--key', env.keys.p256.path, '--insecure-ignore-tlog']);
    assert.equal(byFlags.code, 0, byFlags.err + byFlags.out);
    assert.match(byFlags.out, /^verified: reg\.test\/prod\/key@/);
    assert.match(byFlags.out, /policy: command-line/);
    // a registry the config does not name is still never contacted
    await assert.rejects(verify([`${reg}/prod/key:1.0`, '--config', cfg, '--key', env.keys.p256.path]), (e: unknown) => e instanceof CommandError && /not a configured upstream/.test(e.message));
    await assert.rejects(verify(['reg.test/prod/key:1.0', '--config', cfg, '--key', env.keys.p256.path, http]), UsageError);
  });

  test('contradictory or incomplete flags are usage errors; a bad key file names its flag', async () => {
    const image = `${reg}/prod/key:1.0`;
    for (const args of [
      ['--key', env.keys.p256.path, '--certificate-identity', SUBJECT, '--certificate-oidc-issuer', ISSUER],
      ['--certificate-identity', SUBJECT],
      ['--certificate-oidc-issuer', ISSUER],
      ['--certificate-identity', SUBJECT, '--certificate-identity-regexp', '.*', '--certificate-oidc-issuer', ISSUER],
      ['--certificate-identity', SUBJECT, '--certificate-oidc-issuer', ISSUER, '--insecure-ignore-tlog'],
      ['--trusted-root', env.sigstore.trustedRootPath],
      [http],
    ]) {
      await assert.rejects(verify([image, ...args]), UsageError, args.join(' '));
    }
    await assert.rejects(verify([image, '--key', join(dir, 'missing.pub'), http]), (e: unknown) => e instanceof CommandError && /^--key: cannot read/.test(e.message));
    await assert.rejects(verify(['UPPER.example/x:1', '--key', env.keys.p256.path]), (e: unknown) => e instanceof CommandError && /not a registry host/.test(e.message));
  });

  test('bin/sigil: a usage error prints the verify usage, any other error one line without it', async () => {
    const usage = await runSigil(['verify', 'a/b:1', '--certificate-identity', SUBJECT], { cwd: dir });
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^sigil: keyless verification needs one of --certificate-oidc-issuer/);
    assert.match(usage.stderr, /Usage:\n {2}sigil verify IMAGE/);
    assert.doesNotMatch(usage.stderr, /sigil serve/);
    const config = await runSigil(['verify', 'evil.example.com/x/y:1', '--config', cfg], { cwd: dir });
    assert.equal(config.code, 2);
    assert.equal(config.stderr, `sigil: 'evil.example.com/x/y:1': registry 'evil.example.com' is not a configured upstream in ${cfg}\n`);
  });
});
