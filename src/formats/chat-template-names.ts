/** Names and limits shared by the chat-template lexer pass and the syntax-tree taint pass. */

/** Characters of template analysed; a longer template is itself suspicious. */
export const CHAT_TEMPLATE_MAX_CHARS = 4 * 1024 * 1024;
/** `range()` bound above which a loop is resource abuse. */
export const CHAT_TEMPLATE_MAX_RANGE = 100_000;
/** Repetition factor (`'x' * N`) above which output is resource abuse. */
export const CHAT_TEMPLATE_MAX_REPEAT = 100_000;
/** Block nesting (`for`/`if`/`macro`…) above which a template is suspicious. */
export const CHAT_TEMPLATE_MAX_BLOCK_DEPTH = 16;
/** Nested `for` loops above which iteration counts multiply out of bounds. */
export const CHAT_TEMPLATE_MAX_LOOP_DEPTH = 3;
/** Bracket nesting inside one expression. */
export const CHAT_TEMPLATE_MAX_EXPR_DEPTH = 32;

/** Globals that lead out of Jinja's sandbox (their `__init__.__globals__` or Flask context). */
export const ESCAPE_HELPERS: ReadonlySet<string> = new Set(['cycler', 'joiner', 'lipsum', 'self', 'config', 'request', 'url_for', 'get_flashed_messages', 'session']);
/** Python names that only appear in payloads. */
export const PAYLOAD_NAMES: ReadonlySet<string> = new Set(['popen', 'subprocess', 'check_output', 'import_module', '__import__', 'eval', 'exec', 'execfile', 'compile', 'getattr', 'setattr', 'globals', 'locals', 'builtins', 'func_globals', 'gi_frame', 'gi_code', 'f_globals', 'f_locals', 'f_back', 'f_builtins', 'tb_frame', 'cr_frame', 'ag_frame', 'mro', 'func_code', 'load_module']);

/** A name Python treats as special: `__class__`, `__globals__`, or anything starting with two underscores. */
export const isDunderish = (s: string): boolean => /^__|__$/.test(s) || /__[A-Za-z]\w*__/.test(s);
