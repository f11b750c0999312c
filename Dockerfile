# syntax=docker/dockerfile:1
# The pgraft sidecar image: `docker build -t pgraft:0.1.0 .`
# Stage 1 builds (TypeScript and the generated gRPC code need the dev dependencies); stage 2 installs
# only the runtime dependencies; the final image holds Node.js, those, the built JavaScript and the
# PostgreSQL 15 programs a node-group join runs (pg_dump, pg_restore), and runs as a non-root user.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY buf.yaml buf.gen.yaml tsconfig.json ./
COPY proto ./proto
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
 && npm cache clean --force

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pgraft" \
      org.opencontainers.image.description="Raft-coordinated sidecar for stock PostgreSQL: replicated catalog, logical replication node groups, SQL shim" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/pgraft/pgraft"
# PostgreSQL 15's programs (no server runs here: Debian's main cluster is not created): a node-group
# join runs pg_dump and pg_restore, and pgraft looks them up beside initdb and postgres.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pgraft \
 && useradd --system --uid 10001 --gid pgraft --home-dir /var/lib/pgraft --shell /usr/sbin/nologin pgraft \
 && mkdir -p /var/lib/pgraft \
 && chown pgraft:pgraft /var/lib/pgraft
ENV NODE_ENV=production \
    PGRAFT_PG_BIN=/usr/lib/postgresql/15/bin
WORKDIR /app
COPY --from=runtime-deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
RUN chmod 0755 dist/src/cli/main.js \
 && ln -s /app/dist/src/cli/main.js /usr/local/bin/pgraft
USER 10001:10001
# Raft/gRPC, HTTP (/metrics, /live, /ready), the routing proxy's read-write and read-only ports.
EXPOSE 7400 8008 6432 6433
ENTRYPOINT ["pgraft"]
CMD ["sidecar"]
