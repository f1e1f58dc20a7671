/**
 * Attestation conditions: CEL expressions (cel.dev, the language of Kubernetes' and Kyverno's
 * image policies) over the variables `predicate` and `statement` of a signed in-toto statement.
 * Compiled once, when the config loads: parsed and planned by @bufbuild/cel, then checked here
 * for what is wrong whatever the statement (@bufbuild/cel exports no type checker): a name that
 * is no variable, a function that does not exist or is called with the wrong number or types of
 * arguments, a result that cannot be a bool. Both variables are JSON, so their types are known
 * only when a statement comes: the rest fails at evaluation, and an evaluation that fails denies
 * (verify/condition-run.ts evaluates, bounded in time).
 */
import { CelScalar, celEnv, celFunc, parse, plan, type CelInput } from '@bufbuild/cel';

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
const COUNTED = [
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

type Expr = ReturnType<typeof parse>['expr'];

const ENV = celEnv({ variables: { predicate: CelScalar.DYN, statement: CelScalar.DYN }, funcs: COUNTED });

/** Type names CEL resolves as identifiers (`type(x) == string`). */
const TYPE_NAMES: ReadonlySet<string> = new Set(['bool', 'int', 'uint', 'double', 'string', 'bytes', 'list', 'map', 'null_type', 'type', 'dyn']);

/** Operators the parser writes as calls that the evaluator implements itself, with their result. */
const BUILT_IN_CALLS: Readonly<Record<string, { readonly args: number; readonly result: string }>> = {
  '_&&_': { args: 2, result: 'bool' },
  '_||_': { args: 2, result: 'bool' },
  '_?_:_': { args: 3, result: 'dyn' },
  '_[_]': { args: 2, result: 'dyn' },
  '@not_strictly_false': { args: 1, result: 'bool' },
};

/** A CEL type name without its parameters: `list(dyn)` → `list`. */
const kindOf = (t: { toString(): string }): string => String(t).replace(/\(.*$/, '');
/** An operator's name as written: `_+_` → `+`, `!_` → `!`, `@in` → `in`. */
const operator = (f: string): string => f.replace(/^@/, '').replace(/^_|_$/g, '').replace(/_/g, ' ');

class Checker {
  readonly problems: string[] = [];
  constructor(private readonly positions: Readonly<Record<string, number>>) {}

  #at(e: Expr): string {
    const offset = this.positions[String(e.id)];
    return offset === undefined ? '' : ` (at character ${offset + 1})`;
  }

  #problem(e: Expr, message: string): string {
    this.problems.push(`${message}${this.#at(e)}`);
    return 'dyn';
  }

  /** The static type of `e` ('dyn' when it depends on the statement); records what is wrong with it. */
  check(e: Expr, scope: ReadonlyMap<string, string>): string {
    const k = e.exprKind;
    switch (k.case) {
      case 'constExpr':
        return k.value.constantKind.case === 'nullValue' ? 'null_type' : (k.value.constantKind.case ?? 'dyn').replace(/Value$/, '').replace('int64', 'int').replace('uint64', 'uint');
      case 'identExpr': {
        const name = k.value.name;
        const bound = scope.get(name);
        if (bound !== undefined) return bound;
        if (CONDITION_VARIABLES.includes(name)) return 'dyn';
        if (TYPE_NAMES.has(name)) return 'type';
        return this.#problem(e, `unknown name ${JSON.stringify(name)}: the variables are ${CONDITION_VARIABLES.join(' and ')}`);
      }
      case 'selectExpr':
        if (k.value.operand) this.check(k.value.operand, scope);
        return k.value.testOnly ? 'bool' : 'dyn';
      case 'callExpr':
        return this.#call(e, k.value, scope);
      case 'listExpr':
        for (const x of k.value.elements) this.check(x, scope);
        return 'list';
      case 'structExpr':
        if (k.value.messageName !== '') return this.#problem(e, `message ${k.value.messageName}{…}: conditions work on JSON, there are no message types`);
        for (const entry of k.value.entries) {
          if (entry.keyKind.case === 'mapKey') this.check(entry.keyKind.value, scope);
          if (entry.value) this.check(entry.value, scope);
        }
        return 'map';
      case 'comprehensionExpr': {
        const c = k.value;
        if (c.iterRange) this.check(c.iterRange, scope);
        const accu = c.accuInit ? this.check(c.accuInit, scope) : 'dyn';
        const inner = new Map(scope).set(c.accuVar, accu).set(c.iterVar, 'dyn');
        if (c.iterVar2 !== '') inner.set(c.iterVar2, 'dyn');
        if (c.loopCondition) this.check(c.loopCondition, inner);
        if (c.loopStep) this.check(c.loopStep, inner);
        return c.result ? this.check(c.result, new Map(scope).set(c.accuVar, accu)) : 'dyn';
      }
      default:
        return this.#problem(e, 'an empty expression');
    }
  }

  #call(e: Expr, call: Extract<Expr['exprKind'], { case: 'callExpr' }>['value'], scope: ReadonlyMap<string, string>): string {
    const target = call.target ? this.check(call.target, scope) : undefined;
    const args = call.args.map((a) => this.check(a, scope));
    const builtIn = BUILT_IN_CALLS[call.function];
    if (builtIn !== undefined) return builtIn.result;
    const name = call.function;
    const shown = /^[@_!-]/.test(name) ? `operator ${operator(name)}` : `${target !== undefined ? '.' : ''}${name}()`;
    const group = ENV.funcs.find(name);
    if (group === undefined) return this.#problem(e, `unknown function ${shown}`);
    const overloads = [...group];
    const shaped = overloads.filter((f) => (f.target !== undefined) === (target !== undefined) && f.arguments.length === args.length);
    if (shaped.length === 0) {
      const forms = overloads.map((f) => `${f.target !== undefined ? `${kindOf(f.target)}.` : ''}${name}(${f.arguments.map(kindOf).join(', ')})`);
      return this.#problem(e, `${shown} with ${target !== undefined ? 'a receiver and ' : ''}${args.length} argument(s) does not exist; it is ${[...new Set(forms)].join(' or ')}`);
    }
    const fits = (param: string, arg: string | undefined): boolean => param === 'dyn' || arg === undefined || arg === 'dyn' || param === arg;
    const typed = shaped.filter((f) => fits(f.target ? kindOf(f.target) : 'dyn', target) && f.arguments.every((p, i) => fits(kindOf(p), args[i])));
    if (typed.length === 0) {
      const given = [...(target !== undefined ? [target] : []), ...args].join(', ');
      return this.#problem(e, `${shown} does not apply to (${given})`);
    }
    const results = new Set(typed.map((f) => kindOf(f.result)));
    return results.size === 1 ? [...results][0] : 'dyn';
  }
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
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(text);
  } catch (e) {
    return { problems: [`is not a valid CEL expression: ${parseMessage(e)}`] };
  }
  const checker = new Checker(Object.fromEntries(Object.entries(parsed.sourceInfo?.positions ?? {}).map(([id, at]) => [id, Number(at)])));
  let result: string;
  try {
    result = checker.check(parsed.expr, new Map());
  } catch (e) {
    return { problems: [`is not a valid CEL expression: ${parseMessage(e)}`] };
  }
  if (result !== 'bool' && result !== 'dyn') checker.problems.push(`gives ${/^[aeiou]/.test(result) ? 'an' : 'a'} ${result}, not a bool: a condition must be true or false`);
  if (checker.problems.length > 0) return { problems: checker.problems };
  const program = plan(ENV, parsed);
  return {
    text,
    evaluate: (variables) => {
      allocated = 0;
      return program(variables as never);
    },
  };
}
