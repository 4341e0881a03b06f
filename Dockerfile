# syntax=docker/dockerfile:1
#
# Deskroute API image. Node 24 runs the TypeScript sources directly (type stripping): no build.
#
#   docker build -t deskroute .
#   docker run -p 3000:3000 \
#     -e DATABASE_URL=postgres://user:pass@db-host:5432/deskroute \
#     -e JWT_SECRET="$(openssl rand -base64 48)" \
#     deskroute
#
# DESKROUTE_ENV=production (set below) refuses to start without JWT_SECRET (32+ characters):
# every instance behind a load balancer must share it. Set DATABASE_URL to use PostgreSQL;
# without it the server falls back to embedded PGlite in DATA_DIR (/home/node/data), which
# suits a single trial container only (mount a volume there to keep the data). Migrations run
# at start-up; `docker run ... deskroute node scripts/migrate.ts` runs them as a separate step.
# On first start with an empty database the server creates the first owner: set
# DESKROUTE_ADMIN_EMAIL and DESKROUTE_ADMIN_PASSWORD, or read the generated password from the
# container's output (it is printed once). Every setting is listed in .env.example.

FROM node:24-slim AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# npm ci runs the package's preinstall: the Node version check.
COPY scripts/check-node.cjs ./scripts/check-node.cjs
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production \
    DESKROUTE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/home/node/data
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY migrations ./migrations
COPY scripts/migrate.ts scripts/check-node.cjs ./scripts/
RUN mkdir -p /home/node/data && chown node:node /home/node/data
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The server handles SIGTERM itself: it stops accepting, finishes in-flight requests
# (SHUTDOWN_GRACE_MS) and closes the database before exiting.
STOPSIGNAL SIGTERM
# The same V8 heap limits as `npm start` (README, "Memory"). To raise them, give the command
# with other flags: NODE_OPTIONS cannot, command-line flags win over it.
CMD ["node", "--max-semi-space-size=8", "--max-old-space-size=160", "src/server.ts"]
