import { randomBytes } from 'node:crypto';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import { crc32 } from 'node:zlib';

/**
 * DynamoDB transactions (TransactWriteItems, TransactGetItems) for the embedded dynalite, which
 * has none. See docs/embedded-dynamodb.md for the user-facing description.
 *
 * How: `startDynalite` captures the store dynalite creates (by wrapping `dynalite/db`'s `create`
 * while `dynalite()` runs) and puts itself in front of dynalite's request listener: the two
 * Transact* targets are answered here, everything else goes to dynalite unchanged.
 *
 * A write transaction, in order:
 *  1. validate the request as DynamoDB does (1–100 actions, one of Put/Update/Delete/ConditionCheck
 *     each, each action through dynalite's own validation of PutItem/UpdateItem/DeleteItem, which
 *     also parses the expressions; tables exist; keys match; no item twice) — errors are a plain
 *     ValidationException / ResourceNotFoundException, nothing locked yet;
 *  2. lock every item's key with dynalite's own per-table `itemDb.lock`, the lock its PutItem,
 *     UpdateItem and DeleteItem take: all keys are queued in one synchronous step, so every
 *     queue sees lockers in the same global order and no two lockers can wait on each other;
 *  3. read every item, then run dynalite's own putItem/updateItem/deleteItem actions against a
 *     staging store that serves those reads and records writes (items and GSI entries) instead of
 *     performing them — conditions, update expressions, size limits and index maintenance are
 *     dynalite's code, not a copy;
 *  4. any failure → TransactionCanceledException with one CancellationReason per action, nothing
 *     written; otherwise every recorded write goes to LevelDB in ONE batch, which LevelDB applies
 *     atomically (one log record) — a crash leaves all of it or none of it on disk;
 *  5. unlock.
 * A read transaction locks its keys the same way while it reads, so it sees one consistent state.
 *
 * ClientRequestToken idempotency is kept in memory (lost on restart), for 10 minutes, like DynamoDB.
 */

const require = createRequire(import.meta.url);

type AttributeValue = Record<string, unknown>;
type Item = Record<string, AttributeValue>;
type Callback<T> = (error?: DynaliteError | null, value?: T) => void;

interface DynaliteError extends Error {
  statusCode?: number;
  body?: Record<string, unknown>;
}

interface KeySchemaElement {
  AttributeName: string;
  KeyType: string;
}

interface Table {
  TableName: string;
  KeySchema: KeySchemaElement[];
}

type Releaser = (done: () => void) => () => void;
type LockFn = (keys: string | string[], run: (release: Releaser) => void) => void;

interface SubDb {
  lock: LockFn;
  get(key: string, cb: Callback<Item>): void;
}

interface BatchOp {
  type: 'put' | 'del';
  key: string;
  value?: Item;
}

interface Store {
  options: { maxItemSize: number };
  db: { batch(ops: BatchOp[], cb: (error?: Error | null) => void): void };
  getTable(name: string, cb: Callback<Table>): void;
  getItemDb(name: string): SubDb;
}

/** What dynalite's validation leaves on a request: the request's own fields plus parsed expressions. */
interface ActionData {
  TableName: string;
  Item?: Item;
  Key?: Item;
  _condition?: unknown;
  _updates?: unknown;
  _projection?: { paths: unknown[]; nestedPaths?: unknown };
}

interface Validation {
  types: Record<string, unknown>;
  custom: (data: ActionData, store: Store) => string | undefined;
}

type Action = (store: unknown, data: ActionData, cb: Callback<unknown>) => void;

const dynalite = require('dynalite') as (options: Record<string, unknown>) => Server;
const dynaliteDb = require('dynalite/db') as {
  create(options: Record<string, unknown>): Store;
  createKey(item: Item, table: Table): string;
  validateItem(item: Item, table: Table): DynaliteError | undefined;
  validateKey(key: Item, table: Table): DynaliteError | undefined;
  validateUpdates(attributeUpdates: undefined, updates: unknown, table: Table): DynaliteError | undefined;
  validateKeyPaths(nestedPaths: unknown, table: Table): DynaliteError | undefined;
  checkConditional(data: ActionData, item: Item | undefined): DynaliteError | undefined;
  mapPaths(paths: unknown[], item: Item): Item;
  validationError(message: string): DynaliteError;
};
const dynaliteValidations = require('dynalite/validations') as {
  checkTypes(data: Record<string, unknown>, types: Record<string, unknown>): ActionData;
  checkValidations(data: ActionData, types: Record<string, unknown>, custom: unknown, store: Store): void;
};

