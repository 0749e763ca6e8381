import { parseTargetAllowlist } from '../lambdas/net/target-allowlist.ts';
import type { Config } from '../lambdas/shared/config.ts';
import { LOCAL_KEY_ID } from './kms-server.ts';

/** What local mode's configuration is made of (see LocalStackOptions in ./stack.ts). */
export interface LocalConfigOptions {
  regions?: string[];
  /** `host:port` entries (a bare host: its default ports only); see lambdas/net/target-allowlist.ts. */
  targetAllowlist?: string[];
  tableName?: string;
  /**
   * One table per region (`<tableName>-<region>` past the first), as separate cells are in AWS,
   * instead of one shared table: for tests of what must hold across cells (alias claims).
   */
  tablePerRegion?: boolean;
}

/** The configuration the deployed functions would read, for the embedded services. */
export function localConfig(options: LocalConfigOptions): Config {
  const regions = options.regions?.length ? options.regions : ['us-east-1'];
  const tableName = options.tableName ?? 'keygate';
  return {
    homeRegion: regions[0]!,
    homeTableName: tableName,
    // Locally every served region is a cell on the same embedded table (unless tablePerRegion), key and stream.
    cells: Object.fromEntries(
      regions.map((region, i) => [
        region,
        {
          region,
          tableName: options.tablePerRegion && i > 0 ? `${tableName}-${region}` : tableName,
          kmsKeyId: LOCAL_KEY_ID,
          streamName: 'keygate-telemetry',
        },
      ]),
    ),
    targetAllowlist: parseTargetAllowlist(options.targetAllowlist),
    // Filled in as each of keygate's own servers starts listening (startLocalStack).
    ownPorts: [],
    requestLogRetentionDays: 90,
    maxBodyBytes: 256 * 1024,
    telemetrySink: 'kinesis',
  };
}
