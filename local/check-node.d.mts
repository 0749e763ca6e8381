/** Types of ./check-node.mjs (plain JavaScript: it must run on any Node). */
export declare function nodeIsRecentEnough(version: string): boolean;
