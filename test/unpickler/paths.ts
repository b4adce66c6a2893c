export { TENSORS, ESCAPES, callPickle, tempDir, alive } from './helpers.js';
export { SCAN_FIXTURES as SCAN_FIXTURES_DIR } from '../helpers/fixtures.js';