/** Each transactional action: the single-item operation whose validation and code it reuses. */
const ACTIONS = {
  Put: {
    fields: [
      'TableName',
      'Item',
      'ConditionExpression',
      'ExpressionAttributeNames',
      'ExpressionAttributeValues',
    ],
    validation: require('dynalite/validations/putItem') as Validation,
    run: require('dynalite/actions/putItem') as Action,
  },
  Update: {
    fields: [
      'TableName',
      'Key',
      'UpdateExpression',
      'ConditionExpression',
      'ExpressionAttributeNames',
      'ExpressionAttributeValues',
    ],
    validation: require('dynalite/validations/updateItem') as Validation,
    run: require('dynalite/actions/updateItem') as Action,
  },
  Delete: {
    fields: [
      'TableName',
      'Key',
      'ConditionExpression',
      'ExpressionAttributeNames',
      'ExpressionAttributeValues',
    ],
    validation: require('dynalite/validations/deleteItem') as Validation,
    run: require('dynalite/actions/deleteItem') as Action,
  },
  ConditionCheck: {
    fields: [
      'TableName',
      'Key',
      'ConditionExpression',
      'ExpressionAttributeNames',
      'ExpressionAttributeValues',
    ],
    validation: require('dynalite/validations/deleteItem') as Validation,
    run: undefined,
  },
} as const;
type ActionName = keyof typeof ACTIONS;
const ACTION_NAMES = Object.keys(ACTIONS) as ActionName[];

const GET = {
  fields: ['TableName', 'Key', 'ProjectionExpression', 'ExpressionAttributeNames'],
  validation: require('dynalite/validations/getItem') as Validation,
};

const MAX_ACTIONS = 100;
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;
const IDEMPOTENCY_WINDOW_MS = 10 * 60 * 1000;
const ERROR_PREFIX = 'com.amazonaws.dynamodb.v20120810#';

function apiError(type: string, message: string, extra: Record<string, unknown> = {}): DynaliteError {
  const error: DynaliteError = new Error(message);
  error.statusCode = 400;
  error.body = { __type: ERROR_PREFIX + type, message, ...extra };
  return error;
}

const validationError = (message: string) => dynaliteDb.validationError(message);

function promise<T>(call: (cb: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    call((error, value) => (error ? reject(error) : resolve(value as T))),
  );
}

/** One action of a request, validated, with its table and its item's lock key. */
interface Prepared {
  name: ActionName | 'Get';
  data: ActionData;
  table: Table;
  itemKey: string;
  returnOldOnFailure: boolean;
}

/**
 * The table definitions one request names, each fetched once: a transaction of 100 actions on one
 * table shares one definition instead of taking 100 copies of it from cacheTables.
 */
function tableReader(store: Store): (name: string) => Promise<Table> {
  const tables = new Map<string, Promise<Table>>();
  return (name) => {
    let table = tables.get(name);
    if (!table) {
      table = promise<Table>((cb) => store.getTable(name, cb));
      tables.set(name, table);
    }
    return table;
  };
}

