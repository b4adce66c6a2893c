import type { FindingSink } from '../report/findings.js';
import type { Severity, Verdict } from '../report/model.js';
import type { FormatContext, FormatHandler } from './types.js';
import { decodeUtf8Strict } from './json-strict.js';
import { parse as jinjaParse, tokenize as jinjaTokenize } from '@huggingface/jinja';
import { CHAT_TEMPLATE_MAX_BLOCK_DEPTH, CHAT_TEMPLATE_MAX_CHARS, CHAT_TEMPLATE_MAX_EXPR_DEPTH, CHAT_TEMPLATE_MAX_LOOP_DEPTH, CHAT_TEMPLATE_MAX_RANGE, CHAT_TEMPLATE_MAX_REPEAT, ESCAPE_HELPERS, PAYLOAD_NAMES, isDunderish } from './chat-template-names.js';
import { TaintLimit, TemplateTaint, type JNode } from './chat-template-taint.js';

/**
 * Static analysis of Jinja chat templates (GGUF `tokenizer.chat_template`, `tokenizer_config.json`
 * `chat_template`, `chat_template.jinja`). Nothing is rendered. Two passes:
 *
 * 1. A lexer written the way Jinja's own lexer works (text, `{{ }}`, `{% %}`, `{# #}`, raw blocks,
 *    string literals with Python's escapes) checks structure: syntax, nesting, template loading,
 *    literals spelled with escapes.
 * 2. `@huggingface/jinja` (the parser transformers.js renders chat templates with) builds the syntax
 *    tree, and chat-template-taint.ts judges it by taint: which attribute and item names can reach a
 *    dunder, however the string was built.
 *
 * When the parser rejects a template, or its tokens disagree with pass 1 (a template Jinja would
 * read differently), the template is `suspicious` and the older token-pattern checks below decide
 * the rest: a fallback that errs toward findings, never toward `safe`.
 */

export { CHAT_TEMPLATE_MAX_CHARS, CHAT_TEMPLATE_MAX_RANGE, CHAT_TEMPLATE_MAX_REPEAT, CHAT_TEMPLATE_MAX_BLOCK_DEPTH, CHAT_TEMPLATE_MAX_LOOP_DEPTH, CHAT_TEMPLATE_MAX_EXPR_DEPTH };
const MAX_FINDINGS = 40;
/** Largest template given to the parser and the taint pass (real ones are a few KiB; the biggest tool templates ~40 KiB). */
export const CHAT_TEMPLATE_MAX_PARSE_CHARS = 512 * 1024;
/** Tokens kept per tag (real tags hold at most a few hundred). */
export const CHAT_TEMPLATE_MAX_TAG_TOKENS = 50_000;

export interface TemplateFinding {
  rule: string;
  verdict: Extract<Verdict, 'malicious' | 'suspicious' | 'invalid'>;
  message: string;
  evidence: string;
  /** Character offset in the template. */
  offset: number;
}

type TokKind = 'name' | 'string' | 'number' | 'op';
interface Tok {
  kind: TokKind;
  /** Names, operators, numbers: source text; strings: the decoded value. */
  value: string;
  offset: number;
  /** Strings only: an escape sequence produced `_` or a letter (obfuscated spelling). */
  obfuscated?: boolean;
}

const STRING_BUILDERS = new Set(['join', 'format', 'replace', 'reverse', 'string', 'striptags', 'lower', 'upper', 'title', 'capitalize', 'urlencode']);
const BLOCK_OPENERS = new Set(['for', 'if', 'macro', 'call', 'filter', 'with', 'block', 'autoescape', 'trans', 'generation']);
const TEMPLATE_LOADING = new Set(['include', 'import', 'extends', 'from']);


type Add = (rule: string, verdict: TemplateFinding['verdict'], message: string, evidence: string, offset: number) => void;

