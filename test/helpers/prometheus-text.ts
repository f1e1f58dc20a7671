/*
 * The Prometheus text exposition format (version 0.0.4), read strictly, and the naming rules
 * `promtool check metrics` applies to it (client_golang's promlint), for machines without
 * promtool. Where promtool is on the PATH, `promtoolCheck` runs the real one.
 *
 * Format: https://prometheus.io/docs/instrumenting/exposition_formats/ — `# HELP` and `# TYPE`
 * at most once per family and before its samples; one group of lines per family; samples
 * `name{label="value",…} value [timestamp]` with only \\, \" and \n escaped in label values;
 * histograms as cumulative `_bucket{le}` series ending at +Inf, with `_sum` and `_count`.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  type: MetricType;
  help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES: readonly string[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
/** Sample name suffixes that belong to the family without them. */
const SUFFIXES: Readonly<Record<string, readonly string[]>> = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count'] };

/** Parses an exposition; `problems` lists every way it breaks the format, each with its line number. */
export function parseExposition(text: string): { families: Map<string, Family>; problems: string[] } {
  const families = new Map<string, Family>();
  const problems: string[] = [];
  const typed = new Set<string>();
  const series = new Set<string>();
  let current: Family | undefined;
  const familyOf = (name: string, at: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', help: undefined, samples: [] }));
    if (current !== f && f.samples.length > 0) problems.push(`${at}: ${name}: its lines are not one group`);
    current = f;
    return f;
  };
  if (text !== '' && !text.endsWith('\n')) problems.push('the last line does not end with a line feed');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, i) => {
    const at = `line ${i + 1}`;
    if (line.trim() === '') return;
    const meta = /^#[ \t]*(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
    if (meta) {
      const [, kind, name, rest = ''] = meta;
      if (!METRIC_NAME.test(name)) return void problems.push(`${at}: invalid metric name ${JSON.stringify(name)}`);
      const f = familyOf(name, at);
      if (kind === 'HELP') {
        if (f.help !== undefined) problems.push(`${at}: second HELP for ${name}`);
        if (/\\([^\\n]|$)/.test(rest.replace(/\\\\/g, ''))) problems.push(`${at}: invalid escape in the HELP of ${name}`);
        f.help = rest;
      } else {
        if (!TYPES.includes(rest)) problems.push(`${at}: unknown type ${JSON.stringify(rest)}`);
        if (f.samples.length > 0 || typed.has(name)) problems.push(`${at}: TYPE of ${name} repeated or after its samples`);
        typed.add(name);
        f.type = rest as MetricType;
      }
      return;
    }
    if (line.startsWith('#')) return; // a comment
    const sample = parseSample(line, at, problems);
    if (!sample) return;
    const owner = [...families.values()].find((f) => (SUFFIXES[f.type] ?? []).some((s) => sample.name === f.name + s));
    const f = owner && owner === current ? owner : familyOf(owner?.name ?? sample.name, at);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (series.has(key)) problems.push(`${at}: ${sample.name}: the same series twice`);
    series.add(key);
    f.samples.push(sample);
  });
  for (const f of families.values()) problems.push(...checkFamily(f));
  return { families, problems };
}

function parseSample(line: string, at: string, problems: string[]): Sample | undefined {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(line);
  if (!m) return void problems.push(`${at}: not a sample: ${JSON.stringify(line)}`);
  const [, name, block, value] = m;
  if (!FLOAT.test(value)) problems.push(`${at}: ${name}: value ${JSON.stringify(value)} is not a float`);
  const labels: Record<string, string> = {};
  const inner = block ? block.slice(1, -1) : '';
  const pair = /[ \t]*([^=\s]+)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)/y;
  for (let pos = 0; pos < inner.length; ) {
    pair.lastIndex = pos;
    const p = pair.exec(inner);
    if (!p) return void problems.push(`${at}: ${name}: malformed labels ${JSON.stringify(block)}`);
    const [, label, raw] = p;
    if (!LABEL_NAME.test(label) || label.startsWith('__')) problems.push(`${at}: ${name}: invalid label name ${JSON.stringify(label)}`);
    if (label in labels) problems.push(`${at}: ${name}: label ${label} twice`);
    if (/\\[^\\"n]/.test(raw.replace(/\\\\/g, ''))) problems.push(`${at}: ${name}: invalid escape in label ${label}`);
    labels[label] = raw.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    pos = pair.lastIndex;
  }
  return { name, labels, value: value === '+Inf' || value === 'Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value) };
}

/** A family's samples against its type: counters never negative, histograms cumulative to +Inf with _sum and _count. */
function checkFamily(f: Family): string[] {
  const out: string[] = [];
  if (f.type === 'counter' && f.samples.some((s) => !(s.value >= 0))) out.push(`${f.name}: a counter below 0 or NaN`);
  if (f.type !== 'histogram') return out;
  const series = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const e = series.get(key) ?? { buckets: [] };
    series.set(key, e);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined || !FLOAT.test(le)) out.push(`${f.name}: a bucket without a valid le`);
      else e.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
    } else if (s.name === `${f.name}_sum`) e.sum = s.value;
    else if (s.name === `${f.name}_count`) e.count = s.value;
    else out.push(`${f.name}: sample ${s.name} in a histogram`);
  }
  for (const [key, e] of series) {
    const ordered = e.buckets.every(([le, n], i) => i === 0 || (le > e.buckets[i - 1][0] && n >= e.buckets[i - 1][1]));
    if (!ordered) out.push(`${f.name}${key}: buckets not in ascending le with cumulative counts`);
    const inf = e.buckets.at(-1);
    if (inf?.[0] !== Infinity) out.push(`${f.name}${key}: no +Inf bucket`);
    if (e.sum === undefined || e.count === undefined) out.push(`${f.name}${key}: no _sum or _count`);
    else if (inf && inf[1] !== e.count) out.push(`${f.name}${key}: _count ${e.count} differs from the +Inf bucket ${inf[1]}`);
  }
  return out;
}

