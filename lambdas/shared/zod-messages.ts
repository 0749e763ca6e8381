// zod's tree-shakable build (`zod/mini`) carries no messages; this gives it zod's English ones
// ("Too small: expected string to have >=1 characters"), the same the full build prints. Every
// module that defines mini schemas imports it, so a schema validates with messages wherever it is
// first loaded (a handler, the local mode, a test). The full build would add ~440 KiB to the cold
// start of each function: the proxy's settings schema and the Core API's request schemas are mini.
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());
