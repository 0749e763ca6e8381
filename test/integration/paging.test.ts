import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/** Lists answer a page at a time: `limit`, `nextToken`, across the cells of every served region. */
describe('paged lists', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ regions: ['us-east-1', 'eu-west-1'] });
  });
  afterAll(() => gw.close());

  const newClient = async (name: string) => {
    const res = await gw.api('POST', '/clients', { body: { clientName: name } });
    expect(res.status).toBe(201);
    return res.body.clientId as string;
  };
  const createTarget = async (clientId: string, i: number) => {
    const res = await gw.api('POST', `/clients/${clientId}/targets`, {
      body: {
        targetName: `t${i}`,
        targetBaseURL: 'https://api.example.com',
        targetRegion: i % 2 ? 'eu-west-1' : 'us-east-1',
      },
    });
    expect(res.status).toBe(201);
    return res.body.targetId as string;
  };

  /** Follows nextToken to the end; answers every page. */
  async function allPages(path: string, field: string, limit: number) {
    const pages: string[][] = [];
    let token: string | undefined;
    for (;;) {
      const sep = path.includes('?') ? '&' : '?';
      const query = `${sep}limit=${limit}${token ? `&nextToken=${encodeURIComponent(token)}` : ''}`;
      const res = await gw.api('GET', `${path}${query}`);
      expect(res.status).toBe(200);
      const ids = (res.body[field] as Array<Record<string, string>>).map(
        (it) => it.targetId ?? it.credentialId ?? it.proxyId ?? it.clientId ?? it.tokenId!,
      );
      pages.push(ids);
      token = res.body.nextToken;
      if (!token) return pages;
      if (pages.length > 50) throw new Error('never ends');
    }
  }

  it('walks a list of two regions in pages, every item once, and answers it whole by default', async () => {
    const clientId = await newClient('paged');
    const ids = [];
    for (let i = 0; i < 9; i++) ids.push(await createTarget(clientId, i));
    const pages = await allPages(`/clients/${clientId}/targets`, 'targets', 4);
    expect(pages.map((p) => p.length)).toEqual([4, 4, 1]);
    expect(pages.flat().sort()).toEqual([...ids].sort());

    const whole = await gw.api('GET', `/clients/${clientId}/targets`);
    expect(whole.body.targets.map((t: { targetId: string }) => t.targetId)).toEqual(pages.flat());
    expect(whole.body.nextToken).toBeUndefined();

    // Exactly a page full: no token pointing at an empty page.
    const exact = await allPages(`/clients/${clientId}/targets`, 'targets', 9);
    expect(exact).toHaveLength(1);
  });

  it('pages credentials, proxies, clients and tokens the same way', async () => {
    const clientId = await newClient('paged-2');
    const creds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await gw.api('POST', `/clients/${clientId}/credentials`, {
        body: {
          credentialType: 'target',
          credentialAuthType: 'none',
          credentialName: `c${i}`,
          credentialRegion: i % 2 ? 'eu-west-1' : 'us-east-1',
        },
      });
      expect(res.status).toBe(201);
      creds.push(res.body.credentialId);
    }
    const credPages = await allPages(`/clients/${clientId}/credentials`, 'credentials', 2);
    expect(credPages.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(credPages.flat().sort()).toEqual(creds.sort());

    const [pc, tc, t] = await Promise.all([
      gw.api('POST', `/clients/${clientId}/credentials`, {
        body: {
          credentialType: 'proxy',
          credentialAuthType: 'apiKey',
          credentialName: 'p',
          credentialRegion: 'us-east-1',
        },
      }),
      gw.api('POST', `/clients/${clientId}/credentials`, {
        body: {
          credentialType: 'target',
          credentialAuthType: 'none',
          credentialName: 't',
          credentialRegion: 'us-east-1',
        },
      }),
      createTarget(clientId, 0),
    ]);
    const proxies: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await gw.api('POST', `/clients/${clientId}/proxies`, {
        body: {
          proxyName: `p${i}`,
          proxyRegion: 'us-east-1',
          proxyProxyCredentialId: pc.body.credentialId,
          proxyTargetId: t,
          proxyTargetCredentialId: tc.body.credentialId,
        },
      });
      expect(res.status).toBe(201);
      proxies.push(res.body.proxyId);
    }
    expect((await allPages(`/clients/${clientId}/proxies`, 'proxies', 2)).flat().sort()).toEqual(
      proxies.sort(),
    );

    const clientPages = await allPages('/clients', 'clients', 1);
    expect(clientPages.flat()).toEqual(expect.arrayContaining([clientId, gw.admin.clientId]));
    expect(new Set(clientPages.flat()).size).toBe(clientPages.flat().length);

    for (let i = 0; i < 3; i++)
      expect((await gw.api('POST', '/users/tokens', { body: {} })).status).toBe(201);
    const tokenPages = await allPages('/users/tokens', 'tokens', 2);
    expect(tokenPages.flat().length).toBeGreaterThanOrEqual(4);
    expect(new Set(tokenPages.flat()).size).toBe(tokenPages.flat().length);
  });

  it('refuses a bad limit or a token of another list with a 400, and a token never crosses tenants', async () => {
    const a = await newClient('tenant-a');
    const b = await newClient('tenant-b');
    for (let i = 0; i < 3; i++) await createTarget(a, i);
    const bIds = [];
    for (let i = 0; i < 3; i++) bIds.push(await createTarget(b, i));

    for (const limit of ['0', '1001', 'abc', '-1', '2.5'])
      expect((await gw.api('GET', `/clients/${a}/targets?limit=${limit}`)).body.code).toBe(
        'validation_failed',
      );
    for (const token of ['nope', 'e30', Buffer.from('{"v":1,"after":"PROXY#x"}').toString('base64url')]) {
      const res = await gw.api('GET', `/clients/${a}/targets?nextToken=${token}`);
      expect({ status: res.status, code: res.body.code }).toEqual({
        status: 400,
        code: 'invalid_next_token',
      });
      expect(res.text).not.toContain('stack');
    }
    expect((await gw.api('GET', `/clients/${a}/targets?page=2`)).status).toBe(400);

    // A's token on B's list reads B's partition from that point: B's items only, never A's.
    const first = await gw.api('GET', `/clients/${a}/targets?limit=1`);
    const onB = await gw.api('GET', `/clients/${b}/targets?nextToken=${first.body.nextToken}`);
    expect(onB.status).toBe(200);
    for (const t of onB.body.targets) expect(bIds).toContain(t.targetId);
  });

  it('names limit and nextToken in the API document', async () => {
    const doc = (await gw.api('GET', '/openapi.json', { token: null })).body;
    const params = doc.paths['/clients/{clientId}/credentials'].get.parameters.map(
      (p: { name: string }) => p.name,
    );
    expect(params).toEqual(expect.arrayContaining(['limit', 'nextToken']));
  });
});
