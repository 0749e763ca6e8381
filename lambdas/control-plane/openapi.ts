import { toJSONSchema } from 'zod/mini';
import type { Route } from './router.ts';

/** The OpenAPI 3.1 document, generated from the route table and its zod schemas. */
export function buildOpenApi(routes: Route[]) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params: Array<Record<string, unknown>> = [...r.path.matchAll(/\{([^}]+)\}/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    if (r.query) {
      const schema = toJSONSchema(r.query, { target: 'draft-2020-12', io: 'input' }) as {
        properties?: Record<string, unknown>;
        required?: string[];
      };
      for (const [name, property] of Object.entries(schema.properties ?? {})) {
        params.push({
          name,
          in: 'query',
          required: schema.required?.includes(name) ?? false,
          schema: property,
        });
      }
    }
    const status = String(r.status ?? 200);
    const operation: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      parameters: params,
      responses: {
        [status]: { description: status === '204' ? 'Done' : 'Success' },
        '4XX': {
          description: 'Client error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
        '503': { description: 'A backing service is unavailable (fail closed)' },
      },
      security: r.public ? [] : [{ token: [] }],
    };
    if (r.body) {
      operation.requestBody = {
        required: true,
        content: {
          'application/json': { schema: toJSONSchema(r.body, { target: 'draft-2020-12', io: 'input' }) },
        },
      };
    }
    const methods = paths[r.path] ?? {};
    methods[r.method.toLowerCase()] = operation;
    paths[r.path] = methods;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'keygate Core API',
      version: '1',
      description: 'Outbound API credential gateway: control plane',
    },
    paths,
    components: {
      securitySchemes: {
        token: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description: 'A user token, raw or as `Bearer <token>`',
        },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['message', 'code'],
          properties: {
            message: { type: 'string' },
            code: { type: 'string' },
            requestId: { type: 'string' },
          },
        },
      },
    },
  };
}
