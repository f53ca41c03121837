import { describeNodeStoreConformance } from './conformance.js';
import { HARNESSES } from './harnesses.js';

for (const { name, make } of HARNESSES) describeNodeStoreConformance(name, make);
