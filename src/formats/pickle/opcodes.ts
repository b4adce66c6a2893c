/**
 * The pickle opcode table for protocols 0–5, as CPython's Unpickler reads them.
 * `arg` names how the argument is encoded in the stream.
 */
export type ArgKind =
  | 'none'
  | 'uint1'
  | 'uint2'
  | 'int4'
  | 'uint4'
  | 'uint8'
  | 'float8'
  | 'line' // one newline-terminated line
  | 'line2' // two lines (GLOBAL, INST)
  | 'bytes1' // uint1 length + bytes
  | 'bytes4' // int4/uint4 length + bytes
  | 'bytes8'; // uint8 length + bytes

export interface OpInfo {
  code: number;
  name: string;
  arg: ArgKind;
  proto: number;
}

const TABLE: Array<[string, string, ArgKind, number]> = [
  ['(', 'MARK', 'none', 0],
  ['.', 'STOP', 'none', 0],
  ['0', 'POP', 'none', 0],
  ['1', 'POP_MARK', 'none', 1],
  ['2', 'DUP', 'none', 0],
  ['F', 'FLOAT', 'line', 0],
  ['I', 'INT', 'line', 0],
  ['J', 'BININT', 'int4', 1],
  ['K', 'BININT1', 'uint1', 1],
  ['L', 'LONG', 'line', 0],
  ['M', 'BININT2', 'uint2', 1],
  ['N', 'NONE', 'none', 0],
  ['P', 'PERSID', 'line', 0],
  ['Q', 'BINPERSID', 'none', 1],
  ['R', 'REDUCE', 'none', 0],
  ['S', 'STRING', 'line', 0],
  ['T', 'BINSTRING', 'bytes4', 1],
  ['U', 'SHORT_BINSTRING', 'bytes1', 1],
  ['V', 'UNICODE', 'line', 0],
  ['X', 'BINUNICODE', 'bytes4', 1],
  ['a', 'APPEND', 'none', 0],
  ['b', 'BUILD', 'none', 0],
  ['c', 'GLOBAL', 'line2', 0],
  ['d', 'DICT', 'none', 0],
  ['}', 'EMPTY_DICT', 'none', 1],
  ['e', 'APPENDS', 'none', 1],
  ['g', 'GET', 'line', 0],
  ['h', 'BINGET', 'uint1', 1],
  ['i', 'INST', 'line2', 0],
  ['j', 'LONG_BINGET', 'uint4', 1],
  ['l', 'LIST', 'none', 0],
  [']', 'EMPTY_LIST', 'none', 1],
  ['o', 'OBJ', 'none', 1],
  ['p', 'PUT', 'line', 0],
  ['q', 'BINPUT', 'uint1', 1],
  ['r', 'LONG_BINPUT', 'uint4', 1],
  ['s', 'SETITEM', 'none', 0],
  ['t', 'TUPLE', 'none', 0],
  [')', 'EMPTY_TUPLE', 'none', 1],
  ['u', 'SETITEMS', 'none', 1],
  ['G', 'BINFLOAT', 'float8', 1],
  ['\x80', 'PROTO', 'uint1', 2],
  ['\x81', 'NEWOBJ', 'none', 2],
  ['\x82', 'EXT1', 'uint1', 2],
  ['\x83', 'EXT2', 'uint2', 2],
  ['\x84', 'EXT4', 'int4', 2],
  ['\x85', 'TUPLE1', 'none', 2],
  ['\x86', 'TUPLE2', 'none', 2],
  ['\x87', 'TUPLE3', 'none', 2],
  ['\x88', 'NEWTRUE', 'none', 2],
  ['\x89', 'NEWFALSE', 'none', 2],
  ['\x8a', 'LONG1', 'bytes1', 2],
  ['\x8b', 'LONG4', 'bytes4', 2],
  ['B', 'BINBYTES', 'bytes4', 3],
  ['C', 'SHORT_BINBYTES', 'bytes1', 3],
  ['\x8c', 'SHORT_BINUNICODE', 'bytes1', 4],
  ['\x8d', 'BINUNICODE8', 'bytes8', 4],
  ['\x8e', 'BINBYTES8', 'bytes8', 4],
  ['\x8f', 'EMPTY_SET', 'none', 4],
  ['\x90', 'ADDITEMS', 'none', 4],
  ['\x91', 'FROZENSET', 'none', 4],
  ['\x92', 'NEWOBJ_EX', 'none', 4],
  ['\x93', 'STACK_GLOBAL', 'none', 4],
  ['\x94', 'MEMOIZE', 'none', 4],
  ['\x95', 'FRAME', 'uint8', 4],
  ['\x96', 'BYTEARRAY8', 'bytes8', 5],
  ['\x97', 'NEXT_BUFFER', 'none', 5],
  ['\x98', 'READONLY_BUFFER', 'none', 5],
];

export const OPCODES: ReadonlyArray<OpInfo | undefined> = (() => {
  const arr: Array<OpInfo | undefined> = new Array(256).fill(undefined);
  for (const [ch, name, arg, proto] of TABLE) {
    const code = ch.charCodeAt(0);
    arr[code] = { code, name, arg, proto };
  }
  return arr;
})();

export const HIGHEST_PROTOCOL = 5;
