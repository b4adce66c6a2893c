/**
 * Recognises `builtins.getattr(<instance of an allowlisted torch class>, '<method>')`: how pickle
 * writes a bound method (`method.__reduce__`), which real LR scheduler state dicts contain. Only the
 * (class, method) pairs of BOUND_METHODS on an instance built by NEWOBJ/INST/OBJ or
 * `copyreg._reconstructor(cls, object, …)` qualify; any other use of getattr is not touched here.
 */
import { BOUND_METHOD_GETTER, isBoundMethod } from './policy.js';
import type { Value } from './values.js';

/** The class an instance value was built from, when it was built the way pickle builds instances. */
function instanceClass(v: Value): string | undefined {
  if (v.k !== 'call' || v.fn.k !== 'global') return undefined;
  if (v.op === 'NEWOBJ' || v.op === 'NEWOBJ_EX' || v.op === 'INST' || v.op === 'OBJ') return v.fn.qualified;
  if (v.fn.qualified === 'copyreg._reconstructor' && v.args.k === 'tuple') {
    const [cls, base] = v.args.items;
    if (cls?.k === 'global' && base?.k === 'global' && base.qualified === 'builtins.object') return cls.qualified;
  }
  return undefined;
}

/** `owner.method` when `fn(args)` is a recognised bound method, else undefined. */
export function boundMethodCall(fn: string, args: Value): string | undefined {
  if (fn !== BOUND_METHOD_GETTER || args.k !== 'tuple' || args.count !== 2) return undefined;
  const [owner, method] = args.items;
  if (owner === undefined || method?.k !== 'str' || method.truncated) return undefined;
  const cls = instanceClass(owner);
  return cls !== undefined && isBoundMethod(cls, method.v) ? `${cls}.${method.v}` : undefined;
}
