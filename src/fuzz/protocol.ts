/** Messages between the fuzz runner and its child. */
export interface ChildStart {
  target: string;
  fixtures: string;
  workdir: string;
  seed: number;
  /** Index of the first input (a restarted child continues where the last one stopped). */
  first: number;
  runs: number;
  /** Stop after this many milliseconds (0: no time limit, only `runs`). */
  timeMs: number;
  /** Replay these input files instead of generating inputs (the regression fixtures). */
  replay?: string[];
}

export type ChildMessage =
  | { t: 'start'; i: number }
  | { t: 'rss'; i: number; rss: number }
  | { t: 'fail'; i: number; kind: string; message: string; input: string }
  | { t: 'done'; next: number; failures: number };