/** Analyses a template's source. Never throws; runs in time linear in the source length. */
export function analyzeChatTemplate(source: string): TemplateFinding[] {
  const out: TemplateFinding[] = [];
  const seen = new Set<string>();
  const add: Add = (rule, verdict, message, evidence, offset) => {
    const key = `${rule}\0${evidence}`;
    if (seen.has(key) || out.length >= MAX_FINDINGS) return;
    seen.add(key);
    out.push({ rule, verdict, message, evidence: evidence.slice(0, 200), offset });
  };
  let src = source;
  if (src.length > CHAT_TEMPLATE_MAX_CHARS) {
    add('chat-template/oversized', 'suspicious', `template of ${src.length} characters exceeds ${CHAT_TEMPLATE_MAX_CHARS}; only the start was analysed`, `${src.length} characters`, 0);
    src = src.slice(0, CHAT_TEMPLATE_MAX_CHARS);
  }
  // The token-pattern checks run alongside pass 1 (no token list is kept); their findings count
  // only when the syntax tree cannot be used.
  const fallbackFindings: TemplateFinding[] = [];
  const lexed = lexTemplate(src, add, fallbackFindings);
  const fallback = () => {
    for (const f of fallbackFindings) add(f.rule, f.verdict, f.message, f.evidence, f.offset);
  };
  if (lexed.broken || lexed.tooDeep) {
    // Jinja refuses the template, or its nesting is past the limits (already findings; the
    // recursive parser is not given it). Payloads before the error are still reported.
    fallback();
    return out;
  }
  if (lexed.parserInput.length > CHAT_TEMPLATE_MAX_PARSE_CHARS) {
    add('chat-template/oversized', 'suspicious', `template of ${lexed.parserInput.length} characters is beyond the ${CHAT_TEMPLATE_MAX_PARSE_CHARS} the syntax-tree analysis takes (real chat templates are a few KiB); judged by token patterns only`, `${lexed.parserInput.length} characters`, 0);
    fallback();
    return out;
  }
  let program: JNode;
  try {
    const tokens = jinjaTokenize(lexed.parserInput);
    const why = disagreement(lexed, tokens);
    if (why !== undefined) {
      add('chat-template/parser-disagreement', 'suspicious', `the Jinja parser and Jinja's own lexing rules read this template differently (${why}); judged by token patterns instead`, why, 0);
      fallback();
      return out;
    }
    program = jinjaParse(tokens) as unknown as JNode;
  } catch (e) {
    const msg = e instanceof RangeError ? 'too deeply nested to parse' : String((e as Error)?.message ?? e).slice(0, 120);
    add('chat-template/unparsed', 'suspicious', `the Jinja parser rejects this template (${msg}); Python's Jinja may still render it, so it was judged by token patterns only`, msg, 0);
    fallback();
    return out;
  }
  const taint = new TemplateTaint(MAX_FINDINGS);
  try {
    taint.run(program);
  } catch (e) {
    // Too deep to follow, or a tree shape the analysis did not expect: a finding, never a crash or `safe`.
    const msg = String((e as Error)?.message ?? e).slice(0, 120);
    const why = e instanceof TaintLimit || e instanceof RangeError ? `the template is too deeply nested to analyse (${msg})` : `the syntax-tree analysis failed (${msg})`;
    add('chat-template/unparsed', 'suspicious', `${why}; judged by token patterns only`, msg, 0);
    fallback();
  }
  for (const f of taint.findings) add(f.rule, f.verdict, f.message, f.evidence, locate(src, f.evidence));
  return out;
}

/** Where a finding's evidence first appears in the source (the syntax tree keeps no offsets). */
function locate(src: string, evidence: string): number {
  const words = evidence.match(/[A-Za-z_][A-Za-z0-9_]{1,}/g) ?? [];
  const w = words.sort((a, b) => b.length - a.length)[0];
  const at = w === undefined ? -1 : src.indexOf(w);
  return at < 0 ? 0 : at;
}

interface LexedTemplate {
  /** The source with raw blocks cut out (their content is text to Jinja; the parser lacks `raw`). */
  parserInput: string;
  /** Names and decoded string literals in order, to compare with the parser's tokens. */
  names: string[];
  strings: string[];
  broken: boolean;
  tooDeep: boolean;
}

