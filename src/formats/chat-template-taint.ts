import { CHAT_TEMPLATE_MAX_RANGE, CHAT_TEMPLATE_MAX_REPEAT, ESCAPE_HELPERS, PAYLOAD_NAMES, isDunderish } from './chat-template-names.js';

/**
 * Taint analysis of a chat template's syntax tree (as `@huggingface/jinja` parses it). Every
 * expression gets an abstract value: a string, number or list known at analysis time (constant
 * folding through `~`, `+`, `join`, `replace`, `format`, `%`, `reverse`…), or an unknown value with
 * flags saying where it came from. Attribute and item names (`x[k]`, `|attr(k)`, `attribute=k`,
 * `selectattr(k)`, `str.format` fields) are the sinks: a known name that is a dunder, or a name
 * computed at run time that may hold an underscore the template made, reaches Python internals.
 * Strings that never reach a sink (`replace('__', '_')` on message content) are data.
 */

export type TaintVerdict = 'malicious' | 'suspicious';
export interface TaintFinding {
  rule: string;
  verdict: TaintVerdict;
  message: string;
  evidence: string;
}

/** A node of the parsed template; fields as `@huggingface/jinja`'s ast.d.ts declares them. */
export interface JNode {
  type: string;
  [field: string]: unknown;
}

/** Known strings longer than this are no longer tracked exactly (`{% set a = a ~ a %}` doubling). */
export const TAINT_MAX_KNOWN_CHARS = 4096;
/** Known lists longer than this are no longer tracked exactly. */
export const TAINT_MAX_KNOWN_ITEMS = 1024;
/** Expression nesting followed; deeper trees (a 100 000-term `~` chain) stop the analysis. */
export const TAINT_MAX_EVAL_DEPTH = 1000;
/** Passes over the template until variable values stop changing (loops feed values back). */
export const TAINT_MAX_PASSES = 4;

/**
 * `built`: produced by a run-time string operation, not written literally. `under`: may hold an
 * underscore the template put there (a literal piece, a `%c`/`{:c}` of a number). `data`: comes
 * from what the caller renders with (messages, tools, loop variables over them).
 */
type Val =
  | { k: 'str'; v: string; built: boolean }
  | { k: 'num'; v: number }
  | { k: 'list'; items: Val[]; built: boolean }
  | { k: 'unknown'; built: boolean; under: boolean; data: boolean };

const DATA: Val = { k: 'unknown', built: false, under: false, data: true };
const NOTHING: Val = { k: 'unknown', built: false, under: false, data: false };

export class TaintLimit extends Error {}

function hasUnder(v: Val): boolean {
  switch (v.k) {
    case 'str':
      return v.v.includes('_');
    case 'num':
      return false;
    case 'list':
      return v.items.some(hasUnder);
    default:
      return v.under;
  }
}
const isData = (v: Val): boolean => (v.k === 'unknown' ? v.data : v.k === 'list' ? v.items.some(isData) : false);
const isBuilt = (v: Val): boolean => (v.k === 'num' ? false : v.built);

function unknown(parts: readonly Val[], extra: { under?: boolean; data?: boolean } = {}): Val {
  return { k: 'unknown', built: true, under: parts.some(hasUnder) || extra.under === true, data: parts.some(isData) || extra.data === true };
}
function str(v: string, built = true, from: readonly Val[] = []): Val {
  return v.length > TAINT_MAX_KNOWN_CHARS ? unknown(from, { under: v.includes('_') }) : { k: 'str', v, built };
}
function list(items: Val[], built: boolean): Val {
  return items.length > TAINT_MAX_KNOWN_ITEMS ? unknown(items) : { k: 'list', items, built };
}

function same(a: Val, b: Val): boolean {
  if (a.k !== b.k) return false;
  if (a.k === 'str' && b.k === 'str') return a.v === b.v && a.built === b.built;
  if (a.k === 'num' && b.k === 'num') return a.v === b.v || (Number.isNaN(a.v) && Number.isNaN(b.v));
  if (a.k === 'list' && b.k === 'list') return a.built === b.built && a.items.length === b.items.length && a.items.every((x, i) => same(x, b.items[i] as Val));
  if (a.k === 'unknown' && b.k === 'unknown') return a.built === b.built && a.under === b.under && a.data === b.data;
  return false;
}
function merge(a: Val | undefined, b: Val): Val {
  if (a === undefined || same(a, b)) return b;
  return { k: 'unknown', built: isBuilt(a) || isBuilt(b), under: hasUnder(a) || hasUnder(b), data: isData(a) || isData(b) };
}

/** Python's `str()` of a known value, when it is one. */
function textOf(v: Val): string | undefined {
  if (v.k === 'str') return v.v;
  if (v.k === 'num') return Number.isInteger(v.v) ? String(v.v) : String(v.v);
  return undefined;
}

