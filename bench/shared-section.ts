/**
 * The section `shared` (issue #11, point 6): three `sigil serve` replicas with the same
 * `cache.shared` (a real redis-server, s3rver, a peer port each) in front of one counting
 * origin, and three distribution pull-through caches in front of the same origin:
 *
 * - herd: 32 clients per replica cold-pull one signed 12-object image; upstream GETs per object
 *   (sigil's goal: 1 in all), the same with distribution;
 * - S3 requests per pull: a replica restarted with an empty disk pulls the image from the bucket;
 * - follower: a client on the replica holding a cold blob's lease, one on another right after it:
 *   MB/s of each, time to first byte;
 * - memory: RSS of each replica while one downloads a cold 1 GiB blob and the others follow it.
 */
import { performance } from 'node:perf_hooks';
import { request } from 'undici';
import type { Dispatcher } from 'undici';
import type { RecordedRequest } from '../test/helpers/fault-server.js';
import { ALL_MANIFEST_TYPES } from '../test/helpers/push.js';
import type { PushedImage } from '../test/helpers/push.js';
import { startRegistry } from '../test/helpers/registry.js';
import { MIB, cpuMeter, cpuText, log, onCleanup, pushRandomBlob, record, waitQuiet } from './context.js';
import type { Blob, Ctx } from './context.js';
import { HERD_CLIENTS, HERD_LAYER_BYTES, HERD_UPSTREAM, REPO_SHARED, RSS_SAMPLE_MS, UPSTREAM_NAME } from './fixture.js';
import type { Counts } from './fixture.js';
import { pullImage } from './measure.js';
import { memoryOf, resetPeakRss, sampleRss } from './procs.js';
import { startRig } from './shared-rig.js';
import type { Replica, Rig } from './shared-rig.js';
import type { FleetHerd, FollowRun, ReplicaMemory, SharedFigures, WarmPull } from './shared-report.js';
import type { SigilCommon } from './store-section.js';

const REPLICAS = 3; // the issue's figure
const QUICK_CLIENTS_PER_REPLICA = 8; // --quick: a trial of the harness, not 96 pulls on 2 cores
const FOLLOW_BLOB_BYTES = { full: 256 * MIB, quick: 32 * MIB }; // ~1 s per GET here in full: long enough for a follower to join
const MEMORY_BLOB_BYTES = { full: 1024 * MIB, quick: 64 * MIB }; // the issue's 1 GiB: RSS must not grow with it
const TAG = 'v1';

/** A path the origin saw, digests shortened. */
const short = (r: string): string => r.replace(/sha256:([0-9a-f]{8})[0-9a-f]+/g, 'sha256:$1…').replace(/sha256-([0-9a-f]{8})[0-9a-f]+/g, 'sha256-$1…');

function tally(seen: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const r of seen) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].map(([r, n]) => `${short(r)} ×${n}`).join(', ');
}

const described = (rs: readonly RecordedRequest[]): string[] => rs.map((r) => `${r.method} ${r.url.split('?')[0]}`);

/** Upstream GETs of each object's bytes: the manifest (by digest or by tag), the config, each layer. */
function perObject(seen: readonly string[], img: PushedImage): number[] {
  const prefix = `/v2/${REPO_SHARED}`;
  const count = (path: string): number => seen.filter((r) => r === `GET ${prefix}${path}`).length;
  return [count(`/manifests/${img.digest}`) + count(`/manifests/${TAG}`), ...[img.config, ...img.layers].map((d) => count(`/blobs/${d.digest}`))];
}