/** Pass 1: structure, syntax and literals, with Jinja's lexing rules. */
function lexTemplate(src: string, add: Add, fallbackFindings: TemplateFinding[]): LexedTemplate {
  const res: LexedTemplate = { parserInput: '', names: [], strings: [], broken: false, tooDeep: false };
  const seen = new Set<string>();
  const addFallback: Add = (rule, verdict, message, evidence, offset) => {
    const key = `${rule}\0${evidence}`;
    if (seen.has(key) || fallbackFindings.length >= MAX_FINDINGS) return;
    seen.add(key);
    fallbackFindings.push({ rule, verdict, message, evidence: evidence.slice(0, 200), offset });
  };
  const tainted = new Set<string>();
  /** Names and strings are kept for the parser comparison only while the parser would be used. */
  let keep = true;
  const pieces: string[] = [];
  let copied = 0;
  const blockStack: string[] = [];
  let loopDepth = 0;
  let i = 0;
  const n = src.length;
  while (i < n) {
    const open = src.indexOf('{', i);
    if (open < 0 || open + 1 >= n) break;
    const next = src[open + 1];
    if (next === '#') {
      const close = src.indexOf('#}', open + 2);
      if (close < 0) {
        add('chat-template/syntax', 'invalid', 'unterminated comment: Jinja cannot compile this template', src.slice(open, open + 40), open);
        res.broken = true;
        break;
      }
      i = close + 2;
      continue;
    }
    if (next !== '{' && next !== '%') {
      i = open + 1;
      continue;
    }
    const closer = next === '{' ? '}}' : '%}';
    const lexed = lexBlock(src, open + 2, closer);
    if (lexed.error) {
      add('chat-template/syntax', 'invalid', `${lexed.error}: Jinja cannot compile this template`, src.slice(open, open + 40), lexed.errorAt ?? open);
      res.broken = true;
      checkTokens(lexed.tokens, addFallback, tainted);
      break;
    }
    i = lexed.end;
    const toks = lexed.tokens;
    if (lexed.truncated) {
      add('chat-template/oversized', 'suspicious', `one tag holds more than ${CHAT_TEMPLATE_MAX_TAG_TOKENS} tokens (resource abuse); only its start was analysed`, src.slice(open, open + 60), open);
      res.tooDeep = true;
    }
    if (next === '%') {
      const kw = toks[0]?.kind === 'name' ? toks[0].value : '';
      if (kw === 'raw') {
        const m = /\{%[-+]?\s*endraw\s*[-+]?%\}/g;
        m.lastIndex = i;
        const r = m.exec(src);
        if (!r) {
          add('chat-template/syntax', 'invalid', 'unterminated raw block: Jinja cannot compile this template', src.slice(open, open + 40), open);
          res.broken = true;
          break;
        }
        i = r.index + r[0].length;
        pieces.push(src.slice(copied, open));
        copied = i;
        continue;
      }
      if (BLOCK_OPENERS.has(kw) || (kw === 'set' && !toks.some((t) => t.kind === 'op' && t.value === '='))) {
        blockStack.push(kw);
        if (kw === 'for') {
          loopDepth++;
          if (loopDepth === CHAT_TEMPLATE_MAX_LOOP_DEPTH + 1) add('chat-template/deep-nesting', 'suspicious', `${loopDepth} nested for-loops multiply iteration counts (resource abuse)`, src.slice(open, open + 60), open);
        }
        if (blockStack.length > CHAT_TEMPLATE_MAX_BLOCK_DEPTH) {
          if (!res.tooDeep) add('chat-template/deep-nesting', 'suspicious', `blocks nested ${blockStack.length} deep (limit ${CHAT_TEMPLATE_MAX_BLOCK_DEPTH})`, src.slice(open, open + 60), open);
          res.tooDeep = true;
        }
      } else if (kw.startsWith('end')) {
        const top = blockStack.pop();
        if (top === 'for') loopDepth--;
      }
      if (TEMPLATE_LOADING.has(kw)) add('chat-template/template-loading', 'suspicious', `\`${kw}\` loads another template; a chat template has no business reaching for other files`, src.slice(open, open + 60), open);
    }
    if (checkStructure(toks, add)) res.tooDeep = true;
    checkTokens(toks, addFallback, tainted);
    if (keep && (res.tooDeep || i > CHAT_TEMPLATE_MAX_PARSE_CHARS)) {
      keep = false;
      res.names = [];
      res.strings = [];
    }
    if (keep) {
      for (const t of toks) {
        if (t.kind === 'name' && t.value !== 'generation' && t.value !== 'endgeneration') res.names.push(t.value);
        else if (t.kind === 'string') res.strings.push(t.value);
      }
    }
  }
  pieces.push(src.slice(copied));
  res.parserInput = pieces.join('');
  return res;
}

