import { basename } from 'node:path';
import type { FindingSink } from '../report/findings.js';
import type { FormatContext, FormatHandler } from './types.js';
import { isJsonObject, isValidUtf8, parseJsonStrict, type JsonObject, type JsonValue } from './json-strict.js';
import { analyzeChatTemplate, reportTemplateFindings, templatesOf } from './chat-template.js';
import { judgeKerasConfig, looksLikeKerasConfig } from './keras.js';

/**
 * Hugging Face JSON configs: `config.json` (`auto_map`, `custom_pipelines`: code that
 * `trust_remote_code=True` runs), `tokenizer_config.json` and `chat_template.json` (`chat_template`
 * Jinja source). JSON has no magic, so the file name breaks the tie: a known config name, or any
 * `.json` whose first bytes mention one of the keys we judge.
 */

/** Largest config read (tokenizer configs with big added-token tables run to a few MiB). */
export const JSON_CONFIG_MAX_BYTES = 64 * 1024 * 1024;
const KNOWN_NAMES = new Set(['config.json', 'tokenizer_config.json', 'chat_template.json', 'processor_config.json', 'preprocessor_config.json', 'generation_config.json']);
const KEYS = /"(?:chat_template|auto_map|custom_pipelines)"\s*:/;
/** Keys whose duplicates hide what a loader will use. */
const SENSITIVE = new Set(['chat_template', 'auto_map', 'custom_pipelines', 'trust_remote_code']);

export interface AutoMapEntry {
  autoClass: string;
  /** `module.Class` reference as written. */
  reference: string;
  /** Repository the code comes from when the reference is `owner/repo--module.Class`. */
  repo?: string;
  /** The `.py` file transformers would import (`module.py`). */
  file: string;
}

/** Lists the custom-code references of an `auto_map` value. */
export function autoMapEntries(autoMap: JsonValue | undefined): AutoMapEntry[] {
  const out: AutoMapEntry[] = [];
  if (!isJsonObject(autoMap)) return out;
  for (const [autoClass, v] of Object.entries(autoMap)) {
    const refs = Array.isArray(v) ? v : [v];
    for (const r of refs) {
      if (typeof r !== 'string' || r.length === 0) continue;
      let ref = r;
      let repo: string | undefined;
      const sep = r.indexOf('--');
      if (sep > 0) {
        repo = r.slice(0, sep);
        ref = r.slice(sep + 2);
      }
      const dot = ref.lastIndexOf('.');
      const mod = dot > 0 ? ref.slice(0, dot) : ref;
      const e: AutoMapEntry = { autoClass, reference: r, file: `${mod.split('.').join('/')}.py` };
      if (repo !== undefined) e.repo = repo;
      out.push(e);
    }
  }
  return out;
}

function isConfigName(name: string): boolean {
  const b = basename(name.split('!').pop() ?? name).toLowerCase();
  return KNOWN_NAMES.has(b);
}

function startsLikeJsonObject(head: Buffer): boolean {
  let i = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x0a || head[i] === 0x0d || head[i] === 0x09)) i++;
  return head[i] === 0x7b;
}

/** Judges a parsed Hugging Face config object. */
export function judgeHfConfig(sink: FindingSink, root: JsonObject, fileName: string): { templates: number; customCode: number } {
  let templates = 0;
  let customCode = 0;
  if ('chat_template' in root) {
    for (const t of templatesOf(root.chat_template)) {
      templates++;
      reportTemplateFindings(sink, analyzeChatTemplate(t.template), { source: `${basename(fileName)} chat_template${t.name === 'default' ? '' : ` "${t.name}"`}` });
    }
  }
  const entries = autoMapEntries(root.auto_map);
  if (entries.length > 0) {
    customCode += entries.length;
    const files = [...new Set(entries.map((e) => e.file))];
    const remote = [...new Set(entries.filter((e) => e.repo !== undefined).map((e) => e.repo as string))];
    sink.add({
      rule: 'config/auto-map',
      severity: 'medium',
      verdict: 'suspicious',
      message: `auto_map makes transformers import repository code when loaded with trust_remote_code=True (${files.join(', ')}${remote.length > 0 ? `; from other repositories: ${remote.join(', ')}` : ''}). Review those .py files before trusting them, or load without trust_remote_code.`,
      evidence: entries.map((e) => `${e.autoClass}: ${e.reference}`).join('; '),
    });
  }
  if (isJsonObject(root.custom_pipelines)) {
    const impls: string[] = [];
    for (const v of Object.values(root.custom_pipelines)) if (isJsonObject(v) && typeof v.impl === 'string') impls.push(v.impl);
    customCode += impls.length || 1;
    sink.add({
      rule: 'config/custom-pipeline',
      severity: 'medium',
      verdict: 'suspicious',
      message: 'custom_pipelines makes transformers import repository code when loaded with trust_remote_code=True; review it before trusting it',
      evidence: impls.join('; ').slice(0, 300) || 'custom_pipelines',
    });
  }
  return { templates, customCode };
}

