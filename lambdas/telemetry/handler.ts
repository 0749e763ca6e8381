import { configFromEnv } from '../shared/config.ts';
import { createDeps } from '../shared/deps.ts';
import { createAggregatorHandler } from './aggregator.ts';

/** Lambda entry of the telemetry aggregator (Kinesis event source, ReportBatchItemFailures). */
export const handler = createAggregatorHandler(createDeps(configFromEnv()));