const show = (n: unknown, max = 80): string => {
  const s = describe(n as JNode, 0);
  return s.length > max ? `${s.slice(0, max)}…` : s;
};
function describe(n: JNode | undefined, depth: number): string {
  if (!n || depth > 6) return '…';
  switch (n.type) {
    case 'StringLiteral':
      return JSON.stringify(n.value);
    case 'IntegerLiteral':
    case 'FloatLiteral':
    case 'Identifier':
      return String(n.value);
    case 'MemberExpression':
      return n.computed ? `${describe(n.object as JNode, depth + 1)}[${describe(n.property as JNode, depth + 1)}]` : `${describe(n.object as JNode, depth + 1)}.${describe(n.property as JNode, depth + 1)}`;
    case 'CallExpression':
      return `${describe(n.callee as JNode, depth + 1)}(${(n.args as JNode[]).map((a) => describe(a, depth + 1)).join(', ')})`;
    case 'FilterExpression':
      return `${describe(n.operand as JNode, depth + 1)}|${describe(n.filter as JNode, depth + 1)}`;
    case 'BinaryExpression':
      return `${describe(n.left as JNode, depth + 1)} ${(n.operator as { value: string }).value} ${describe(n.right as JNode, depth + 1)}`;
    case 'KeywordArgumentExpression':
      return `${describe(n.key as JNode, depth + 1)}=${describe(n.value as JNode, depth + 1)}`;
    case 'ArrayLiteral':
    case 'TupleLiteral':
      return `[${(n.value as JNode[]).slice(0, 8).map((a) => describe(a, depth + 1)).join(', ')}]`;
    default:
      return n.type;
  }
}

/** Filters whose `attribute=` keyword or first positional argument names an attribute. */
const ATTR_FIRST_ARG = new Set(['attr', 'selectattr', 'rejectattr', 'groupby']);

interface MacroInfo {
  node: JNode;
  params: string[];
  /** Values passed at call sites, merged per parameter. */
  passed: Map<string, Val>;
}

export class TemplateTaint {
  readonly findings: TaintFinding[] = [];
  private readonly seen = new Set<string>();
  private env = new Map<string, Val>();
  private changed = false;
  private readonly macros = new Map<string, MacroInfo>();
  /** Local scopes (macro parameters and what a macro sets) over the global `env`. */
  private scopes: Array<Map<string, Val>> = [];

  constructor(private readonly maxFindings: number) {}

  /** Analyses a parsed Program. Throws TaintLimit when the tree is too deep to follow. */
  run(program: JNode): void {
    const body = program.body as JNode[];
    for (let pass = 0; pass < TAINT_MAX_PASSES; pass++) {
      this.changed = false;
      this.block(body);
      for (const m of this.macros.values()) {
        const scope = new Map<string, Val>();
        const args = m.node.args as JNode[];
        for (const a of args) {
          const name = a.type === 'KeywordArgumentExpression' ? String((a.key as JNode).value) : String(a.value);
          let v = m.passed.get(name);
          if (a.type === 'KeywordArgumentExpression') v = merge(v, this.eval(a.value as JNode, 0));
          scope.set(name, v ?? DATA);
        }
        // Jinja gives every macro `varargs`, `kwargs` and `caller`.
        for (const extra of ['varargs', 'kwargs', 'caller']) if (!scope.has(extra)) scope.set(extra, m.passed.get(extra) ?? DATA);
        this.scopes.push(scope);
        try {
          this.block(m.node.body as JNode[]);
        } finally {
          this.scopes.pop();
        }
      }
      if (!this.changed) break;
    }
  }

  private add(rule: string, verdict: TaintVerdict, message: string, evidence: string): void {
    const key = `${rule}\0${evidence}`;
    if (this.seen.has(key) || this.findings.length >= this.maxFindings) return;
    this.seen.add(key);
    this.findings.push({ rule, verdict, message, evidence: evidence.slice(0, 200) });
  }

