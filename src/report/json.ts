import type { Report } from './model.js';

/** The JSON contract other tools depend on: `{ tool, files: [{path, format, verdict, findings}], summary }`. */
export function renderJson(report: Report): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
