import { createHash } from 'node:crypto';
import jwt from '@fastify/jwt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Principal } from '../access/policy.ts';
import type { Db } from '../db/database.ts';
import { findAgentForAuth } from '../domains/agents/repository.ts';
import { findTokenForAuth } from '../domains/api-tokens/repository.ts';
import { DomainError, forbidden } from '../errors.ts';
import type { AuthCache } from './auth-cache.ts';

export const API_TOKEN_PREFIX = 'drt_';

export interface SessionClaims {
  sub: string;
  /** password_changed_at in ms: a password change ends every session issued before it. */
  pwd: number;
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: SessionClaims;
    user: SessionClaims;
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export function hashApiToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

const unauthenticated = (code: string, message: string) => new DomainError('unauthenticated', code, message);

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The caller, for handlers of routes that require credentials (all /v1 routes not marked public). */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthenticated('missing_credentials', 'This route needs credentials.');
  return request.principal;
}

async function authenticate(
  app: FastifyInstance,
  db: Db,
  cache: AuthCache,
  request: FastifyRequest,
): Promise<Principal> {
  const header = request.headers.authorization;
  if (!header) throw unauthenticated('missing_credentials', 'Send Authorization: Bearer <token>.');
  const match = /^Bearer +(\S+)$/i.exec(header);
  if (!match?.[1]) throw unauthenticated('invalid_credentials', 'Use Authorization: Bearer <token>.');
  const secret = match[1];

  if (secret.startsWith(API_TOKEN_PREFIX)) {
    const hash = hashApiToken(secret);
    const token = await cache.get(`token:${hash}`, () => findTokenForAuth(db, hash));
    if (!token) throw unauthenticated('invalid_token', 'The API token is not valid.');
    if (token.revoked_at) throw unauthenticated('token_revoked', 'The API token was revoked.');
    if (token.expires_at && token.expires_at <= new Date()) {
      throw unauthenticated('token_expired', 'The API token has expired.');
    }
    if (token.agent_status !== 'active')
      throw unauthenticated('agent_disabled', "The token's agent is disabled.");
    return {
      agentId: token.agent_id,
      role: token.role,
      scopes: token.scopes,
      via: 'api_token',
      tokenId: token.id,
      departments: new Map(token.departments),
    };
  }

  let claims: SessionClaims;
  try {
    claims = app.jwt.verify<SessionClaims>(secret);
  } catch (error) {
    // app.jwt.verify throws fast-jwt's own errors; only request.jwtVerify renames them FST_JWT_*.
    const code = (error as { code?: string }).code;
    if (code === 'FAST_JWT_EXPIRED')
      throw unauthenticated('token_expired', 'The session token has expired; sign in again.');
    if (code === 'FAST_JWT_MISSING_REQUIRED_CLAIM')
      throw unauthenticated('token_without_expiry', 'The session token has no expiry (exp); sign in again.');
    throw unauthenticated('invalid_token', 'The session token is not valid.');
  }
  if (typeof claims.sub !== 'string' || !/^[0-9a-f-]{36}$/i.test(claims.sub)) {
    throw unauthenticated('invalid_token', 'The session token is not valid.');
  }
  const sub = claims.sub;
  const agent = await cache.get(`agent:${sub}`, () => findAgentForAuth(db, sub));
  if (!agent) throw unauthenticated('invalid_token', 'The session token is not valid.');
  if (agent.status !== 'active') throw unauthenticated('agent_disabled', 'The agent is disabled.');
  if ((agent.password_changed_at?.getTime() ?? 0) !== claims.pwd) {
    throw unauthenticated('invalid_token', 'The password changed since this session began; sign in again.');
  }
  return {
    agentId: agent.id,
    role: agent.role,
    scopes: ['read', 'write'],
    via: 'session',
    tokenId: null,
    departments: new Map(agent.departments),
  };
}

/**
 * Authenticates every /v1 route that is not marked `config.public`, before the body is read,
 * and keeps read-only tokens to reads. Routes opt out of auth explicitly, never in. Register it
 * after the rate limiter and before the routes.
 */
export const authPlugin = fp(
  async (
    app: FastifyInstance,
    options: {
      db: Db;
      /** Who credentials belong to, kept while no change to them is heard of (auth-cache.ts). */
      cache: AuthCache;
      secret: string;
      ttlSeconds: number;
      rateLimit: { max: number; windowSeconds: number };
    },
  ) => {
    await app.register(jwt, {
      secret: options.secret,
      sign: { expiresIn: options.ttlSeconds, algorithm: 'HS256' },
      // A correctly signed token without exp would be valid forever (a leaked secret's
      // forgeries, a signer misconfigured elsewhere): every session we mint has one.
      verify: { algorithms: ['HS256'], requiredClaims: ['exp'] },
    });
    app.decorateRequest('principal', null);
    // The per-token budget, counted once the token is known to be real.
    const tokenLimit = app.createRateLimit({
      max: options.rateLimit.max,
      timeWindow: options.rateLimit.windowSeconds * 1000,
      keyGenerator: (request) => {
        const p = request.principal;
        return p?.tokenId ? `api-token:${p.tokenId}` : `session:${p?.agentId}`;
      },
    });
    async function authenticateRequest(request: FastifyRequest, reply: FastifyReply) {
      const principal = await authenticate(app, options.db, options.cache, request);
      request.principal = principal;
      const limit = await tokenLimit(request);
      // isAllowed is only true for allow-listed keys (none here); the counts are in the rest.
      if (!limit.isAllowed) {
        reply.header('ratelimit-limit', limit.max);
        reply.header('ratelimit-remaining', limit.remaining);
        reply.header('ratelimit-reset', limit.ttlInSeconds);
        if (limit.isExceeded) {
          const error = new DomainError(
            'throttled',
            'rate_limited',
            `Rate limit of ${limit.max} requests per ${options.rateLimit.windowSeconds} s for this token exceeded; retry after ${limit.ttlInSeconds} s.`,
          );
          error.retryAfterSeconds = limit.ttlInSeconds;
          throw error;
        }
      }
      if (
        !principal.scopes.includes('write') &&
        !READ_METHODS.has(request.method) &&
        !request.routeOptions.config.readOnly
      ) {
        throw forbidden('This API token is read-only.', 'insufficient_scope');
      }
    }
    // A route-level hook, appended after the rate limiter's own, so floods of requests without
    // valid credentials are still counted and limited before we spend a lookup on them.
    app.addHook('onRoute', (route) => {
      if (!route.url.startsWith('/v1/') || route.config?.public) return;
      route.onRequest = [...[route.onRequest ?? []].flat(), authenticateRequest];
    });
  },
  { name: 'auth', dependencies: ['problem', '@fastify/rate-limit'] },
);