/** Every client on every endpoint pulls the image at once; what reached the origin meanwhile. */
async function herd(c: Ctx, rig: Rig, fleet: string, endpoints: ReadonlyArray<{ v2: string; pid: number }>, clients: number, img: PushedImage, verified: boolean): Promise<FleetHerd> {
  await waitQuiet(c.quiet);
  const seen0 = rig.origin.requests.length;
  const meter = cpuMeter(c.registry.pid, endpoints.map((e) => e.pid));
  const t0 = performance.now();
  const repo = verified ? `${HERD_UPSTREAM}/${REPO_SHARED}` : REPO_SHARED;
  await Promise.all(endpoints.flatMap((e) => Array.from({ length: clients }, () => pullImage(e.v2, repo, TAG, img, ALL_MANIFEST_TYPES, c.agent, verified ? 'verified' : undefined))));
  const wallS = (performance.now() - t0) / 1000;
  const cpu = meter.stop();
  const seen = described(rig.origin.requests.slice(seen0));
  const h: FleetHerd = { wallS, perObject: perObject(seen, img), upstream: seen.length, seen: tally(seen) };
  record(
    c,
    `shared: herd ${fleet} ×${endpoints.length}, ${clients} clients each, cold: ${wallS.toFixed(2)} s; upstream GETs per object ${h.perObject.join(' ')}; ` +
      `${seen.length} requests reached the origin: ${h.seen}; CPU s: ${cpuText(cpu, `${fleet} ×${endpoints.length}`)}`,
    cpu,
    wallS,
  );
  return h;
}

interface Timed {
  /** Resolves at the first byte of the body. */
  first: Promise<void>;
  done: Promise<{ mbps: number; ttfbMs: number; seconds: number }>;
}

