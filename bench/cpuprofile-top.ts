/**
 * Summarizes a V8 .cpuprofile (as `node --cpu-prof` writes, e.g. from `npm run bench -- --cpu-prof DIR`):
 * self time per function, and the time under a few frames of interest (inclusive).
 *
 *   node dist/bench/cpuprofile-top.js FILE.cpuprofile [TOP] [FRAME,FRAME,...] [--callers NAME,NAME,...]
 *
 * FRAME: more function names whose inclusive time to show (e.g. isSignatureArtifact,decide);
 * --callers: for each NAME, the call chains (up to CALLER_DEPTH frames) under which its self time was spent.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const DEFAULT_TOP = 25;
const CALLER_DEPTH = 7;
const CALLER_CHAINS = 5;
const cli = parseArgs({ allowPositionals: true, options: { callers: { type: 'string' } } });
const [file, topArg, framesArg] = cli.positionals;
if (file === undefined) {
  process.stderr.write('usage: cpuprofile-top.js FILE.cpuprofile [TOP] [FRAME,FRAME,...] [--callers NAME,NAME,...]\n');
  process.exit(2);
}
const top = topArg !== undefined ? Number(topArg) : DEFAULT_TOP;
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const label = (n: ProfileNode): string => {
  const f = n.callFrame;
  const where = f.url === '' ? '' : ` ${f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}`;
  return `${f.functionName || '(anonymous)'}${where}`;
};

// self time: each sample's time goes to the node that was on top of the stack
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const selfByLabel = new Map<string, number>();
for (const [id, us] of selfUs) {
  const l = label(byId.get(id) as ProfileNode);
  selfByLabel.set(l, (selfByLabel.get(l) ?? 0) + us);
}
const pct = (us: number): string => `${((100 * us) / total).toFixed(1).padStart(5)} %`;
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n\nself time:\n`);
for (const [l, us] of [...selfByLabel].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  process.stdout.write(`${pct(us)}  ${(us / 1e6).toFixed(2).padStart(6)} s  ${l}\n`);
}

// inclusive time under frames whose name says what sigil spends a blob's time on
const INTERESTING = ['_transform', 'update', 'writeGeneric', 'writev', 'onStreamRead', 'onBytes', 'inc', 'emit', ...(framesArg?.split(',').filter((f) => f !== '') ?? [])];
process.stdout.write('\ninclusive time under:\n');
for (const name of INTERESTING) {
  let us = 0;
  for (const [id, t] of selfUs) {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      if ((byId.get(cur) as ProfileNode).callFrame.functionName === name) {
        us += t;
        break;
      }
    }
  }
  process.stdout.write(`${pct(us)}  ${(us / 1e6).toFixed(2).padStart(6)} s  ${name}\n`);
}

// the call chains under a function's self time: where its cost comes from
for (const name of cli.values.callers?.split(',').filter((f) => f !== '') ?? []) {
  const chains = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if ((byId.get(id) as ProfileNode).callFrame.functionName !== name) continue;
    const chain: string[] = [];
    for (let cur = parent.get(id); cur !== undefined && chain.length < CALLER_DEPTH; cur = parent.get(cur)) chain.push(label(byId.get(cur) as ProfileNode));
    const key = chain.join(' < ');
    chains.set(key, (chains.get(key) ?? 0) + us);
  }
  process.stdout.write(`\ncallers of ${name}:\n`);
  for (const [chain, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, CALLER_CHAINS)) {
    process.stdout.write(`${pct(us)}  ${(us / 1e6).toFixed(2).padStart(6)} s  < ${chain}\n`);
  }
}
