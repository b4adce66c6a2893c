import { test } from 'uvu';
import { manifestTests } from './manifest-cases.js';

// Legacy HDF5 Keras models and plain HDF5 files: every keras/*.h5 fixture.
manifestTests('keras/', undefined, /^(?!.*\.h5$)/);

test.run();