async function prepare(
  store: Store,
  tableOf: (name: string) => Promise<Table>,
  name: ActionName | 'Get',
  request: Record<string, unknown>,
  spec: { fields: readonly string[]; validation: Validation },
): Promise<Prepared> {
  const returnValues = request.ReturnValuesOnConditionCheckFailure;
  if (returnValues != null && returnValues !== 'ALL_OLD' && returnValues !== 'NONE') {
    throw validationError(
      `1 validation error detected: Value '${String(returnValues)}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]`,
    );
  }
  if (name === 'Update' && request.UpdateExpression == null) {
    throw validationError("The parameter 'UpdateExpression' is required but was not present in the request");
  }
  if (name === 'ConditionCheck' && request.ConditionExpression == null) {
    throw validationError(
      "The parameter 'ConditionExpression' is required but was not present in the request",
    );
  }
  const picked: Record<string, unknown> = {};
  for (const field of spec.fields) if (request[field] != null) picked[field] = request[field];
  const data = dynaliteValidations.checkTypes(picked, spec.validation.types);
  dynaliteValidations.checkValidations(data, spec.validation.types, spec.validation.custom, store);
  const table = await tableOf(data.TableName);
  const invalid =
    name === 'Put'
      ? dynaliteDb.validateItem(data.Item!, table)
      : (dynaliteDb.validateKey(data.Key!, table) ??
        (name === 'Update' ? dynaliteDb.validateUpdates(undefined, data._updates, table) : undefined) ??
        (name === 'Get' ? dynaliteDb.validateKeyPaths(data._projection?.nestedPaths, table) : undefined));
  if (invalid) throw invalid;
  return {
    name,
    data,
    table,
    itemKey: dynaliteDb.createKey(name === 'Put' ? data.Item! : data.Key!, table),
    returnOldOnFailure: returnValues === 'ALL_OLD',
  };
}

function checkActionCount(items: unknown): asserts items is unknown[] {
  if (!Array.isArray(items)) {
    throw validationError(
      "1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null",
    );
  }
  if (items.length < 1 || items.length > MAX_ACTIONS) {
    const bound = items.length < 1 ? 'greater than or equal to 1' : `less than or equal to ${MAX_ACTIONS}`;
    // DynamoDB quotes the value here; it is left out, as items may hold secrets.
    throw validationError(
      `1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length ${bound}`,
    );
  }
}

function checkNoItemTwice(prepared: Prepared[]) {
  const seen = new Set<string>();
  for (const action of prepared) {
    const id = `${action.table.TableName}\u0000${action.itemKey}`;
    if (seen.has(id))
      throw validationError('Transaction request cannot include multiple operations on one item');
    seen.add(id);
  }
}

/**
 * Takes dynalite's per-key lock on every item, all queued in one synchronous step (so lockers are
 * ordered the same way in every queue: no deadlock with each other or with single-item calls).
 */
function lockItems(store: Store, prepared: Prepared[]): Promise<() => void> {
  const byTable = new Map<string, string[]>();
  for (const { table, itemKey } of prepared) {
    const keys = byTable.get(table.TableName) ?? [];
    keys.push(itemKey);
    byTable.set(table.TableName, keys);
  }
  const acquired = [...byTable].map(
    ([tableName, keys]) =>
      new Promise<Releaser>((resolve) => store.getItemDb(tableName).lock([...new Set(keys)].sort(), resolve)),
  );
  return Promise.all(acquired).then((releasers) => () => {
    for (const release of releasers) release(() => {})();
  });
}

async function readItems(store: Store, prepared: Prepared[]): Promise<(Item | undefined)[]> {
  return Promise.all(
    prepared.map(({ table, itemKey }) =>
      promise<Item | undefined>((cb) => store.getItemDb(table.TableName).get(itemKey, cb)).catch((error) => {
        if ((error as Error).name === 'NotFoundError') return undefined;
        throw error;
      }),
    ),
  );
}

/**
 * A store for one of dynalite's single-item actions: reads come from the item read under the
 * transaction's locks, locks are already held, and writes (item and index entries) are recorded
 * as LevelDB batch operations under the keys dynalite's prefixed sub-databases use.
 */