export const jsonConfigHandler: FormatHandler = {
  name: 'json-config',
  detect(head, size, name) {
    if (size > JSON_CONFIG_MAX_BYTES * 4 || !startsLikeJsonObject(head)) return false;
    if (isConfigName(name)) return true;
    return /\.json$/i.test(name) && KEYS.test(head.toString('latin1'));
  },
  async scan(ctx: FormatContext) {
    if (ctx.source.size > JSON_CONFIG_MAX_BYTES) {
      ctx.sink.add({ rule: 'json-config/too-large', severity: 'medium', verdict: 'suspicious', message: `config of ${ctx.source.size} bytes exceeds the ${JSON_CONFIG_MAX_BYTES}-byte cap and was not analysed` });
      return 'json-config';
    }
    let bytes = ctx.source.read(0, ctx.source.size);
    if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    const bom = ctx.source.size - bytes.length;
    if (!isValidUtf8(bytes)) {
      ctx.sink.add({ rule: 'json-config/syntax', severity: 'medium', verdict: 'invalid', message: 'config is not valid UTF-8; loaders will fail on it' });
      return 'json-config';
    }
    const parsed = parseJsonStrict(bytes);
    const bad = parsed.issues.find((x) => x.kind !== 'duplicate-key');
    if (bad || parsed.value === undefined) {
      ctx.sink.add({ rule: 'json-config/syntax', severity: 'medium', verdict: 'invalid', message: `config is not valid JSON (${bad?.message ?? 'no value'}); loaders will fail on it`, location: { offset: bom + (bad?.offset ?? 0) } });
      return 'json-config';
    }
    for (const d of parsed.issues) {
      const key = /duplicate key "(.*)"/.exec(d.message)?.[1] ?? '';
      const sensitive = SENSITIVE.has(key);
      ctx.sink.add({
        rule: 'json-config/duplicate-key',
        severity: sensitive ? 'medium' : 'info',
        verdict: sensitive ? 'suspicious' : 'safe',
        message: `${d.message}: Python's json keeps the last value, other readers may keep the first${sensitive ? '; a reviewer may have seen the harmless copy' : ''}`,
        location: { offset: bom + d.offset },
      });
    }
    const root = parsed.value;
    if (!isJsonObject(root)) return 'json-config';
    if (looksLikeKerasConfig(root)) {
      // Inside a `.keras` archive the zip reader hands the archive to scanKerasArchive, which judges
      // this same config.json; judging it here too would report every finding twice.
      if (ctx.depth > 0 && /!config\.json$/.test(ctx.name)) return 'keras-config';
      judgeKerasConfig(ctx.sink, root, { source: basename(ctx.name) });
      ctx.stats.basis = 'Keras config: only allowlisted Keras objects, no Lambda code';
      return 'keras-config';
    }
    const { templates, customCode } = judgeHfConfig(ctx.sink, root, ctx.name);
    if (templates > 0) ctx.stats.chatTemplates = templates;
    if (customCode > 0) ctx.stats.customCode = customCode;
    ctx.stats.basis = templates > 0 ? 'config; chat template has no escape patterns' : 'config with no custom code';
    return 'json-config';
  },
};