/** Bracket depth and literals spelled with escapes: checked on every tag, whichever pass judges it. Returns true when too deep to parse. */
function checkStructure(toks: readonly Tok[], add: Add): boolean {
  let depth = 0;
  let tooDeep = false;
  for (const t of toks) {
    if (t.kind === 'op' && (t.value === '(' || t.value === '[' || t.value === '{')) {
      if (++depth > CHAT_TEMPLATE_MAX_EXPR_DEPTH && !tooDeep) {
        add('chat-template/deep-nesting', 'suspicious', `expression brackets nested ${depth} deep`, t.value, t.offset);
        tooDeep = true;
      }
    } else if (t.kind === 'op' && (t.value === ')' || t.value === ']' || t.value === '}')) depth = Math.max(0, depth - 1);
    else if (t.kind === 'string' && t.obfuscated) {
      add('chat-template/string-built-attribute', 'malicious', 'string literal spells `_` or letters with escape sequences (obfuscated attribute name)', JSON.stringify(t.value), t.offset);
    }
  }
  return tooDeep;
}

interface JinjaToken {
  type: string;
  value: string;
}

/** Why the parser's tokens differ from pass 1's (names or string literals), or undefined when they agree. */
function disagreement(lexed: LexedTemplate, tokens: readonly JinjaToken[]): string | undefined {
  let ni = 0;
  const strings: string[] = [];
  for (const t of tokens) {
    if (t.type === 'Identifier') {
      if (t.value === 'generation' || t.value === 'endgeneration') continue;
      if (lexed.names[ni] !== t.value) return `name ${JSON.stringify(t.value)} where Jinja reads ${JSON.stringify(lexed.names[ni] ?? 'nothing')}`;
      ni++;
    } else if (t.type === 'StringLiteral') strings.push(t.value);
  }
  if (ni !== lexed.names.length) return `Jinja reads ${lexed.names.length - ni} more names, starting with ${JSON.stringify(lexed.names[ni])}`;
  // Pass 1 joins adjacent literals as Jinja does; the parser's lexer keeps them apart.
  if (strings.join('') !== lexed.strings.join('')) return 'string literals decode differently';
  return undefined;
}

const SINKS = new Set(['attr', 'selectattr', 'rejectattr', 'map', 'groupby', 'sort', 'sum', 'unique', 'min', 'max', 'dictsort', 'getattr']);
const isPiece = (v: string) => /^_|_$/.test(v) || /%c/.test(v);

/** Tokens of one call argument list or kwarg value starting at `from`, up to the closing bracket. */
function argSlice(toks: readonly Tok[], from: number): Tok[] {
  const out: Tok[] = [];
  let depth = 0;
  for (let k = from; k < toks.length; k++) {
    const t = toks[k] as Tok;
    if (t.kind === 'op' && (t.value === '(' || t.value === '[' || t.value === '{')) depth++;
    if (t.kind === 'op' && (t.value === ')' || t.value === ']' || t.value === '}')) {
      if (depth === 0) break;
      depth--;
    }
    if (depth === 0 && t.kind === 'op' && t.value === ',' ) break;
    out.push(t);
  }
  return out;
}

