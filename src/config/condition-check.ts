/**
 * What can be known wrong about a CEL condition before any statement is seen (@bufbuild/cel
 * exports no type checker): a name that is no variable, a function that does not exist or is
 * called with the wrong number or types of arguments, a result that cannot be a bool. The
 * variables are JSON, `dyn` here: whatever depends on them is left to evaluation.
 */
import type { CelEnv, parse } from '@bufbuild/cel';

type Parsed = ReturnType<typeof parse>;
type Expr = Parsed['expr'];

/** Type names CEL resolves as identifiers (`type(x) == string`). */
const TYPE_NAMES: ReadonlySet<string> = new Set(['bool', 'int', 'uint', 'double', 'string', 'bytes', 'list', 'map', 'null_type', 'type', 'dyn']);

/** Operators the parser writes as calls that the evaluator implements itself, with their result type. */
const BUILT_IN_CALLS: Readonly<Record<string, string>> = {
  '_&&_': 'bool',
  '_||_': 'bool',
  '_?_:_': 'dyn',
  '_[_]': 'dyn',
  '@not_strictly_false': 'bool',
};

/** A CEL type name without its parameters: `list(dyn)` → `list`. */
const kindOf = (t: { toString(): string }): string => String(t).replace(/\(.*$/, '');
/** An operator's name as written: `_+_` → `+`, `!_` → `!`, `@in` → `in`. */
const operator = (f: string): string => f.replace(/^@/, '').replace(/^_|_$/g, '').replace(/_/g, ' ');

class Checker {
  constructor(
    private readonly positions: Readonly<Record<string, number>>,
    private readonly funcs: CelEnv['funcs'],
    private readonly variables: readonly string[],
  ) {}

  readonly problems: string[] = [];

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
        if (this.variables.includes(name)) return 'dyn';
        if (TYPE_NAMES.has(name)) return 'type';
        return this.#problem(e, `unknown name ${JSON.stringify(name)}: the variables are ${this.variables.join(' and ')}`);
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
    if (builtIn !== undefined) return builtIn;
    const name = call.function;
    const shown = /^[@_!-]/.test(name) ? `operator ${operator(name)}` : `${target !== undefined ? '.' : ''}${name}()`;
    const group = this.funcs.find(name);
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

/**
 * Every problem of a parsed condition, with where it is ("at character 12"), or none. Throws a
 * RangeError for nesting deeper than the stack (the caller's parse error).
 */
export function staticProblems(parsed: Parsed, funcs: CelEnv['funcs'], variables: readonly string[]): string[] {
  const positions = Object.fromEntries(Object.entries(parsed.sourceInfo?.positions ?? {}).map(([id, at]) => [id, Number(at)]));
  const checker = new Checker(positions, funcs, variables);
  const result = checker.check(parsed.expr, new Map());
  if (result !== 'bool' && result !== 'dyn') checker.problems.push(`gives ${/^[aeiou]/.test(result) ? 'an' : 'a'} ${result}, not a bool: a condition must be true or false`);
  return checker.problems;
}
