import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { keys } from '../../lambdas/storage/keys.ts';
import { getItem } from '../../lambdas/storage/table.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/**
 * `proxyAlias` is unique across regions, not only in its cell (docs/sdks.md): two cells with
 * their own tables, as in AWS, and two clients (so that no in-process queue orders the writers),
 * each creating or renaming to the same alias at the same moment. Invariant over every run: one
 * proxy holds the alias — one alias copy in all the tables together, the claim naming it, the
 * other answer a 409 `alias_taken` — and a deleted or renamed proxy frees its alias.
 */
const REGIONS = ['us-east-1', 'eu-west-1'] as const;
const RUNS = 12;

let gw: TestGateway;
/** Per region: a client of its own and the references a proxy needs there. */
const setups: Array<{ region: string; clientId: string; refs: Record<string, string> }> = [];

beforeAll(async () => {
  gw = await startTestGateway({ regions: [...REGIONS], tablePerRegion: true });
  for (const region of REGIONS) {
    const client = await gw.api('POST', '/clients', { body: { clientName: `aliases-${region}` } });
    expect(client.status).toBe(201);
    const clientId = client.body.clientId as string;
    const post = async (path: string, body: unknown) => {
      const res = await gw.api('POST', `/clients/${clientId}${path}`, { body });
      expect([path, res.status]).toEqual([path, 201]);
      return res.body;
    };
    const target = await post('/targets', {
      targetName: 'vendor',
      targetBaseURL: 'https://api.vendor.example',
      targetRegion: region,
    });
    const vendor = await post('/credentials', {
      credentialType: 'target',
      credentialAuthType: 'bearer',
      credentialName: 'vendor',
      credentialRegion: region,
      credentialSecret: { token: 'vendor-secret-token-0123456789' },
    });
    const consumer = await post('/credentials', {
      credentialType: 'proxy',
      credentialAuthType: 'apiKey',
      credentialName: 'consumer',
      credentialRegion: region,
    });
    setups.push({
      region,
      clientId,
      refs: {
        proxyTargetId: target.targetId,
        proxyTargetCredentialId: vendor.credentialId,
        proxyProxyCredentialId: consumer.credentialId,
      },
    });
  }
});
afterAll(() => gw.close());

function createProxy(setup: (typeof setups)[number], alias: string) {
  return gw.api('POST', `/clients/${setup.clientId}/proxies`, {
    body: { proxyName: alias, proxyAlias: alias, proxyRegion: setup.region, ...setup.refs },
  });
}

/** Who holds `alias`: the alias copies in every cell's table, and the home table's claim. */
async function holders(alias: string) {
  const cells = Object.values(gw.stack.deps.cells);
  const copies = await Promise.all(
    cells.map((cell) => getItem<{ proxyId: string }>(cell, keys.aliasSnapshot(alias))),
  );
  const claim = await getItem<{ proxyId: string }>(gw.stack.deps.home, keys.aliasClaim(alias));
  return { copies: copies.filter((c) => c !== undefined).map((c) => c!.proxyId), claim: claim?.proxyId };
}

describe('proxyAlias is unique across regions', () => {
  it('two regions creating the same alias at once: one wins, the other is 409 alias_taken (0 duplicates)', async () => {
    const violations: string[] = [];
    for (let run = 0; run < RUNS; run++) {
      const alias = `race-${run}`;
      // Both requests are sent together (the barrier is the Promise.all): which one lands first is
      // up to the store; the invariant must hold either way.
      const answers = await Promise.all(setups.map((s) => createProxy(s, alias)));
      const won = answers.filter((a) => a.status === 201);
      const lost = answers.filter((a) => a.status !== 201);
      if (won.length !== 1) violations.push(`${alias}: ${won.length} creations succeeded`);
      for (const a of lost)
        if (a.status !== 409 || a.body?.code !== 'alias_taken')
          violations.push(`${alias}: loser answered ${a.status} ${a.body?.code}`);
      const held = await holders(alias);
      if (held.copies.length !== 1) violations.push(`${alias}: ${held.copies.length} alias copies`);
      if (won[0] && (held.copies[0] !== won[0].body.proxyId || held.claim !== won[0].body.proxyId))
        violations.push(`${alias}: held by ${JSON.stringify(held)}, created ${won[0].body.proxyId}`);
    }
    expect(violations).toEqual([]);
  }, 120_000);

  it('a deleted proxy frees its alias for any region; a rename frees the old one and takes the new', async () => {
    const [us, eu] = setups as [(typeof setups)[number], (typeof setups)[number]];
    const first = await createProxy(us, 'freed');
    expect(first.status).toBe(201);
    expect((await createProxy(eu, 'freed')).status).toBe(409);
    expect(
      (await gw.api('DELETE', `/clients/${us.clientId}/proxies/${first.body.proxyId}`)).status,
    ).toBeLessThan(300);
    const second = await createProxy(eu, 'freed');
    expect(second.status).toBe(201);
    expect(await holders('freed')).toEqual({ copies: [second.body.proxyId], claim: second.body.proxyId });

    // Rename eu's proxy to an alias us wants at the same time: one of them gets it.
    const [renamed, created] = await Promise.all([
      gw.api('PUT', `/clients/${eu.clientId}/proxies/${second.body.proxyId}`, {
        body: { proxyAlias: 'moved' },
      }),
      createProxy(us, 'moved'),
    ]);
    const statuses = [renamed.status, created.status];
    expect(statuses.filter((s) => s === 409)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200 || s === 201)).toHaveLength(1);
    const winner = renamed.status === 200 ? second.body.proxyId : created.body.proxyId;
    expect(await holders('moved')).toEqual({ copies: [winner], claim: winner });
    if (renamed.status === 200) {
      // The old alias is free again, in the other region too.
      expect(await holders('freed')).toEqual({ copies: [], claim: undefined });
      expect((await createProxy(us, 'freed')).status).toBe(201);
    }
  }, 120_000);
});
