import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startRecordingServer, type FaultServer } from '../helpers/fault-server.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/push.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';

// Prevents: sigil being used as an open relay to hosts that are not configured upstreams.
let registry: RegistryHandle;
let target: FaultServer;
let sigil: SigilHandle;

before(async () => {
  registry = await startRegistry();
  await pushImage({ url: registry.url }, 'team/app', 'v1');
  target = await startRecordingServer();
  sigil = await startSigil(simpleConfig([{ name: 'registry.test:5000', url: registry.url }], '\ndefaultUpstream: "registry.test:5000"\n'));
});
after(async () => {
  await sigil?.stop();
  await target?.stop();
  await registry?.stop();
});

test('no request shape makes sigil contact a host that is not a configured upstream', async () => {
  const t = target.host; // 127.0.0.1:PORT of a server that must never be contacted
  const attempts: Array<{ path: string; headers?: Record<string, string> }> = [
    { path: `/v2/team/app/manifests/v1?ns=${encodeURIComponent(t)}` },
    { path: `/v2/team/app/manifests/v1?ns=${t}` },
    { path: `/v2/${t}/team/app/manifests/v1` },
    { path: `/v2/${encodeURIComponent(t)}/team/app/manifests/v1` },
    { path: `/v2/team/app/blobs/sha256:${'a'.repeat(64)}?ns=${t}` },
    { path: `/v2/team/app/tags/list?ns=${t}` },
    { path: `/v2/team/app/referrers/sha256:${'a'.repeat(64)}?ns=${t}` },
    { path: `/v2/team/app/manifests/v1`, headers: { host: t } },
    { path: `/v2/team/app/manifests/v1`, headers: { 'x-forwarded-host': t, forwarded: `host=${t}` } },
    { path: `/v2/http:%2F%2F${t}/x/manifests/v1` },
    { path: `/v2/team/app/manifests/v1@${t}` },
    { path: `/v2/team/app/manifests/http:%2F%2F${t}%2Fv2%2Fx` },
  ];
  for (const a of attempts) {
    const res = await request(`${sigil.url}${a.path}`, { headers: a.headers });
    await res.body.dump();
    assert.ok(res.statusCode !== 500, `${a.path} → ${res.statusCode}`);
  }
  assert.equal(target.requests.length, 0, JSON.stringify(target.requests));
});

test('an ns= naming an unconfigured registry is refused with 404 NAME_UNKNOWN, not sent to the default', async () => {
  const res = await request(`${sigil.url}/v2/team/app/manifests/v1?ns=quay.io`);
  const body = (await res.body.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(res.statusCode, 404);
  assert.equal(body.errors[0].code, 'NAME_UNKNOWN');
  assert.match(body.errors[0].message, /quay\.io/);
});