function stagingStore(store: Store, table: Table, existing: Item | undefined, ops: BatchOp[]) {
  const recorder = (prefix: string) => ({
    lock: (_key: string, run: (release: (cb: unknown) => unknown) => void) => run((cb) => cb),
    get: (_key: string, cb: Callback<Item>) => setImmediate(cb, null, existing),
    put: (key: string, value: Item, cb: Callback<void>) => {
      ops.push({ type: 'put', key: prefix + key, value });
      cb(null);
    },
    del: (key: string, cb: Callback<void>) => {
      ops.push({ type: 'del', key: prefix + key });
      cb(null);
    },
  });
  return {
    options: store.options,
    getTable: (_name: string, cb: Callback<Table>) => cb(null, table),
    getItemDb: (name: string) => recorder(`item-${name}~`),
    getIndexDb: (indexType: string, tableName: string, indexName: string) =>
      recorder(`index-${indexType.toLowerCase()}~${tableName}~${indexName}~`),
  };
}

interface CancellationReason {
  Code: string;
  Message?: string;
  Item?: Item;
}

/** Runs one action on the staging store: its writes go to `ops`, its failure becomes a reason. */
async function stageAction(
  store: Store,
  action: Prepared,
  existing: Item | undefined,
  ops: BatchOp[],
): Promise<CancellationReason> {
  const run = action.name === 'Get' ? undefined : ACTIONS[action.name].run;
  let error: DynaliteError | undefined;
  if (run) {
    const staged: BatchOp[] = [];
    error = await new Promise<DynaliteError | undefined>((resolve) =>
      run(stagingStore(store, action.table, existing, staged), action.data, (err) =>
        resolve(err ?? undefined),
      ),
    );
    if (!error) ops.push(...staged);
  } else {
    error = dynaliteDb.checkConditional(action.data, existing);
  }
  if (!error) return { Code: 'None' };
  const type = String(error.body?.__type ?? '');
  if (!error.statusCode) throw error;
  if (type.endsWith('#ConditionalCheckFailedException')) {
    const reason: CancellationReason = {
      Code: 'ConditionalCheckFailed',
      Message: 'The conditional request failed',
    };
    if (action.returnOldOnFailure && existing) reason.Item = existing;
    return reason;
  }
  return { Code: 'ValidationError', Message: error.message };
}

/** Successful ClientRequestTokens of the last 10 minutes (in memory), and those in flight. */
class IdempotencyTokens {
  private readonly tokens = new Map<string, { request: unknown; expiresAt: number; done: boolean }>();

  /** True when this token already succeeded with this very request (nothing to do again). */
  begin(token: string | undefined, request: unknown): boolean {
    if (token === undefined) return false;
    const now = Date.now();
    for (const [key, entry] of this.tokens) {
      if (entry.expiresAt > now) break;
      this.tokens.delete(key);
    }
    const entry = this.tokens.get(token);
    if (entry) {
      if (!isDeepStrictEqual(entry.request, request)) {
        throw apiError(
          'IdempotentParameterMismatchException',
          'Request parameters do not match the original request for this ClientRequestToken',
        );
      }
      if (!entry.done) throw apiError('TransactionInProgressException', 'Transaction is in progress');
      return true;
    }
    this.tokens.set(token, { request, expiresAt: now + IDEMPOTENCY_WINDOW_MS, done: false });
    return false;
  }

  end(token: string | undefined, succeeded: boolean) {
    if (token === undefined) return;
    const entry = this.tokens.get(token);
    if (!entry) return;
    if (succeeded) entry.done = true;
    else this.tokens.delete(token);
  }
}

function checkToken(token: unknown): string | undefined {
  if (token == null) return undefined;
  if (typeof token !== 'string' || token.length < 1 || token.length > 36) {
    throw validationError(
      "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 1 and 36",
    );
  }
  return token;
}

/**
 * Actions validated or staged between two turns of the event loop. A transaction of 100 actions is
 * tens of milliseconds of synchronous validation (dynalite parses every expression); handing the
 * loop back every few actions lets a snapshot read that arrived meanwhile be answered in between,
 * instead of waiting for the whole transaction (docs/hot-path.md).
 */