  private lookup(name: string): Val | undefined {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const v = this.scopes[i]?.get(name);
      if (v !== undefined) return v;
    }
    return this.env.get(name);
  }

  private assign(name: string, v: Val): void {
    const target = this.scopes.length > 0 ? (this.scopes[this.scopes.length - 1] as Map<string, Val>) : this.env;
    const old = target.get(name);
    const next = merge(old, v);
    if (old === undefined || !same(old, next)) {
      target.set(name, next);
      this.changed = true;
    }
  }

  private block(stmts: readonly JNode[]): void {
    for (const s of stmts) this.statement(s);
  }

  private statement(s: JNode): void {
    switch (s.type) {
      case 'If':
        this.eval(s.test as JNode, 0);
        this.block(s.body as JNode[]);
        this.block(s.alternate as JNode[]);
        return;
      case 'For': {
        const it = this.eval(s.iterable as JNode, 0);
        let item: Val;
        if (it.k === 'list') item = it.items.reduce<Val | undefined>((acc, x) => merge(acc, x), undefined) ?? NOTHING;
        else if (it.k === 'str') item = [...it.v].reduce<Val | undefined>((acc, c) => merge(acc, str(c, it.built)), undefined) ?? NOTHING;
        else item = it.k === 'unknown' ? { k: 'unknown', built: it.built, under: it.under, data: true } : DATA;
        this.bind(s.loopvar as JNode, item);
        this.assign('loop', DATA);
        this.block(s.body as JNode[]);
        this.block(s.defaultBlock as JNode[]);
        return;
      }
      case 'Set': {
        let v: Val;
        if (s.value) v = this.eval(s.value as JNode, 0);
        else {
          // `{% set x %}…{% endset %}`: the value is what the body outputs.
          v = this.output(s.body as JNode[]);
        }
        this.bind(s.assignee as JNode, v);
        return;
      }
      case 'Macro': {
        const name = String((s.name as JNode).value);
        if (!this.macros.has(name)) {
          const params = (s.args as JNode[]).map((a) => (a.type === 'KeywordArgumentExpression' ? String((a.key as JNode).value) : String(a.value)));
          this.macros.set(name, { node: s, params, passed: new Map() });
          this.changed = true;
        }
        return;
      }
      case 'CallStatement':
        this.eval(s.call as JNode, 0);
        this.block(s.body as JNode[]);
        return;
      case 'FilterStatement':
        this.applyFilter(this.output(s.body as JNode[]), s.filter as JNode, 0);
        return;
      case 'Break':
      case 'Continue':
      case 'Comment':
        return;
      default:
        this.eval(s, 0);
    }
  }

  /** The value a block outputs (for `{% set x %}` and `{% filter %}`). */
  private output(body: readonly JNode[]): Val {
    let acc: Val = str('', false);
    for (const b of body) {
      if (b.type === 'StringLiteral' || b.type.endsWith('Expression') || b.type === 'Identifier' || b.type.endsWith('Literal')) {
        const v = this.eval(b, 0);
        const a = textOf(acc);
        const t = textOf(v);
        acc = a !== undefined && t !== undefined ? str(a + t, true, [acc, v]) : unknown([acc, v]);
      } else {
        this.statement(b);
        acc = unknown([acc], { under: true, data: true });
      }
    }
    return acc;
  }

  private bind(target: JNode, v: Val): void {
    if (target.type === 'Identifier') this.assign(String(target.value), v);
    else if (target.type === 'TupleLiteral' || target.type === 'ArrayLiteral') {
      const parts = target.value as JNode[];
      parts.forEach((p, i) => this.bind(p, v.k === 'list' ? (v.items[i] ?? DATA) : v.k === 'unknown' ? v : DATA));
    } else if (target.type === 'MemberExpression') {
      // `{% set ns.x = … %}`: namespace attributes are variables too.
      this.eval(target.object as JNode, 0);
      if (!target.computed && (target.property as JNode).type === 'Identifier') {
        const prop = String((target.property as JNode).value);
        this.staticAttribute(prop, target);
        if ((target.object as JNode).type === 'Identifier') this.assign(`${String((target.object as JNode).value)}.${prop}`, v);
      } else this.sink(this.eval(target.property as JNode, 0), 'item', target);
    }
  }

  /** Checks a name used where Python looks up an attribute or item. */
  private sink(v: Val, how: 'item' | 'attr' | 'format', where: JNode): void {
    if (v.k === 'str') {
      if (isDunderish(v.v)) {
        if (v.built) this.add('chat-template/string-built-attribute', 'malicious', `${how === 'item' ? 'subscript key' : 'attribute name'} is assembled at render time into \`${v.v.slice(0, 40)}\`, a Python internal (sandbox escape)`, show(where));
        else this.add('chat-template/dunder-access', 'malicious', `${how === 'item' ? 'subscript' : how === 'format' ? 'format field' : 'attribute'} \`${v.v.slice(0, 40)}\` reaches Python internals (sandbox escape)`, show(where));
      } else if (how !== 'item' && PAYLOAD_NAMES.has(v.v)) {
        this.add('chat-template/dangerous-call', 'malicious', `attribute \`${v.v}\` is a Python capability that only appears in escape payloads`, show(where));
      }
      return;
    }
    if (v.k === 'list') {
      for (const x of v.items) this.sink(x, how, where);
      return;
    }
    if (v.k === 'num') return;
    if (v.under) {
      this.add('chat-template/string-built-attribute', 'malicious', `${how === 'item' ? 'subscript key' : how === 'format' ? 'format string' : 'attribute name'} is computed at render time from pieces that can spell a dunder (\`_\` from a literal or a character code)`, show(where));
    } else if (how !== 'item' && (v.data || v.built)) {
      // Benign templates never look up an attribute whose name is not written out.
      this.add('chat-template/string-built-attribute', 'malicious', `${how === 'format' ? 'format string' : 'attribute name'} is computed at render time (it can name any attribute, dunders included)`, show(where));
    }
  }

  private staticAttribute(name: string, where: JNode): void {
    if (isDunderish(name)) this.add('chat-template/dunder-access', 'malicious', `attribute \`${name}\` reaches Python internals (sandbox escape)`, show(where));
    else if (PAYLOAD_NAMES.has(name)) this.add('chat-template/dangerous-call', 'malicious', `\`${name}\` is a Python capability that only appears in escape payloads`, show(where));
    else if (name.startsWith('_')) this.add('chat-template/private-attribute', 'suspicious', `attribute \`${name}\` is private; Jinja's sandbox refuses it and chat templates never need it`, show(where));
  }

  eval(n: JNode, depth: number): Val {
    if (depth > TAINT_MAX_EVAL_DEPTH) throw new TaintLimit(`expression nested deeper than ${TAINT_MAX_EVAL_DEPTH}`);
    const d = depth + 1;
    switch (n.type) {
      case 'StringLiteral':
        return { k: 'str', v: String(n.value), built: false };
      case 'IntegerLiteral':
      case 'FloatLiteral':
        return { k: 'num', v: Number(n.value) };
      case 'ArrayLiteral':
      case 'TupleLiteral':
        return list((n.value as JNode[]).map((x) => this.eval(x, d)), false);
      case 'ObjectLiteral': {
        const parts: Val[] = [];
        for (const [key, val] of n.value as Map<JNode, JNode>) parts.push(this.eval(key, d), this.eval(val, d));
        return { k: 'unknown', built: false, under: parts.some(hasUnder), data: false };
      }
      case 'Identifier':
        return this.identifier(String(n.value), n, false);
      case 'MemberExpression':
        return this.member(n, d);
      case 'CallExpression':
        return this.call(n, d);
      case 'FilterExpression':
        return this.applyFilter(this.eval(n.operand as JNode, d), n.filter as JNode, d);
      case 'BinaryExpression':
        return this.binary(String((n.operator as { value: string }).value), this.eval(n.left as JNode, d), this.eval(n.right as JNode, d), n);
      case 'UnaryExpression': {
        const a = this.eval(n.argument as JNode, d);
        const op = String((n.operator as { value: string }).value);
        return op === '-' && a.k === 'num' ? { k: 'num', v: -a.v } : op === 'not' ? NOTHING : a;
      }
      case 'Ternary':
        this.eval(n.condition as JNode, d);
        return merge(this.eval(n.trueExpr as JNode, d), this.eval(n.falseExpr as JNode, d));
      case 'SelectExpression':
        this.eval(n.test as JNode, d);
        return merge(this.eval(n.lhs as JNode, d), NOTHING);
      case 'TestExpression':
        this.eval(n.operand as JNode, d);
        return NOTHING;
      case 'KeywordArgumentExpression':
        return this.eval(n.value as JNode, d);
      case 'SpreadExpression':
      case 'KeywordSpreadExpression':
        return this.eval(n.argument as JNode, d);
      case 'SliceExpression':
        for (const f of ['start', 'stop', 'step']) if (n[f]) this.eval(n[f] as JNode, d);
        return NOTHING;
      default:
        // A node this analysis does not know: judged by its parts, its value unknown.
        for (const v of Object.values(n)) if (v && typeof v === 'object' && typeof (v as JNode).type === 'string') this.eval(v as JNode, d);
        return unknown([], { under: true, data: true });
    }
  }

  private identifier(name: string, n: JNode, called: boolean): Val {
    if (name.startsWith('__')) this.add('chat-template/dunder-access', 'malicious', `name \`${name}\` reaches Python internals (sandbox escape)`, name);
    if (ESCAPE_HELPERS.has(name)) this.add('chat-template/escape-helper', 'malicious', `\`${name}\` is a global whose internals lead out of the sandbox; chat templates never need it`, show(n));
    if (name === 'namespace' && !called) this.add('chat-template/escape-helper', 'malicious', '`namespace` used as an object rather than called (reaching into the class)', show(n));
    if (called && PAYLOAD_NAMES.has(name)) this.add('chat-template/dangerous-call', 'malicious', `\`${name}\` is a Python capability that only appears in escape payloads`, show(n));
    const v = this.lookup(name);
    if (v !== undefined) return v;
    if (name === 'true' || name === 'false' || name === 'True' || name === 'False') return { k: 'num', v: name.toLowerCase() === 'true' ? 1 : 0 };
    if (name === 'none' || name === 'None') return NOTHING;
    return DATA;
  }

  private member(n: JNode, d: number): Val {
    const obj = this.eval(n.object as JNode, d);
    const prop = n.property as JNode;
    if (!n.computed) {
      const name = String(prop.value);
      this.staticAttribute(name, n);
      if ((n.object as JNode).type === 'Identifier') {
        const nsVal = this.lookup(`${String((n.object as JNode).value)}.${name}`);
        if (nsVal !== undefined) return nsVal;
      }
      return obj.k === 'unknown' ? { k: 'unknown', built: obj.built, under: obj.under, data: true } : DATA;
    }
    if (prop.type === 'SliceExpression') {
      const parts = ['start', 'stop', 'step'].map((f) => (prop[f] ? this.eval(prop[f] as JNode, d) : undefined));
      const nums = parts.map((p) => (p === undefined ? undefined : p.k === 'num' ? p.v : NaN));
      if (!nums.some((x) => Number.isNaN(x)) && (obj.k === 'str' || obj.k === 'list')) {
        const items: Val[] = obj.k === 'str' ? [...obj.v].map((c) => str(c, obj.built)) : obj.items;
        const picked = pySlice(items, nums[0], nums[1], nums[2]);
        if (picked) return obj.k === 'str' ? str(picked.map((x) => textOf(x) ?? '').join(''), true) : list(picked, obj.built);
      }
      return unknown([obj]);
    }
    const key = this.eval(prop, d);
    this.sink(key, 'item', n);
    if (key.k === 'num' && Number.isInteger(key.v)) {
      if (obj.k === 'str') {
        const chars = [...obj.v];
        const c = chars[key.v < 0 ? chars.length + key.v : key.v];
        if (c !== undefined) return str(c, true);
      }
      if (obj.k === 'list') {
        const item = obj.items[key.v < 0 ? obj.items.length + key.v : key.v];
        if (item !== undefined) return item;
      }
    }
    return obj.k === 'unknown' ? { k: 'unknown', built: obj.built, under: obj.under, data: true } : obj.k === 'list' ? unknown(obj.items) : DATA;
  }

  private args(n: JNode, d: number): { pos: Val[]; kw: Map<string, Val>; nodes: JNode[] } {
    const pos: Val[] = [];
    const kw = new Map<string, Val>();
    const nodes = (n.args as JNode[] | undefined) ?? [];
    for (const a of nodes) {
      if (a.type === 'KeywordArgumentExpression') kw.set(String((a.key as JNode).value), this.eval(a.value as JNode, d));
      else pos.push(this.eval(a, d));
    }
    return { pos, kw, nodes };
  }

  private call(n: JNode, d: number): Val {
    const callee = n.callee as JNode;
    if (callee.type === 'Identifier') {
      const name = String(callee.value);
      this.identifier(name, callee, true);
      const { pos, kw } = this.args(n, d);
      const macro = this.macros.get(name);
      if (macro) {
        const pass = (p: string, v: Val) => {
          const old = macro.passed.get(p);
          const next = merge(old, v);
          if (old === undefined || !same(old, next)) {
            macro.passed.set(p, next);
            this.changed = true;
          }
        };
        pos.forEach((v, i) => pass(macro.params[i] ?? 'varargs', v));
        for (const [k, v] of kw) pass(macro.params.includes(k) ? k : 'kwargs', v);
        return unknown(pos.concat([...kw.values()]), { data: true });
      }
      if (name === 'range') {
        for (const a of pos) if (a.k === 'num' && Math.abs(a.v) > CHAT_TEMPLATE_MAX_RANGE) this.add('chat-template/huge-range', 'suspicious', `range(${a.v}) iterates more than ${CHAT_TEMPLATE_MAX_RANGE} times (resource abuse)`, show(n));
        const [a, b, c] = pos.map((x) => (x.k === 'num' ? x.v : NaN));
        const start = pos.length >= 2 ? (a as number) : 0;
        const stop = pos.length >= 2 ? (b as number) : (a as number);
        const step = pos.length >= 3 ? (c as number) : 1;
        if ([start, stop, step].every(Number.isInteger) && step !== 0 && Math.abs((stop - start) / step) <= TAINT_MAX_KNOWN_ITEMS) {
          const items: Val[] = [];
          for (let i = start; step > 0 ? i < stop : i > stop; i += step) items.push({ k: 'num', v: i });
          return list(items, true);
        }
        return unknown(pos);
      }
      return unknown(pos.concat([...kw.values()]), { data: true });
    }
    if (callee.type === 'MemberExpression' && !callee.computed) {
      const obj = this.eval(callee.object as JNode, d);
      const method = String((callee.property as JNode).value);
      this.staticAttribute(method, callee);
      const { pos, kw } = this.args(n, d);
      return this.method(obj, method, pos, kw, n);
    }
    const f = this.eval(callee, d);
    const { pos, kw } = this.args(n, d);
    return unknown([f, ...pos, ...kw.values()], { data: true });
  }

  /** Python `str` methods Jinja lets a template call. */
  private method(obj: Val, method: string, pos: Val[], kw: Map<string, Val>, n: JNode): Val {
    const s = textOf(obj);
    const all = [obj, ...pos, ...kw.values()];
    switch (method) {
      case 'format':
      case 'format_map':
        return this.pyFormat(obj, pos, kw, n);
      case 'join':
        return this.join(pos[0] ?? NOTHING, obj);
      case 'replace':
        return this.replace(obj, pos[0], pos[1], pos[2]);
      case 'upper':
      case 'lower':
      case 'strip':
      case 'lstrip':
      case 'rstrip':
      case 'title':
      case 'capitalize':
      case 'swapcase':
        if (s !== undefined && obj.k === 'str' && pos.length === 0) return str(simpleCase(s, method), true);
        return unknown(all);
      case 'split':
        if (obj.k === 'str' && (pos.length === 0 || pos[0]?.k === 'str')) {
          const sep = pos[0]?.k === 'str' ? pos[0].v : undefined;
          const parts = sep === undefined ? obj.v.trim().split(/\s+/).filter(Boolean) : sep === '' ? undefined : obj.v.split(sep);
          if (parts) return list(parts.map((p) => str(p, true)), true);
        }
        return unknown(all);
      case 'startswith':
      case 'endswith':
      case 'count':
      case 'find':
      case 'index':
      case 'isdigit':
      case 'isalpha':
        return NOTHING;
      default:
        return unknown(all, { data: true });
    }
  }

  applyFilter(operand: Val, filter: JNode, d: number): Val {
    let name: string;
    let pos: Val[] = [];
    let kw = new Map<string, Val>();
    let where = filter;
    if (filter.type === 'Identifier') name = String(filter.value);
    else if (filter.type === 'CallExpression' && (filter.callee as JNode).type === 'Identifier') {
      name = String((filter.callee as JNode).value);
      ({ pos, kw } = this.args(filter, d));
      where = filter;
    } else {
      const v = this.eval(filter, d);
      return unknown([operand, v], { data: true });
    }
    if (name.startsWith('__')) this.add('chat-template/dunder-access', 'malicious', `filter \`${name}\` names Python internals`, name);
    const attrKw = kw.get('attribute');
    if (attrKw !== undefined) this.sink(attrKw, 'attr', where);
    if (ATTR_FIRST_ARG.has(name) && pos[0] !== undefined) this.sink(pos[0], 'attr', where);
    if (name === 'attr' && pos.length === 0 && attrKw === undefined) this.sink(unknown([], { under: true, data: true }), 'attr', where);
    if (name === 'map' || name === 'select' || name === 'reject') {
      // map('attr', name) applies the attr filter to every item.
      const fname = pos[0];
      if (name === 'map' && fname !== undefined && (fname.k !== 'str' || fname.v === 'attr') && pos[1] !== undefined) this.sink(pos[1], 'attr', where);
      if (name === 'map' && fname?.k === 'str' && operand.k === 'list' && fname.v !== 'attr') {
        const fake: JNode = { type: 'Identifier', value: fname.v };
        return list(operand.items.map((x) => this.applyFilter(x, fake, d)), true);
      }
      return unknown([operand, ...pos], { data: isData(operand) });
    }
    const s = textOf(operand);
    const all = [operand, ...pos, ...kw.values()];
    switch (name) {
      case 'attr':
        return DATA;
      case 'join':
        return this.join(operand, pos[0] ?? kw.get('d') ?? str('', false));
      case 'replace':
        return this.replace(operand, pos[0], pos[1], pos[2]);
      case 'format':
        return this.printf(operand, pos.length === 1 ? (pos[0] as Val) : list(pos, true));
      case 'string':
      case 'safe':
      case 'e':
      case 'escape':
      case 'forceescape':
        if (s !== undefined) return str(s, true);
        if (operand.k === 'list') return unknown(operand.items);
        return operand.k === 'unknown' ? { ...operand, built: true } : unknown([operand]);
      case 'lower':
      case 'upper':
      case 'title':
      case 'capitalize':
      case 'trim':
        if (operand.k === 'str') return str(simpleCase(operand.v, name === 'trim' ? 'strip' : name), true);
        return unknown(all);
      case 'reverse':
        if (operand.k === 'str') return str([...operand.v].reverse().join(''), true);
        if (operand.k === 'list') return list([...operand.items].reverse(), true);
        return unknown(all);
      case 'list':
        if (operand.k === 'str') return list([...operand.v].map((c) => str(c, true)), true);
        if (operand.k === 'list') return operand;
        return unknown(all);
      case 'first':
      case 'last':
        if (operand.k === 'str') return str((name === 'first' ? [...operand.v][0] : [...operand.v].pop()) ?? '', true);
        if (operand.k === 'list') return (name === 'first' ? operand.items[0] : operand.items[operand.items.length - 1]) ?? NOTHING;
        return operand.k === 'unknown' ? operand : unknown(all);
      case 'default':
      case 'd':
        return merge(operand, pos[0] ?? str('', false));
      case 'length':
      case 'count':
      case 'int':
      case 'float':
      case 'abs':
      case 'round':
        return operand.k === 'num' && name !== 'length' && name !== 'count' ? operand : { k: 'unknown', built: false, under: false, data: isData(operand) };
      case 'tojson':
      case 'items':
      case 'dictsort':
      case 'unique':
      case 'sort':
      case 'batch':
      case 'slice':
      case 'groupby':
      case 'selectattr':
      case 'rejectattr':
      case 'sum':
      case 'min':
      case 'max':
      case 'random':
      case 'indent':
      case 'center':
      case 'wordwrap':
      case 'truncate':
      case 'striptags':
      case 'urlencode':
      case 'wordcount':
      case 'filesizeformat':
      case 'pprint':
      case 'xmlattr':
      case 'urlize':
        return unknown(all);
      default:
        return unknown(all);
    }
  }

  private binary(op: string, a: Val, b: Val, n: JNode): Val {
    switch (op) {
      case '~': {
        const x = textOf(a);
        const y = textOf(b);
        return x !== undefined && y !== undefined ? str(x + y, true, [a, b]) : unknown([a, b]);
      }
      case '+':
        if (a.k === 'str' && b.k === 'str') return str(a.v + b.v, true, [a, b]);
        if (a.k === 'num' && b.k === 'num') return { k: 'num', v: a.v + b.v };
        if (a.k === 'list' && b.k === 'list') return list(a.items.concat(b.items), true);
        return unknown([a, b]);
      case '-':
      case '/':
      case '//':
        if (a.k === 'num' && b.k === 'num') return { k: 'num', v: op === '-' ? a.v - b.v : op === '/' ? a.v / b.v : Math.floor(a.v / b.v) };
        return { k: 'unknown', built: false, under: false, data: isData(a) || isData(b) };
      case '*': {
        const count = a.k === 'num' ? a.v : b.k === 'num' ? b.v : NaN;
        const other = a.k === 'num' ? b : a;
        if (a.k === 'num' && b.k === 'num') return { k: 'num', v: a.v * b.v };
        if (Number.isFinite(count) && count > CHAT_TEMPLATE_MAX_REPEAT) {
          this.add('chat-template/huge-repeat', 'suspicious', `repetition by ${count} builds huge output (resource abuse)`, show(n));
          return unknown([other]);
        }
        if (other.k === 'str' && Number.isInteger(count)) return str(other.v.repeat(Math.max(0, count)), true, [other]);
        if (other.k === 'list' && Number.isInteger(count) && count * other.items.length <= TAINT_MAX_KNOWN_ITEMS) return list(Array.from({ length: Math.max(0, count) }, () => other.items).flat(), true);
        return unknown([a, b]);
      }
      case '**':
        if (a.k === 'num' && b.k === 'num') {
          const v = a.v ** b.v;
          if (!(Math.abs(v) <= CHAT_TEMPLATE_MAX_RANGE)) this.add('chat-template/huge-range', 'suspicious', `exponentiation builds a huge number (${show(n)}): resource abuse`, show(n));
          return { k: 'num', v };
        }
        this.add('chat-template/huge-range', 'suspicious', 'exponentiation in a template builds huge numbers (resource abuse)', show(n));
        return NOTHING;
      case '%':
        if (a.k === 'num' && b.k === 'num') return { k: 'num', v: a.v % b.v };
        return this.printf(a, b);
      case 'and':
      case 'or':
        return merge(a, b);
      default:
        return NOTHING;
    }
  }

  private join(items: Val, sep: Val): Val {
    const s = textOf(sep);
    if (items.k === 'list' && s !== undefined) {
      const parts = items.items.map(textOf);
      if (parts.every((p) => p !== undefined)) return str(parts.join(s), true, [items, sep]);
    }
    if (items.k === 'str' && s !== undefined) return str([...items.v].join(s), true, [items, sep]);
    return unknown([items, sep]);
  }

  private replace(s: Val, old: Val | undefined, now: Val | undefined, count: Val | undefined): Val {
    const parts = [s, old ?? NOTHING, now ?? NOTHING];
    if (s.k === 'str' && old?.k === 'str' && now?.k === 'str' && (count === undefined || count.k === 'num')) {
      let out = s.v;
      if (count === undefined || (count.k === 'num' && count.v < 0)) out = old.v === '' ? insertEverywhere(s.v, now.v) : s.v.split(old.v).join(now.v);
      else if (count.k === 'num') {
        let left = count.v;
        out = '';
        let rest = s.v;
        while (left-- > 0 && old.v !== '' && rest.includes(old.v)) {
          const i = rest.indexOf(old.v);
          out += rest.slice(0, i) + now.v;
          rest = rest.slice(i + old.v.length);
        }
        out += rest;
      }
      return str(out, true, parts);
    }
    // Unknown input: the result can hold the replacement's underscores wherever the input matched.
    return { k: 'unknown', built: true, under: hasUnder(s) || (now !== undefined && hasUnder(now)), data: isData(s) || (now !== undefined && isData(now)) };
  }

  /** printf-style `fmt % args` and `fmt|format(args)`: %s, %d, %i, %c, %%; else unknown. */
  private printf(fmt: Val, args: Val): Val {
    const argList = args.k === 'list' ? args.items : [args];
    const charCode = fmt.k !== 'str' || /%[-#0 +]*\d*(\.\d+)?c/.test(fmt.v);
    if (fmt.k === 'str') {
      let i = 0;
      let ok = true;
      const out = fmt.v.replace(/%(?:\(([^)]*)\))?([-#0 +]*\d*(?:\.\d+)?)([sdicr%])/g, (_m, key: string | undefined, flags: string, conv: string) => {
        if (conv === '%') return '%';
        if (key !== undefined || flags !== '') {
          ok = false;
          return '';
        }
        const a = argList[i++];
        if (!a) {
          ok = false;
          return '';
        }
        if (conv === 'c') {
          if (a.k === 'num' && Number.isInteger(a.v) && a.v >= 0 && a.v <= 0x10ffff) return String.fromCodePoint(a.v);
          if (a.k === 'str' && [...a.v].length === 1) return a.v;
          ok = false;
          return '';
        }
        if (conv === 'd' || conv === 'i') {
          if (a.k === 'num') return String(Math.trunc(a.v));
          ok = false;
          return '';
        }
        const t = textOf(a);
        if (t === undefined) ok = false;
        return t ?? '';
      });
      if (ok) return str(out, true, [fmt, args]);
    }
    return unknown([fmt, ...argList], { under: charCode && argList.some((a) => a.k !== 'str') });
  }

  /** Python `str.format`: fields may look up attributes and items (`{0.__class__}`), a sink. */
  private pyFormat(fmt: Val, pos: Val[], kw: Map<string, Val>, n: JNode): Val {
    const all = [fmt, ...pos, ...kw.values()];
    if (fmt.k !== 'str') {
      // A format string computed at run time can hold `{0.__class__}` fields.
      this.sink(fmt.k === 'unknown' ? fmt : unknown([fmt]), 'format', n);
      return unknown(all, { under: pos.some((p) => p.k !== 'str') });
    }
    let out = '';
    let auto = 0;
    let exact = true;
    let charCode = false;
    const src = fmt.v;
    for (let i = 0; i < src.length; i++) {
      const c = src[i] as string;
      if (c === '{' && src[i + 1] === '{') {
        out += '{';
        i++;
        continue;
      }
      if (c === '}' && src[i + 1] === '}') {
        out += '}';
        i++;
        continue;
      }
      if (c !== '{') {
        out += c;
        continue;
      }
      const close = src.indexOf('}', i);
      if (close < 0) {
        exact = false;
        break;
      }
      const field = src.slice(i + 1, close);
      i = close;
      const m = /^([^.[!:]*)((?:\.[^.[!:]*|\[[^\]]*\])*)(?:!([rsa]))?(?::(.*))?$/.exec(field);
      if (!m) {
        exact = false;
        continue;
      }
      const [, argName = '', chain = '', , spec = ''] = m;
      for (const part of chain.match(/\.[^.[]*|\[[^\]]*\]/g) ?? []) {
        const name = part.startsWith('.') ? part.slice(1) : part.slice(1, -1);
        this.sink({ k: 'str', v: name, built: fmt.built }, part.startsWith('.') ? 'format' : 'item', n);
      }
      const arg = argName === '' ? pos[auto++] : /^\d+$/.test(argName) ? pos[Number(argName)] : kw.get(argName);
      if (spec.endsWith('c')) charCode = true;
      if (chain !== '' || arg === undefined) {
        exact = false;
        continue;
      }
      if (spec === '' || spec === 's') {
        const t = textOf(arg);
        if (t === undefined) exact = false;
        else out += t;
      } else if (spec === 'c' && arg.k === 'num' && Number.isInteger(arg.v) && arg.v >= 0 && arg.v <= 0x10ffff) out += String.fromCodePoint(arg.v);
      else if (spec === 'd' && arg.k === 'num') out += String(Math.trunc(arg.v));
      else exact = false;
    }
    if (exact) return str(out, true, all);
    return unknown(all, { under: charCode && pos.concat([...kw.values()]).some((p) => p.k !== 'str') });
  }
}

function simpleCase(s: string, how: string): string {
  switch (how) {
    case 'upper':
      return s.toUpperCase();
    case 'lower':
      return s.toLowerCase();
    case 'strip':
      return s.trim();
    case 'lstrip':
      return s.trimStart();
    case 'rstrip':
      return s.trimEnd();
    case 'capitalize':
      return s.charAt(0).toUpperCase() + s.slice(1).toLowerCase();
    case 'title':
      return s.toLowerCase().replace(/(^|[^A-Za-z])([a-z])/g, (_m, p: string, c: string) => p + c.toUpperCase());
    case 'swapcase':
      return [...s].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join('');
    default:
      return s;
  }
}

function insertEverywhere(s: string, ins: string): string {
  return ins + [...s].join(ins) + (s.length > 0 ? ins : '');
}

function pySlice<T>(items: readonly T[], start: number | undefined, stop: number | undefined, step: number | undefined): T[] | undefined {
  const n = items.length;
  const st = step ?? 1;
  if (st === 0 || !Number.isInteger(st)) return undefined;
  const norm = (x: number | undefined, dflt: number) => (x === undefined ? dflt : x < 0 ? Math.max(x + n, st < 0 ? -1 : 0) : Math.min(x, st < 0 ? n - 1 : n));
  const a = norm(start, st > 0 ? 0 : n - 1);
  const b = norm(stop, st > 0 ? n : -1);
  const out: T[] = [];
  for (let i = a; st > 0 ? i < b : i > b; i += st) out.push(items[i] as T);
  return out;
}