/** A whole-blob GET, bytes counted and dropped, timed to its first and its last byte; fails unless 200 with `size` bytes. */
function timedGet(url: string, size: number, dispatcher: Dispatcher): Timed {
  let firstByte!: () => void;
  const first = new Promise<void>((resolve) => (firstByte = resolve));
  const done = (async () => {
    const t0 = performance.now();
    const res = await request(url, { dispatcher });
    if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${(await res.body.text()).slice(0, 300)}`);
    let bytes = 0;
    let ttfbMs = 0;
    for await (const chunk of res.body) {
      if (bytes === 0) {
        ttfbMs = performance.now() - t0;
        firstByte();
      }
      bytes += (chunk as Buffer).length;
    }
    const seconds = (performance.now() - t0) / 1000;
    if (bytes !== size) throw new Error(`GET ${url}: got ${bytes} bytes, expected ${size}`);
    return { mbps: bytes / 1e6 / seconds, ttfbMs, seconds };
  })();
  done.catch(() => firstByte()); // a failed GET releases whoever waits for its first byte; `done` reports it
  return { first, done };
}

const blobUrl = (r: Replica, blob: Blob): string => `${r.v2}${UPSTREAM_NAME}/${REPO_SHARED}/blobs/${blob.digest}`;
const blobGets = (rig: Rig, from: number, blob: Blob): number => rig.origin.requests.slice(from).filter((r) => r.method === 'GET' && r.url.split('?')[0].endsWith(`/blobs/${blob.digest}`)).length;

/** A client on `holder` starts a cold blob; once its first byte came, a client on each follower asks for it. */
async function follow(c: Ctx, rig: Rig, holder: Replica, followers: readonly Replica[], blob: Blob) {
  const seen0 = rig.origin.requests.length;
  const lead = timedGet(blobUrl(holder, blob), blob.size, c.agent);
  await lead.first;
  const rest = followers.map((f) => timedGet(blobUrl(f, blob), blob.size, c.agent));
  const [h, ...fs] = await Promise.all([lead.done, ...rest.map((t) => t.done)]);
  return { holder: h, followers: fs, upstreamGets: blobGets(rig, seen0, blob) };
}

async function followRun(c: Ctx, rig: Rig, holder: Replica, follower: Replica, blob: Blob): Promise<FollowRun> {
  await waitQuiet(c.quiet);
  const meter = cpuMeter(c.registry.pid, [holder.proc.pid, follower.proc.pid]);
  const r = await follow(c, rig, holder, [follower], blob);
  const cpu = meter.stop();
  const f = r.followers[0];
  const run: FollowRun = { holder: holder.name, follower: follower.name, holderMbps: r.holder.mbps, followerMbps: f.mbps, holderTtfbMs: r.holder.ttfbMs, followerTtfbMs: f.ttfbMs, upstreamGets: r.upstreamGets };
  record(
    c,
    `shared: follow ${blob.size / MIB} MiB, ${holder.name} → ${follower.name}: holder ${run.holderMbps.toFixed(0)} MB/s (first byte ${run.holderTtfbMs.toFixed(1)} ms), ` +
      `follower ${run.followerMbps.toFixed(0)} MB/s (first byte ${run.followerTtfbMs.toFixed(1)} ms); upstream GETs of the blob ${run.upstreamGets}; ` +
      `CPU s: ${cpuText(cpu, 'holder + follower')} (holder ${cpu.each[0].toFixed(2)}, follower ${cpu.each[1].toFixed(2)})`,
    cpu,
    Math.max(r.holder.seconds, f.seconds),
  );
  await rig.settleBucket();
  return run;
}

async function memoryRun(c: Ctx, rig: Rig, blob: Blob): Promise<NonNullable<SharedFigures['memory']>> {
  const [holder, ...followers] = rig.replicas;
  await waitQuiet(c.quiet);
  const all = rig.replicas.map((r) => ({ r, before: memoryOf(r.proc.pid).rss, reset: resetPeakRss(r.proc.pid), sampler: sampleRss(r.proc.pid, RSS_SAMPLE_MS) }));
  const meter = cpuMeter(c.registry.pid, rig.replicas.map((r) => r.proc.pid));
  let result: Awaited<ReturnType<typeof follow>> | undefined;
  let samples: number[][] = [];
  try {
    result = await follow(c, rig, holder, followers, blob);
  } finally {
    samples = all.map((a) => a.sampler.stop());
  }
  const cpu = meter.stop();
  const clients = [result.holder, ...result.followers];
  const replicas: ReplicaMemory[] = all.map((a, i) => {
    const mem = memoryOf(a.r.proc.pid);
    const maxSampled = Math.max(0, ...samples[i]);
    return {
      name: a.r.name,
      role: i === 0 ? 'holder' : 'follower',
      before: a.before,
      maxSampled,
      peak: a.reset ? Math.max(mem.hwm, maxSampled) : maxSampled,
      peakFrom: a.reset ? 'VmHWM' : 'sampled',
      after: mem.rss,
      mbps: clients[i].mbps,
    };
  });
  record(
    c,
    `shared: memory, ${blob.size / MIB} MiB, ${holder.name} holding, ${followers.map((f) => f.name).join(' and ')} following: ` +
      replicas.map((r) => `${r.name} (${r.role}) RSS ${(r.before / MIB).toFixed(0)} → largest ${(r.maxSampled / MIB).toFixed(0)} MiB, peak ${(r.peak / MIB).toFixed(0)} MiB, its client ${r.mbps.toFixed(0)} MB/s`).join('; ') +
      `; upstream GETs of the blob ${result.upstreamGets}; CPU s: ${cpuText(cpu, 'replicas')}`,
    cpu,
    Math.max(...clients.map((x) => x.seconds)),
  );
  return { blobBytes: blob.size, replicas, upstreamGets: result.upstreamGets };
}

/** Stops the last replica, starts it again with an empty disk, and has it pull the image once. */
async function warmPull(c: Ctx, rig: Rig, img: PushedImage): Promise<WarmPull> {
  await rig.settleBucket();
  const old = rig.replicas[rig.replicas.length - 1];
  const fresh = await rig.restartEmpty(old);
  rig.replicas[rig.replicas.length - 1] = fresh;
  await waitQuiet(c.quiet);
  const s3From = rig.s3.requests.length;
  const originFrom = rig.origin.requests.length;
  const meter = cpuMeter(c.registry.pid, fresh.proc.pid);
  const t0 = performance.now();
  await pullImage(fresh.v2, `${HERD_UPSTREAM}/${REPO_SHARED}`, TAG, img, ALL_MANIFEST_TYPES, c.agent, 'verified');
  const wallS = (performance.now() - t0) / 1000;
  const cpu = meter.stop();
  const s3During = rig.s3.requests.length;
  const origin = described(rig.origin.requests.slice(originFrom));
  await rig.settleBucket();
  const s3: Record<string, number> = {};
  for (const r of rig.s3.requests.slice(s3From, s3During)) {
    // path style: /<bucket>/<prefix>objects|records/…
    const kind = /\/(objects|records)\//.exec(r.url)?.[1] ?? r.url.split('?')[0];
    const k = `${r.method} ${kind}`;
    s3[k] = (s3[k] ?? 0) + 1;
  }
  const w: WarmPull = {
    s3,
    s3Total: s3During - s3From,
    s3After: rig.s3.requests.length - s3During,
    origin: origin.length,
    originObjects: perObject(origin, img).reduce((a, n) => a + n, 0),
    originSeen: tally(origin),
    wallS,
  };
  record(
    c,
    `shared: warm pull by ${fresh.name} (empty disk): ${wallS.toFixed(2)} s; ${w.s3Total} S3 requests (${Object.entries(s3).map(([k, n]) => `${k} ×${n}`).join(', ')}), ${w.s3After} after it; ` +
      `${w.origin} origin requests${w.origin > 0 ? `: ${w.originSeen}` : ''}; CPU s: ${cpuText(cpu, fresh.name)}`,
    cpu,
    wallS,
  );
  return w;
}

export interface SharedSetup {
  dir: string;
  sigil: SigilCommon;
  /** The signed 12-object image, pushed as REPO_SHARED:v1 and signed with the herd policy's key. */
  image: PushedImage;
  n: Counts;
  quick: boolean;
}

export async function sharedSection(c: Ctx, o: SharedSetup): Promise<SharedFigures> {
  const size = o.quick ? 'quick' : 'full';
  const followBlobs: Blob[] = [];
  for (let i = 0; i < o.n.coldFills; i++) followBlobs.push(await pushRandomBlob(c.registry, o.dir, REPO_SHARED, FOLLOW_BLOB_BYTES[size]));
  const memoryBlob = await pushRandomBlob(c.registry, o.dir, REPO_SHARED, MEMORY_BLOB_BYTES[size]);
  const rig = await startRig(c, o.sigil, o.dir, REPLICAS);
  const clients = o.quick ? QUICK_CLIENTS_PER_REPLICA : HERD_CLIENTS;
  const f: SharedFigures = {
    replicas: REPLICAS,
    clientsPerReplica: clients,
    objects: 2 + o.image.layers.length,
    layerBytes: HERD_LAYER_BYTES,
    herd: {},
    follow: { blobBytes: FOLLOW_BLOB_BYTES[size], runs: [] },
  };
  f.herd.sigil = await herd(c, rig, 'sigil', rig.replicas.map((r) => ({ v2: r.v2, pid: r.proc.pid })), clients, o.image, true);
  f.warm = await warmPull(c, rig, o.image);

  log(`shared section: starting ${REPLICAS} distribution pull-through caches`);
  const dists = [];
  for (let i = 0; i < REPLICAS; i++) {
    const d = await startRegistry({ proxy: rig.origin.url });
    onCleanup(() => d.stop());
    dists.push(d);
  }
  f.herd.distribution = await herd(c, rig, 'distribution', dists.map((d) => ({ v2: `${d.url}/v2/`, pid: d.pid })), clients, o.image, false);
  for (const d of dists) await d.stop(); // idle from here on: out of the way of the measurements below

  for (const [i, blob] of followBlobs.entries()) {
    const holder = rig.replicas[i % REPLICAS];
    const follower = rig.replicas[(i + 1) % REPLICAS];
    f.follow.runs.push(await followRun(c, rig, holder, follower, blob));
  }
  f.memory = await memoryRun(c, rig, memoryBlob);
  return f;
}