const ACTIONS_PER_TURN = 8;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function transactWriteItems(store: Store, tokens: IdempotencyTokens, body: Record<string, unknown>) {
  const items = body.TransactItems;
  checkActionCount(items);
  const token = checkToken(body.ClientRequestToken);
  const original = structuredClone(items);
  const tableOf = tableReader(store);
  const prepared: Prepared[] = [];
  for (const item of items) {
    const request = (item ?? {}) as Record<string, unknown>;
    const present = ACTION_NAMES.filter((name) => request[name] != null);
    if (present.length !== 1) {
      throw validationError('TransactItems can only contain one of Check, Put, Update or Delete');
    }
    const name = present[0]!;
    prepared.push(
      await prepare(store, tableOf, name, request[name] as Record<string, unknown>, ACTIONS[name]),
    );
    if (prepared.length % ACTIONS_PER_TURN === 0) await nextTurn();
  }
  checkNoItemTwice(prepared);
  if (tokens.begin(token, original)) return {};
  let succeeded = false;
  try {
    const unlock = await lockItems(store, prepared);
    try {
      const existing = await readItems(store, prepared);
      const ops: BatchOp[] = [];
      const reasons: CancellationReason[] = [];
      for (const [i, action] of prepared.entries()) {
        reasons.push(await stageAction(store, action, existing[i], ops));
        if ((i + 1) % ACTIONS_PER_TURN === 0) await nextTurn();
      }
      if (reasons.some((reason) => reason.Code !== 'None')) {
        const codes = reasons.map((reason) => reason.Code).join(', ');
        const message = `Transaction cancelled, please refer cancellation reasons for specific reasons [${codes}]`;
        throw apiError('TransactionCanceledException', message, {
          message: undefined,
          Message: message,
          CancellationReasons: reasons,
        });
      }
      await promise<void>((cb) => store.db.batch(ops, (error) => cb(error)));
      succeeded = true;
      return {};
    } finally {
      unlock();
    }
  } finally {
    tokens.end(token, succeeded);
  }
}

async function transactGetItems(store: Store, body: Record<string, unknown>) {
  const items = body.TransactItems;
  checkActionCount(items);
  const tableOf = tableReader(store);
  const prepared: Prepared[] = [];
  for (const item of items) {
    const request = (item ?? {}) as Record<string, unknown>;
    if (request.Get == null || Object.keys(request).length !== 1) {
      throw validationError('TransactItems can only contain Get');
    }
    prepared.push(await prepare(store, tableOf, 'Get', request.Get as Record<string, unknown>, GET));
  }
  checkNoItemTwice(prepared);
  const unlock = await lockItems(store, prepared);
  let found: (Item | undefined)[];
  try {
    found = await readItems(store, prepared);
  } finally {
    unlock();
  }
  return {
    Responses: prepared.map(({ data }, i) => {
      const item = found[i];
      if (!item) return {};
      return { Item: data._projection ? dynaliteDb.mapPaths(data._projection.paths, item) : item };
    }),
  };
}

