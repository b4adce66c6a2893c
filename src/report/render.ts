export { renderText, wallsLine, type TextOptions } from './text.js';
export { renderJson } from './json.js';
export { renderSarif } from './sarif.js';
