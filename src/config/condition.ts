/**
 * Attestation conditions: CEL expressions (cel.dev, the language of Kubernetes' and Kyverno's
 * image policies) over the variables `predicate` and `statement` of a signed in-toto statement.
 * Compiled once, when the config loads: parsed and planned by @bufbuild/cel, and checked for what
 * is wrong whatever the statement (condition-check.ts). Both variables are JSON, so their types
 * are known only when a statement comes: the rest fails at evaluation, and an evaluation that
 * fails denies (verify/condition-run.ts evaluates, bounded in time; the functions that copy data
 * are counted here).
 */
import { createRequire } from 'node:module';
import type * as Cel from '@bufbuild/cel';
import type { CelInput } from '@bufbuild/cel';
import { staticProblems } from './condition-check.js';

/**
 * @bufbuild/cel, loaded the first time a condition is compiled: loading it costs a process
 * ~27 MiB of RSS (~9 MiB of heap, measured with node 24 here), which a config without attestation
 * conditions never needs. Its CommonJS build, so that loading it stays synchronous (the config
 * is validated synchronously); nothing else loads the library, so there is one copy of it.
 */
let celLib: typeof Cel | undefined;
const cel = (): typeof Cel => (celLib ??= createRequire(import.meta.url)('@bufbuild/cel') as typeof Cel);

/**
 * The longest condition accepted, in characters. Real conditions are a line or two; the bound
 * keeps the parser's and the checker's recursion (one level per nesting) far from the stack's
 * limit and the literals an expression can iterate over small.
 */
export const MAX_CONDITION_CHARS = 4096;

/** The variables a condition sees: the statement's `predicate`, and the whole statement. */
export const CONDITION_VARIABLES: readonly string[] = ['predicate', 'statement'];

/** A compiled condition: its text (for messages and fingerprints) and its evaluation plan. */
export interface Condition {
  readonly text: string;
  /** The CEL value, or a CEL error (an Error); @bufbuild/cel's plan never throws for a bad input. */
  readonly evaluate: (variables: Readonly<Record<string, CelInput>>) => unknown;
}

/**
 * Characters of strings and bytes one evaluation may create, in all. CEL copies data only when it
 * concatenates and converts between string and bytes, and a macro keeps what each step makes
 * (`predicate.list.map(x, predicate.text + x)`): over a statement of 1 MiB, unbounded, one
 * evaluation could fill memory long before its time budget ends it. Real conditions create none.
 */
export const MAX_CONDITION_ALLOCATION = 16 * 1024 * 1024;

/** What the evaluation under way has created (evaluations are synchronous: reset as each starts). */
let allocated = 0;

function charge(n: number): void {
  allocated += n;
  if (allocated > MAX_CONDITION_ALLOCATION) throw new Error(`the condition created more than ${MAX_CONDITION_ALLOCATION} characters of strings and bytes (MAX_CONDITION_ALLOCATION)`);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** CEL's standard functions that copy data, the same but counted against MAX_CONDITION_ALLOCATION. */
const counted = ({ celFunc, CelScalar }: typeof Cel) => [
  celFunc('_+_', [CelScalar.STRING, CelScalar.STRING], CelScalar.STRING, (a, b) => (charge(a.length + b.length), a + b)),
  celFunc('_+_', [CelScalar.BYTES, CelScalar.BYTES], CelScalar.BYTES, (a, b) => {
    charge(a.length + b.length);
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  }),
  celFunc('bytes', [CelScalar.STRING], CelScalar.BYTES, (s) => (charge(s.length * 3), new TextEncoder().encode(s))),
  celFunc('string', [CelScalar.BYTES], CelScalar.STRING, (b) => (charge(b.length), UTF8.decode(b))),
];

/** The environment every condition is planned in (built with the library, on first use). */
let env: Cel.CelEnv | undefined;
function conditionEnv(): Cel.CelEnv {
  const lib = cel();
  return (env ??= lib.celEnv({ variables: { predicate: lib.CelScalar.DYN, statement: lib.CelScalar.DYN }, funcs: counted(lib) }));
}

/** A parse error without the parser's `<input>:` prefix: "1:10: found . but expecting …". */
function parseMessage(e: unknown): string {
  if (e instanceof RangeError) return 'nested too deeply';
  return (e instanceof Error ? e.message : String(e)).replace(/^<input>:/, 'at ');
}

/**
 * Compiles a condition; returns it, or every problem found (what the config check reports at the
 * condition's YAML path).
 */
export function compileCondition(text: string): Condition | { readonly problems: readonly string[] } {
  if (text.length > MAX_CONDITION_CHARS) return { problems: [`is ${text.length} characters long, more than ${MAX_CONDITION_CHARS} (MAX_CONDITION_CHARS)`] };
  let parsed: ReturnType<typeof Cel.parse>;
  try {
    parsed = cel().parse(text);
  } catch (e) {
    return { problems: [`is not a valid CEL expression: ${parseMessage(e)}`] };
  }
  let problems: string[];
  try {
    problems = staticProblems(parsed, conditionEnv().funcs, CONDITION_VARIABLES);
  } catch (e) {
    return { problems: [`is not a valid CEL expression: ${parseMessage(e)}`] };
  }
  if (problems.length > 0) return { problems };
  let program: (variables: never) => unknown;
  try {
    program = cel().plan(conditionEnv(), parsed);
  } catch (e) {
    return { problems: [`is not a valid CEL expression: ${parseMessage(e)}`] };
  }
  return {
    text,
    evaluate: (variables) => {
      allocated = 0;
      return program(variables as never);
    },
  };
}