function send(res: ServerResponse, statusCode: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(statusCode, {
    'Content-Type': 'application/x-amz-json-1.0',
    'Content-Length': Buffer.byteLength(text),
    'x-amz-crc32': String(crc32(text)),
    'x-amzn-RequestId': randomBytes(39).toString('base64').toUpperCase().replace(/[+/]/g, '0'),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function handleTransaction(
  store: Store,
  tokens: IdempotencyTokens,
  operation: 'TransactWriteItems' | 'TransactGetItems',
  req: IncomingMessage,
  res: ServerResponse,
) {
  const text = await readBody(req);
  if (text === undefined) {
    res.writeHead(413).end();
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    send(res, 400, { __type: 'com.amazon.coral.service#SerializationException' });
    return;
  }
  try {
    const data = body as Record<string, unknown>;
    send(
      res,
      200,
      operation === 'TransactWriteItems'
        ? await transactWriteItems(store, tokens, data)
        : await transactGetItems(store, data),
    );
  } catch (error) {
    const known = error as DynaliteError;
    if (known.statusCode && known.body) send(res, known.statusCode, known.body);
    else send(res, 500, { __type: `${ERROR_PREFIX}InternalServerError`, message: 'Internal server error' });
  }
}

function transactionOperation(target: string | string[] | undefined) {
  const operation = typeof target === 'string' ? target.split('.') : [];
  if (operation.length !== 2 || operation[0] !== 'DynamoDB_20120810') return undefined;
  return operation[1] === 'TransactWriteItems' || operation[1] === 'TransactGetItems'
    ? operation[1]
    : undefined;
}

const openedStores = new WeakMap<Server, Promise<void>>();

/**
 * Resolves once the LevelDB of a server made by `startDynalite` is open; rejects with the reason it
 * cannot be (another process holds its lock: the cause says `IO error: lock …/LOCK`).
 */
export function dynaliteOpened(server: Server): Promise<void> {
  return openedStores.get(server) ?? Promise.resolve();
}

type TableDb = Record<'put' | 'del' | 'batch', (...args: unknown[]) => unknown>;

/**
 * Keeps the ACTIVE table definitions in memory. dynalite reads a table's definition from LevelDB
 * (a read on libuv's thread pool and a JSON decode) on every request, a GetItem included; this
 * answers from memory, with a copy (the table actions mutate what they get before writing it back),
 * and forgets everything as soon as anything writes a table definition (create, update, delete).
 */
export function cacheTables(store: Store & { tableDb: TableDb; recreate?: (...args: unknown[]) => unknown }) {
  const cached = new Map<string, Table>();
  // A read that was in flight while a definition was written must not be cached.
  let generation = 0;
  const forget = () => {
    generation++;
    cached.clear();
  };
  for (const op of ['put', 'del', 'batch'] as const) {
    const original = store.tableDb[op].bind(store.tableDb);
    store.tableDb[op] = (...args: unknown[]) => {
      forget();
      return original(...args);
    };
  }
  if (store.recreate) {
    const recreate = store.recreate.bind(store);
    store.recreate = (...args: unknown[]) => {
      forget();
      return recreate(...args);
    };
  }
  const getTable = store.getTable.bind(store) as (name: string, ...rest: unknown[]) => void;
  store.getTable = ((name: string, checkStatus: unknown, cb?: Callback<Table>) => {
    // dynalite's own calls are (name, cb) — which checks the status — or (name, false, cb).
    const callback = (typeof checkStatus === 'function' ? checkStatus : cb) as Callback<Table>;
    const check = typeof checkStatus === 'function' ? true : checkStatus;
    const hit = cached.get(name);
    if (hit) return queueMicrotask(() => callback(null, structuredClone(hit)));
    const readAt = generation;
    getTable(name, check, (error: Error | null, table?: Table) => {
      const active = !error && (table as { TableStatus?: string } | undefined)?.TableStatus === 'ACTIVE';
      if (active && readAt === generation) cached.set(name, structuredClone(table!));
      callback(error, table);
    });
  }) as Store['getTable'];
}

/**
 * Starts dynalite (same options) with TransactWriteItems and TransactGetItems added. Returns
 * dynalite's own server (its `close` also closes the store); listen on it as on dynalite's.
 */
export function startDynalite(options: Record<string, unknown>): Server {
  let store: Store | undefined;
  const create = dynaliteDb.create;
  dynaliteDb.create = (opts) => {
    store = create(opts);
    return store;
  };
  let server: Server;
  try {
    server = dynalite(options);
  } finally {
    dynaliteDb.create = create;
  }
  const [dynaliteListener] = server.listeners('request') as RequestListener[];
  if (!store || !dynaliteListener) throw new Error('dynalite did not create its store as expected');
  const captured = store;
  cacheTables(captured as Parameters<typeof cacheTables>[0]);
  const db = (captured as unknown as { db?: { open?: () => Promise<void> } }).db;
  if (typeof db?.open === 'function') {
    const opened = db.open();
    opened.catch(() => undefined); // observed by whoever awaits dynaliteOpened
    openedStores.set(server, opened);
  }
  const tokens = new IdempotencyTokens();
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const operation = req.method === 'POST' ? transactionOperation(req.headers['x-amz-target']) : undefined;
    if (!operation) return dynaliteListener(req, res);
    handleTransaction(captured, tokens, operation, req, res).catch(() => {
      if (!res.headersSent)
        send(res, 500, { __type: `${ERROR_PREFIX}InternalServerError`, message: 'Internal server error' });
    });
  });
  return server;
}
