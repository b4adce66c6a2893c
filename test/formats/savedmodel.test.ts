import { test } from 'uvu';
import { manifestTests } from './manifest-cases.js';

manifestTests('savedmodel/', 'tf-savedmodel');

test.run();
