import { z } from 'zod';

/**
 * Request bodies of the Core API, defined once: they validate, they type the handlers, and they
 * are the OpenAPI document's schemas. Bodies are strict: an unknown field is a 400, so a typo can
 * never silently widen what a request means.
 */
const isoTimestamp = z.iso.datetime({ offset: true }).describe('ISO 8601 timestamp');
const name = z.string().trim().min(1).max(128);

export const userCreateSchema = z.strictObject({
  userName: name,
  userEmail: z.email().max(254).optional(),
  platformAdmin: z.boolean().optional(),
});

export const tokenCreateSchema = z.strictObject({
  tokenName: name.optional(),
  expiresAt: isoTimestamp.optional(),
});

export const roleSchema = z.enum(['owner', 'admin', 'user']);
export const clientMemberSchema = z.strictObject({
  userId: z.string().min(1).max(64),
  roles: z.array(roleSchema).min(1).max(3),
});

export const clientCreateSchema = z.strictObject({
  clientName: name,
  clientMembers: z.array(clientMemberSchema).max(100).optional(),
});

/** PUT accepts what GET answered: read-only fields may be sent back and are ignored. */
export const clientUpdateSchema = z.strictObject({
  clientName: name.optional(),
  clientMembers: z.array(clientMemberSchema).min(1).max(100).optional(),
  clientId: z.string().optional(),
  configuration: z.unknown().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});

const limit = z.number().int().min(1).max(1_000_000_000);
export const clientConfigurationSchema = z.strictObject({
  limits: z.strictObject({
    requestsPerMinute: limit.optional(),
    requestsPerDay: limit.optional(),
  }),
});
