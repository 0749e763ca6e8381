import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type GatewayProcess, startGatewayProcess } from '../helpers/gateway-process.ts';
import { probe } from '../helpers/integrity.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

/**
 * SPEC "Consistency" across crashes: `npm start` killed with SIGKILL in the middle of 40 concurrent
 * proxy deletions and key rotations, then started again on the same data directory. Every proxy the
 * API shows as deleted must refuse traffic, every rotated key must be dead, and a retried DELETE
 * finishes what the crash interrupted. Repeated with the kill at different points.
 */
const PROXIES = 40;

describe('revocation across a kill -9', () => {
  let upstream: RecordingUpstream;
  const dirs: string[] = [];

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
  });
  afterAll(async () => {
    await upstream.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  async function call(gw: GatewayProcess, token: string, method: string, path: string, body?: unknown) {
    const res = await fetch(gw.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  for (const killAfter of [2, 20]) {
    it(`kill -9 after ${killAfter} of ${PROXIES} deletions answered: 0 ghosts after the restart`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'keygate-crash-'));
      dirs.push(dataDir);
      const env = { KEYGATE_TARGET_ALLOWLIST: `127.0.0.1,127.0.0.1:${upstream.port}` };
      let gw = await startGatewayProcess(dataDir, env);
      const token = gw.token!;
      const c = `/clients/${gw.clientId}`;
      const credential = (body: object) =>
        call(gw, token, 'POST', `${c}/credentials`, { credentialRegion: 'us-east-1', ...body });
      const target = await call(gw, token, 'POST', `${c}/targets`, {
        targetName: 'vendor',
        targetBaseURL: upstream.url,
        targetRegion: 'us-east-1',
        targetDefaultRuleEffect: 'allow',
      });
      const tc = await credential({
        credentialType: 'target',
        credentialAuthType: 'apiKey',
        credentialName: 'vendor',
        credentialSecret: { key: 'vendor-secret', headerName: 'X-Vendor-Key' },
      });
      const proxies: Array<{ proxyId: string; credentialId: string; key: string }> = [];
      for (let i = 0; i < PROXIES; i++) {
        const pc = await credential({
          credentialType: 'proxy',
          credentialAuthType: 'apiKey',
          credentialName: `consumer-${i}`,
          credentialSecret: {},
        });
        const p = await call(gw, token, 'POST', `${c}/proxies`, {
          proxyName: `p${i}`,
          proxyRegion: 'us-east-1',
          proxyProxyCredentialId: pc.body.credentialId,
          proxyTargetId: target.body.targetId,
          proxyTargetCredentialId: tc.body.credentialId,
          proxyDefaultRuleEffect: 'allow',
        });
        expect(p.status).toBe(201);
        proxies.push({
          proxyId: p.body.proxyId,
          credentialId: pc.body.credentialId,
          key: pc.body.credentialSecret.key,
        });
      }
      for (const p of proxies.slice(0, 3))
        expect((await probe(gw.proxyUrl, upstream, p.proxyId, p.key)).reached).toBe(true);

      // Even proxies are deleted, odd ones get their key rotated; the process dies meanwhile.
      let answered = 0;
      let killed!: () => void;
      const killedNow = new Promise<void>((r) => {
        killed = r;
      });
      const inFlight = proxies.map((p, i) =>
        (i % 2 === 0
          ? call(gw, token, 'DELETE', `${c}/proxies/${p.proxyId}`)
          : call(gw, token, 'PUT', `${c}/credentials/${p.credentialId}`, { credentialSecret: {} })
        )
          .then(() => {
            if (++answered === killAfter) killed();
          })
          .catch(() => undefined),
      );
      await killedNow;
      await gw.stop('SIGKILL');
      await Promise.all(inFlight);

      gw = await startGatewayProcess(dataDir, env);
      const ghosts: string[] = [];
      const check = async () => {
        for (const [i, p] of proxies.entries()) {
          if (i % 2 === 0) {
            const shown = await call(gw, token, 'GET', `${c}/proxies/${p.proxyId}`);
            if (shown.status === 404 && (await probe(gw.proxyUrl, upstream, p.proxyId, p.key)).reached)
              ghosts.push(`proxy ${p.proxyId}: deleted in the API, still forwards`);
          } else {
            const shown = await call(gw, token, 'GET', `${c}/credentials/${p.credentialId}`);
            if (shown.body.secretUpdatedAt !== shown.body.createdAt)
              if ((await probe(gw.proxyUrl, upstream, p.proxyId, p.key)).reached)
                ghosts.push(`proxy ${p.proxyId}: key rotated in the API, old key still works`);
          }
        }
      };
      await check();
      // Retrying what the crash interrupted completes it.
      for (const [i, p] of proxies.entries()) {
        const retry =
          i % 2 === 0
            ? await call(gw, token, 'DELETE', `${c}/proxies/${p.proxyId}`)
            : await call(gw, token, 'PUT', `${c}/credentials/${p.credentialId}`, { credentialSecret: {} });
        if (![200, 204, 404].includes(retry.status))
          ghosts.push(`retry of ${p.proxyId} answered ${retry.status}`);
        if ((await probe(gw.proxyUrl, upstream, p.proxyId, p.key)).reached)
          ghosts.push(`proxy ${p.proxyId}: still forwards with the old key after the retry`);
      }
      await check();
      await gw.stop('SIGTERM');
      expect(ghosts).toEqual([]);
    }, 300_000);
  }
});
