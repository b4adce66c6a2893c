import { test } from 'uvu';
import { manifestTests } from './manifest-cases.js';

// Legacy HDF5 Keras models and plain HDF5 files (keras/*.h5 fixtures).
for (const prefix of ['keras/legacy-', 'keras/weights-only', 'keras/corrupt']) manifestTests(prefix);

test.run();
