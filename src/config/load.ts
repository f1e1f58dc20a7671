/**
 * Finds, parses and loads sigil's configuration: YAML → ${ENV} expansion →
 * validation (schema.ts) → compilation to the frozen Config (compile.ts).
 * Never throws for bad input: every problem comes back with its YAML path.
 *
 * Relative file paths in the config (server.tls cert/key, server.auth.htpasswd,
 * upstreams[].tls.ca, key authorities, trust.trustedRoot entries other than
 * `public-good`, cache.store.dir) resolve against the working directory sigil
 * is started from (`cwd`), not against the config file's directory: the
 * contract's example names `config/keys/acme.pub` and
 * `config/private-sigstore/trusted_root.json`, paths relative to the project
 * root where `config/sigil.yaml` itself lives.
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDocument, type YAMLError } from 'yaml';
import { compileConfig } from './compile.js';
import { readConfigFile } from './read-file.js';
import { BUILT_IN_SOURCE, DEFAULT_CONFIG_YAML } from './defaults.js';
import { join, validateConfig } from './schema.js';
import type { Config, ConfigProblem } from './types.js';

export type LoadResult =
  | { ok: true; config: Config; warnings: ConfigProblem[]; source: string }
  | { ok: false; problems: ConfigProblem[]; source: string };

export interface LoadOptions {
  /** The --config flag. */
  path?: string;
  env: Record<string, string | undefined>;
  cwd: string;
}

export interface TextOptions {
  /** A path or "built-in default"; becomes Config.source. */
  source: string;
  env: Record<string, string | undefined>;
  /** Relative file paths resolve against this (the working directory). */
  baseDir: string;
  now?: () => number;
}

/** Where a config is looked for when neither --config nor $SIGIL_CONFIG names one. */
export const DEFAULT_CONFIG_PATH = 'config/sigil.yaml';
/** YAML anchors/aliases beyond this are refused ("billion laughs"); real configs use a handful. */
const MAX_YAML_ALIASES = 100;
const ENV_REF = /\$\{([^}]*)\}/g;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const problem = (path: string, message: string, severity: ConfigProblem['severity'] = 'error'): ConfigProblem => ({ path, message, severity });

/**
 * Replaces ${NAME} in every string value (not in keys); records a problem per unset or malformed
 * reference, and per YAML alias inside the node it names (`a: &a [*a]` is a loop: cut there).
 */
function expandEnv(value: unknown, path: string, env: TextOptions['env'], problems: ConfigProblem[], within: ReadonlySet<object> = new Set()): unknown {
  if (value !== null && typeof value === 'object') {
    if (within.has(value)) {
      problems.push(problem(path, 'a YAML alias inside the node it names (a loop)'));
      return null;
    }
    const inner = new Set(within).add(value);
    if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, join(path, i), env, problems, inner));
    // fromEntries defines own properties, so a "__proto__" key stays a key (and is refused as unknown).
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, join(path, k), env, problems, inner)]));
  }
  if (typeof value !== 'string' || !value.includes('${')) return value;
  const expanded = value.replace(ENV_REF, (ref, name: string) => {
    if (!ENV_NAME.test(name)) problems.push(problem(path, `malformed environment reference ${ref} (a name is letters, digits and _)`));
    else if (env[name] === undefined) problems.push(problem(path, `environment variable ${name} is not set`));
    else return env[name];
    return ref;
  });
  if (value.replace(ENV_REF, '').includes('${')) problems.push(problem(path, 'unclosed ${ in environment reference'));
  return expanded;
}

function yamlProblem(e: YAMLError, severity: ConfigProblem['severity']): ConfigProblem {
  const pos = e.linePos?.[0];
  // The library's message repeats the position and quotes the source; keep the first line, position in `path`.
  const message = e.code === 'MULTIPLE_DOCS' ? 'a config file holds one YAML document; remove the second "---"'
    : (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
  return problem(pos === undefined ? '' : `line ${pos.line}, column ${pos.col}`, message, severity);
}

/** Loads a config from YAML text (tests, the built-in default, and loadConfig). */
export async function loadConfigFromText(text: string, o: TextOptions): Promise<LoadResult> {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const problems: ConfigProblem[] = [...doc.errors.map((e) => yamlProblem(e, 'error')), ...doc.warnings.map((w) => yamlProblem(w, 'warning'))];
  if (doc.errors.length > 0) return { ok: false, problems, source: o.source };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    return { ok: false, problems: [...problems, problem('', `cannot read the YAML: ${(e as Error).message}`)], source: o.source };
  }
  const envProblems: ConfigProblem[] = [];
  const expanded = expandEnv(raw, '', o.env, envProblems);
  const { spec, problems: schemaProblems } = validateConfig(expanded);
  const { config, problems: fileProblems } = await compileConfig(spec, { source: o.source, baseDir: o.baseDir, now: o.now });
  // A value whose ${VAR} failed is reported once, not again as a bad path or URL.
  const envFailed = new Set(envProblems.map((p) => p.path));
  const later = [...schemaProblems, ...fileProblems].filter((p) => !envFailed.has(p.path));
  const all = [...problems, ...envProblems, ...later];
  if (config === undefined || all.some((p) => p.severity === 'error')) return { ok: false, problems: all, source: o.source };
  return { ok: true, config, warnings: all, source: o.source };
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (e) {
    // Anything but "not there" (e.g. EACCES) counts as present, so reading it reports the error.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * Loads the config by the contract's lookup order: `opts.path` (--config),
 * then $SIGIL_CONFIG (ignored when empty), then `<cwd>/config/sigil.yaml` if
 * it exists, else the built-in default. A file named by --config or
 * $SIGIL_CONFIG that cannot be read is an error naming it.
 */
export async function loadConfig(opts: LoadOptions): Promise<LoadResult> {
  const fromEnv = opts.env.SIGIL_CONFIG === '' ? undefined : opts.env.SIGIL_CONFIG;
  const named = opts.path ?? fromEnv;
  const file = resolve(opts.cwd, named ?? DEFAULT_CONFIG_PATH);
  if (named === undefined && !(await exists(file))) {
    return loadConfigFromText(DEFAULT_CONFIG_YAML, { source: BUILT_IN_SOURCE, env: opts.env, baseDir: opts.cwd });
  }
  let text: string;
  try {
    text = (await readConfigFile(file)).toString('utf8');
  } catch (e) {
    const how = opts.path !== undefined ? '--config' : named !== undefined ? '$SIGIL_CONFIG' : 'the default location';
    return { ok: false, problems: [problem('', `cannot read the config file ${file} (named by ${how}): ${(e as Error).message}`)], source: file };
  }
  return loadConfigFromText(text, { source: file, env: opts.env, baseDir: opts.cwd });
}

/** One line per problem: `<source>: <path>: <message>` (no path for whole-file problems). */
export function formatProblems(problems: readonly ConfigProblem[], source: string): string {
  return problems
    .map((p) => `${source}: ${p.path === '' ? '' : `${p.path}: `}${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`)
    .join('\n');
}
