import { describe, expect, it } from '@jest/globals';
import { cacheTables } from '../../local/dynamodb-transactions.ts';

type Cb = (error?: Error | null, table?: Record<string, unknown>) => void;

/** A stand-in for dynalite's store: counts the definition reads it serves from "LevelDB". */
function fakeStore(status = 'ACTIVE') {
  const reads: Array<{ name: string; checkStatus: unknown }> = [];
  const pending: Array<() => void> = [];
  const store = {
    reads,
    /** When set, reads wait until released (to put a write in the middle of one). */
    hold: false,
    release: () => {
      for (const go of pending.splice(0)) go();
    },
    tableDb: { put: () => undefined, del: () => undefined, batch: () => undefined },
    getTable(name: string, checkStatus: unknown, cb?: Cb) {
      const callback = (typeof checkStatus === 'function' ? checkStatus : cb) as Cb;
      reads.push({ name, checkStatus });
      const answer = () =>
        callback(null, {
          TableName: name,
          TableStatus: status,
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        });
      if (store.hold) pending.push(answer);
      else setImmediate(answer);
    },
  };
  cacheTables(store as never);
  return store;
}

const get = (store: ReturnType<typeof fakeStore>, ...args: unknown[]) =>
  new Promise<Record<string, unknown>>((resolve, reject) =>
    (store.getTable as (...a: unknown[]) => void)(
      'keygate',
      ...args,
      (error: Error | null, table: Record<string, unknown>) => (error ? reject(error) : resolve(table)),
    ),
  );

describe('table definitions kept in memory (cacheTables)', () => {
  it('reads an ACTIVE definition once, for both forms of call dynalite makes, and checks its status', async () => {
    const store = fakeStore();
    for (let i = 0; i < 5; i++) expect((await get(store)).TableStatus).toBe('ACTIVE');
    await get(store, false);
    expect(store.reads).toHaveLength(1);
    // The (name, cb) form is dynalite's "check the status" call: passed on as such.
    expect(store.reads[0]!.checkStatus).toBe(true);
  });

  it('hands out copies: a caller that mutates its definition does not change the next one', async () => {
    const store = fakeStore();
    const first = await get(store);
    (first.KeySchema as unknown[]).push('mutated');
    first.TableStatus = 'UPDATING';
    const second = await get(store);
    expect(second).toMatchObject({
      TableStatus: 'ACTIVE',
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    });
  });

  it('forgets every definition on any write of one (put, del, batch)', async () => {
    const store = fakeStore();
    await get(store);
    for (const op of ['put', 'del', 'batch'] as const) {
      store.tableDb[op]();
      await get(store);
      await get(store);
    }
    expect(store.reads).toHaveLength(4);
  });

  it('never caches a read that was in flight while a definition was written', async () => {
    const store = fakeStore();
    store.hold = true;
    const racing = get(store);
    store.tableDb.put();
    store.release();
    await racing;
    store.hold = false;
    await get(store);
    await get(store);
    expect(store.reads).toHaveLength(2);
  });

  it('does not cache a table that is not ACTIVE yet', async () => {
    const store = fakeStore('CREATING');
    await get(store, false);
    await get(store, false);
    expect(store.reads).toHaveLength(2);
  });
});