function checkTokens(toks: readonly Tok[], add: Add, tainted: Set<string>): void {
  let depth = 0;
  /** Does this block build strings (`~`, `+`, `|join`, `|format`, `%`)? */
  const builds = toks.some((t, k) => (t.kind === 'op' && (t.value === '~' || t.value === '%' || t.value === '+')) || (t.kind === 'name' && STRING_BUILDERS.has(t.value) && (toks[k - 1]?.value === '|' || toks[k - 1]?.value === '.')));
  const usesTainted = (ts: readonly Tok[]) => ts.some((t, k) => t.kind === 'name' && tainted.has(t.value) && ts[k - 1]?.value !== '.');
  const pieceLiteral = toks.some((t) => t.kind === 'string' && isPiece(t.value));
  // Underscore pieces glued together: harmless on their own (`replace('_', ' ')`), an escape when
  // the result names an attribute (a sink in the same block, or a variable used as one later).
  const buildsPieces = builds && (pieceLiteral || usesTainted(toks));
  // Arguments of attribute-name sinks: attr(...), selectattr(...), map(attribute=...), ….
  const sinkArgs: Tok[][] = [];
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k] as Tok;
    if (t.kind !== 'name') continue;
    if (t.value === 'attribute' && toks[k + 1]?.value === '=') {
      sinkArgs.push(argSlice(toks, k + 2));
    } else if (SINKS.has(t.value) && toks[k + 1]?.value === '(' && (toks[k - 1]?.value === '|' || toks[k - 1]?.value === '.' || t.value === 'getattr')) {
      sinkArgs.push(argSlice(toks, k + 2));
    }
  }
  const builtArg = sinkArgs.find((a) => usesTainted(a) || (a.some((t) => t.kind === 'string' && isPiece(t.value)) && a.some((t) => (t.kind === 'op' && (t.value === '~' || t.value === '+' || t.value === '%')) || (t.kind === 'name' && STRING_BUILDERS.has(t.value)))));
  if (builtArg) {
    add('chat-template/string-built-attribute', 'malicious', 'attribute name assembled from underscore pieces (`~`, `+`, `join`, `format`) to hide a dunder', builtArg.map((t) => (t.kind === 'string' ? JSON.stringify(t.value) : t.value)).join(' ').slice(0, 160), builtArg[0]?.offset ?? 0);
  }
  if (toks[0]?.kind === 'name' && toks[0].value === 'set') {
    const eq = toks.findIndex((t) => t.kind === 'op' && t.value === '=');
    if (eq > 0) {
      const rhs = toks.slice(eq + 1);
      const onlyPiece = rhs.length === 1 && rhs[0]?.kind === 'string' && isPiece(rhs[0].value);
      const targets = toks.slice(1, eq).filter((t, k, a) => t.kind === 'name' && a[k - 1]?.value !== '.');
      if (onlyPiece || buildsPieces || (builds && usesTainted(rhs))) for (const t of targets) tainted.add(t.value);
    }
  }
  const subscriptStarts: number[] = [];
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k] as Tok;
    const prev = toks[k - 1];
    const nxt = toks[k + 1];
    if (t.kind === 'op') {
      if (t.value === '(' || t.value === '[' || t.value === '{') {
        depth++;
        if (depth === CHAT_TEMPLATE_MAX_EXPR_DEPTH + 1) add('chat-template/deep-nesting', 'suspicious', `expression brackets nested ${depth} deep`, t.value, t.offset);
        if (t.value === '[' && prev && (prev.kind === 'name' || prev.value === ')' || prev.value === ']' || prev.kind === 'string')) subscriptStarts.push(k);
        else if (t.value === '[') subscriptStarts.push(-1);
      } else if (t.value === ')' || t.value === ']' || t.value === '}') {
        depth = Math.max(0, depth - 1);
        if (t.value === ']') {
          const start = subscriptStarts.pop();
          if (start !== undefined && start >= 0) checkSubscript(toks.slice(start + 1, k), add, tainted);
        }
      } else if (t.value === '*' || t.value === '**') {
        const a = prev?.kind === 'number' ? Number(prev.value) : NaN;
        const b = nxt?.kind === 'number' ? Number(nxt.value) : NaN;
        const big = Math.max(Number.isFinite(a) ? a : 0, Number.isFinite(b) ? b : 0);
        if (t.value === '**' && (prev?.kind === 'number' || nxt?.kind === 'number')) add('chat-template/huge-range', 'suspicious', 'exponentiation in a template builds huge numbers (resource abuse)', `${prev?.value ?? ''} ** ${nxt?.value ?? ''}`, t.offset);
        else if (big > CHAT_TEMPLATE_MAX_REPEAT) add('chat-template/huge-repeat', 'suspicious', `repetition by ${big} builds huge output (resource abuse)`, `${prev?.value ?? ''} * ${nxt?.value ?? ''}`, t.offset);
      }
      continue;
    }
    if (t.kind === 'string') {
      if (isDunderish(t.value)) add('chat-template/dunder-access', 'malicious', 'string names a dunder attribute (sandbox escape through attr()/subscript/map)', JSON.stringify(t.value), t.offset);
      else if (t.obfuscated) add('chat-template/string-built-attribute', 'malicious', 'string literal spells `_` or letters with escape sequences (obfuscated attribute name)', JSON.stringify(t.value), t.offset);
      continue;
    }
    if (t.kind === 'number') continue;
    // names
    const afterDot = prev?.kind === 'op' && prev.value === '.';
    const afterPipe = prev?.kind === 'op' && prev.value === '|';
    const isKwarg = nxt?.kind === 'op' && nxt.value === '=' && depth > 0;
    if (t.value.startsWith('__')) {
      add('chat-template/dunder-access', 'malicious', `${afterDot ? 'attribute' : 'name'} \`${t.value}\` reaches Python internals (sandbox escape)`, t.value, t.offset);
      continue;
    }
    if (afterPipe && t.value === 'attr') {
      const arg = toks[k + 2];
      const argEnd = toks[k + 3];
      if (!(nxt?.value === '(' && arg?.kind === 'string' && argEnd?.value === ')')) add('chat-template/string-built-attribute', 'malicious', '`attr()` with a computed attribute name', toks.slice(k, k + 6).map((x) => x.value).join(''), t.offset);
      continue;
    }
    if (!afterDot && !isKwarg && ESCAPE_HELPERS.has(t.value)) {
      add('chat-template/escape-helper', 'malicious', `\`${t.value}\` is a global whose internals lead out of the sandbox; chat templates never need it`, t.value, t.offset);
      continue;
    }
    if (!afterDot && !isKwarg && t.value === 'namespace' && nxt?.value !== '(') {
      add('chat-template/escape-helper', 'malicious', '`namespace` used as an object rather than called (reaching into the class)', toks.slice(k, k + 3).map((x) => x.value).join(''), t.offset);
      continue;
    }
    if (PAYLOAD_NAMES.has(t.value) && (afterDot || nxt?.value === '(') && !isKwarg) {
      add('chat-template/dangerous-call', 'malicious', `\`${t.value}\` is a Python capability that only appears in escape payloads`, toks.slice(Math.max(0, k - 1), k + 2).map((x) => x.value).join(''), t.offset);
      continue;
    }
    if (t.value === 'range' && !afterDot && nxt?.value === '(') {
      for (let j = k + 2; j < toks.length && toks[j]?.value !== ')'; j++) {
        const a = toks[j] as Tok;
        if (a.kind === 'number' && Number(a.value) > CHAT_TEMPLATE_MAX_RANGE) add('chat-template/huge-range', 'suspicious', `range(${a.value}) iterates more than ${CHAT_TEMPLATE_MAX_RANGE} times (resource abuse)`, `range(${a.value})`, t.offset);
      }
    }
  }
}