const BASE_UNITS = new Set(['amperes', 'bytes', 'celsius', 'grams', 'joules', 'kelvin', 'meters', 'metres', 'seconds', 'volts']);
const OTHER_UNITS = new Set(['minutes', 'hours', 'days', 'weeks', 'kelvins', 'fahrenheit', 'rankine', 'inches', 'yards', 'miles', 'bits', 'calories', 'pounds', 'ounces']);
const UNIT_PREFIXES = ['pico', 'nano', 'micro', 'milli', 'centi', 'deci', 'deca', 'hecto', 'kilo', 'kibi', 'mega', 'mibi', 'giga', 'gibi', 'tera', 'tebi', 'peta', 'pebi'];
const UNIT_ABBREVIATIONS = ['s', 'ms', 'us', 'ns', 'sec', 'b', 'kb', 'mb', 'gb', 'tb', 'pb', 'm', 'h', 'd'];

/** promtool's naming rules (promlint): each family's problems, as `name: what`. */
export function lintFamilies(families: Iterable<Family>): string[] {
  const out: string[] = [];
  for (const f of families) {
    const problem = (what: string) => out.push(`${f.name}: ${what}`);
    const n = f.name.toLowerCase();
    const has = (part: string) => n.includes(`_${part}_`) || n.endsWith(`_${part}`);
    if (!f.help) problem('no help text');
    if (f.type === 'counter' && !n.endsWith('_total')) problem('counter metrics should have "_total" suffix');
    if (f.type !== 'counter' && f.type !== 'untyped' && n.endsWith('_total')) problem('non-counter metrics should not have "_total" suffix');
    if (f.type !== 'gauge' && f.type !== 'untyped' && n.endsWith('_timestamp_seconds')) problem('non-gauge metrics should not have "_timestamp_seconds" suffix');
    if (f.type !== 'untyped' && f.type !== 'histogram' && n.endsWith('_bucket')) problem('non-histogram metrics should not have "_bucket" suffix');
    if (f.type !== 'untyped' && f.type !== 'histogram' && f.type !== 'summary' && /_(?:count|sum)$/.test(n)) problem('non-histogram and non-summary metrics should not have "_count"/"_sum" suffix');
    for (const t of ['counter', 'gauge', 'histogram', 'summary']) if (has(t)) problem(`metric name should not include type '${t}'`);
    if (f.name.includes(':')) problem("metric names should not contain ':'");
    if (/[a-z][A-Z]/.test(f.name)) problem("metric names should be written in 'snake_case' not 'camelCase'");
    if (UNIT_ABBREVIATIONS.some(has)) problem('metric names should not contain abbreviated units');
    const unit = n.split('_').find((p) => OTHER_UNITS.has(p) || UNIT_PREFIXES.some((x) => p.startsWith(x) && (BASE_UNITS.has(p.slice(x.length)) || OTHER_UNITS.has(p.slice(x.length)))));
    if (unit !== undefined) problem(`use a base unit instead of "${unit}"`);
    for (const s of f.samples) {
      for (const l of Object.keys(s.labels)) {
        if (/[a-z][A-Z]/.test(l)) problem(`label ${l} should be written in 'snake_case'`);
        if (l === 'le' && f.type !== 'histogram' && f.type !== 'untyped') problem('non-histogram metrics should not have "le" label');
        if (l === 'quantile' && f.type !== 'summary' && f.type !== 'untyped') problem('non-summary metrics should not have "quantile" label');
      }
    }
  }
  return [...new Set(out)];
}

/** Format problems and naming problems of an exposition: none means it passes. */
export function checkExposition(text: string): string[] {
  const { families, problems } = parseExposition(text);
  return [...problems, ...lintFamilies(families.values())];
}

/** The series names an exposition lets a query use: each family's name, and a histogram's _bucket/_sum/_count. */
export function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const f of parseExposition(text).families.values()) {
    names.add(f.name);
    for (const s of SUFFIXES[f.type] ?? []) names.add(f.name + s);
  }
  return names;
}

/** PromQL words that are not metric names: keywords, and the operators spelled as words. */
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads: what is left once strings, label matchers, ranges,
 * grouping clauses, Grafana variables and numbers are taken out, minus function names (a name
 * before `(`) and keywords.
 */
export function metricNamesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = [...bare.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()/g)].map((m) => m[1]);
  return [...new Set(names.filter((n) => !PROMQL_WORDS.has(n.toLowerCase())))];
}

/** promtool on the PATH, or undefined. */
export function findPromtool(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const path = join(dir, 'promtool');
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Runs `promtool <args>` with `stdin`: its exit code and everything it printed. */
export function promtool(path: string, args: readonly string[], stdin = ''): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, output }));
    child.stdin.end(stdin);
  });
}
