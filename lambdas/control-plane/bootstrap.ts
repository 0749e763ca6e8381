import type { Deps } from '../shared/deps.ts';
import { keys } from '../storage/keys.ts';
import { isConditionFailure, putItem } from '../storage/table.ts';
import { createClient } from './clients.ts';
import { createUser } from './identity.ts';

export interface FirstAdmin {
  userId: string;
  clientId: string;
  tokenId: string;
  token: string;
}

/**
 * Creates the first platform admin, a first client they own and their first token — once per
 * table. A marker item written with a condition makes a second call (a restart, or two starts at
 * once) a no-op that answers undefined. Used by `npm start` and by `npm run admin:create` after a
 * deploy, with the deployer's own AWS credentials.
 */
export async function bootstrapFirstAdmin(
  deps: Deps,
  options: { userName?: string; userEmail?: string; clientName?: string } = {},
): Promise<FirstAdmin | undefined> {
  try {
    await putItem(
      deps.home,
      { ...keys.meta('bootstrap'), type: 'Meta', createdAt: deps.now().toISOString() },
      { ifAbsent: true },
    );
  } catch (error) {
    if (isConditionFailure(error)) return undefined;
    throw error;
  }
  const admin = (await createUser(deps, undefined, {
    userName: options.userName ?? 'admin',
    userEmail: options.userEmail,
    platformAdmin: true,
  })) as { userId: string; tokenId: string; token: string };
  const caller = { userId: admin.userId, tokenId: admin.tokenId, platformAdmin: true };
  const client = (await createClient(deps, caller, { clientName: options.clientName ?? 'default' })) as {
    clientId: string;
  };
  return { userId: admin.userId, clientId: client.clientId, tokenId: admin.tokenId, token: admin.token };
}