/** `x[...]`: a subscript whose key is computed from strings is a hidden attribute name. */
function checkSubscript(inner: readonly Tok[], add: (rule: string, verdict: TemplateFinding['verdict'], message: string, evidence: string, offset: number) => void, tainted: ReadonlySet<string>): void {
  const viaTainted = inner.find((t, k) => t.kind === 'name' && tainted.has(t.value) && inner[k - 1]?.value !== '.');
  if (viaTainted) {
    add('chat-template/string-built-attribute', 'malicious', `subscript key \`${viaTainted.value}\` holds a string assembled from underscore pieces (hidden attribute name)`, inner.map((t) => (t.kind === 'string' ? JSON.stringify(t.value) : t.value)).join(' '), viaTainted.offset);
    return;
  }
  const hasString = inner.some((t) => t.kind === 'string');
  const builder = inner.find((t, k) => (t.kind === 'op' && t.value === '~') || (t.kind === 'name' && (t.value === 'join' || t.value === 'format') && inner[k - 1]?.value === '|'));
  const plus = inner.some((t) => t.kind === 'op' && t.value === '+');
  if (builder || (plus && hasString)) {
    add('chat-template/string-built-attribute', 'malicious', 'subscript key is assembled from strings at render time (hidden attribute name)', inner.map((t) => (t.kind === 'string' ? JSON.stringify(t.value) : t.value)).join(' '), inner[0]?.offset ?? 0);
  }
}

interface Lexed {
  tokens: Tok[];
  /** More than CHAT_TEMPLATE_MAX_TAG_TOKENS tokens: the rest were scanned but not kept. */
  truncated?: boolean;
  end: number;
  error?: string;
  errorAt?: number;
}

const OPS = ['**', '//', '==', '!=', '<=', '>=', '~', '|', '.', ',', ':', '(', ')', '[', ']', '{', '}', '+', '-', '*', '/', '%', '=', '<', '>'];

/** Operators that are one character and never start a longer one: looked up without scanning OPS. */
const SINGLE_OPS = new Set(['~', '|', '.', ',', ':', '(', ')', '[', ']', '{', '}', '+', '-', '%']);
const NAME_RE = /[\p{L}\p{Nl}_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}]*/uy;
const NUM_RE = /[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?[0-9_]+)?/y;

/** Lexes one `{{ … }}` or `{% … %}` body starting at `from`, up to `closer` outside strings. */
function lexBlock(src: string, from: number, closer: string): Lexed {
  const tokens: Tok[] = [];
  let truncated = false;
  // Real tags hold a few hundred tokens; past the cap the tag is still scanned to its end, not kept.
  const push = (t: Tok) => {
    if (tokens.length < CHAT_TEMPLATE_MAX_TAG_TOKENS) tokens.push(t);
    else truncated = true;
  };
  let i = from;
  const n = src.length;
  if (src[i] === '-' || src[i] === '+') i++;
  let brackets = 0;
  while (i < n) {
    const c = src[i] as string;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (brackets === 0 && (src.startsWith(closer, i) || ((c === '-' || c === '+') && src.startsWith(closer, i + 1)))) {
      return { tokens, end: i + (c === '-' || c === '+' ? 1 : 0) + closer.length, truncated };
    }
    if (c === '"' || c === "'") {
      const s = lexString(src, i);
      if (!s) return { tokens, end: n, error: 'unterminated string literal', errorAt: i };
      const prev = tokens[tokens.length - 1];
      if (prev?.kind === 'string') {
        // Jinja joins adjacent literals at compile time ('__cl' 'ass__' is '__class__').
        prev.value += s.value;
        if (s.obfuscated) prev.obfuscated = true;
      } else push({ kind: 'string', value: s.value, offset: i, ...(s.obfuscated ? { obfuscated: true } : {}) });
      i = s.end;
      continue;
    }
    if (SINGLE_OPS.has(c)) {
      if (c === '(' || c === '[' || c === '{') brackets++;
      else if ((c === ')' || c === ']' || c === '}') && brackets > 0) brackets--;
      push({ kind: 'op', value: c, offset: i });
      i++;
      continue;
    }
    const name = NAME_RE;
    name.lastIndex = i;
    let m = name.exec(src);
    if (m) {
      push({ kind: 'name', value: m[0], offset: i });
      i += m[0].length;
      continue;
    }
    const num = NUM_RE;
    num.lastIndex = i;
    m = num.exec(src);
    if (m) {
      push({ kind: 'number', value: m[0].replace(/_/g, ''), offset: i });
      i += m[0].length;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (op) {
      if (op === '(' || op === '[' || op === '{') brackets++;
      else if ((op === ')' || op === ']' || op === '}') && brackets > 0) brackets--;
      push({ kind: 'op', value: op, offset: i });
      i += op.length;
      continue;
    }
    return { tokens, end: n, error: `unexpected character ${JSON.stringify(c)}`, errorAt: i };
  }
  return { tokens, end: n, error: `unterminated tag (missing ${closer})`, errorAt: from };
}

/** A Jinja string literal with Python's escapes decoded. */
function lexString(src: string, start: number): { value: string; end: number; obfuscated: boolean } | undefined {
  const q = src[start];
  let i = start + 1;
  let out = '';
  let obfuscated = false;
  const n = src.length;
  while (i < n) {
    const c = src[i] as string;
    if (c === q) return { value: out, end: i + 1, obfuscated };
    if (c !== '\\') {
      out += c;
      i++;
      continue;
    }
    const e = src[i + 1] ?? '';
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '\n': '' };
    if (e in simple) {
      out += simple[e];
      i += 2;
      continue;
    }
    let code: number | undefined;
    let len = 0;
    if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(src.slice(i + 2, i + 4))) [code, len] = [parseInt(src.slice(i + 2, i + 4), 16), 4];
    else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(src.slice(i + 2, i + 6))) [code, len] = [parseInt(src.slice(i + 2, i + 6), 16), 6];
    else if (e === 'U' && /^[0-9a-fA-F]{8}$/.test(src.slice(i + 2, i + 10))) [code, len] = [parseInt(src.slice(i + 2, i + 10), 16), 10];
    else if (/[0-7]/.test(e)) {
      const m = /^[0-7]{1,3}/.exec(src.slice(i + 1, i + 4)) as RegExpExecArray;
      [code, len] = [parseInt(m[0], 8), 1 + m[0].length];
    } else if (e === 'N') {
      const close = src.indexOf('}', i);
      obfuscated = true;
      out += '?';
      i = close > i ? close + 1 : i + 2;
      continue;
    }
    if (code !== undefined && code <= 0x10ffff) {
      const ch = String.fromCodePoint(code);
      if (/[A-Za-z_.]/.test(ch)) obfuscated = true;
      out += ch;
      i += len;
      continue;
    }
    out += `\\${e}`;
    i += 2;
  }
  return undefined;
}

export interface TemplateSourceInfo {
  /** Where the template came from, for messages ("GGUF metadata tokenizer.chat_template"). */
  source: string;
  offset?: number | undefined;
  member?: string | undefined;
}

const SEVERITY: Record<TemplateFinding['verdict'], Severity> = { malicious: 'critical', suspicious: 'medium', invalid: 'medium' };

export function reportTemplateFindings(sink: FindingSink, found: readonly TemplateFinding[], where: TemplateSourceInfo): void {
  for (const f of found) {
    const location: { member?: string; offset?: number } = {};
    if (where.member !== undefined) location.member = where.member;
    if (where.offset !== undefined) location.offset = where.offset;
    sink.add({
      rule: f.rule,
      severity: SEVERITY[f.verdict],
      verdict: f.verdict,
      message: `${where.source}: ${f.message} (template character ${f.offset}). Do not render this template; remove it or replace it with a reviewed one.`,
      ...(Object.keys(location).length > 0 ? { location } : {}),
      evidence: f.evidence,
    });
  }
}

/** Analyses templates held in a JSON value (`chat_template`: a string or a list of {name, template}). */
export function templatesOf(value: unknown): Array<{ name: string; template: string }> {
  if (typeof value === 'string') return [{ name: 'default', template: value }];
  const out: Array<{ name: string; template: string }> = [];
  if (Array.isArray(value)) {
    for (const [k, v] of value.entries()) {
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const t = (v as Record<string, unknown>).template;
        const name = (v as Record<string, unknown>).name;
        if (typeof t === 'string') out.push({ name: typeof name === 'string' ? name : String(k), template: t });
      } else if (typeof v === 'string') out.push({ name: String(k), template: v });
    }
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) if (typeof v === 'string') out.push({ name: k, template: v });
  }
  return out;
}

/** A standalone Jinja template file (`chat_template.jinja`, `*.jinja`), claimed by name. */
export const chatTemplateHandler: FormatHandler = {
  name: 'chat-template',
  detect(head, size, name) {
    if (!/\.jinja2?$/i.test(name) || size > 64 * 1024 * 1024) return false;
    return !head.includes(0);
  },
  async scan(ctx: FormatContext) {
    const cap = CHAT_TEMPLATE_MAX_CHARS * 4;
    const bytes = ctx.source.read(0, Math.min(ctx.source.size, cap));
    const text = decodeUtf8Strict(bytes) ?? bytes.toString('latin1');
    const found = analyzeChatTemplate(text);
    reportTemplateFindings(ctx.sink, found, { source: 'chat template file' });
    ctx.stats.basis = 'chat template has no escape patterns';
    return 'chat-template';
  },
};
